"""Charging as readings arrive: the billing hook inside the real ingest pipeline path (RawMessages in,
one transaction per batch), with redelivery, out-of-order and late readings, a meter locked by a
billing run, and the switch. Each test has an estate of its own in the shared session database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing import queries
from billing.charge_behind import ChargerBehindIngest
from billing.const import CHARGE_LOCK_SPACE
from billing.on_ingest import ChargeOnIngest
from billing.tasks import billing_run
from core import clock
from core.settings import Environment, Settings
from ingest.messages import RawMessage
from ingest.pipeline import batch_hooks, charge_hook, charger_behind
from protocol.topics import uplink
from storage.models import Estate
from tests.billing.factory import flat_tariff, make_estate
from tests.ingest.conftest import Harness, make_harness, raw

PRICE = 1850  # fen per m³
# Whole hours in the recent past: inside ingest's accept window, and one calendar month apart at most
# never matters with a flat tariff.
T0 = clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=3)


@dataclass
class Billed:
    estate_id: int
    code: str
    devices: list[str]
    device_ids: list[int]
    accounts: list[int]
    engine: Engine

    def msg(self, i: int, ts: datetime, register: str) -> RawMessage:
        body = {"v": 1, "ts": ts.isoformat(), "register": register, "unit": "m3"}
        return raw(uplink(self.code, self.devices[i], "meter"), json.dumps(body).encode())

    def charges(self, i: int = 0) -> list[tuple[datetime, datetime, Decimal, int]]:
        with self.engine.connect() as conn:
            return [
                (r.from_ts, r.to_ts, r.volume_m3, r.amount_fen)
                for r in conn.execute(
                    text(
                        "SELECT from_ts, to_ts, volume_m3, amount_fen FROM meter_charges WHERE device_id = :d "
                        "ORDER BY from_ts"
                    ),
                    {"d": self.device_ids[i]},
                )
            ]

    def balance(self, i: int = 0) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT balance_fen FROM billing_accounts WHERE id = :a"), {"a": self.accounts[i]}
                ).scalar_one()
            )

    def consistent(self) -> None:
        with Session(self.engine) as s:
            assert queries.unbalanced_transactions(s) == []
            assert queries.balance_mismatches(s) == []


@pytest.fixture
def billed(engine: Engine) -> Billed:
    """Two households with hot-water meters and a flat tariff, imported before the pipeline starts."""
    with Session(engine) as s, s.begin():
        estate_id, households = make_estate(s, 2)
        flat_tariff(s, estate_id, PRICE)
        code = s.get_one(Estate, estate_id).code
    return Billed(
        estate_id,
        code,
        [h.device_code for h in households],
        [h.device_id for h in households],
        [h.account_id for h in households],
        engine,
    )


@pytest.fixture
def hook() -> ChargeOnIngest:
    return ChargeOnIngest()


def attach(engine: Engine, h: Harness, hook: ChargeOnIngest, mode: str) -> ChargerBehindIngest | None:
    """Wire ``hook`` into the harness as ingest does in ``mode``: inside the batch transaction, or behind
    it (billing/charge_behind.py), each commit then waiting for the charger's round."""
    if mode == "in_batch":
        h.pipeline.hooks.append(hook)
        return None
    charger = ChargerBehindIngest(engine, hook)
    h.pipeline.after_commit.append(charger.submit)
    charger.start()

    def settle() -> None:
        assert charger.wait_idle(30), "the charger did not catch up"

    h.settle = settle
    return charger


@pytest.fixture(params=["in_batch", "behind"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every behaviour below holds in both places ingest can charge (settings.billing_charge_mode)."""
    return str(request.param)


@pytest.fixture
def harness(engine: Engine, billed: Billed, hook: ChargeOnIngest, mode: str) -> Iterator[Harness]:
    h = make_harness(engine)
    charger = attach(engine, h, hook, mode)
    yield h
    h.stop.set()
    if charger is not None:
        charger.stop()


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def test_readings_are_charged_in_their_batch(harness: Harness, billed: Billed, hook: ChargeOnIngest) -> None:
    assert harness.commit([billed.msg(0, T0, "10.000"), billed.msg(1, T0, "5.000")])
    assert billed.charges(0) == []  # the first reading is the baseline
    assert harness.commit([billed.msg(0, T0 + hours(1), "10.500"), billed.msg(1, T0 + hours(1), "5.000")])
    assert billed.charges(0) == [(T0, T0 + hours(1), Decimal("0.500000"), 925)]
    assert billed.charges(1) == []  # zero volume: the cursor moves, nothing is written
    assert billed.balance(0) == -925
    assert harness.commit([billed.msg(0, T0 + hours(2), "11.000"), billed.msg(0, T0 + hours(3), "12.000")])
    assert [c[3] for c in billed.charges(0)] == [925, 925, 1850]
    assert billed.balance(0) == -3700
    assert (hook.totals.charges, hook.totals.amount_fen, hook.totals.skipped) == (3, 3700, 0)
    billed.consistent()


def test_a_redelivered_batch_charges_nothing_twice(harness: Harness, billed: Billed) -> None:
    first = [billed.msg(0, T0, "1.000"), billed.msg(0, T0 + hours(1), "2.000")]
    second = [billed.msg(0, T0 + hours(2), "4.000"), billed.msg(1, T0 + hours(2), "3.000")]
    assert harness.commit(first)
    assert harness.commit(second)
    charged = billed.charges(0)
    assert [c[2] for c in charged] == [Decimal("1.000000"), Decimal("2.000000")]
    # The broker delivers both batches again (a crash before the ack): same payloads, new message ids,
    # once one by one and once merged into one batch.
    for batch in (first, second, first + second):
        assert harness.commit([raw(m.topic, m.payload) for m in batch])
    assert billed.charges(0) == charged
    assert billed.balance(0) == -3 * PRICE
    assert harness.health.counters.duplicate == 8
    billed.consistent()


def test_out_of_order_and_late_readings_never_double_charge(harness: Harness, billed: Billed) -> None:
    assert harness.commit([billed.msg(0, T0, "100.000")])
    # Out of order inside one batch: charged in device-time order up to the newest.
    assert harness.commit([billed.msg(0, T0 + hours(3), "103.000"), billed.msg(0, T0 + hours(1), "101.000")])
    assert [(c[0], c[1]) for c in billed.charges(0)] == [(T0, T0 + hours(1)), (T0 + hours(1), T0 + hours(3))]
    # Late: a reading inside the interval already charged adds nothing (the registers are cumulative).
    assert harness.commit([billed.msg(0, T0 + hours(2), "102.500")])
    assert len(billed.charges(0)) == 2
    # A newer reading in the same batch as a late one: only the new interval is charged.
    assert harness.commit([billed.msg(0, T0 + hours(0.5), "100.200"), billed.msg(0, T0 + hours(4), "104.000")])
    charged = billed.charges(0)
    assert [(c[0], c[1]) for c in charged][-1] == (T0 + hours(3), T0 + hours(4))
    assert sum(c[2] for c in charged) == Decimal("4")  # 104 − 100: every m³ once
    assert billed.balance(0) == -4 * PRICE
    billed.consistent()


def test_a_meter_being_charged_elsewhere_is_skipped_then_caught_up(
    engine: Engine, harness: Harness, billed: Billed, hook: ChargeOnIngest
) -> None:
    assert harness.commit([billed.msg(0, T0, "1.000"), billed.msg(1, T0, "1.000")])
    with engine.connect() as other:
        other.begin()  # a billing run holding meter 0: ingest must neither wait nor charge it
        other.execute(text("SELECT pg_advisory_xact_lock(:s, :d)"), {"s": CHARGE_LOCK_SPACE, "d": billed.device_ids[0]})
        assert harness.commit([billed.msg(0, T0 + hours(1), "2.000"), billed.msg(1, T0 + hours(1), "3.000")])
        other.rollback()
    assert hook.totals.skipped == 1
    assert billed.charges(0) == []  # the reading is stored, the charge waits
    assert len(billed.charges(1)) == 1
    # The next batch of that meter charges everything since its cursor …
    assert harness.commit([billed.msg(0, T0 + hours(2), "2.500")])
    assert [c[2] for c in billed.charges(0)] == [Decimal("1.000000"), Decimal("0.500000")]
    # … and the periodic billing run finds nothing left to do.
    run = billing_run(sessionmaker(engine, expire_on_commit=False), T0 + hours(2), estate_id=billed.estate_id)
    assert sum(m.charges for m in run.meters if m.device_id in billed.device_ids) == 0
    assert billed.balance(0) == -round(Decimal("1.5") * PRICE)
    billed.consistent()


def test_ingest_charges_equal_one_billing_run(engine: Engine, harness: Harness, billed: Billed) -> None:
    """Meter 0 is charged as its readings arrive, meter 1 (same readings) only by the billing run: the same
    volume and amount, the same balance."""
    regs = ["0.000", "0.125", "0.125", "0.400", "1.000", "1.001", "2.750"]
    for k, r in enumerate(regs):
        batch = [billed.msg(0, T0 + hours(k), r)]
        assert harness.commit(batch)
    with Session(engine) as s, s.begin():  # meter 1's readings written past the hook
        for k, r in enumerate(regs):
            s.execute(
                text("INSERT INTO meter_readings (ts, device_id, register) VALUES (:t, :d, :r)"),
                {"t": T0 + hours(k), "d": billed.device_ids[1], "r": Decimal(r)},
            )
    billing_run(sessionmaker(engine, expire_on_commit=False), T0 + hours(len(regs)), estate_id=billed.estate_id)
    # Ingest charges each interval as it arrives (the zero one writes nothing); the run charges the same
    # volume and money in one charge per stretch (billing.coalesce): one month, one tariff, one charge.
    at_ingest, by_run = billed.charges(0), billed.charges(1)
    assert len(at_ingest) == len(regs) - 2
    assert by_run == [(at_ingest[0][0], at_ingest[-1][1], sum(c[2] for c in at_ingest), sum(c[3] for c in at_ingest))]
    assert billed.balance(0) == billed.balance(1) < 0
    billed.consistent()


def test_meters_without_a_household_are_not_charged(engine: Engine, billed: Billed, hook: ChargeOnIngest) -> None:
    from tests.ingest.conftest import new_estate_code
    from tests.support.estate import load_small_estate, meter_code

    code = new_estate_code("cb")
    load_small_estate(engine, code, sensors=1, meters=1)  # a hot-water meter in no unit (a plant meter)
    h = make_harness(engine)
    h.pipeline.hooks.append(hook)
    topic = uplink(code, meter_code(code, 0), "meter")
    for k, r in enumerate(["1.000", "9.000"]):
        body: dict[str, Any] = {"v": 1, "ts": (T0 + hours(k)).isoformat(), "register": r, "unit": "m3"}
        assert h.commit([raw(topic, body)])
    with engine.connect() as conn:
        device = conn.execute(text("SELECT id FROM devices WHERE code = :c"), {"c": meter_code(code, 0)}).scalar_one()
        assert (
            conn.execute(text("SELECT count(*) FROM meter_readings WHERE device_id = :d"), {"d": device}).scalar() == 2
        )
        assert (
            conn.execute(text("SELECT count(*) FROM billing_cursors WHERE device_id = :d"), {"d": device}).scalar() == 0
        )
    assert hook.totals.meters == 0


def test_the_switch(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)

    def settings(**kw: Any) -> Settings:
        return Settings(env=Environment.testing, database_url=url, alarm_evaluation=False, **kw)

    # By default ingest charges behind its commits: no hook in the batch transaction, a charger after it.
    assert batch_hooks(settings()) == []
    assert isinstance(charger_behind(settings(), engine), ChargerBehindIngest)
    # In the batch transaction on request.
    assert [type(h) for h in batch_hooks(settings(billing_charge_mode="in_batch"))] == [ChargeOnIngest]
    assert charger_behind(settings(billing_charge_mode="in_batch"), engine) is None
    # Off: neither.
    assert batch_hooks(settings(billing_charge_on_ingest=False)) == []
    assert charger_behind(settings(billing_charge_on_ingest=False), engine) is None
    assert settings().billing_charge_on_ingest is True  # on by default


def test_a_reset_is_held_through_ingest_and_the_rest_charged(harness: Harness, billed: Billed) -> None:
    """Off the common path (a register that falls): the hold is made in the batch, the other meter charged."""
    assert harness.commit([billed.msg(0, T0, "50.000"), billed.msg(1, T0, "1.000")])
    assert harness.commit([billed.msg(0, T0 + hours(1), "51.000"), billed.msg(1, T0 + hours(1), "2.000")])
    assert harness.commit(
        [
            billed.msg(0, T0 + hours(2), "0.300"),  # a reset: held for a person, nothing charged
            billed.msg(0, T0 + hours(3), "0.800"),
            billed.msg(1, T0 + hours(2), "2.250"),
            billed.msg(1, T0 + hours(3), "99999.999"),  # unusable (≥ register_max): skipped, never billed
        ]
    )
    assert [c[2] for c in billed.charges(0)] == [Decimal("1.000000")]
    assert [c[2] for c in billed.charges(1)] == [Decimal("1.000000"), Decimal("0.250000")]
    with billed.engine.connect() as conn:
        holds = conn.execute(
            text("SELECT from_ts, to_ts, status FROM billing_holds WHERE device_id = :d"), {"d": billed.device_ids[0]}
        ).all()
    assert [tuple(h) for h in holds] == [(T0 + hours(1), T0 + hours(2), "held")]
    # Redelivered, the held meter stays held and nothing is charged twice.
    assert harness.commit([billed.msg(0, T0 + hours(3), "0.800"), billed.msg(1, T0 + hours(2), "2.250")])
    assert len(billed.charges(0)) == 1
    assert len(billed.charges(1)) == 2
    billed.consistent()


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def test_the_product_hook_charges_an_hour_at_a_time_with_the_same_money(
    engine: Engine, billed: Billed, mode: str
) -> None:
    """The hook as ingest builds it (a one-hour span, merged intervals): meter 0's quarter-hourly readings
    become one charge per hour or more; meter 1, the same readings charged one by one (span 0, no merge),
    pays exactly the same. Nothing is left uncharged once a reading an hour past the cursor lands."""
    url = engine.url.render_as_string(hide_password=False)
    product = charge_hook(Settings(env=Environment.testing, database_url=url, alarm_evaluation=False))
    assert (product.span, product.merge) == (hours(1), True)
    h0, h1 = make_harness(engine), make_harness(engine)
    charger = attach(engine, h0, product, mode)
    h1.pipeline.hooks.append(ChargeOnIngest())
    regs = ["10.000", "10.040", "10.040", "10.100", "10.350", "10.351", "10.500", "10.725", "10.900", "11.000"]
    stamps = [T0 + minutes(15 * k) for k in range(len(regs))]  # T0 … T0 + 2 h 15
    batches = [[0], [1], [2], [3], [4, 5], [6], [7, 8], [9]]  # indexes of the readings in each batch
    charged_after: list[int] = []
    for b in batches:
        assert h0.commit([billed.msg(0, stamps[k], regs[k]) for k in b])
        assert h1.commit([billed.msg(1, stamps[k], regs[k]) for k in b])
        charged_after.append(len(billed.charges(0)))
    # Baseline; 15, 30, 45 min deferred; batch [4, 5] (1 h 15 past the baseline) charges T0 → 1 h 15 as one;
    # 1 h 30 and 2 h are under an hour past that: deferred; 2 h 15 charges 1 h 15 → 2 h 15 as one.
    assert charged_after == [0, 0, 0, 0, 1, 1, 1, 2]
    assert billed.charges(0) == [
        (stamps[0], stamps[5], Decimal("0.351000"), 649),
        (stamps[5], stamps[9], Decimal("0.649000"), 1201),
    ]
    assert len(billed.charges(1)) == 8  # one per interval with volume (the zero one writes nothing)
    assert billed.balance(0) == billed.balance(1) == -1850  # 1 m³ at ¥18.50 either way
    assert product.totals.deferred == 5
    billed.consistent()
    h0.stop.set()
    h1.stop.set()
    if charger is not None:
        charger.stop()


class FailingOnce(ChargeOnIngest):
    """The charging logic, whose first round dies on the database (as in an outage mid-round)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def charge(self, conn: Any, readings: Any) -> Any:
        out = super().charge(conn, readings)  # the charges are written … then the connection fails
        if not self.failed:
            self.failed = True
            raise OperationalError("UPDATE billing_cursors", {}, Exception("server closed the connection"))
        return out


def test_behind_a_failed_round_is_rolled_back_and_retried(engine: Engine, billed: Billed) -> None:
    """A round that fails leaves nothing behind and its meters pending: the retry charges them once."""
    h, hook = make_harness(engine), FailingOnce()
    charger = attach(engine, h, hook, "behind")
    try:
        assert h.commit([billed.msg(0, T0, "1.000")])  # baseline
        assert h.commit([billed.msg(0, T0 + hours(1), "3.000")])
        assert hook.failed
        assert charger.failures == 1
        assert billed.charges(0) == [(T0, T0 + hours(1), Decimal("2.000000"), 2 * PRICE)]
        assert billed.balance(0) == -2 * PRICE
        billed.consistent()
    finally:
        charger.stop()


def test_behind_readings_committed_but_not_yet_charged_at_a_crash_are_charged_after(
    engine: Engine, billed: Billed
) -> None:
    """Ingest dies between a batch's commit and its charge: the readings are stored and the cursor has not
    moved. The next ingest process charges them with the meter's next reading; nothing is charged twice."""
    h1 = make_harness(engine)
    dead = ChargerBehindIngest(
        engine,
        charge_hook(Settings(env=Environment.testing, database_url=engine.url.render_as_string(hide_password=False))),
    )
    h1.pipeline.after_commit.append(dead.submit)  # never started: the process dies before its round
    assert h1.commit([billed.msg(0, T0, "10.000"), billed.msg(0, T0 + hours(1), "12.000")])
    assert dead.pending == 1
    assert billed.charges(0) == []
    h2 = make_harness(engine)
    url = engine.url.render_as_string(hide_password=False)
    charger = attach(engine, h2, charge_hook(Settings(env=Environment.testing, database_url=url)), "behind")
    try:
        # The broker redelivers the unacked batch to the new process, then the next reading comes.
        assert h2.commit([billed.msg(0, T0, "10.000"), billed.msg(0, T0 + hours(1), "12.000")])
        assert h2.commit([billed.msg(0, T0 + hours(2), "13.000")])
        assert sum(c[2] for c in billed.charges(0)) == Decimal("3")
        assert billed.balance(0) == -3 * PRICE
        billed.consistent()
    finally:
        charger.stop()


def test_behind_readings_gathered_between_rounds_are_charged_as_one(engine: Engine, billed: Billed) -> None:
    """Batches committed while the charger waits for its next round merge: one charge for all of a meter's
    new readings (the same money as charging them batch by batch), so a flood costs rounds, not readings."""
    url = engine.url.render_as_string(hide_password=False)
    h = make_harness(engine)
    charger = ChargerBehindIngest(engine, charge_hook(Settings(env=Environment.testing, database_url=url)))
    h.pipeline.after_commit.append(charger.submit)
    for k, reg in enumerate(["1.000", "1.500", "2.250", "3.000", "4.000"]):  # five batches, one hour apart
        assert h.commit([billed.msg(0, T0 + hours(k), reg), billed.msg(1, T0 + hours(k), reg)])
    assert charger.pending == 2  # two meters, whatever the number of batches
    charger.start()
    try:
        assert charger.wait_idle(30)
        assert charger.rounds == 1
        assert billed.charges(0) == [(T0, T0 + hours(4), Decimal("3.000000"), 3 * PRICE)]
        assert billed.balance(0) == billed.balance(1) == -3 * PRICE
        billed.consistent()
    finally:
        charger.stop()
