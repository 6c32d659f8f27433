from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from storage.models import NotificationDelivery
from tests.support.notify_servers import RobotServer, SmtpServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def robot() -> Iterator[RobotServer]:
    server = RobotServer().start()
    yield server
    server.stop()


@pytest.fixture
def factory(session: Session) -> sessionmaker[Session]:
    """Sessions on the test's connection: each `with factory() as s, s.begin()` is a savepoint, so the
    dispatcher's claim / record transactions are real and still rolled back with the test."""
    session.execute(delete(NotificationDelivery))  # others' committed rows: gone in this (rolled-back) transaction
    return sessionmaker(bind=session.connection(), join_transaction_mode="create_savepoint", expire_on_commit=False)
