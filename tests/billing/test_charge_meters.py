"""`charge_meters` (the run's and ingest's set-based path) charges exactly what `charge_meter`, meter by
meter, charges: test_crash's scenario (tiers restarting at a month boundary, a tariff change inside an
interval, rollovers, a reset held for a person), billed once each way on the same readings."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from billing.charging import bill
from billing.tasks import billing_run
from tests.billing.test_crash import UP_TO, load, snapshot, truncate


def test_set_based_run_equals_meter_by_meter(fresh_database: str) -> None:
    load(fresh_database)
    engine = create_engine(fresh_database)
    with Session(engine) as session, session.begin():
        result = bill(session, UP_TO)  # charge_meter, one meter after the other
    one_by_one = snapshot(fresh_database)
    assert result.charges == len(one_by_one["charges"]) > 0
    assert any(c[3] == "rollover" for c in one_by_one["charges"])
    assert [h[3] for h in one_by_one["holds"]] == ["held"]
    truncate(fresh_database)
    run = billing_run(sessionmaker(engine, expire_on_commit=False), UP_TO)  # charge_meters, by groups
    assert snapshot(fresh_database) == one_by_one
    assert run.charges == result.charges
    assert run.amount_fen == result.amount_fen
    engine.dispose()
