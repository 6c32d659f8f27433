"""Property-fee dunning over JSON: import the fee system's arrears, the cases and their ladder, the documents as
issued, running the ladder by hand, and the masked public list. Permissions: `billing.policy`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session

from api.deps import EstateCode, ObjectId, PageDep
from api.routes.estates import estate_or_404
from api.schemas import NO_NUL, Input, Output
from billing import dunning, dunning_queries
from billing.policy import Action, may
from core import clock
from core.errors import NotFound
from storage.models import Estate, StaffUser
from web.deps import CurrentUser, SessionDep, VisibleEstates
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(prefix="/api", tags=["dunning"], responses=error_responses(401, 403, 404, 422))


def _allowed(action: Action) -> Callable[[StaffUser], StaffUser]:
    def check(user: CurrentUser) -> StaffUser:
        if not may(user.role, action):
            raise Forbidden("your role may not do this / 当前角色无此权限")
        return user

    return check


Viewers = Annotated[StaffUser, Depends(_allowed(Action.view_dunning))]
Importers = Annotated[StaffUser, Depends(_allowed(Action.import_arrears))]
Issuers = Annotated[StaffUser, Depends(_allowed(Action.issue_dunning))]
Completers = Annotated[StaffUser, Depends(_allowed(Action.complete_dunning_task))]


class ArrearsImportIn(Input):
    csv: str = Field(
        min_length=1,
        max_length=dunning.MAX_FILE_BYTES,
        pattern=NO_NUL,
        description="the fee system's export: header unit,period,amount[,late_fee]; amounts in yuan (≤ 2 decimals)",
    )
    filename: str = Field(default="", max_length=200, pattern=NO_NUL)


class ImportOut(Output):
    batch: str = Field(description="sha-256 prefix of the file: importing the same file again gives the same batch")
    rows: int
    units_owing: int
    total_fen: int = Field(description="principal + late fees owed in the estate after the import, in fen")
    cases_opened: int
    cases_closed: int = Field(description="units that paid (no longer listed): their ladder stopped")
    rows_settled: int


class CaseOut(Output):
    case_id: int
    unit_code: str
    variant: str = Field(description="ladder (提示函/催缴函/紧急催缴函) or monthly (16th/24th/after the 30th)")
    opened_on: date
    closed_at: datetime | None
    close_reason: str | None
    amount_fen: int
    late_fee_fen: int
    steps_done: int
    stage: str | None = Field(description="kind of the last step issued")
    next_kind: str | None
    next_due: date | None


class ArrearsLineOut(Output):
    period: str
    amount_fen: int
    late_fee_fen: int
    imported_at: datetime
    import_batch: str
    settled_at: datetime | None


class LadderStepOut(Output):
    step: int
    kind: str
    title_zh: str
    title_en: str
    is_task: bool
    done_on: date | None
    due: date | None


class DocumentOut(Output):
    document_id: int
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
    periods: list[str]


class DocumentDetailOut(DocumentOut):
    body_html: str = Field(description="the document as issued (HTML), the same the printable page shows")


class TaskOut(Output):
    task_id: int
    case_id: int
    unit_code: str
    step: int
    kind: str = Field(description="lawyer_letter (律师函) or litigation (诉讼)")
    title: str
    created_on: date
    due_on: date
    assignee_role: str
    status: str = Field(description="open, done or cancelled (the unit paid)")
    amount_fen: int
    closed_at: datetime | None = Field(default=None, description="when it was done or cancelled")
    done_by: str | None = Field(default=None, description="who recorded it done")
    done_note: str | None = Field(default=None, description="what was done: the law firm, the court's case number, …")


class CaseDetailOut(CaseOut):
    owner_name: str
    arrears: list[ArrearsLineOut]
    ladder: list[LadderStepOut]
    documents: list[DocumentOut]
    tasks: list[TaskOut]


class TaskDoneIn(Input):
    note: str = Field(
        min_length=1,
        max_length=dunning.MAX_NOTE,
        pattern=r"^[^\x00]*\S[^\x00]*$",
        description="what was done, e.g. the law firm that sent the letter or the court's case number",
    )


class AdvanceOut(Output):
    today: date = Field(description="the estate's local date the ladder ran for")
    documents: int
    tasks: int
    closed: int


class PublicRowOut(Output):
    unit_code: str
    owner_masked: str = Field(description="the surname only, e.g. 张**")
    amount_fen: int
    late_fee_fen: int


def _case_out(row: dunning_queries.CaseRow) -> CaseOut:
    return CaseOut.model_validate(row)


def _doc_out(row: dunning_queries.DocumentRow) -> DocumentOut:
    return DocumentOut.model_validate(row)


def _estate_of_case(session: Session, case_id: int, visible: set[int]) -> int:
    estate_id = dunning_queries.case_estate_id(session, case_id)
    if estate_id is None or estate_id not in visible:
        raise NotFound("dunning case not found / 未找到该催缴案件")
    return estate_id


@router.post("/estates/{code}/dunning/imports", response_model=ImportOut, responses=error_responses(400))
def import_arrears(
    code: EstateCode, body: ArrearsImportIn, session: SessionDep, user: Importers, visible: VisibleEstates
) -> ImportOut:
    """Import the fee system's arrears CSV (a snapshot: units not listed have paid). All or nothing: any bad row
    refuses the file with 422 and every bad line; the same file twice changes nothing."""
    estate = estate_or_404(session, code, visible)
    report = dunning.import_arrears(
        session, estate.id, body.csv.encode("utf-8"), actor=user.username, filename=body.filename
    )
    return ImportOut.model_validate(report, from_attributes=True)


@router.get("/estates/{code}/dunning/cases", response_model=list[CaseOut])
def list_cases(
    code: EstateCode,
    session: ReadSessionDep,
    user: Viewers,
    visible: VisibleEstates,
    open_only: Annotated[bool, Query(description="only units still in arrears")] = True,
) -> list[CaseOut]:
    """Units in arrears with where each stands on the ladder and when its next step falls due."""
    estate = estate_or_404(session, code, visible)
    return [_case_out(r) for r in dunning_queries.cases(session, estate.id, open_only=open_only)]


@router.get("/dunning/cases/{case_id}", response_model=CaseDetailOut)
def get_case(case_id: ObjectId, session: ReadSessionDep, user: Viewers, visible: VisibleEstates) -> CaseDetailOut:
    """One unit's case: its arrears by period, the ladder (done, next and due), documents and tasks."""
    _estate_of_case(session, case_id, visible)
    detail = dunning_queries.case_detail(session, case_id)
    if detail is None:  # pragma: no cover - checked above
        raise NotFound("dunning case not found / 未找到该催缴案件")
    return CaseDetailOut(
        **_case_out(detail.case).model_dump(),
        owner_name=detail.owner_name,
        arrears=[ArrearsLineOut.model_validate(a) for a in detail.arrears],
        ladder=[LadderStepOut.model_validate(s) for s in detail.ladder],
        documents=[_doc_out(d) for d in detail.documents],
        tasks=[TaskOut.model_validate(t) for t in detail.tasks],
    )


@router.get("/estates/{code}/dunning/documents", response_model=list[DocumentOut])
def list_documents(
    code: EstateCode, session: ReadSessionDep, user: Viewers, visible: VisibleEstates, page: PageDep
) -> list[DocumentOut]:
    """Documents issued in the estate, newest first."""
    estate = estate_or_404(session, code, visible)
    rows = dunning_queries.documents(session, estate.id, limit=page.limit, offset=page.offset)
    return [_doc_out(d) for d in rows]


@router.get("/dunning/documents/{document_id}", response_model=DocumentDetailOut)
def get_document(
    document_id: ObjectId, session: ReadSessionDep, user: Viewers, visible: VisibleEstates
) -> DocumentDetailOut:
    """One document with its body as issued."""
    found = dunning_queries.document(session, document_id)
    if found is None or found[0].estate_id not in visible:
        raise NotFound("document not found / 未找到该文书")
    row, body = found
    return DocumentDetailOut(**_doc_out(row).model_dump(), body_html=body)


@router.get("/estates/{code}/dunning/tasks", response_model=list[TaskOut])
def list_tasks(
    code: EstateCode,
    session: ReadSessionDep,
    user: Viewers,
    visible: VisibleEstates,
    open_only: Annotated[bool, Query(description="only tasks not done or cancelled")] = True,
) -> list[TaskOut]:
    """Lawyer's-letter and litigation tasks, by due date."""
    estate = estate_or_404(session, code, visible)
    return [TaskOut.model_validate(t) for t in dunning_queries.tasks(session, estate.id, open_only=open_only)]


@router.post("/dunning/tasks/{task_id}/done", response_model=TaskOut, responses=error_responses(400, 409))
def complete_task(
    task_id: ObjectId, body: TaskDoneIn, session: SessionDep, user: Completers, visible: VisibleEstates
) -> TaskOut:
    """Record a lawyer's-letter or litigation task as done (who, when, a note; audited): it leaves the open list.
    A task done already or cancelled by the unit's payment is 409."""
    estate_id = dunning_queries.task_estate_id(session, task_id)
    if estate_id is None or estate_id not in visible:
        raise NotFound("dunning task not found / 未找到该任务")
    task = dunning.complete_task(session, task_id, actor=user.username, note=body.note, now=clock.now())
    row = next(t for t in dunning_queries.tasks(session, estate_id, case_id=task.case_id) if t.task_id == task.id)
    return TaskOut.model_validate(row)


@router.post("/estates/{code}/dunning/advance", response_model=AdvanceOut)
def advance(code: EstateCode, session: SessionDep, user: Issuers, visible: VisibleEstates) -> AdvanceOut:
    """Run the ladder now for the estate's local date (the worker runs it too; running twice issues nothing twice)."""
    estate: Estate = estate_or_404(session, code, visible)
    today = dunning.local_today(estate)
    result = dunning.advance(session, estate.id, today)
    return AdvanceOut(today=today, documents=len(result.documents), tasks=len(result.tasks), closed=len(result.closed))


@router.get("/estates/{code}/dunning/public-list", response_model=list[PublicRowOut])
def public_list(
    code: EstateCode, session: ReadSessionDep, user: Viewers, visible: VisibleEstates
) -> list[PublicRowOut]:
    """The arrears list for the notice board (公示): unit, surname only, amounts; nothing else personal."""
    estate = estate_or_404(session, code, visible)
    return [PublicRowOut.model_validate(r) for r in dunning_queries.public_list(session, estate.id)]
