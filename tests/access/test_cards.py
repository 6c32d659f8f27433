"""Access cards (issue 12 §1–§3): issue rules and quota, fees and deposits in the ledger, scopes, lost and
replacement, return, move-out, expiry, audit, and "never tied to fees"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from access import service
from access.const import CardStatus, DepositState
from access.doors import sync_doors
from access.profile import TimeProfile
from access.whitelist import whitelist_for
from billing.dunning import import_arrears
from core.errors import Conflict, InvalidInput
from storage.models import AccessCard, AccessDoor, AuditLog, BillingAccount, LedgerEntry, LedgerTransaction
from tests.support.access_world import LEASE_END, CardPlace, make_card_estate, new_uid
from tests.support.clock import SH, FrozenClock, pinned

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=SH)  # a Tuesday


@pytest.fixture
def clock_at() -> Iterator[FrozenClock]:
    with pinned(T0) as frozen:
        yield frozen


@pytest.fixture
def place(session: Session, clock_at: FrozenClock) -> CardPlace:
    return make_card_estate(session)


def issue(session: Session, place: CardPlace, card_type: str = "owner", **kw: object) -> AccessCard:
    args: dict[str, object] = {
        "estate_id": place.estate_id,
        "card_type": card_type,
        "uid": new_uid(),
        "holder_name": "张三丰",
        "unit_id": place.unit_id,
        "actor": "card-desk",
    }
    args.update(kw)
    return service.issue(session, **args)  # type: ignore[arg-type]


def doors(session: Session, card: AccessCard) -> list[str]:
    return service.door_codes_of(session, card.id)


def ledger(session: Session, estate_id: int) -> dict[tuple[str, str], int]:
    """Σ amount per (transaction kind, account kind) of the estate."""
    rows = session.execute(
        select(LedgerTransaction.kind, BillingAccount.kind, LedgerEntry.amount_fen)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .join(BillingAccount, BillingAccount.id == LedgerEntry.account_id)
        .where(LedgerTransaction.estate_id == estate_id)
    ).all()
    out: dict[tuple[str, str], int] = {}
    for tx, account, amount in rows:
        out[(tx, account)] = out.get((tx, account), 0) + amount
    return out


def audits(session: Session, card: AccessCard) -> list[str]:
    return list(
        session.scalars(
            select(AuditLog.action).where(AuditLog.object == f"access_card:{card.id}").order_by(AuditLog.id)
        )
    )


# --- doors and scopes -------------------------------------------------------------------------------------------


def test_doors_come_from_the_controllers(session: Session, place: CardPlace) -> None:
    kinds = dict(
        session.execute(select(AccessDoor.code, AccessDoor.kind).where(AccessDoor.estate_id == place.estate_id)).all()
    )
    assert kinds == {
        "gate-n": "gate",
        "gate-s": "gate",
        "garage-b1": "garage",
        "1-1-main": "unit_entrance",
        "1-2-main": "unit_entrance",
        "2-lobby": "building",
        "pump-room": "equipment_room",
    }
    assert sync_doors(session, place.estate_id) == []  # idempotent


def test_default_scope_by_card_type(session: Session, place: CardPlace) -> None:
    owner = issue(session, place)
    assert doors(session, owner) == ["1-1-main", "garage-b1", "gate-n", "gate-s"]
    assert owner.time_profile is None
    tenant = issue(session, place, "tenant", unit_id=place.tenant_unit_id)
    assert doors(session, tenant) == ["1-2-main", "garage-b1", "gate-n", "gate-s"]
    visitor = issue(session, place, "visitor")
    assert doors(session, visitor) == ["1-1-main", "gate-n", "gate-s"]  # no garage
    pass_ = issue(session, place, "renovation", valid_until=date(2027, 1, 31))
    assert doors(session, pass_) == ["1-1-main", "1-2-main", "gate-n", "gate-s"]  # its building, no garage
    assert pass_.time_profile == {"days": [1, 2, 3, 4, 5, 6], "windows": [["08:00", "18:00"]]}
    engineer = issue(session, place, "staff", unit_id=None, staff_role="engineer")
    assert "pump-room" in doors(session, engineer)
    assert "2-lobby" in doors(session, engineer)
    steward = issue(session, place, "staff", unit_id=None, staff_role="steward")
    assert "pump-room" not in doors(session, steward)


def test_an_explicit_scope_and_profile(session: Session, place: CardPlace) -> None:
    profile = TimeProfile(days=(6, 7), windows=(("09:00", "12:00"), ("14:00", "17:00")))
    card = issue(session, place, door_codes=["gate-n", "1-1-main"], time_profile=profile)
    assert doors(session, card) == ["1-1-main", "gate-n"]
    assert card.time_profile == {"days": [6, 7], "windows": [["09:00", "12:00"], ["14:00", "17:00"]]}
    with pytest.raises(InvalidInput):
        issue(session, place, door_codes=["gate-n", "no-such-door"])


def test_time_profiles_read_the_estate_time() -> None:
    hours = TimeProfile(days=(1, 2, 3, 4, 5, 6), windows=(("08:00", "18:00"),))
    assert hours.allows(datetime(2026, 12, 5, 8, 0, tzinfo=SH), "Asia/Shanghai")  # Saturday 08:00
    assert not hours.allows(datetime(2026, 12, 5, 18, 0, tzinfo=SH), "Asia/Shanghai")  # the window is [08, 18)
    assert not hours.allows(datetime(2026, 12, 6, 10, 0, tzinfo=SH), "Asia/Shanghai")  # Sunday
    # 01:00 UTC Monday is 09:00 in Shanghai: inside, though the UTC hour is not.
    assert hours.allows(datetime(2026, 11, 30, 1, 0, tzinfo=UTC), "Asia/Shanghai")
    assert not hours.allows(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), "Asia/Shanghai")  # 18:00 there
    with pytest.raises(ValueError, match="must end after it starts"):
        TimeProfile(days=(1,), windows=(("18:00", "08:00"),))


# --- quota and fees ---------------------------------------------------------------------------------------------


def test_household_cards_are_free_up_to_the_occupants(session: Session, place: CardPlace) -> None:
    # 1-1-101 has 2 registered occupants: two free cards, the third charged the estate's fee (default ¥20).
    q = service.quota(session, place.unit_id)
    assert (q.free_allowed, q.free_left, q.next_fee_fen) == (2, 2, 0)
    first, second = issue(session, place), issue(session, place, "family", holder_name="张小宝")
    assert (first.free, first.fee_fen, second.free, second.fee_fen) == (True, 0, True, 0)
    assert service.quota(session, place.unit_id).next_fee_fen == 2000
    third = issue(session, place, "family", holder_name="张小红")
    assert (third.free, third.fee_fen) == (False, 2000)
    assert ledger(session, place.estate_id) == {("fee", "cash_counter"): 2000, ("fee", "revenue_access_cards"): -2000}
    assert audits(session, third) == ["access.card.issue"]


def test_at_most_three_free_cards_per_household(session: Session, place: CardPlace) -> None:
    cards = [issue(session, place, "family", unit_id=place.big_unit_id) for _ in range(4)]  # 5 occupants
    assert [c.free for c in cards] == [True, True, True, False]
    assert service.quota(session, place.big_unit_id).free_allowed == 3


def test_the_extra_card_fee_is_the_estates(session: Session, clock_at: FrozenClock) -> None:
    place = make_card_estate(session, policy={"access_extra_card_fee_fen": 1500})
    for _ in range(2):
        issue(session, place)
    assert issue(session, place).fee_fen == 1500


# --- renovation passes ---------------------------------------------------------------------------------------------


def test_renovation_pass_fee_deposit_and_refund_on_return(
    session: Session, place: CardPlace, clock_at: FrozenClock
) -> None:
    card = issue(session, place, "renovation", valid_until=date(2026, 12, 31))
    assert card.valid_until == datetime(2027, 1, 1, 0, 0, tzinfo=SH)  # the permit's last day included
    assert (card.fee_fen, card.deposit_fen, card.deposit_state) == (500, 2000, "held")
    clock_at.set(datetime(2027, 1, 5, 9, 0, tzinfo=SH))  # after the permit, within 7 days' grace
    service.return_card(session, card.id, actor="card-desk")
    assert (card.status, card.deposit_state) == ("returned", "refunded")
    assert ledger(session, place.estate_id) == {
        ("fee", "cash_counter"): 500,
        ("fee", "revenue_access_cards"): -500,
        ("deposit", "cash_counter"): 2000,
        ("deposit", "deposits_held"): -2000,
        ("deposit_refund", "deposits_held"): 2000,
        ("deposit_refund", "cash_counter"): -2000,
    }
    assert audits(session, card) == ["access.card.issue", "access.card.return", "access.deposit.refund"]


def test_renovation_pass_expires_and_keeps_the_deposit_after_the_grace(session: Session, clock_at: FrozenClock) -> None:
    place = make_card_estate(
        session,
        policy={
            "access_renovation_fee_fen": 0,
            "access_renovation_deposit_fen": 5000,
            "access_renovation_grace_days": 3,
        },
    )
    card = issue(session, place, "renovation", valid_until=date(2026, 12, 31))
    assert (card.fee_fen, card.deposit_fen) == (0, 5000)
    end = datetime(2027, 1, 1, 0, 0, tzinfo=SH)
    assert service.expire_due(session, end - timedelta(seconds=1)).expired == []
    result = service.expire_due(session, end)
    assert card.id in result.expired
    assert card.status == "expired"
    assert card.deposit_state == "held"
    assert (
        card.id not in service.expire_due(session, end + timedelta(days=3)).deposits_forfeited
    )  # the last grace instant
    clock_at.set(end + timedelta(days=3, seconds=1))
    assert card.id in service.expire_due(session, clock_at.t).deposits_forfeited
    assert card.deposit_state == "forfeited"
    assert ledger(session, place.estate_id)[("deposit_forfeit", "revenue_forfeits")] == -5000
    # Handed back too late: returned, nothing refunded.
    service.return_card(session, card.id, actor="card-desk")
    assert (card.status, card.deposit_state) == ("returned", "forfeited")
    assert ("deposit_refund", "cash_counter") not in ledger(session, place.estate_id)


def test_a_lost_pass_keeps_the_deposit_and_the_replacement_pays_its_own(session: Session, place: CardPlace) -> None:
    card = issue(session, place, "renovation", valid_until=date(2026, 12, 31))
    result = service.report_lost(session, card.id, actor="card-desk", replacement_uid=new_uid())
    assert (card.status, card.deposit_state) == ("lost", "forfeited")
    new = result.replacement
    assert new is not None
    assert (new.fee_fen, new.deposit_fen, new.deposit_state) == (500, 2000, "held")
    assert new.valid_until == card.valid_until
    assert new.time_profile == card.time_profile


# --- validity by type ---------------------------------------------------------------------------------------------


def test_a_tenant_card_ends_with_the_lease(session: Session, place: CardPlace) -> None:
    card = issue(session, place, "tenant", unit_id=place.tenant_unit_id)
    assert card.valid_until == datetime.combine(LEASE_END + timedelta(days=1), datetime.min.time(), SH)
    with pytest.raises(InvalidInput):
        issue(session, place, "tenant", unit_id=place.tenant_unit_id, valid_until=date(2027, 6, 30))
    with pytest.raises(InvalidInput):  # no lease on record and no end given
        issue(session, place, "tenant")
    assert card.id in service.expire_due(session, card.valid_until).expired  # type: ignore[arg-type]


def test_a_visitor_card_lasts_at_most_a_day(session: Session, place: CardPlace) -> None:
    card = issue(session, place, "visitor")
    assert card.valid_until == T0 + timedelta(hours=24)
    with pytest.raises(InvalidInput):
        issue(session, place, "visitor", valid_until=T0 + timedelta(hours=25))
    assert service.expire_due(session, T0 + timedelta(hours=23)).expired == []
    assert service.expire_due(session, T0 + timedelta(hours=24)).expired == [card.id]
    assert card.status == "expired"
    assert audits(session, card) == ["access.card.issue", "access.card.expire"]


def test_uids_are_uppercase_hex_live_once_per_format(session: Session, place: CardPlace) -> None:
    card = issue(session, place, uid="04 a1:b2-c3")
    assert card.uid == "04A1B2C3"
    with pytest.raises(Conflict):
        issue(session, place, uid="04A1B2C3")
    with pytest.raises(InvalidInput):
        issue(session, place, uid="04A1B2")  # a 4-byte card has 8 hex digits
    with pytest.raises(InvalidInput):
        issue(session, place, uid="04A1B2CG")
    seven = issue(session, place, uid="04A1B2C3D4E5F6", card_format="mifare7")
    assert seven.format == "mifare7"
    service.return_card(session, card.id, actor="card-desk")
    again = issue(session, place, uid="04A1B2C3", unit_id=place.big_unit_id)  # a returned card is issued again
    assert again.status == "active"


# --- lost, move-out, whitelist ----------------------------------------------------------------------------------


def test_lost_card_leaves_the_whitelist_and_its_replacement_takes_its_place(session: Session, place: CardPlace) -> None:
    gate = place.controllers["GATE"]
    card = issue(session, place, door_codes=["gate-n", "1-1-main"])
    assert [e.uid for e in whitelist_for(session, gate, T0)] == [card.uid]
    new_uid_ = new_uid()
    result = service.report_lost(session, card.id, actor="card-desk", replacement_uid=new_uid_)
    assert card.status == "lost"
    new = result.replacement
    assert new is not None
    assert new.replaces_id == card.id
    assert new.holder_name == card.holder_name
    assert doors(session, new) == ["1-1-main", "gate-n"]
    assert new.free  # the lost card freed its slot
    entries = whitelist_for(session, gate, T0)
    assert [(e.uid, e.doors) for e in entries] == [(new_uid_, ("gate-n",))]
    assert audits(session, card) == ["access.card.issue", "access.card.lost"]
    assert audits(session, new) == ["access.card.replace"]
    with pytest.raises(Conflict):
        service.report_lost(session, card.id, actor="card-desk")


def test_move_out_revokes_every_card_of_the_unit(session: Session, place: CardPlace) -> None:
    mine = [issue(session, place), issue(session, place, "family"), issue(session, place, "visitor")]
    neighbour = issue(session, place, unit_id=place.big_unit_id)
    revoked = service.move_out(session, place.unit_id, actor="card-desk")
    assert sorted(c.id for c in revoked) == sorted(c.id for c in mine)
    assert {c.status for c in mine} == {"revoked"}
    assert neighbour.status == "active"
    assert [e.uid for e in whitelist_for(session, place.controllers["AC-1-1"], T0)] == [neighbour.uid]
    assert audits(session, mine[0])[-1] == "access.card.revoke"


def test_whitelist_entries_per_controller(session: Session, place: CardPlace) -> None:
    a = issue(session, place, uid="0000000A")
    b = issue(session, place, "visitor", uid="0000000B")
    c = issue(session, place, "renovation", uid="0000000C", valid_until=date(2026, 12, 31))
    issue(session, place, "tenant", unit_id=place.tenant_unit_id, uid="0000000D")  # entrance 2: not on AC-1-1
    ac11 = whitelist_for(session, place.controllers["AC-1-1"], T0)
    assert [(e.uid, e.doors) for e in ac11] == [
        ("0000000A", ("1-1-main",)),
        ("0000000B", ("1-1-main",)),
        ("0000000C", ("1-1-main",)),
    ]
    assert ac11[1].valid_until == b.valid_until
    assert ac11[2].time_profile == c.time_profile
    assert ac11[2].schedule == [{"days": [1, 2, 3, 4, 5, 6], "start": "08:00", "end": "18:00"}]
    assert ac11[0].schedule is None
    assert ac11[0].valid_until is None
    assert ac11[0].valid_from == a.valid_from
    gate = whitelist_for(session, place.controllers["GATE"], T0)
    assert [e.uid for e in gate] == ["0000000A", "0000000B", "0000000C", "0000000D"]
    assert gate[0].doors == ("gate-n", "gate-s")
    # A visitor's card is off the list once its day is over, even before the expiry job has run.
    assert "0000000B" not in [
        e.uid for e in whitelist_for(session, place.controllers["GATE"], T0 + timedelta(hours=24))
    ]
    assert whitelist_for(session, place.controllers["PUMP"], T0) == []


def test_cards_never_depend_on_fees_or_arrears(session: Session, place: CardPlace) -> None:
    """Importing property-fee arrears for the unit changes nothing about its cards (domain-defaults §5, §6)."""
    cards = [issue(session, place), issue(session, place, "family"), issue(session, place, "family")]  # one charged
    before = {k: whitelist_for(session, v, T0) for k, v in place.controllers.items()}
    states = [(c.status, c.valid_until) for c in cards]
    csv = b"unit,period,amount,late_fee\n1-1-101,2026-09,1999.99,100\n1-1-101,2026-10,880.00,\n"
    report = import_arrears(session, place.estate_id, csv, actor="billing", filename="arrears.csv")
    assert report is not None
    service.expire_due(session, T0 + timedelta(days=400))  # nothing of theirs ends
    for card in cards:
        session.refresh(card)
    assert [(c.status, c.valid_until) for c in cards] == states
    assert {k: whitelist_for(session, v, T0) for k, v in place.controllers.items()} == before


def test_the_register_keeps_every_status(session: Session, place: CardPlace) -> None:
    card = issue(session, place)
    service.revoke(session, card.id, actor="card-desk", reason="业主要求 / owner asked")
    assert (card.status, card.status_reason, card.status_by) == ("revoked", "业主要求 / owner asked", "card-desk")
    assert session.get(AccessCard, card.id) is not None
    assert {s.value for s in CardStatus} == {"active", "lost", "revoked", "expired", "returned"}
    assert {s.value for s in DepositState} == {"none", "held", "refunded", "forfeited"}


def test_the_worker_job_expires_cards(session: Session, place: CardPlace) -> None:
    from worker.jobs import access_expiry_job, default_jobs

    assert "access_expiry" in {j.name for j in default_jobs()}
    card = issue(session, place, "visitor")
    result = access_expiry_job(session, T0 + timedelta(days=1))
    assert isinstance(result, service.ExpiryResult)
    assert card.id in result.expired
