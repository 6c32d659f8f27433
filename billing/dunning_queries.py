"""Dunning reads for the API and the pages: cases with their ladder, documents, tasks, the masked public list.

Money in integer fen. Owner names appear in full only where the reader needs them to address a letter (the
clerk's case view); the published list (`public_list`) keeps the surname alone.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.dunning import LADDERS, STEP_TITLES, TASK_DONE_ACTION, next_step, owner_name, steps_done, task_object
from billing.dunning_render import mask_name
from storage.models import (
    AuditLog,
    Building,
    DunningCase,
    DunningDocument,
    DunningTask,
    PropertyFeeArrears,
    Unit,
)


@dataclass(frozen=True, slots=True)
class CaseRow:
    case_id: int
    estate_id: int
    unit_id: int
    unit_code: str
    variant: str
    opened_on: date
    closed_at: datetime | None
    close_reason: str | None
    amount_fen: int  # open arrears now (principal)
    late_fee_fen: int
    steps_done: int
    stage: str | None  # kind of the last step issued
    next_kind: str | None
    next_due: date | None


@dataclass(frozen=True, slots=True)
class ArrearsLine:
    period: str
    amount_fen: int
    late_fee_fen: int
    imported_at: datetime
    import_batch: str
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class DocumentRow:
    document_id: int
    estate_id: int
    case_id: int
    unit_code: str
    step: int
    kind: str
    number: str
    template: str
    template_version: int
    issued_on: date
    deadline: date
    amount_fen: int
    late_fee_fen: int
    periods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskRow:
    task_id: int
    case_id: int
    unit_code: str
    step: int
    kind: str
    title: str
    created_on: date
    due_on: date
    assignee_role: str
    status: str
    amount_fen: int
    closed_at: datetime | None = None  # done or cancelled at
    done_by: str | None = None  # who recorded it done (from the audit log)
    done_note: str | None = None


@dataclass(frozen=True, slots=True)
class LadderStep:
    step: int
    kind: str
    title_zh: str
    title_en: str
    is_task: bool
    done_on: date | None
    due: date | None  # for the next step only


@dataclass(frozen=True, slots=True)
class CaseDetail:
    case: CaseRow
    owner_name: str
    arrears: list[ArrearsLine]
    ladder: list[LadderStep]
    documents: list[DocumentRow]
    tasks: list[TaskRow]


@dataclass(frozen=True, slots=True)
class PublicRow:
    unit_code: str
    owner_masked: str
    amount_fen: int
    late_fee_fen: int


def _sums(session: Session, unit_ids: Collection[int]) -> dict[int, tuple[int, int]]:
    rows = session.execute(
        select(
            PropertyFeeArrears.unit_id,
            func.sum(PropertyFeeArrears.amount_fen),
            func.sum(PropertyFeeArrears.late_fee_fen),
        )
        .where(PropertyFeeArrears.unit_id.in_(list(unit_ids)), PropertyFeeArrears.settled_at.is_(None))
        .group_by(PropertyFeeArrears.unit_id)
    ).all()
    return {int(u): (int(a), int(late)) for u, a, late in rows}


def _steps_of(session: Session, case_ids: Collection[int]) -> dict[int, dict[int, date]]:
    """Steps done per case, in two queries for a whole list (not two per case)."""
    out: dict[int, dict[int, date]] = {c: {} for c in case_ids}
    ids = list(case_ids)
    for case_id, step, on in [
        *session.execute(
            select(DunningDocument.case_id, DunningDocument.step, DunningDocument.issued_on).where(
                DunningDocument.case_id.in_(ids)
            )
        ).all(),
        *session.execute(
            select(DunningTask.case_id, DunningTask.step, DunningTask.created_on).where(DunningTask.case_id.in_(ids))
        ).all(),
    ]:
        out[int(case_id)][int(step)] = on
    return out


def _case_row(case: DunningCase, unit_code: str, sums: dict[int, tuple[int, int]], done: dict[int, date]) -> CaseRow:
    nxt = next_step(case, done) if case.closed_at is None else None
    last = max(done, default=0)
    amount, late = sums.get(case.unit_id, (0, 0))
    return CaseRow(
        case_id=case.id,
        estate_id=case.estate_id,
        unit_id=case.unit_id,
        unit_code=unit_code,
        variant=case.variant,
        opened_on=case.opened_on,
        closed_at=case.closed_at,
        close_reason=case.close_reason,
        amount_fen=amount,
        late_fee_fen=late,
        steps_done=len(done),
        stage=LADDERS[case.variant][last - 1].kind if last else None,
        next_kind=nxt.step.kind if nxt else None,
        next_due=nxt.due if nxt else None,
    )


def cases(session: Session, estate_id: int, *, open_only: bool = True, limit: int = 500) -> list[CaseRow]:
    stmt = (
        select(DunningCase, Unit.code)
        .join(Unit, Unit.id == DunningCase.unit_id)
        .where(DunningCase.estate_id == estate_id)
        .order_by(DunningCase.closed_at.desc().nulls_first(), Unit.code, DunningCase.id)
        .limit(limit)
    )
    if open_only:
        stmt = stmt.where(DunningCase.closed_at.is_(None))
    rows = session.execute(stmt).all()
    sums = _sums(session, {c.unit_id for c, _ in rows})
    done = _steps_of(session, [c.id for c, _ in rows])
    return [_case_row(c, code, sums, done[c.id]) for c, code in rows]


def case_estate_id(session: Session, case_id: int) -> int | None:
    return session.scalar(select(DunningCase.estate_id).where(DunningCase.id == case_id))


def case_detail(session: Session, case_id: int) -> CaseDetail | None:
    found = session.execute(
        select(DunningCase, Unit.code).join(Unit, Unit.id == DunningCase.unit_id).where(DunningCase.id == case_id)
    ).first()
    if found is None:
        return None
    case, unit_code = found
    done = steps_done(session, case.id)
    row = _case_row(case, unit_code, _sums(session, [case.unit_id]), done)
    arrears = [
        ArrearsLine(a.period, a.amount_fen, a.late_fee_fen, a.imported_at, a.import_batch, a.settled_at)
        for a in session.scalars(
            select(PropertyFeeArrears)
            .where(PropertyFeeArrears.unit_id == case.unit_id)
            .order_by(PropertyFeeArrears.period_start.desc(), PropertyFeeArrears.period)
        )
    ]
    nxt = next_step(case, done) if case.closed_at is None else None
    ladder = [
        LadderStep(
            s.number,
            s.kind,
            s.title_zh,
            s.title_en,
            s.is_task,
            done.get(s.number),
            nxt.due if nxt and nxt.step.number == s.number else None,
        )
        for s in LADDERS[case.variant]
    ]
    return CaseDetail(
        case=row,
        owner_name=owner_name(session, case.unit_id),
        arrears=arrears,
        ladder=ladder,
        documents=documents(session, case.estate_id, case_id=case.id),
        tasks=tasks(session, case.estate_id, case_id=case.id),
    )


def documents(
    session: Session, estate_id: int, *, case_id: int | None = None, limit: int = 500, offset: int = 0
) -> list[DocumentRow]:
    stmt = (
        select(DunningDocument, Unit.code)
        .join(Unit, Unit.id == DunningDocument.unit_id)
        .where(DunningDocument.estate_id == estate_id)
        .order_by(DunningDocument.issued_at.desc(), DunningDocument.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if case_id is not None:
        stmt = stmt.where(DunningDocument.case_id == case_id)
    return [_doc_row(d, code) for d, code in session.execute(stmt).all()]


def _doc_row(d: DunningDocument, unit_code: str) -> DocumentRow:
    return DocumentRow(
        d.id,
        d.estate_id,
        d.case_id,
        unit_code,
        d.step,
        d.kind,
        d.number,
        d.template,
        d.template_version,
        d.issued_on,
        d.deadline,
        d.amount_fen,
        d.late_fee_fen,
        tuple(d.periods or ()),
    )


def document(session: Session, document_id: int) -> tuple[DocumentRow, str] | None:
    """One document and its body as issued (HTML)."""
    found = session.execute(
        select(DunningDocument, Unit.code)
        .join(Unit, Unit.id == DunningDocument.unit_id)
        .where(DunningDocument.id == document_id)
    ).first()
    if found is None:
        return None
    d, code = found
    return _doc_row(d, code), d.body


def tasks(
    session: Session,
    estate_id: int,
    *,
    case_id: int | None = None,
    open_only: bool = False,
    done_only: bool = False,
    limit: int | None = None,
) -> list[TaskRow]:
    """Open tasks by due date; `done_only`: the tasks done, latest first, each with who recorded it and the note."""
    stmt = (
        select(DunningTask, Unit.code)
        .join(Unit, Unit.id == DunningTask.unit_id)
        .where(DunningTask.estate_id == estate_id)
    )
    if done_only:
        stmt = stmt.where(DunningTask.status == "done").order_by(DunningTask.closed_at.desc(), DunningTask.id.desc())
    else:
        stmt = stmt.order_by(DunningTask.due_on, DunningTask.id)
    if case_id is not None:
        stmt = stmt.where(DunningTask.case_id == case_id)
    if open_only:
        stmt = stmt.where(DunningTask.status == "open")
    if limit is not None:
        stmt = stmt.limit(limit)
    found = session.execute(stmt).all()
    done = _done_records(session, [t.id for t, _ in found if t.status == "done"])
    return [
        TaskRow(
            t.id,
            t.case_id,
            code,
            t.step,
            t.kind,
            t.title,
            t.created_on,
            t.due_on,
            t.assignee_role,
            t.status,
            t.amount_fen,
            t.closed_at,
            *done.get(t.id, (None, None)),
        )
        for t, code in found
    ]


def task_estate_id(session: Session, task_id: int) -> int | None:
    return session.scalar(select(DunningTask.estate_id).where(DunningTask.id == task_id))


def _done_records(session: Session, task_ids: list[int]) -> dict[int, tuple[str, str]]:
    """task id → (who, note) of its "done" audit entry."""
    if not task_ids:
        return {}
    objects = {task_object(i): i for i in task_ids}
    rows = session.execute(
        select(AuditLog.object, AuditLog.actor, AuditLog.detail)
        .where(AuditLog.action == TASK_DONE_ACTION, AuditLog.object.in_(list(objects)))
        .order_by(AuditLog.id)
    ).all()
    return {objects[o]: (actor, str((detail or {}).get("note", ""))) for o, actor, detail in rows}


def public_list(session: Session, estate_id: int) -> list[PublicRow]:
    """The arrears list for the notice board: unit, the owner's surname, amounts; nothing else personal."""
    rows = session.execute(
        select(
            Unit.id,
            Unit.code,
            func.sum(PropertyFeeArrears.amount_fen),
            func.sum(PropertyFeeArrears.late_fee_fen),
        )
        .join(Unit, Unit.id == PropertyFeeArrears.unit_id)
        .join(Building, Building.id == Unit.building_id)
        .where(PropertyFeeArrears.estate_id == estate_id, PropertyFeeArrears.settled_at.is_(None))
        .group_by(Unit.id, Unit.code, Building.code)
        .having(func.sum(PropertyFeeArrears.amount_fen + PropertyFeeArrears.late_fee_fen) > 0)
        .order_by(Building.code, Unit.code)
    ).all()
    return [PublicRow(code, mask_name(owner_name(session, uid)), int(a), int(late)) for uid, code, a, late in rows]


def step_title(kind: str | None, lang: str) -> str:
    if kind is None:
        return ""
    zh, en = STEP_TITLES.get(kind, (kind, kind))
    return en if lang == "en" else zh
