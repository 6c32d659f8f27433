"""A hypothesis state machine over top-ups, readings, holds and billing runs against real PostgreSQL.

The model is a plain re-statement of the rules in integer litres and Decimal fen: the first reading
a run sees is the baseline; later readings in device time give normal, rollover (from ≥ 90 % of the
register range to < 10 %) or held intervals; a held interval stops the meter until confirmed; the
tiered price applies to the account's month (the month the interval ends in, Asia/Shanghai) with
cumulative half-up rounding. Every step checks: every transaction balances, cached balance = −Σ
entries, the database's charges are the model's (so nothing is charged twice and nothing negative) —
a run on the billing run's path (`billing.coalesce`) charges a stretch of the model's intervals at
once, each charge the sum of the model's charges inside it — and the model's balances equal the
database's.

Notice evaluation (with the estate's restriction switch on) runs at hours moving forward, and every
drafted notice may be approved and sent: it never moves money, a household in credit is never left
restricted or suspended, and each restriction or suspension rests on a notice sent at least 15 (3) days
before the date it stated, taken on that date or later on a working day between 08:00 and 20:00.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from billing import charging, notices, queries, service
from billing.coalesce import charge_meters_coalesced
from billing.const import NoticeStatus
from billing.pricing import Tier
from core import clock
from core.errors import Conflict
from storage.models import (
    BillingHold,
    BillingNotice,
    BillingSupplyChange,
    BillingSupplyState,
    Estate,
    LedgerTransaction,
    MeterCharge,
)
from tests.billing.factory import add_reading, make_estate

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=SH)  # a few days before a month boundary
RANGE = 1_000_000  # litres: register_max 1000.000 m³
TIER_LITRES, LOW, HIGH = 5_000, Decimal("1.85"), Decimal("2.775")  # fen per litre: ¥18.50 / ¥27.75 per m³
DEVICES = 2


def value(cum_litres: int) -> Decimal:
    return LOW * min(cum_litres, TIER_LITRES) + HIGH * max(cum_litres - TIER_LITRES, 0)


def rounded(v: Decimal) -> int:
    return int(v.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def m3(litres: int) -> Decimal:
    return Decimal(litres) / 1000


@dataclass
class Meter:
    gen_ts: datetime
    true_reg: int
    pending: list[tuple[datetime, int]] = field(default_factory=list)
    delivered: dict[datetime, int] = field(default_factory=dict)
    cursor: tuple[datetime, int] | None = None
    holds: dict[datetime, dict[str, object]] = field(default_factory=dict)
    charges: list[tuple[datetime, datetime, int]] = field(default_factory=list)


class Billing(RuleBasedStateMachine):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.conn = engine.connect()
        self.outer = self.conn.begin()
        self.session = Session(bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        clock.set_clock(lambda: T0)
        self.estate_id, self.households = make_estate(self.session, DEVICES, register_max="1000.000")
        service.add_tariff(
            self.session,
            estate_id=self.estate_id,
            effective_from=datetime(2026, 1, 1, tzinfo=SH),
            tiers=[Tier(Decimal(5), 1850), Tier(None, 2775)],
            actor="zhou",
        )
        # One meter starts near the top of its range so rollovers happen.
        self.meters = [Meter(T0, 999_400 if i == 0 else 1_000) for i in range(DEVICES)]
        self.month_cum: dict[tuple[int, date], int] = {}
        self.balances = [0] * DEVICES
        self.payments: dict[str, tuple[int, int, str]] = {}
        estate = self.session.get(Estate, self.estate_id)
        assert estate is not None
        estate.policy = {"supply_restriction_enabled": True}
        self.evaluated_at = T0

    def teardown(self) -> None:
        clock.reset_clock()
        self.session.close()
        self.outer.rollback()
        self.conn.close()

    # --- readings -------------------------------------------------------------------------------------

    def _new_reading(self, d: int, late: bool) -> None:
        m = self.meters[d]
        m.pending.append((m.gen_ts, m.true_reg))
        if not late:  # most readings arrive at once; a late one waits for `deliver` (out of order)
            self.deliver(d, len(m.pending) - 1)

    @rule(
        d=st.integers(0, DEVICES - 1),
        minutes=st.integers(5, 900),
        litres=st.integers(0, 150),
        late=st.booleans(),
    )
    def generate(self, d: int, minutes: int, litres: int, late: bool) -> None:
        m = self.meters[d]
        m.gen_ts += timedelta(minutes=minutes)
        m.true_reg = (m.true_reg + litres) % RANGE
        self._new_reading(d, late)

    @rule(d=st.integers(0, DEVICES - 1), minutes=st.integers(5, 300), new_reg=st.integers(0, 300), late=st.booleans())
    def reset_or_replace(self, d: int, minutes: int, new_reg: int, late: bool) -> None:
        m = self.meters[d]
        m.gen_ts += timedelta(minutes=minutes)
        m.true_reg = new_reg
        self._new_reading(d, late)

    @rule(d=st.integers(0, DEVICES - 1), i=st.integers(0, 50))
    def deliver(self, d: int, i: int) -> None:
        """Deliver any pending reading: out of order whenever i does not pick the oldest."""
        m = self.meters[d]
        if not m.pending:
            return
        ts, reg = m.pending.pop(i % len(m.pending))
        assert add_reading(self.session, self.households[d].device_id, ts, m3(reg))
        m.delivered[ts] = reg

    @rule(d=st.integers(0, DEVICES - 1), i=st.integers(0, 50))
    def redeliver(self, d: int, i: int) -> None:
        m = self.meters[d]
        if not m.delivered:
            return
        ts = sorted(m.delivered)[i % len(m.delivered)]
        assert not add_reading(self.session, self.households[d].device_id, ts, m3(m.delivered[ts]))

    # --- money ----------------------------------------------------------------------------------------

    @rule(
        a=st.integers(0, DEVICES - 1),
        k=st.integers(0, 4),
        amount=st.integers(1, 30_000),
        method=st.sampled_from(["counter", "online"]),
    )
    def top_up(self, a: int, k: int, amount: int, method: str) -> None:
        key = f"{self.estate_id}-k{k}"
        account_id = self.households[a].account_id
        seen = self.payments.get(key)
        if seen is not None and seen != (a, amount, method):
            try:
                service.record_payment(
                    self.session,
                    account_id=account_id,
                    amount_fen=amount,
                    method=method,
                    idempotency_key=key,
                    actor="zhou",
                )
            except Conflict:
                return
            raise AssertionError("a reused key with another payment was accepted")
        result = service.record_payment(
            self.session, account_id=account_id, amount_fen=amount, method=method, idempotency_key=key, actor="zhou"
        )
        assert result.created == (seen is None)
        if seen is None:
            self.payments[key] = (a, amount, method)
            self.balances[a] += amount

    # --- billing --------------------------------------------------------------------------------------

    def _charge(self, d: int, frm: tuple[datetime, int], to: tuple[datetime, int], litres: int) -> None:
        m = self.meters[d]
        if litres > 0:
            local = to[0].astimezone(SH)
            month = date(local.year, local.month, 1)
            before = self.month_cum.get((d, month), 0)
            self.month_cum[(d, month)] = before + litres
            self.balances[d] -= rounded(value(before + litres)) - rounded(value(before))
            m.charges.append((frm[0], to[0], litres))
        m.cursor = to

    def _model_run(self, d: int, up_to: datetime) -> None:
        m = self.meters[d]
        if m.cursor is None:
            seen = sorted(ts for ts in m.delivered if ts <= up_to)
            if not seen:
                return
            m.cursor = (seen[0], m.delivered[seen[0]])
        assert m.cursor is not None
        hold = m.holds.get(m.cursor[0])
        if hold is not None:
            to = hold["to"]
            assert isinstance(to, tuple)
            if hold["status"] == "held" or to[0] > up_to:
                return
            litres = hold["litres"]
            assert isinstance(litres, int)
            self._charge(d, m.cursor, to, litres)
        for ts in sorted(t for t in m.delivered if m.cursor[0] < t <= up_to):
            prev, reg = m.cursor[1], m.delivered[ts]
            if reg >= prev:
                litres = reg - prev
            elif prev >= 0.9 * RANGE and reg < 0.1 * RANGE:
                litres = RANGE - prev + reg
            else:
                m.holds[m.cursor[0]] = {"to": (ts, reg), "status": "held"}
                return
            self._charge(d, m.cursor, (ts, reg), litres)

    @rule(back=st.integers(0, 600), coalesced=st.booleans())
    def run(self, back: int, coalesced: bool) -> None:
        up_to = max(m.gen_ts for m in self.meters) - timedelta(minutes=back)
        if coalesced:  # the billing run's path: one charge per stretch of like intervals
            meters = charging.meters_to_bill(self.session, self.estate_id)
            charge_meters_coalesced(self.session, dict.fromkeys(meters, up_to), wait=True)
            event("coalesced run")
        else:  # charge_meter, one charge per interval
            charging.bill(self.session, up_to, estate_id=self.estate_id)
        for d in range(DEVICES):
            self._model_run(d, up_to)

    @precondition(lambda self: any(h["status"] == "held" for m in self.meters for h in m.holds.values()))
    @rule(extra=st.integers(0, 100), data=st.data())
    def confirm(self, extra: int, data: st.DataObject) -> None:
        d, from_ts, hold = next(
            (d, ts, h) for d, m in enumerate(self.meters) for ts, h in sorted(m.holds.items()) if h["status"] == "held"
        )
        m = self.meters[d]
        from_reg = m.cursor[1] if m.cursor else 0
        to = hold["to"]
        assert isinstance(to, tuple)
        new_initial = data.draw(st.integers(0, to[1]))
        row = self.session.scalars(
            select(BillingHold).where(
                BillingHold.device_id == self.households[d].device_id, BillingHold.from_ts == from_ts
            )
        ).one()
        assert (row.status, row.from_register, row.to_register) == ("held", m3(from_reg), m3(to[1]))
        service.confirm_hold(
            self.session,
            row.id,
            old_final_register=m3(from_reg + extra),
            new_initial_register=m3(new_initial),
            replaced_at=from_ts,
            actor="wang",
        )
        hold["status"] = "confirmed"
        hold["litres"] = extra + to[1] - new_initial

    # --- notices --------------------------------------------------------------------------------------

    @rule(hours=st.integers(1, 24 * 9))
    def evaluate_notices(self, hours: int) -> None:
        self.evaluated_at += timedelta(hours=hours)
        before = self.session.scalar(select(func.count()).select_from(LedgerTransaction))
        notices.evaluate(self.session, self.estate_id, self.evaluated_at)
        assert self.session.scalar(select(func.count()).select_from(LedgerTransaction)) == before  # no money moves

    @rule()
    def send_notices(self) -> None:
        clock.set_clock(lambda: self.evaluated_at)
        try:
            for n in self.session.scalars(select(BillingNotice).where(BillingNotice.status == "draft")).all():
                notices.approve(self.session, n.id, actor="li")
                try:
                    notices.deliver(self.session, n, actor="li")
                except Conflict:  # a stated date too near: cancelled, the next evaluation drafts a new one
                    notices.cancel(self.session, n.id, actor="li", reason="date too near")
        finally:
            clock.set_clock(lambda: T0)

    @invariant()
    def supply_follows_the_law(self) -> None:
        for hh in self.households:
            state = self.session.scalar(
                select(BillingSupplyState.state).where(BillingSupplyState.account_id == hh.account_id)
            )
            balance = queries.balance(self.session, hh.account_id).derived_fen
            assert state in (None, "normal") or balance <= 0
        for change in self.session.scalars(
            select(BillingSupplyChange).where(BillingSupplyChange.to_state.in_(["restricted", "suspended"]))
        ):
            notice = self.session.get(BillingNotice, change.notice_id)
            assert notice is not None
            assert notice.status == NoticeStatus.sent
            assert notice.sent_at is not None
            assert notice.effective_at is not None
            period = 15 if change.to_state == "restricted" else 3
            assert notice.effective_at >= notice.sent_at + timedelta(days=period)
            assert change.at >= notice.effective_at
            local = change.at.astimezone(SH)
            assert 8 <= local.hour < 20
            assert local.weekday() < 5
            event(f"supply changed to {change.to_state}")

    # --- invariants -----------------------------------------------------------------------------------

    @invariant()
    def ledger_balances(self) -> None:
        assert queries.unbalanced_transactions(self.session) == []
        assert queries.balance_mismatches(self.session) == []

    @invariant()
    def charges_match_the_model(self) -> None:
        for d, hh in enumerate(self.households):
            rows = self.session.execute(
                select(MeterCharge.from_ts, MeterCharge.to_ts, MeterCharge.volume_m3, MeterCharge.amount_fen)
                .where(MeterCharge.device_id == hh.device_id)
                .order_by(MeterCharge.from_ts)
            ).all()
            assert all(v >= 0 and a >= 0 for _, _, v, a in rows)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(rows))  # no overlap: nothing twice
            model = [(f, t, m3(litres)) for f, t, litres in self.meters[d].charges]
            # A coalesced run charges a stretch of the model's intervals at once: every model charge lies
            # inside exactly one charge (they never overlap), whose volume is the sum of those inside it.
            inside = 0
            for f, t, v, _ in rows:
                mine = [c for c in model if f <= c[0] and c[1] <= t]
                assert mine
                assert sum(c[2] for c in mine) == v
                inside += len(mine)
            assert inside == len(model)
            assert queries.balance(self.session, hh.account_id).derived_fen == self.balances[d]


def test_billing_state_machine(engine: Engine) -> None:
    run_state_machine_as_test(
        lambda: Billing(engine),
        settings=settings(
            max_examples=35,
            stateful_step_count=80,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
