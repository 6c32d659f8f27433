"""Ingest health and counters, dead letters and quarantined messages, the read replica's lag.

The GETs read through ``ReadSessionDep`` (the replica when one is configured, web/replica.py); the public
/health asks the primary, whose health it reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from accounts import policy
from api.deps import PageDep
from api.pagination import page_out
from api.schemas import DeadLetterOut, HealthOut, IngestStatusOut, Page, QuarantineOut, ReplicaStatusOut
from storage import ingest_reads
from storage.models import DeadLetter, QuarantinedMessage, StaffUser
from web.deps import SessionDep, require_roles
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep, replication_status

router = APIRouter(tags=["operations"])
Operators = Annotated[StaffUser, Depends(require_roles(policy.OPERATORS))]


def head_office_operator(user: Operators) -> StaffUser:
    """Ingest processes and counters span every estate: all-estates operators only."""
    if not policy.may_see_ingest_status(user):
        raise Forbidden("ingest status spans every estate: head-office staff only / 接入状态涉及所有小区，仅总部可看")
    return user


HeadOfficeOperators = Annotated[StaffUser, Depends(head_office_operator)]


def _topic_scope(session: Session, user: StaffUser, column: Any) -> Any:
    return policy.topic_scope(column, user.all_estates, policy.estate_codes_of(session, user))


def ingest_statuses(session: Session) -> list[IngestStatusOut]:
    return [IngestStatusOut.model_validate(s) for s in ingest_reads.ingest_statuses(session)]


@router.get("/health", response_model=HealthOut)
def health(session: SessionDep) -> HealthOut:
    """Liveness of the API, its database and the ingest processes as one status (no login needed)."""
    try:
        session.execute(text("SELECT 1"))
        ingest = ingest_statuses(session)
        ok = bool(ingest) and all(i.status == "ok" for i in ingest)
    except SQLAlchemyError:
        ok = False
    return HealthOut(status="ok" if ok else "degraded")


@router.get(
    "/metrics",
    # Errors are JSON like everywhere else; only the 200 is Prometheus text.
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403),
    },
)
def metrics(request: Request, session: SessionDep, user: HeadOfficeOperators) -> PlainTextResponse:
    """Ingest counters in the Prometheus text format, summed over ingest processes; the read replica's lag."""
    totals: dict[str, int] = {}
    statuses = ingest_statuses(session)
    for s in statuses:
        for name, value in s.counters.items():
            if isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
    lines = []
    for name, value in sorted(totals.items()):
        lines += [f"# TYPE steward_ingest_{name}_total counter", f"steward_ingest_{name}_total {value}"]
    lines.append("# TYPE steward_ingest_up gauge")
    for s in statuses:
        lines.append(f'steward_ingest_up{{instance="{s.instance}"}} {1 if s.status == "ok" else 0}')
    replica = replication_status(request, session)
    if replica.configured:
        up = 1 if replica.healthy else 0
        lines += ["# TYPE steward_replica_up gauge", f"steward_replica_up {up}"]
        if replica.replay_lag_s is not None:
            lines += [
                "# TYPE steward_replica_lag_seconds gauge",
                f"steward_replica_lag_seconds {replica.replay_lag_s}",
            ]
    return PlainTextResponse("\n".join(lines) + "\n")


@router.get("/api/ingest/status", response_model=list[IngestStatusOut], responses=error_responses(401, 403))
def ingest_status(session: ReadSessionDep, user: HeadOfficeOperators) -> list[IngestStatusOut]:
    """What each ingest process last reported (all-estates operators only)."""
    return ingest_statuses(session)


@router.get("/api/ingest/replica", response_model=ReplicaStatusOut, responses=error_responses(401, 403))
def replica_status(request: Request, session: SessionDep, user: HeadOfficeOperators) -> ReplicaStatusOut:
    """The read replica's lag, from the replica and from the primary's pg_stat_replication (all-estates
    operators only); ``configured: false`` when reads use the primary."""
    status = replication_status(request, session)
    return ReplicaStatusOut.model_validate({**status.__dict__, "healthy": status.healthy})


@router.get("/api/ingest/dead-letters", response_model=Page[DeadLetterOut], responses=error_responses(401, 403, 422))
def dead_letters(session: ReadSessionDep, user: Operators, page: PageDep) -> dict[str, Any]:
    """Payloads that could not be understood on the caller's estates' topics, newest first, with the reason."""
    scope = _topic_scope(session, user, DeadLetter.topic)
    found = ingest_reads.dead_letters_page(session, scope, limit=page.limit, offset=page.offset)
    return page_out(found, page, [DeadLetterOut.model_validate(r) for r in found.items])


@router.get("/api/ingest/quarantine", response_model=Page[QuarantineOut], responses=error_responses(401, 403, 422))
def quarantine(
    session: ReadSessionDep,
    user: Operators,
    page: PageDep,
    reason: Annotated[str | None, Query(max_length=48, pattern=r"^[a-z_]*$")] = None,
) -> dict[str, Any]:
    """Quarantined messages on the caller's estates' topics (unknown devices, timestamps outside the window)."""
    scope = _topic_scope(session, user, QuarantinedMessage.topic)
    return page_out(
        ingest_reads.quarantine_page(session, scope, reason=reason, limit=page.limit, offset=page.offset), page
    )
