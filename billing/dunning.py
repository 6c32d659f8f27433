"""Property-fee dunning (seeds/000, /002; domain-defaults §5): arrears imported from the fee system, and the
ladder of documents and tasks that follows a unit in arrears.

Import (`import_arrears`). The fee system's CSV is a *snapshot* of what an estate's units owe now: one row per
unit and period (unit, period, amount, late fee). A unit that no longer appears (or appears with zero) has paid:
its rows are settled and its dunning case closes, which stops the ladder. Because absence means "paid", a file
is imported **all or nothing**: a bad row rejects the whole file with every bad line listed (importing only the
good rows would close the cases of the units whose rows were bad). Importing the same file again changes
nothing; a period's amount for a unit is replaced, never added to.

Ladder (`advance`). Each unit in arrears has one open case. The SOP ladder (seeds/002 收费及催缴管理规程):
提示函 the day the arrears arrive, 催缴函 7 days later, 紧急催缴函 7 days after that, a lawyer's-letter task
7 days later, and a litigation task 3 days after the lawyer's letter (suit within one month of it). The
per-estate variant (seeds/000 入住手续作业指导书): 催费通知书 on the 16th, 二次催费通知书 on the 24th and
最后催费通知书 after the 30th (with the late fee), then the same lawyer's letter and litigation tasks.
Set ``estates.policy.dunning.variant`` to ``"monthly"`` for it (default ``"ladder"``). `advance` issues at most
one step per case per day and never the same step twice, so it may run as often as the worker likes.

The ladder writes documents and tasks only. It never writes the outbox (no valve, card or lift command) and
never touches the hot-water accounts: a property company may not stop supply to collect property fees
(Civil Code §944).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing import dunning_render
from billing.service import audit
from core import clock
from core.errors import Conflict, InvalidInput, NotFound
from storage.models import (
    Building,
    DunningCase,
    DunningDocument,
    DunningTask,
    Estate,
    PropertyFeeArrears,
    Resident,
    Unit,
)

# pg_advisory_xact_lock(space, estate_id): one import or ladder run per estate at a time.
DUNNING_LOCK_SPACE = 0x64756E6E  # "dunn"
MAX_FILE_BYTES = 5_000_000
MAX_ROWS = 50_000
MAX_ERRORS_REPORTED = 200
STEP_DAYS = 7  # 提示函 → 催缴函 → 紧急催缴函 → 律师函: "限定7天" each (seeds/002)
SUIT_AFTER_DAYS = 3  # 律师函发出3日后 … 收集整理起诉材料
SUIT_WITHIN_DAYS = 30  # 在律师函发出1个月内提起诉讼
VARIANTS = ("ladder", "monthly")


# --- the CSV -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    line: int  # the file's line number (1 = the header)
    zh: str
    en: str

    def __str__(self) -> str:
        return f"第{self.line}行：{self.zh} / line {self.line}: {self.en}"


@dataclass(frozen=True)
class ArrearsRow:
    line: int
    unit_code: str
    period: str  # normalised: 2026-10 or 2026-Q3
    period_start: date
    amount_fen: int
    late_fee_fen: int


class ArrearsFileRejected(InvalidInput):
    """The file has bad rows: nothing was imported. `errors` lists every bad line (up to MAX_ERRORS_REPORTED)."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(f"line {e.line}: {e.en}" for e in errors[:20])
        shown_zh = "；".join(f"第{e.line}行：{e.zh}" for e in errors[:20])
        more = len(errors) - 20
        super().__init__(
            f"arrears file rejected, nothing imported ({len(errors)} bad rows): {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + f" / 欠费文件有误，未导入任何数据（{len(errors)} 行有误）：{shown_zh}"
            + (f"；另有 {more} 行" if more > 0 else "")
        )


# Header names as the fee systems spell them: English, or the Chinese column titles of common exports.
_HEADERS = {
    "unit": {"unit", "房号", "房屋编号", "房间号", "单元号", "房屋"},
    "period": {"period", "期间", "所属期", "所属期间", "账期", "月份", "计费期间"},
    "amount": {"amount", "金额", "欠费金额", "欠费", "应收金额", "物业费", "欠缴金额"},
    "late_fee": {"late_fee", "late fee", "latefee", "滞纳金", "违约金"},
}
# ASCII digits only (\d would take ٣ or ３ too); cells are NFKC-normalised first, so full-width input still parses.
_MONEY = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,2})?$")
# Thousands separators only in proper groups: "1,23" may be a decimal comma (1.23) and is refused, not read as 123.
_GROUPED = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+(\.[0-9]{1,2})?$")
_MONTH = re.compile(r"^([0-9]{4})\s*[-/.年]\s*([0-9]{1,2})\s*月?$")
_QUARTER = re.compile(r"^([0-9]{4})\s*[-/ 年]?\s*(?:[Qq]|第)\s*([1-4一二三四])\s*(?:季度?)?$")
_DASHES = str.maketrans({"－": "-", "—": "-", "–": "-", "‐": "-", "　": " "})


def _decode(data: bytes) -> str | None:
    # Excel saves UTF-8 with a BOM, GB18030 (GBK) on a Chinese Windows, or UTF-16 as "Unicode text": take all three.
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings: tuple[str, ...] = ("utf-16",)
    else:
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def parse_money(value: str) -> int | None:
    """ "1,234.5" → 123450 fen, exactly (Decimal, never float); None when it is not yuan with ≤ 2 decimals."""
    text_ = unicodedata.normalize("NFKC", value).strip().lstrip("¥").strip()
    if "," in text_:
        if not _GROUPED.match(text_):
            return None
        text_ = text_.replace(",", "")
    if not _MONEY.match(text_):
        return None
    try:
        return int(Decimal(text_) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def parse_period(value: str) -> tuple[str, date] | None:
    """2026-10, 2026/10, 2026年10月 → ("2026-10", 1 Oct 2026); 2026-Q3, 2026Q3, 2026年第三季度 → ("2026-Q3", 1 Jul)."""
    text_ = value.strip().translate(_DASHES)
    if m := _MONTH.match(text_):
        year, month = int(m[1]), int(m[2])
        if 1 <= month <= 12 and 2000 <= year <= 2100:
            return f"{year}-{month:02d}", date(year, month, 1)
        return None
    if m := _QUARTER.match(text_):
        year = int(m[1])
        q = "1234".find(m[2]) + 1 or "一二三四".find(m[2]) + 1
        if 2000 <= year <= 2100:
            return f"{year}-Q{q}", date(year, 3 * q - 2, 1)
    return None


def _records(reader: Any) -> Iterator[list[str] | RowError]:
    """The reader's records; a malformed one (an unclosed quote, a huge field) ends the file as a RowError."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(reader.line_num, f"CSV 格式错误（{exc}）", f"malformed CSV ({exc})")
            return
        yield record


def parse_arrears_csv(data: bytes, unit_codes: set[str]) -> tuple[list[ArrearsRow], list[RowError]]:
    """Every row checked against the estate's unit codes; the rows and every problem found, by line."""
    errors: list[RowError] = []
    if len(data) > MAX_FILE_BYTES:
        return [], [RowError(0, f"文件过大（上限 {MAX_FILE_BYTES // 1_000_000} MB）", "file too large")]
    decoded = _decode(data)
    if decoded is None:
        return [], [
            RowError(0, "文件编码无法识别（请用 UTF-8 或 GBK 保存）", "unreadable encoding (save as UTF-8 or GBK)")
        ]
    reader = csv.reader(io.StringIO(decoded, newline=""))
    columns: dict[str, int] | None = None
    rows: list[ArrearsRow] = []
    seen: dict[tuple[str, str], int] = {}
    for record in _records(reader):
        if isinstance(record, RowError):
            errors.append(record)
            break
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if columns is None:
            names = [cell.strip().lower() for cell in record]
            columns = {key: names.index(n) for key, aliases in _HEADERS.items() for n in names if n in aliases}
            missing = [k for k in ("unit", "period", "amount") if k not in columns]
            if missing:
                return [], [
                    RowError(
                        line,
                        f"表头缺少列：{'、'.join(missing)}"
                        "（需要 unit/房号、period/期间、amount/金额，可选 late_fee/滞纳金）",
                        f"header lacks {', '.join(missing)} (need unit, period, amount; late_fee optional)",
                    )
                ]
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            errors.append(RowError(line, f"行数超过上限 {MAX_ROWS}", f"more than {MAX_ROWS} rows"))
            break

        def cell(key: str, record: list[str] = record, columns: dict[str, int] = columns) -> str:
            i = columns.get(key)
            # NFKC: full-width digits, letters and punctuation typed in a Chinese IME become their ASCII forms.
            return unicodedata.normalize("NFKC", record[i]).strip() if i is not None and i < len(record) else ""

        unit = cell("unit").translate(_DASHES).replace(" ", "")
        period_text, amount_text, late_text = cell("period"), cell("amount"), cell("late_fee")
        problems: list[tuple[str, str]] = []
        if not unit:
            problems.append(("房号为空", "unit is empty"))
        elif unit not in unit_codes:
            problems.append((f"本小区没有房号 {unit}", f"no unit {unit} in this estate"))
        period = parse_period(period_text)
        if period is None:
            problems.append(
                (
                    f"期间“{period_text}”无法识别（应为 2026-10 或 2026-Q3）",
                    f"period '{period_text}' is not YYYY-MM or YYYY-Qn",
                )
            )
        amount = parse_money(amount_text)
        if amount is None:
            problems.append(
                (
                    f"金额“{amount_text}”应为不小于 0、最多两位小数的元数",
                    f"amount '{amount_text}' is not yuan ≥ 0 with at most 2 decimals",
                )
            )
        late = parse_money(late_text) if late_text else 0
        if late is None:
            problems.append(
                (
                    f"滞纳金“{late_text}”应为不小于 0、最多两位小数的元数",
                    f"late fee '{late_text}' is not yuan ≥ 0 with at most 2 decimals",
                )
            )
        if period is not None and unit:
            key = (unit, period[0])
            if key in seen:
                problems.append(
                    (
                        f"房号 {unit} 期间 {period[0]} 与第{seen[key]}行重复",
                        f"unit {unit} period {period[0]} repeats line {seen[key]}",
                    )
                )
            else:
                seen[key] = line
        if problems:
            errors.extend(RowError(line, zh, en) for zh, en in problems)
            continue
        assert period is not None
        assert amount is not None
        assert late is not None
        rows.append(ArrearsRow(line, unit, period[0], period[1], amount, late))
    if columns is None:
        errors.append(RowError(1, "文件为空", "the file is empty"))
    elif not rows and not errors:
        # An estate where nobody owes anything is exported as zero rows per unit, never as an empty file:
        # an empty upload is far more likely the wrong file, and would close every case.
        errors.append(RowError(1, "文件没有数据行", "the file has no data rows"))
    return rows, errors


# --- import --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportReport:
    batch: str
    rows: int
    units_owing: int
    total_fen: int  # principal + late fees now owed in the estate
    cases_opened: int
    cases_closed: int
    rows_settled: int


def _estate(session: Session, estate_id: int) -> Estate:
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound("estate not found / 未找到该小区")
    return estate


def local_today(estate: Estate, now: datetime | None = None) -> date:
    return (now or clock.now()).astimezone(ZoneInfo(estate.timezone or "Asia/Shanghai")).date()


def estate_variant(estate: Estate) -> str:
    settings = (estate.policy or {}).get("dunning") or {}
    variant = settings.get("variant", "ladder") if isinstance(settings, dict) else "ladder"
    return variant if variant in VARIANTS else "ladder"


def _lock(session: Session, estate_id: int) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(:space, :id)"), {"space": DUNNING_LOCK_SPACE, "id": estate_id})


def _unit_ids(session: Session, estate_id: int) -> dict[str, int]:
    return dict(
        session.execute(
            select(Unit.code, Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id)
        ).all()
    )


def import_arrears(session: Session, estate_id: int, data: bytes, *, actor: str, filename: str = "") -> ImportReport:
    """Replace the estate's arrears with the file's snapshot (all or nothing); open and close cases to match."""
    estate = _estate(session, estate_id)
    units = _unit_ids(session, estate_id)
    rows, errors = parse_arrears_csv(data, set(units))
    if errors:
        raise ArrearsFileRejected(errors[:MAX_ERRORS_REPORTED])
    _lock(session, estate_id)
    now = clock.now()
    batch = hashlib.sha256(data).hexdigest()[:16]
    for r in rows:
        owes = r.amount_fen + r.late_fee_fen > 0
        stmt = insert(PropertyFeeArrears).values(
            estate_id=estate_id,
            unit_id=units[r.unit_code],
            period=r.period,
            period_start=r.period_start,
            amount_fen=r.amount_fen,
            late_fee_fen=r.late_fee_fen,
            imported_at=now,
            import_batch=batch,
            settled_at=None if owes else now,
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["unit_id", "period"],
                set_={
                    "amount_fen": stmt.excluded.amount_fen,
                    "late_fee_fen": stmt.excluded.late_fee_fen,
                    "imported_at": stmt.excluded.imported_at,
                    "import_batch": stmt.excluded.import_batch,
                    # A row settled before and owing again reopens; one settled stays settled at its first date.
                    "settled_at": None if owes else func.coalesce(PropertyFeeArrears.settled_at, now),
                },
            )
        )
    listed = {(units[r.unit_code], r.period) for r in rows}
    open_rows = session.execute(
        select(PropertyFeeArrears.id, PropertyFeeArrears.unit_id, PropertyFeeArrears.period).where(
            PropertyFeeArrears.estate_id == estate_id, PropertyFeeArrears.settled_at.is_(None)
        )
    ).all()
    gone = [row_id for row_id, unit_id, period in open_rows if (unit_id, period) not in listed]
    if gone:
        session.execute(update(PropertyFeeArrears).where(PropertyFeeArrears.id.in_(gone)).values(settled_at=now))
    owing = dict(
        session.execute(
            select(
                PropertyFeeArrears.unit_id,
                func.sum(PropertyFeeArrears.amount_fen + PropertyFeeArrears.late_fee_fen),
            )
            .where(PropertyFeeArrears.estate_id == estate_id, PropertyFeeArrears.settled_at.is_(None))
            .group_by(PropertyFeeArrears.unit_id)
        ).all()
    )
    cases = {
        c.unit_id: c
        for c in session.scalars(
            select(DunningCase)
            .where(DunningCase.estate_id == estate_id, DunningCase.closed_at.is_(None))
            .with_for_update()
        )
    }
    opened = closed = 0
    for unit_id in sorted(owing.keys() - cases.keys()):  # in unit order, so letters are numbered in it too
        session.add(
            DunningCase(
                estate_id=estate_id,
                unit_id=unit_id,
                variant=estate_variant(estate),
                opened_on=local_today(estate, now),
                opened_at=now,
            )
        )
        opened += 1
    for unit_id in sorted(cases.keys() - owing.keys()):
        _close(session, cases[unit_id], now)
        closed += 1
    session.flush()
    report = ImportReport(
        batch=batch,
        rows=len(rows),
        units_owing=len(owing),
        total_fen=int(sum(owing.values())),
        cases_opened=opened,
        cases_closed=closed,
        rows_settled=len(gone),
    )
    audit(
        session,
        actor,
        "dunning.import",
        f"estate:{estate.code}",
        {"batch": batch, "filename": filename[:200], "rows": report.rows, "opened": opened, "closed": closed},
    )
    return report


def _close(session: Session, case: DunningCase, now: datetime) -> None:
    """Paid: the ladder stops; a lawyer's letter or suit not yet done is cancelled."""
    case.closed_at = now
    case.close_reason = "paid"
    session.execute(
        update(DunningTask)
        .where(DunningTask.case_id == case.id, DunningTask.status == "open")
        .values(status="cancelled", closed_at=now)
    )


TASK_DONE_ACTION = "dunning.task_done"
MAX_NOTE = 1000


def complete_task(session: Session, task_id: int, *, actor: str, note: str, now: datetime) -> DunningTask:
    """Record a lawyer's letter or a suit as done: who, when and a note (the firm, the court's case number), audited.

    A task done is closed for good: doing it again, or a task the case's payment cancelled, is a 409."""
    if not actor.strip():
        raise InvalidInput("actor is required / 须填写经办人")
    text_ = note.strip()
    if not text_ or len(text_) > MAX_NOTE or "\x00" in text_:
        raise InvalidInput(f"a note of 1..{MAX_NOTE} characters is required / 请填写办理情况（不超过{MAX_NOTE}字）")
    task = session.scalars(select(DunningTask).where(DunningTask.id == task_id).with_for_update()).one_or_none()
    if task is None:
        raise NotFound("dunning task not found / 未找到该任务")
    if task.status != "open":
        raise Conflict(
            f"task {task.id} is {task.status} already / 该任务已{'完成' if task.status == 'done' else '取消'}"
        )
    task.status = "done"
    task.closed_at = now
    # Who and the note live in the audit log (no column for them): dunning_queries reads them back from there.
    audit(
        session,
        actor,
        TASK_DONE_ACTION,
        task_object(task.id),
        {"note": text_, "kind": task.kind, "case_id": task.case_id, "done_at": now.isoformat()},
    )
    session.flush()
    return task


def task_object(task_id: int) -> str:
    return f"dunning_task:{task_id}"


# --- the ladder ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    number: int
    kind: str
    is_task: bool
    title_zh: str
    title_en: str


_TASKS = (
    Step(4, "lawyer_letter", True, "律师函", "Lawyer's letter"),
    Step(5, "litigation", True, "诉讼", "Litigation"),
)
LADDERS: dict[str, tuple[Step, ...]] = {
    "ladder": (
        Step(1, "reminder", False, "提示函", "Reminder"),
        Step(2, "demand", False, "催缴函", "Demand for payment"),
        Step(3, "urgent_demand", False, "紧急催缴函", "Urgent demand"),
        *_TASKS,
    ),
    "monthly": (
        Step(1, "notice_16", False, "催费通知书", "Notice (16th)"),
        Step(2, "notice_24", False, "二次催费通知书", "Second notice (24th)"),
        Step(3, "notice_final", False, "最后催费通知书", "Final notice (after the 30th)"),
        *_TASKS,
    ),
}
STEP_TITLES: dict[str, tuple[str, str]] = {
    s.kind: (s.title_zh, s.title_en) for steps in LADDERS.values() for s in steps
}


def _month_end(year: int, month: int) -> date:
    first_next = date(year + month // 12, month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def monthly_dates(opened_on: date) -> tuple[date, date, date]:
    """The 16th, the 24th and the day after the 30th (or after the month's last day, in February) of the first
    month whose 16th is not before the case opened: the cycle that month's arrears enter."""
    year, month = opened_on.year, opened_on.month
    if opened_on.day > 16:
        year, month = year + month // 12, month % 12 + 1
    last = min(30, _month_end(year, month).day)
    return date(year, month, 16), date(year, month, 24), date(year, month, last) + timedelta(days=1)


def due_on(variant: str, step: int, opened_on: date, last_on: date | None) -> date:
    """When step `step` falls due, given when the case opened and when the step before it was issued."""
    if step >= 4:
        assert last_on is not None
        return last_on + timedelta(days=STEP_DAYS if step == 4 else SUIT_AFTER_DAYS)
    if variant == "monthly":
        return monthly_dates(opened_on)[step - 1]
    if step == 1:
        return opened_on
    assert last_on is not None
    return last_on + timedelta(days=STEP_DAYS)


@dataclass(frozen=True)
class NextStep:
    step: Step
    due: date


def next_step(case: DunningCase, done: dict[int, date]) -> NextStep | None:
    """The ladder's next step for a case whose steps so far were issued on `done` (step → day); None at its end."""
    steps = LADDERS[case.variant]
    n = max(done, default=0) + 1
    if n > len(steps):
        return None
    return NextStep(steps[n - 1], due_on(case.variant, n, case.opened_on, done.get(n - 1)))


def steps_done(session: Session, case_id: int) -> dict[int, date]:
    docs = session.execute(
        select(DunningDocument.step, DunningDocument.issued_on).where(DunningDocument.case_id == case_id)
    ).all()
    tasks = session.execute(
        select(DunningTask.step, DunningTask.created_on).where(DunningTask.case_id == case_id)
    ).all()
    return {int(s): d for s, d in [*docs, *tasks]}


@dataclass
class AdvanceResult:
    documents: list[int] = field(default_factory=list)
    tasks: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


def advance(session: Session, estate_id: int, today: date) -> AdvanceResult:
    """Issue every step that is due on `today` (the estate's local date), at most one per case; idempotent."""
    estate = _estate(session, estate_id)
    _lock(session, estate_id)
    now = clock.now()
    result = AdvanceResult()
    cases = session.scalars(
        select(DunningCase)
        .where(DunningCase.estate_id == estate_id, DunningCase.closed_at.is_(None))
        .order_by(DunningCase.id)
        .with_for_update()
    ).all()
    for case in cases:
        arrears = _open_arrears(session, case.unit_id)
        if not arrears:
            _close(session, case, now)  # settled by an import since (belt and braces: the import closes it too)
            result.closed.append(case.id)
            continue
        done = steps_done(session, case.id)
        nxt = next_step(case, done)
        if nxt is None or today < nxt.due or today < case.opened_on:
            continue
        last_on = done.get(nxt.step.number - 1)
        if last_on is not None and today <= last_on:
            continue  # one step a day: a late run never issues two letters at once
        if nxt.step.is_task:
            result.tasks.append(_create_task(session, estate, case, nxt.step, today, now, arrears, done).id)
        else:
            result.documents.append(_issue_document(session, estate, case, nxt.step, today, now, arrears).id)
    session.flush()
    return result


def advance_all(session: Session, now: datetime) -> dict[str, int]:
    """The worker's job: advance every estate that has an open case, each on its own local date."""
    issued = tasks = 0
    estate_ids = session.scalars(select(DunningCase.estate_id).where(DunningCase.closed_at.is_(None)).distinct()).all()
    for estate_id in estate_ids:
        estate = _estate(session, estate_id)
        r = advance(session, estate_id, local_today(estate, now))
        issued += len(r.documents)
        tasks += len(r.tasks)
    return {"documents": issued, "tasks": tasks}


def _open_arrears(session: Session, unit_id: int) -> list[PropertyFeeArrears]:
    return list(
        session.scalars(
            select(PropertyFeeArrears)
            .where(PropertyFeeArrears.unit_id == unit_id, PropertyFeeArrears.settled_at.is_(None))
            .order_by(PropertyFeeArrears.period_start, PropertyFeeArrears.period)
        )
    )


def owner_name(session: Session, unit_id: int) -> str:
    name = session.scalar(
        select(Resident.name)
        .where(Resident.unit_id == unit_id, Resident.role == "owner")
        .order_by(Resident.id)
        .limit(1)
    )
    return name or ""


def unit_label(session: Session, unit_id: int) -> str:
    row = session.execute(
        select(Building.name, Unit.code).join(Building, Building.id == Unit.building_id).where(Unit.id == unit_id)
    ).one()
    return f"{row[0]} {row[1]}" if row[0] else row[1]


def _next_number(session: Session, estate_id: int, year: int) -> str:
    # Under the estate's advisory lock: numbers run 0001, 0002, … per estate and year without gaps.
    prefix = f"CJ-{year}-"
    count = session.scalar(
        select(func.count())
        .select_from(DunningDocument)
        .where(DunningDocument.estate_id == estate_id, DunningDocument.number.like(prefix + "%"))
    )
    return f"{prefix}{int(count or 0) + 1:04d}"


def _issue_document(
    session: Session,
    estate: Estate,
    case: DunningCase,
    step: Step,
    today: date,
    now: datetime,
    arrears: list[PropertyFeeArrears],
) -> DunningDocument:
    settings = (estate.policy or {}).get("dunning") or {}
    amount = sum(a.amount_fen for a in arrears)
    late = sum(a.late_fee_fen for a in arrears)
    number = _next_number(session, estate.id, today.year)
    owner = owner_name(session, case.unit_id)
    previous = [
        {"title": dunning_render.TEMPLATES[d.kind].title_zh, "number": d.number, "issued_on": d.issued_on}
        for d in session.scalars(
            select(DunningDocument).where(DunningDocument.case_id == case.id).order_by(DunningDocument.step)
        )
    ]
    deadline = today + timedelta(days=STEP_DAYS)
    context: dict[str, Any] = {
        "kind": step.kind,
        "number": number,
        "letterhead": str(settings.get("letterhead") or f"{estate.name}物业服务中心"),
        "estate_name": estate.name,
        "contact": str(settings.get("contact_phone") or ""),
        "owner": f"{owner}业主" if owner else "业主/住户",
        "unit_label": unit_label(session, case.unit_id),
        "issued_on": today,
        "deadline": deadline,
        "rows": [{"period": a.period, "amount_fen": a.amount_fen, "late_fee_fen": a.late_fee_fen} for a in arrears],
        "amount_fen": amount,
        "late_fee_fen": late,
        "total_fen": amount + late,
        "previous": previous,
    }
    template, body = dunning_render.render(step.kind, context)
    doc = DunningDocument(
        estate_id=estate.id,
        case_id=case.id,
        unit_id=case.unit_id,
        step=step.number,
        kind=step.kind,
        number=number,
        template=template.name,
        template_version=template.version,
        issued_on=today,
        issued_at=now,
        deadline=deadline,
        amount_fen=amount,
        late_fee_fen=late,
        periods=[a.period for a in arrears],
        owner_name=owner,
        body=body,
    )
    session.add(doc)
    session.flush()
    return doc


def _create_task(
    session: Session,
    estate: Estate,
    case: DunningCase,
    step: Step,
    today: date,
    now: datetime,
    arrears: list[PropertyFeeArrears],
    done: dict[int, date],
) -> DunningTask:
    total = sum(a.amount_fen + a.late_fee_fen for a in arrears)
    label = unit_label(session, case.unit_id)
    money = dunning_render.yuan(total)
    if step.kind == "lawyer_letter":
        # seeds/000 3.5: the lawyer's letter goes out after the customer-service department's review and the
        # general manager's approval: a task for the project manager, who prepares the list.
        title = f"律师函：{label} 欠费 ¥{money}，报客服部审核、总经理审批后由法律顾问发出"
        due = today + timedelta(days=SUIT_AFTER_DAYS)
    else:
        title = f"诉讼：{label} 欠费 ¥{money}，整理起诉材料（业主姓名、欠费期间、滞纳金），律师函发出后1个月内起诉"
        due = done[4] + timedelta(days=SUIT_WITHIN_DAYS)
    task = DunningTask(
        estate_id=estate.id,
        case_id=case.id,
        unit_id=case.unit_id,
        step=step.number,
        kind=step.kind,
        title=title,
        created_on=today,
        created_at=now,
        due_on=due,
        assignee_role="manager",
        amount_fen=total,
    )
    session.add(task)
    session.flush()
    return task
