"""Property-fee dunning: the arrears CSV, the ladder under a controlled clock (both variants), idempotence,
stop on payment, the documents as issued, the masked public list, and that nothing but documents and tasks
is ever written (no outbox row, no ledger entry)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing import dunning, dunning_queries
from billing.dunning import ArrearsFileRejected, import_arrears, parse_arrears_csv, parse_money, parse_period
from billing.dunning_render import mask_name, rmb_upper
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import (
    AuditLog,
    BillingAccount,
    DunningCase,
    DunningDocument,
    DunningTask,
    Estate,
    LedgerEntry,
    Outbox,
    PropertyFeeArrears,
    Resident,
)
from tests.billing.factory import make_estate
from tests.support.clock import SH, pinned

UNITS = {"1-1-101", "1-1-102", "1-1-103"}
GOOD = (
    b"unit,period,amount,late_fee\n"
    b"1-1-101,2026-09,19.99,0.10\n"
    b"1-1-101,2026-10,0.1,\n"
    b'1-1-102,2026-Q3,"1,234.56",12.3\n'
    b"1-1-103,2026-10,0.00,0\n"
)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 30, tzinfo=SH)


@pytest.fixture
def estate(session: Session) -> int:
    estate_id, households = make_estate(session, households=3)
    session.add_all(
        [
            Resident(unit_id=households[0].unit_id, name="张三丰", phone="13812345678", role="owner"),
            Resident(unit_id=households[0].unit_id, name="张小宝", phone="13800000000", role="family"),
            Resident(unit_id=households[1].unit_id, name="欧阳娜娜", phone="13987654321", role="owner"),
        ]
    )
    session.flush()
    return estate_id


def load(session: Session, estate_id: int, data: bytes, day: date) -> dunning.ImportReport:
    with pinned(at(day)):
        return import_arrears(session, estate_id, data, actor="zhou", filename="arrears.csv")


def advance(session: Session, estate_id: int, day: date) -> dunning.AdvanceResult:
    with pinned(at(day)):
        return dunning.advance(session, estate_id, day)


def steps(session: Session, estate_id: int) -> list[tuple[str, int, str, date]]:
    docs = session.execute(
        select(DunningDocument.unit_id, DunningDocument.step, DunningDocument.kind, DunningDocument.issued_on).where(
            DunningDocument.estate_id == estate_id
        )
    ).all()
    tasks = session.execute(
        select(DunningTask.unit_id, DunningTask.step, DunningTask.kind, DunningTask.created_on).where(
            DunningTask.estate_id == estate_id
        )
    ).all()
    return sorted((str(u), s, k, d) for u, s, k, d in [*docs, *tasks])


# --- the CSV --------------------------------------------------------------------------------------------------


def test_good_rows_parse_exactly() -> None:
    rows, errors = parse_arrears_csv(GOOD, UNITS)
    assert errors == []
    got = [(r.line, r.unit_code, r.period, r.period_start, r.amount_fen, r.late_fee_fen) for r in rows]
    assert got == [
        (2, "1-1-101", "2026-09", date(2026, 9, 1), 1999, 10),
        (3, "1-1-101", "2026-10", date(2026, 10, 1), 10, 0),
        (4, "1-1-102", "2026-Q3", date(2026, 7, 1), 123456, 1230),
        (5, "1-1-103", "2026-10", date(2026, 10, 1), 0, 0),
    ]


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("19.99", 1999),
        ("0.1", 10),
        ("0.29", 29),
        ("1.005e2", None),
        ("12.345", None),
        ("-5", None),
        ("abc", None),
        ("", None),
        ("￥88.8", 8880),
        ("1,000,000.01", 100000001),
        ("nan", None),
        ("inf", None),
        ("4.35", 435),
        ("１２.５０", 1250),  # full-width, as a Chinese IME types it
        ("١٢", None),  # other scripts' digits are not yuan
        ("1,234", 123400),
        ("1,23", None),  # a decimal comma? refused rather than read as 123 yuan
        ("12,34.5", None),
    ],
)
def test_amounts_are_exact_decimal_yuan(text: str, fen: int | None) -> None:
    # 19.99 and 4.35 are where float(x) * 100 truncates to a fen too few.
    assert parse_money(text) == fen


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("2026-10", "2026-10"),
        ("2026/9", "2026-09"),
        ("2026年10月", "2026-10"),
        ("2026-Q3", "2026-Q3"),
        ("2026Q4", "2026-Q4"),
        ("2026年第三季度", "2026-Q3"),
        ("2026-13", None),
        ("Q3", None),
        ("2026-10-01", None),
    ],
)
def test_periods(text: str, period: str | None) -> None:
    got = parse_period(text)
    assert (got[0] if got else None) == period


def test_chinese_headers_and_gbk_from_excel() -> None:
    data = "房号,所属期,欠费金额,滞纳金\r\n1-1-101,2026年10月,88.80,1.20\r\n".encode("gb18030")
    rows, errors = parse_arrears_csv(data, UNITS)
    assert errors == []
    assert [(r.unit_code, r.period, r.amount_fen, r.late_fee_fen) for r in rows] == [("1-1-101", "2026-10", 8880, 120)]


def test_utf16_from_excel_unicode_text() -> None:
    data = "unit,period,amount\r\n1-1-101,2026-10,88.80\r\n".encode("utf-16")
    rows, errors = parse_arrears_csv(data, UNITS)
    assert errors == []
    assert [r.amount_fen for r in rows] == [8880]


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(session: Session, estate: int) -> None:
    data = (
        b"unit,period,amount,late_fee\n"
        b"1-1-101,2026-10,100.00,0\n"
        b"9-9-999,2026-10,10.00,0\n"
        b"1-1-102,2026-13,10.00,0\n"
        b"1-1-103,2026-10,12.345,0\n"
        b"1-1-103,2026-11,-5,0\n"
        b"1-1-102,2026-10,1e3,x\n"
        b"1-1-101,2026-10,100.00,0\n"
    )
    with pytest.raises(ArrearsFileRejected) as info:
        load(session, estate, data, date(2026, 11, 2))
    lines = [(e.line, e.en.split(" ")[0]) for e in info.value.errors]
    assert [line for line, _ in lines] == [3, 4, 5, 6, 7, 7, 8]
    assert "no unit 9-9-999" in str(info.value.errors[0])
    assert "第3行" in str(info.value.errors[0])
    assert "本小区没有房号" in info.value.errors[0].zh
    assert "repeats line 2" in info.value.errors[-1].en
    assert info.value.status_code == 422
    assert "nothing imported" in info.value.message
    assert "未导入任何数据" in info.value.message
    assert not session.scalar(
        select(func.count()).select_from(PropertyFeeArrears).where(PropertyFeeArrears.estate_id == estate)
    )
    assert session.scalars(select(DunningCase).where(DunningCase.estate_id == estate)).all() == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        b"unit,period\n1-1-101,2026-10\n",
        b"unit,period,amount\n",
        b"\x81\x30\xff bad",
        b'unit,period,amount\n"' + b"x" * 200_000 + b'",2026-10,1\n',
    ],
    ids=["empty", "blank", "no-amount-column", "no-rows", "binary", "huge-field"],
)
def test_files_without_usable_rows_are_refused(session: Session, estate: int, data: bytes) -> None:
    with pytest.raises(ArrearsFileRejected):
        load(session, estate, data, date(2026, 11, 2))


def test_reimporting_the_same_file_changes_nothing(session: Session, estate: int) -> None:
    first = load(session, estate, GOOD, date(2026, 11, 2))
    assert (first.rows, first.units_owing, first.cases_opened, first.cases_closed) == (4, 2, 2, 0)
    assert first.total_fen == 1999 + 10 + 10 + 123456 + 1230
    again = load(session, estate, GOOD, date(2026, 11, 3))
    assert (again.batch, again.units_owing, again.total_fen) == (first.batch, 2, first.total_fen)
    assert (again.cases_opened, again.cases_closed, again.rows_settled) == (0, 0, 0)
    rows = session.execute(
        select(PropertyFeeArrears.period, PropertyFeeArrears.amount_fen).where(PropertyFeeArrears.estate_id == estate)
    ).all()
    assert len(rows) == 4  # replaced, not doubled
    assert len(session.scalars(select(DunningCase).where(DunningCase.estate_id == estate)).all()) == 2


def test_a_changed_amount_replaces_the_period(session: Session, estate: int) -> None:
    load(session, estate, GOOD, date(2026, 11, 2))
    load(session, estate, GOOD.replace(b"19.99", b"9.99"), date(2026, 11, 3))
    amount = session.scalar(
        select(PropertyFeeArrears.amount_fen).where(
            PropertyFeeArrears.estate_id == estate, PropertyFeeArrears.period == "2026-09"
        )
    )
    assert amount == 999


# --- the ladder (seeds/002): 提示函 → 催缴函 → 紧急催缴函 → 律师函 → 诉讼 ---------------------------------------


def test_ladder_timing_and_idempotence(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", d0)
    expected: list[tuple[int, str]] = []
    plan = {
        0: (1, "reminder"),
        7: (2, "demand"),
        14: (3, "urgent_demand"),
        21: (4, "lawyer_letter"),
        24: (5, "litigation"),
    }
    for offset in range(0, 60):
        day = d0 + timedelta(days=offset)
        first = advance(session, estate, day)
        second = advance(session, estate, day)  # the same day again: nothing twice
        assert (second.documents, second.tasks) == ([], [])
        if offset in plan:
            expected.append(plan[offset])
            assert len(first.documents) + len(first.tasks) == 1, day
        else:
            assert (first.documents, first.tasks) == ([], []), day
        assert [(s, k) for _, s, k, _ in steps(session, estate)] == expected
    litigation = session.scalars(
        select(DunningTask).where(DunningTask.estate_id == estate, DunningTask.step == 5)
    ).one()
    assert litigation.due_on == d0 + timedelta(days=21 + 30)  # within one month of the lawyer's letter
    lawyer = session.scalars(select(DunningTask).where(DunningTask.estate_id == estate, DunningTask.step == 4)).one()
    assert (lawyer.due_on, lawyer.assignee_role, lawyer.status) == (d0 + timedelta(days=24), "manager", "open")


def test_a_late_run_keeps_the_seven_day_steps(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", d0)
    advance(session, estate, d0)
    # The worker was down for a month: the demand goes out late, and the owner still gets its 7 days.
    got = [len(advance(session, estate, d0 + timedelta(days=30 + i)).documents) for i in range(10)]
    assert got == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_a_late_monthly_run_issues_one_notice_a_day(session: Session, estate: int) -> None:
    monthly(session, estate)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", date(2026, 11, 2))
    # Down from the 15th to the 25th: the 16th's and the 24th's notices go out on two days, never together.
    got = [len(advance(session, estate, date(2026, 11, day)).documents) for day in (26, 26, 27, 28)]
    assert got == [1, 0, 1, 0]
    assert [(k, d) for _, _, k, d in steps(session, estate)] == [
        ("notice_16", date(2026, 11, 26)),
        ("notice_24", date(2026, 11, 27)),
    ]


def test_payment_stops_the_ladder_and_cancels_open_tasks(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    owing = b"unit,period,amount\n1-1-101,2026-10,100.00\n1-1-102,2026-10,50.00\n"
    load(session, estate, owing, d0)
    for offset in (0, 7, 14, 21):
        advance(session, estate, d0 + timedelta(days=offset))
    # The next export no longer lists 1-1-101: it paid.
    report = load(session, estate, b"unit,period,amount\n1-1-102,2026-10,50.00\n", d0 + timedelta(days=22))
    assert (report.cases_closed, report.rows_settled, report.units_owing) == (1, 1, 1)
    before = steps(session, estate)
    for offset in range(22, 80):
        advance(session, estate, d0 + timedelta(days=offset))
    paid_unit = session.scalar(
        select(DunningCase.unit_id).where(DunningCase.estate_id == estate, DunningCase.closed_at.is_not(None))
    )
    after = steps(session, estate)
    assert [s for s in after if s[0] == str(paid_unit)] == [s for s in before if s[0] == str(paid_unit)]
    assert session.scalar(select(DunningTask.status).where(DunningTask.unit_id == paid_unit)) == "cancelled"
    # The unit that still owes went all the way.
    assert {k for u, _, k, _ in after if u != str(paid_unit)} >= {"litigation"}


def test_new_arrears_after_payment_start_a_new_ladder(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", d0)
    advance(session, estate, d0)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,0.00\n", d0 + timedelta(days=3))
    load(session, estate, b"unit,period,amount\n1-1-101,2026-11,100.00\n", d0 + timedelta(days=40))
    advance(session, estate, d0 + timedelta(days=40))
    cases = session.scalars(select(DunningCase).where(DunningCase.estate_id == estate).order_by(DunningCase.id)).all()
    assert [(c.close_reason, c.opened_on) for c in cases] == [("paid", d0), (None, d0 + timedelta(days=40))]
    kinds = session.execute(
        select(DunningDocument.case_id, DunningDocument.kind)
        .order_by(DunningDocument.id)
        .where(DunningDocument.estate_id == estate)
    ).all()
    assert [(c, k) for c, k in kinds] == [(cases[0].id, "reminder"), (cases[1].id, "reminder")]


# --- the monthly variant (seeds/000): the 16th, the 24th, after the 30th ---------------------------------------


def monthly(session: Session, estate_id: int) -> None:
    estate = session.get(Estate, estate_id)
    assert estate is not None
    estate.policy = {"dunning": {"variant": "monthly", "contact_phone": "0571-88886666"}}
    session.flush()


@pytest.mark.parametrize(
    ("opened", "dates"),
    [
        (date(2026, 11, 10), [date(2026, 11, 16), date(2026, 11, 24), date(2026, 12, 1)]),  # November has 30 days
        (date(2026, 11, 16), [date(2026, 11, 16), date(2026, 11, 24), date(2026, 12, 1)]),
        (date(2026, 11, 20), [date(2026, 12, 16), date(2026, 12, 24), date(2026, 12, 31)]),  # after the 16th: December
        (date(2027, 2, 3), [date(2027, 2, 16), date(2027, 2, 24), date(2027, 3, 1)]),  # February has no 30th
        (date(2026, 12, 28), [date(2027, 1, 16), date(2027, 1, 24), date(2027, 1, 31)]),  # across the year
    ],
)
def test_monthly_variant_dates(session: Session, estate: int, opened: date, dates: list[date]) -> None:
    monthly(session, estate)
    load(session, estate, b"unit,period,amount,late_fee\n1-1-101,2026-10,100.00,3.50\n", opened)
    day = opened
    while day <= dates[-1] + timedelta(days=20):
        advance(session, estate, day)
        advance(session, estate, day)
        day += timedelta(days=1)
    got = steps(session, estate)
    assert [(k, d) for _, _, k, d in got] == [
        ("notice_16", dates[0]),
        ("notice_24", dates[1]),
        ("notice_final", dates[2]),
        ("lawyer_letter", dates[2] + timedelta(days=7)),
        ("litigation", dates[2] + timedelta(days=10)),
    ]
    final = session.scalars(
        select(DunningDocument).where(DunningDocument.kind == "notice_final", DunningDocument.estate_id == estate)
    ).one()
    assert "最后催费通知书" in final.body
    assert "滞纳金" in final.body
    assert "0571-88886666" in final.body


def test_the_variant_is_fixed_when_the_case_opens(session: Session, estate: int) -> None:
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", date(2026, 11, 2))
    monthly(session, estate)  # changed afterwards: the open case keeps its ladder
    advance(session, estate, date(2026, 11, 2))
    assert [k for _, _, k, _ in steps(session, estate)] == ["reminder"]


# --- the documents -------------------------------------------------------------------------------------------


def test_documents_are_numbered_and_rendered_from_versioned_templates(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, GOOD, d0)
    advance(session, estate, d0)
    advance(session, estate, d0 + timedelta(days=7))
    docs = session.scalars(
        select(DunningDocument).where(DunningDocument.estate_id == estate).order_by(DunningDocument.id)
    ).all()
    assert [d.number for d in docs] == ["CJ-2026-0001", "CJ-2026-0002", "CJ-2026-0003", "CJ-2026-0004"]
    zhang = next(d for d in docs if d.owner_name == "张三丰" and d.kind == "reminder")
    assert (zhang.template, zhang.template_version, zhang.deadline) == ("reminder", 1, d0 + timedelta(days=7))
    assert (zhang.amount_fen, zhang.late_fee_fen, zhang.periods) == (2009, 10, ["2026-09", "2026-10"])
    body = zhang.body
    for expected in (
        "提示函",
        "CJ-2026-0001",
        "尊敬的张三丰业主",
        "1-1-101",
        "2026年9月",
        "19.99",
        "20.19",
        "贰拾元壹角玖分",
        "2026年11月9日",
        "7日内",
    ):
        assert expected in body, expected
    demand = next(d for d in docs if d.kind == "demand" and d.owner_name == "张三丰")
    assert "催缴函" in demand.body
    assert "《提示函》（编号 CJ-2026-0001）" in demand.body
    assert "第九百四十四条" in demand.body
    # An owner without a name on file is addressed generically; 1,234.56 + 12.30 in capitals.
    ouyang = next(d for d in docs if d.owner_name == "欧阳娜娜" and d.kind == "reminder")
    assert "壹仟贰佰肆拾陆元捌角陆分" in ouyang.body
    # The unit that owes nothing (0.00) has no case and no letter.
    assert len(docs) == 4


@pytest.mark.parametrize(
    ("fen", "upper"),
    [
        (0, "零元整"),
        (5, "伍分"),
        (50, "伍角"),
        (100, "壹元整"),
        (1000, "壹拾元整"),
        (123450, "壹仟贰佰叁拾肆元伍角"),
        (100500, "壹仟零伍元整"),
        (10010000, "壹拾万零壹佰元整"),
        (100000000, "壹佰万元整"),
        (100000005, "壹佰万元零伍分"),
        (10000000000, "壹亿元整"),
        (10001000000, "壹亿零壹万元整"),
        (2019, "贰拾元壹角玖分"),
        (1000000010, "壹仟万元壹角"),
        (32504, "叁佰贰拾伍元零肆分"),
    ],
)
def test_amounts_in_chinese_capitals(fen: int, upper: str) -> None:
    assert rmb_upper(fen) == upper


# --- the published list --------------------------------------------------------------------------------------


def test_public_list_masks_names_and_shows_nothing_else_personal(session: Session, estate: int) -> None:
    load(session, estate, GOOD, date(2026, 11, 2))
    rows = dunning_queries.public_list(session, estate)
    assert [(r.unit_code, r.owner_masked, r.amount_fen, r.late_fee_fen) for r in rows] == [
        ("1-1-101", "张**", 2009, 10),
        ("1-1-102", "欧***", 123456, 1230),
    ]
    assert mask_name("李四") == "李*"
    assert mask_name("") == ""
    text = repr(rows)
    assert not any(secret in text for secret in ("三丰", "13812345678", "阳娜娜", "13987654321", "小宝"))


# --- documents and tasks only ----------------------------------------------------------------------------------


def test_the_ladder_never_writes_the_outbox_or_the_ledger(session: Session, estate: int) -> None:
    def state() -> tuple[int, int, list[tuple[int, int]]]:
        return (
            int(session.scalar(select(func.count()).select_from(Outbox)) or 0),
            int(session.scalar(select(func.count()).select_from(LedgerEntry)) or 0),
            sorted((int(a), int(b)) for a, b in session.execute(select(BillingAccount.id, BillingAccount.balance_fen))),
        )

    before = state()
    d0 = date(2026, 11, 2)
    load(session, estate, GOOD, d0)
    for offset in range(0, 40):
        advance(session, estate, d0 + timedelta(days=offset))
    with pinned(at(d0 + timedelta(days=40))):
        dunning.advance_all(session, at(d0 + timedelta(days=40)))
    load(session, estate, b"unit,period,amount\n1-1-102,2026-10,1.00\n", d0 + timedelta(days=41))
    assert {k for _, _, k, _ in steps(session, estate)} >= {"reminder", "urgent_demand", "lawyer_letter", "litigation"}
    assert state() == before
    assert session.scalar(select(func.count()).select_from(Outbox)) == before[0]


def test_advance_all_uses_each_estates_local_date(session: Session, estate: int) -> None:
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", date(2026, 11, 2))
    # 2026-11-01 16:30 UTC is already 2026-11-02 00:30 in Shanghai: the case's opening day.
    now = datetime.fromisoformat("2026-11-01T16:30:00+00:00")
    with pinned(now):
        assert dunning.advance_all(session, now) == {"documents": 1, "tasks": 0}
        assert dunning.advance_all(session, now) == {"documents": 0, "tasks": 0}


def test_amounts_never_pass_through_float() -> None:
    rows, _ = parse_arrears_csv(b"unit,period,amount\n1-1-101,2026-10,0.29\n1-1-102,2026-10,1.13\n", UNITS)
    assert [r.amount_fen for r in rows] == [29, 113]
    assert int(Decimal("0.29") * 100) == 29
    assert int(0.29 * 100) == 28


def test_dunning_roles() -> None:
    from billing.policy import Action, may

    assert {r for r in ROLES if may(r, Action.view_dunning)} == {"admin", "manager", "billing_clerk", "steward"}
    for action in (Action.import_arrears, Action.issue_dunning):
        assert {r for r in ROLES if may(r, action)} == {"admin", "manager", "billing_clerk"}


ROLES = ("admin", "engineer", "steward", "supervisor", "manager", "card_admin", "billing_clerk", "viewer")


# --- a lawyer's letter or a suit done ---------------------------------------------------------------------------


def test_a_task_done_records_who_when_and_the_note_and_leaves_the_open_list(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n", d0)
    for offset in (0, 7, 14, 21):
        advance(session, estate, d0 + timedelta(days=offset))
    (open_task,) = dunning_queries.tasks(session, estate, open_only=True)
    assert open_task.kind == "lawyer_letter"
    done_at = at(d0 + timedelta(days=23))
    with pytest.raises(InvalidInput):
        dunning.complete_task(session, open_task.task_id, actor="li.manager", note="   ", now=done_at)
    dunning.complete_task(session, open_task.task_id, actor="li.manager", note="律师函已由某某律所发出", now=done_at)
    assert dunning_queries.tasks(session, estate, open_only=True) == []
    (done,) = dunning_queries.tasks(session, estate, done_only=True)
    assert (done.status, done.closed_at, done.done_by, done.done_note) == (
        "done",
        done_at,
        "li.manager",
        "律师函已由某某律所发出",
    )
    audit = session.scalars(
        select(AuditLog).where(
            AuditLog.action == "dunning.task_done", AuditLog.object == f"dunning_task:{done.task_id}"
        )
    ).one()
    assert (audit.actor, audit.detail["note"]) == ("li.manager", "律师函已由某某律所发出")
    # Done once: again is a conflict and changes nothing.
    with pytest.raises(Conflict):
        dunning.complete_task(session, done.task_id, actor="zhou", note="again", now=done_at)
    # The ladder goes on to the suit three days after the lawyer's letter, done or not.
    advance(session, estate, d0 + timedelta(days=24))
    assert [t.kind for t in dunning_queries.tasks(session, estate, open_only=True)] == ["litigation"]


def test_a_cancelled_task_cannot_be_done(session: Session, estate: int) -> None:
    d0 = date(2026, 11, 2)
    load(session, estate, b"unit,period,amount\n1-1-101,2026-10,100.00\n1-1-102,2026-10,5.00\n", d0)
    for offset in (0, 7, 14, 21):
        advance(session, estate, d0 + timedelta(days=offset))
    load(session, estate, b"unit,period,amount\n1-1-102,2026-10,5.00\n", d0 + timedelta(days=22))  # 1-1-101 paid
    task_id = session.scalars(
        select(DunningTask.id).where(DunningTask.estate_id == estate, DunningTask.status == "cancelled")
    ).one()
    with pytest.raises(Conflict):
        dunning.complete_task(session, task_id, actor="zhou", note="寄出", now=at(d0 + timedelta(days=22)))
    with pytest.raises(NotFound):
        dunning.complete_task(session, 2_000_000_000, actor="zhou", note="寄出", now=at(d0))
