"""Tell the account pages that an estate's money moved: ``pg_notify`` on ``storage.notify.BILLING_CHANNEL``.

PostgreSQL delivers a notification only when its transaction commits (never a rolled-back charge) and folds
identical ones of one transaction into one, so a billing run's meter or an ingest batch that charges many
intervals of an estate wakes the pages once. The payload names the estate only: the pages re-read what they show.
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.notify import BILLING_CHANNEL

_NOTIFY = text(f"SELECT pg_notify('{BILLING_CHANNEL}', :payload)")


def changed(session: Session, estate_id: int) -> None:
    """Queue a notification for `estate_id`, delivered when the caller's transaction commits."""
    session.execute(_NOTIFY, {"payload": json.dumps({"estate_id": estate_id})})
