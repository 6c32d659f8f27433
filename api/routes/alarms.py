"""Alarms (list, acknowledge, clear with a reason) and alarm rules with their overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field
from sqlalchemy.orm import Session

from accounts import service as accounts
from alarms import policy, queries, rule_admin, store
from api.deps import ObjectId, PageDep
from api.schemas import NO_NUL, Input, Output, Page
from core import clock
from core.errors import NotFound
from facility.queries import estate_by_code
from storage.models import StaffUser
from web.deps import SessionDep, VisibleEstates, require_roles
from web.errors import Forbidden, error_responses
from web.replica import ReadSessionDep

router = APIRouter(tags=["alarms"], responses=error_responses(401, 403, 404, 422))
Viewers = Annotated[StaffUser, Depends(require_roles(policy.ALARM_READERS))]
Handlers = Annotated[StaffUser, Depends(require_roles(policy.ALARM_HANDLERS))]
RuleEditors = Annotated[StaffUser, Depends(require_roles(policy.RULE_EDITORS))]

KEY = r"^[a-z_][a-z0-9_]{0,47}$"
RULE_CODE = r"^[A-Za-z0-9_.:-]{1,64}$"
CODE = r"^[A-Za-z0-9_.-]{1,48}$"
RuleCode = Annotated[str, Path(pattern=RULE_CODE, description="rule code, e.g. dry_transformer.winding_temp_a.high")]
ParamValue = float | bool | Annotated[str, Field(max_length=64, pattern=NO_NUL)]


class AlarmOut(Output):
    id: int
    estate_code: str
    rule_code: str
    title_zh: str
    title_en: str
    severity: str
    state: str
    subject: str
    device_code: str | None
    device_name: str | None
    room_code: str | None
    unit_code: str | None
    metric: str | None
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    clear_reason: str | None
    cleared_by: str | None
    clear_note: str | None
    peak: float | None
    last_value: float | None
    detail: dict[str, Any]
    ticket_id: int | None
    ticket_number: str | None


class ClearIn(Input):
    reason: str = Field(
        min_length=1, max_length=500, pattern=NO_NUL, description="why it is cleared by hand / 清除原因"
    )


class RulePatchIn(Input):
    params: dict[Annotated[str, Field(pattern=KEY)], ParamValue] | None = Field(default=None, max_length=16)
    enabled: bool | None = None


class OverrideIn(Input):
    estate: str = Field(pattern=r"^[a-z0-9-]{1,32}$")
    room: str | None = Field(default=None, pattern=CODE)
    device: str | None = Field(default=None, pattern=CODE)
    params: dict[Annotated[str, Field(pattern=KEY)], ParamValue] | None = Field(default=None, max_length=16)
    enabled: bool | None = None


class OverrideOut(Output):
    scope: str
    scope_id: int
    params: dict[str, Any]
    enabled: bool | None
    ticket_policy: dict[str, Any] | None
    updated_by: str


class RuleOut(Output):
    code: str
    kind: str
    metric: str
    device_kind: str | None
    room_kind: str | None
    title_zh: str
    title_en: str
    params: dict[str, Any]
    ticket_policy: dict[str, Any]
    enabled: bool
    overrides: list[OverrideOut]


def _alarm(session: Session, alarm_id: int, visible: set[int]) -> AlarmOut:
    row = queries.alarm_row(session, alarm_id, visible)
    if row is None:
        raise NotFound("alarm not found / 未找到该报警")
    return AlarmOut.model_validate(row)


@router.get("/api/alarms", response_model=Page[AlarmOut])
def list_alarms(
    session: ReadSessionDep,
    user: Viewers,
    visible: VisibleEstates,
    page: PageDep,
    estate: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,32}$")] = None,
    state: Annotated[Literal["open", "active", "acknowledged", "cleared"] | None, Query()] = None,
    severity: Annotated[Literal["warning", "alarm", "critical"] | None, Query()] = None,
) -> dict[str, Any]:
    """Alarms of the caller's estates: open first, most severe first, then newest. `state=open` = not cleared."""
    items, total = queries.query_alarms(
        session, visible, estate=estate, state=state, severity=severity, limit=page.limit, offset=page.offset
    )
    return {
        "items": [AlarmOut.model_validate(r) for r in items],
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    }


@router.get("/api/alarms/{alarm_id}", response_model=AlarmOut)
def get_alarm(alarm_id: ObjectId, session: ReadSessionDep, user: Viewers, visible: VisibleEstates) -> AlarmOut:
    """One alarm."""
    return _alarm(session, alarm_id, visible)


@router.post("/api/alarms/{alarm_id}/acknowledge", response_model=AlarmOut, responses=error_responses(409))
def acknowledge_alarm(alarm_id: ObjectId, session: SessionDep, user: Handlers, visible: VisibleEstates) -> AlarmOut:
    """Acknowledge (确认): someone owns the alarm; it stays open until the condition ends or it is cleared."""
    _alarm(session, alarm_id, visible)
    store.acknowledge(session.connection(), alarm_id, user.username, clock.now())
    accounts.audit(session, user, "alarm.acknowledge", f"alarm:{alarm_id}")
    return _alarm(session, alarm_id, visible)


@router.post("/api/alarms/{alarm_id}/clear", response_model=AlarmOut, responses=error_responses(400, 409))
def clear_alarm(
    alarm_id: ObjectId, body: ClearIn, session: SessionDep, user: Handlers, visible: VisibleEstates
) -> AlarmOut:
    """Clear by hand (手动解除) with a reason; the next crossing raises a new alarm."""
    _alarm(session, alarm_id, visible)
    store.clear_manually(session.connection(), alarm_id, user.username, clock.now(), body.reason)
    accounts.audit(session, user, "alarm.clear", f"alarm:{alarm_id}", {"reason": body.reason})
    return _alarm(session, alarm_id, visible)


def _rule_out(session: Session, visible: set[int], code: str | None = None) -> list[RuleOut]:
    out = []
    for rule, overrides in rule_admin.list_rules(session, visible):
        if code is not None and rule.code != code:
            continue
        out.append(
            RuleOut(
                code=rule.code,
                kind=rule.kind,
                metric=rule.metric,
                device_kind=rule.device_kind,
                room_kind=rule.room_kind,
                title_zh=rule.title_zh,
                title_en=rule.title_en,
                params=rule.params,
                ticket_policy=rule.ticket_policy,
                enabled=rule.enabled,
                overrides=[OverrideOut.model_validate(o) for o in overrides],
            )
        )
    return out


@router.get("/api/alarm-rules", response_model=list[RuleOut])
def list_alarm_rules(session: ReadSessionDep, user: Viewers, visible: VisibleEstates) -> list[RuleOut]:
    """Every rule with the overrides of the caller's estates (rule packs of domain-defaults §2 and §3)."""
    return _rule_out(session, visible)


@router.patch("/api/alarm-rules/{rule_code}", response_model=RuleOut, responses=error_responses(400))
def patch_alarm_rule(
    rule_code: RuleCode, body: RulePatchIn, session: SessionDep, user: RuleEditors, visible: VisibleEstates
) -> RuleOut:
    """Change a rule for every estate (all-estates staff only): merge params, switch on/off. Takes effect within a
    minute. Staff of some estates use overrides instead."""
    if not policy.may_change_rule_everywhere(user):
        raise Forbidden(
            "a rule change reaches every estate: head-office staff only; override it for your estates instead"
            " / 规则修改影响所有小区，仅总部人员可改；请为本小区设置覆盖"
        )
    rule_admin.set_rule(session, rule_code, params=body.params, enabled=body.enabled)
    accounts.audit(
        session, user, "alarm_rule.set", f"alarm_rule:{rule_code}", {"params": body.params, "enabled": body.enabled}
    )
    return _rule_out(session, visible, rule_code)[0]


@router.put("/api/alarm-rules/{rule_code}/overrides", response_model=RuleOut, responses=error_responses(400))
def put_alarm_rule_override(
    rule_code: RuleCode,
    body: OverrideIn,
    session: SessionDep,
    user: RuleEditors,
    visible: VisibleEstates,
) -> RuleOut:
    """Override a rule for one estate, room or device (device beats room beats estate)."""
    found = estate_by_code(session, body.estate)
    estate_id = found.id if found is not None else None
    if not policy.may_override_in(user, estate_id, visible):
        raise NotFound("estate not found / 未找到该小区")
    scope = rule_admin.resolve_scope(session, body.estate, body.room, body.device)
    rule_admin.set_override(session, rule_code, scope, params=body.params, enabled=body.enabled, actor=user.username)
    accounts.audit(
        session,
        user,
        "alarm_rule.override",
        f"alarm_rule:{rule_code}",
        {"scope": scope.label, "params": body.params, "enabled": body.enabled},
    )
    return _rule_out(session, visible, rule_code)[0]
