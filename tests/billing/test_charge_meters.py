"""The set-based paths charge what `charge_meter`, meter by meter, charges, on test_crash's scenario (tiers
restarting at a month boundary, a tariff change inside an interval, rollovers, a reset held for a person),
billed once each way on the same readings:

* `charge_meters` (ingest's path): exactly the same rows;
* `billing_run` (`billing.coalesce`: one charge per stretch of a meter's like intervals): the same
  balances, holds, month totals and per-month amounts, in fewer charges, each the union of consecutive
  one-by-one charges of one month and one kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from billing.charging import bill, charge_meters, meters_to_bill
from billing.tasks import billing_run
from tests.billing.test_crash import UP_TO, load, snapshot, truncate

_ROWS = text(
    "SELECT device_id, from_ts, to_ts, kind, month, volume_m3, amount_fen, cum_volume_m3, cum_value_fen "
    "FROM meter_charges ORDER BY device_id, from_ts"
)
_MONTHS = text(
    "SELECT u.code, c.month, sum(c.volume_m3), sum(c.amount_fen), max(c.cum_volume_m3), max(c.cum_value_fen) "
    "FROM meter_charges c JOIN billing_accounts a ON a.id = c.account_id JOIN units u ON u.id = a.unit_id "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)


def _rows(url: str) -> tuple[list[Any], list[Any]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows, months = [tuple(r) for r in conn.execute(_ROWS)], [tuple(r) for r in conn.execute(_MONTHS)]
    engine.dispose()
    return rows, months


def test_set_based_paths_equal_meter_by_meter(fresh_database: str) -> None:
    load(fresh_database)
    engine = create_engine(fresh_database)
    with Session(engine) as session, session.begin():
        result = bill(session, UP_TO)  # charge_meter, one meter after the other
    one_by_one = snapshot(fresh_database)
    rows, months = _rows(fresh_database)
    assert result.charges == len(one_by_one["charges"]) > 0
    assert any(c[3] == "rollover" for c in one_by_one["charges"])
    assert [h[3] for h in one_by_one["holds"]] == ["held"]

    truncate(fresh_database)  # ingest's path: the very same rows
    with Session(engine) as session, session.begin():
        ingest = charge_meters(session, dict.fromkeys(meters_to_bill(session), UP_TO), wait=True)
    assert snapshot(fresh_database) == one_by_one
    assert sum(m.charges for m in ingest) == result.charges

    truncate(fresh_database)  # the billing run: coalesced
    run = billing_run(sessionmaker(engine, expire_on_commit=False), UP_TO)
    coalesced = snapshot(fresh_database)
    c_rows, c_months = _rows(fresh_database)
    assert coalesced["balances"] == one_by_one["balances"]
    assert coalesced["holds"] == one_by_one["holds"]
    assert c_months == months  # volume, amounts and exact month totals per account and month
    assert run.amount_fen == result.amount_fen
    # Fewer charges (this is the point), and one ledger transaction per paid charge, as before.
    assert run.charges == len(c_rows) < len(rows) / 3
    assert coalesced["transactions"] == sum(1 for c in coalesced["charges"] if c[7])
    # Each one-by-one charge lies inside exactly one coalesced charge of its meter, month and kind.
    for d, f, t, kind, month, *_ in rows:
        inside = [c for c in c_rows if c[0] == d and c[1] <= f and t <= c[2]]
        assert len(inside) == 1, (d, f, t)
        assert inside[0][3:5] == (kind, month)
    # A rollover, or an interval across the tariff change, is charged alone, as one by one.
    alone = {r[:4] for r in rows if r[3] == "rollover"}
    assert alone <= {c[:4] for c in c_rows}
    engine.dispose()
