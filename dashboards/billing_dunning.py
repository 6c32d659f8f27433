"""Property-fee dunning pages: the estates (``/dunning``), an estate's units in arrears with the CSV upload and
tasks (``/dunning/{code}``), one unit's ladder (``/dunning/cases/{id}``), the documents and a printable A4
document, and the printable public list with masked names (``/dunning/{code}/public``).

Who may see or do what is ``billing.policy`` (the JSON API asks it too); the reads are ``billing.dunning_queries``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from billing import dunning, dunning_queries
from billing.dunning_render import cn_date, yuan
from billing.policy import Action, may
from core import clock
from core.errors import StewardError
from dashboards import i18n
from dashboards.forms import flash_error, flash_ok, form_page, same_origin
from dashboards.lookups import estate_of
from dashboards.render import render
from dashboards.viewer import PageError, Viewer, ViewerDep, require
from facility import queries as facility_queries
from storage.models import Estate
from web.deps import SessionDep
from web.replica import ReadSessionDep

router = APIRouter(include_in_schema=False)


def _reader(viewer: Viewer) -> Viewer:
    return require(viewer, may(viewer.role, Action.view_dunning))


def _common(viewer: Viewer) -> dict[str, Any]:
    lang = viewer.lang
    return {
        "yuan": yuan,
        "cn_date": cn_date,
        "step_title": lambda kind: dunning_queries.step_title(kind, lang),
        "can_import": may(viewer.role, Action.import_arrears),
        "can_issue": may(viewer.role, Action.issue_dunning),
        "can_complete": may(viewer.role, Action.complete_dunning_task),
        # In the estate's own zone (both pages that show a done task have the estate).
        "when": lambda ts, zone=None: i18n.format_time(ts, i18n.zone(zone), seconds=False) if ts else "",
    }


@router.get("/dunning", response_class=HTMLResponse)
def dunning_home(request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    estates = [
        (estate, dunning_queries.cases(session, estate.id))
        for estate in facility_queries.visible_estates(session, viewer.visible)
    ]
    summaries = [
        {"estate": e, "cases": len(cs), "owed_fen": sum(c.amount_fen + c.late_fee_fen for c in cs)} for e, cs in estates
    ]
    return render(request, "billing_dunning/home.html", viewer.lang, viewer, summaries=summaries, **_common(viewer))


def _estate_page(
    request: Request, session: Session, viewer: Viewer, estate: Estate, *, errors: list[str] | None = None
) -> HTMLResponse:
    variant = dunning.estate_variant(estate)
    page = form_page(
        request,
        "billing_dunning/estate.html",
        viewer,
        estate=estate,
        variant=variant,
        cases=dunning_queries.cases(session, estate.id),
        tasks=dunning_queries.tasks(session, estate.id, open_only=True),
        done_tasks=dunning_queries.tasks(session, estate.id, done_only=True, limit=20),
        errors=errors or [],
        **_common(viewer),
    )
    if errors:
        page.status_code = 422
    return page


@router.get("/dunning/{code}", response_class=HTMLResponse)
def dunning_estate(code: str, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    return _estate_page(request, session, viewer, estate_of(session, code, viewer))


@router.post("/dunning/{code}/import", response_model=None)
def dunning_import(
    code: str,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    same_origin(request, viewer)
    require(viewer, may(viewer.role, Action.import_arrears))
    estate = estate_of(session, code, viewer)
    target = f"/dunning/{estate.code}"
    if file is None or not file.filename:
        return flash_error(target, "!need_file")
    data = file.file.read(dunning.MAX_FILE_BYTES + 1)
    try:
        dunning.import_arrears(session, estate.id, data, actor=viewer.username, filename=file.filename)
        session.flush()
    except dunning.ArrearsFileRejected as exc:
        session.rollback()
        lines = [f"第{e.line}行：{e.zh}" if viewer.lang == "zh" else f"line {e.line}: {e.en}" for e in exc.errors]
        return _estate_page(request, session, viewer, estate, errors=lines)
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "flash_imported")


@router.post("/dunning/{code}/advance", response_model=None)
def dunning_advance(code: str, request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    same_origin(request, viewer)
    require(viewer, may(viewer.role, Action.issue_dunning))
    estate = estate_of(session, code, viewer)
    dunning.advance(session, estate.id, dunning.local_today(estate))
    return flash_ok(f"/dunning/{estate.code}", "flash_advanced")


@router.post("/dunning/tasks/{task_id}/done", response_model=None)
def dunning_task_done(
    task_id: int,
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    note: Annotated[str, Form(max_length=dunning.MAX_NOTE)] = "",
) -> Response:
    """A lawyer's letter sent or a suit filed: who (the viewer), when (now) and the note, audited."""
    same_origin(request, viewer)
    require(viewer, may(viewer.role, Action.complete_dunning_task))
    estate_id = dunning_queries.task_estate_id(session, task_id) if 0 < task_id < 2**62 else None
    if estate_id is None or estate_id not in viewer.visible:
        raise PageError(404, viewer)
    estate = session.get(Estate, estate_id)
    assert estate is not None
    target = f"/dunning/{estate.code}"
    if not note.strip():
        return flash_error(target, "!need_task_note")
    try:
        dunning.complete_task(session, task_id, actor=viewer.username, note=note, now=clock.now())
    except StewardError as exc:
        session.rollback()
        return flash_error(target, exc)
    return flash_ok(target, "task_done_flash")


@router.get("/dunning/cases/{case_id}", response_class=HTMLResponse)
def dunning_case(case_id: int, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    estate_id = dunning_queries.case_estate_id(session, case_id) if 0 < case_id < 2**62 else None
    if estate_id is None or estate_id not in viewer.visible:
        raise PageError(404, viewer)
    detail = dunning_queries.case_detail(session, case_id)
    estate = session.get(Estate, estate_id)
    return render(request, "billing_dunning/case.html", viewer.lang, viewer, d=detail, estate=estate, **_common(viewer))


@router.get("/dunning/{code}/documents", response_class=HTMLResponse)
def dunning_documents(code: str, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    estate = estate_of(session, code, viewer)
    docs = dunning_queries.documents(session, estate.id)
    return render(
        request, "billing_dunning/documents.html", viewer.lang, viewer, estate=estate, docs=docs, **_common(viewer)
    )


@router.get("/dunning/documents/{document_id}/print", response_class=HTMLResponse)
def dunning_print(document_id: int, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    found = dunning_queries.document(session, document_id) if 0 < document_id < 2**62 else None
    if found is None or found[0].estate_id not in viewer.visible:
        raise PageError(404, viewer)
    row, body = found
    # The letter is printed as issued (stored HTML rendered by billing.dunning_render with autoescape).
    return render(request, "billing_dunning/print.html", viewer.lang, viewer, doc=row, body=body, **_common(viewer))


@router.get("/dunning/{code}/public", response_class=HTMLResponse)
def dunning_public(code: str, request: Request, session: ReadSessionDep, viewer: ViewerDep) -> HTMLResponse:
    _reader(viewer)
    estate = estate_of(session, code, viewer)
    rows = dunning_queries.public_list(session, estate.id)
    today = dunning.local_today(estate)
    note = i18n.t("public_note", viewer.lang, date=cn_date(today) if viewer.lang == "zh" else today.isoformat())
    return render(
        request,
        "billing_dunning/public.html",
        viewer.lang,
        viewer,
        estate=estate,
        rows=rows,
        note=note,
        total_fen=sum(r.amount_fen + r.late_fee_fen for r in rows),
        **_common(viewer),
    )
