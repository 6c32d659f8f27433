"""Customer-service rounds (客服巡查, issue 14 §5) on the inspection-round engine: windows, tasks, records.

A service schedule belongs to the whole estate (`round_schedules.room_id` null, `kind` one of
alarm.service_round_defaults.SERVICE_KINDS) and is done by one role (`role`). Its rounds live in
`inspection_rounds` like an equipment room's, with the same unique (schedule, window start), the same
open → done | missed statuses and the same missed step and alarm (alarms.rounds step 3, rule
``inspection.round_missed``, subject ``round:<schedule id>``). What differs:

- **windows**: fixed intervals from a Monday 00:00 (estate-local) anchor — a week, or half a week (Monday 00:00 →
  Thursday 12:00 → Monday) — or calendar quarters (`calendar = 'quarter'`: Jan/Apr/Jul/Oct 1st, estate-local);
- **tasks** (`round_tasks`), chosen when the round is created: every vacant unit (quarterly check), every renovating
  unit (each half-week check), ceil(20 %) of the renovating units (weekly sample), ceil(share × occupied households)
  (weekly visits; the share per estate, estates.policy), one per building (weekly patrol). Samples and visits take
  the units whose last task of that kind was *done* longest ago (never first); among those never done, the ones
  already asked for come back first (a household not at home is visited next week: 补访), then by unit id. So the
  choice is deterministic and rotates through the estate;
- **done** when no task is pending (each done, or skipped with a reason); a round with nothing to do (no vacant unit
  this quarter) is done when created (`satisfied_by = 'no_tasks'`). No telemetry decides a service round.

`evaluate_service_rounds` runs in the worker's rounds job after `alarms.rounds.evaluate_rounds` (same lock, same
transaction). `record_task` records a task on site; a finding (⑧ 巡查中的异常情况 … 按报事报修规程处理) opens a
ticket through tickets.service: a repair found on a round is a patrol ticket (fixed within a week, seeds/001 六.1),
a household's complaint heard on a visit is a complaint ticket (24 h feedback).

Services flush, never commit: the worker job / HTTP request owns the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from alarms.rounds import (
    CATCHUP_MINUTES,
    CLOCK_SKEW,
    MAX_CATCHUP,
    ROUND_MISSED_RULE,
    RoundNotFound,
    RoundStatus,
    RoundTimeError,
    RoundTransitionError,
    clear_recovered,
)
from alarms.service_round_defaults import (
    DEFAULT_SERVICE_SCHEDULES,
    KIND_LABELS,
    POLICY_KEY,
    QUARTER,
    RENOVATION_SAMPLE_PCT,
    VISIT_SHARE_KEY,
    VISIT_SHARE_PCT,
    ServiceKind,
)
from core import clock, glossary
from core.errors import InvalidInput, NotFound
from storage.models import AlarmRuleRow, Building, Estate, InspectionRound, RoundSchedule, RoundTask, Unit
from tickets.const import Category

log = logging.getLogger(__name__)

DEFAULT_TZ = "Asia/Shanghai"
MAX_NOTE = 2000


class TaskStatus:
    pending = "pending"
    done = "done"
    skipped = "skipped"


TASK_STATUS_LABELS = {
    TaskStatus.pending: ("待完成", "Pending"),
    TaskStatus.done: ("已完成", "Done"),
    TaskStatus.skipped: ("未能完成", "Skipped"),
}


# A service round's statuses as people say them: it is done by its tasks, not "manually" as against by telemetry.
ROUND_STATUS_LABELS = {
    RoundStatus.open: ("进行中", "Open"),
    RoundStatus.done: ("已完成", "Done"),
    RoundStatus.missed: glossary.ROUND_STATUS["missed"],
}


class TaskNotFound(NotFound):
    pass


# --- windows ---------------------------------------------------------------------------------------------------


def monday_midnight(at: datetime, tz: str) -> datetime:
    """Monday 00:00 of `at`'s week in timezone `tz` (an aware datetime)."""
    local = at.astimezone(ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return (day - timedelta(days=day.weekday())).replace(tzinfo=ZoneInfo(tz))


def quarter_start(at: datetime, tz: str) -> datetime:
    """00:00 local of the first day of `at`'s calendar quarter (Jan, Apr, Jul or Oct 1st) in timezone `tz`."""
    local = at.astimezone(ZoneInfo(tz))
    return datetime(local.year, 3 * ((local.month - 1) // 3) + 1, 1, tzinfo=ZoneInfo(tz))


def next_quarter(start: datetime) -> datetime:
    """The quarter after the one starting at `start` (a quarter_start), across the year boundary."""
    year, month = (start.year + 1, 1) if start.month == 10 else (start.year, start.month + 3)
    return start.replace(year=year, month=month)


def quarter_window(at: datetime, tz: str) -> tuple[datetime, datetime]:
    start = quarter_start(at, tz)
    return start, next_quarter(start)


def interval_window(anchor: datetime, minutes: int, at: datetime) -> tuple[datetime, datetime]:
    """The window [anchor + k·interval, anchor + (k+1)·interval) holding `at` (the equipment rounds' arithmetic)."""
    size = timedelta(minutes=minutes)
    k = (at - anchor) // size
    start = anchor + k * size
    return start, start + size


def windows_to_create(
    *, calendar: str | None, anchor: datetime, minutes: int, tz: str, now: datetime, last_start: datetime | None
) -> list[tuple[datetime, datetime]]:
    """The windows a schedule needs rounds for at `now`, oldest first: the current one, plus (after downtime) the
    ones since the last round — at most MAX_CATCHUP and none more than 7 days back, as for equipment rounds."""
    if calendar == QUARTER:
        current = quarter_window(now, tz)
        # Longer than the catch-up horizon: only the current quarter, as an equipment window longer than 7 days.
        return [current] if last_start is None or last_start < current[0] else []
    if minutes <= 0:
        return []
    current = interval_window(anchor, minutes, now)
    if last_start is None:
        return [current]
    back = min(MAX_CATCHUP - 1, CATCHUP_MINUTES // minutes)
    out = [current]
    size = timedelta(minutes=minutes)
    for _ in range(back):
        start = out[0][0] - size
        if start <= last_start:
            break
        out.insert(0, (start, start + size))
    return [w for w in out if w[0] > last_start]


# --- sizes -----------------------------------------------------------------------------------------------------


def share_of(count: int, pct: Decimal) -> int:
    """ceil(pct % of count): at least the SOP's share, never a fraction of a household."""
    if count <= 0 or pct <= 0:
        return 0
    return min(count, int((Decimal(count) * pct / 100).to_integral_value(rounding=ROUND_CEILING)))


def visit_share_pct(policy: Mapping[str, Any] | None) -> Decimal:
    """The estate's weekly share of occupied households visited, in percent (estates.policy.service_rounds)."""
    raw = ((policy or {}).get(POLICY_KEY) or {}).get(VISIT_SHARE_KEY, VISIT_SHARE_PCT)
    if isinstance(raw, bool):
        raise InvalidInput("visit_share_pct must be a number of percent / 走访比例设置有误")
    try:
        pct = Decimal(str(raw))
    except InvalidOperation:
        raise InvalidInput("visit_share_pct must be a number of percent / 走访比例设置有误") from None
    if not pct.is_finite() or pct < 0 or pct > 100:
        raise InvalidInput("visit_share_pct must be between 0 and 100 / 走访比例须在0到100之间")
    return pct


# --- default schedules -----------------------------------------------------------------------------------------


def ensure_service_schedules(session: Session, estate_id: int, *, now: datetime | None = None) -> int:
    """Create the estate's default customer-service schedules; returns how many were new.

    Anchored at Monday 00:00 (estate timezone) of `now`'s week. Idempotent: existing schedules (by estate and code)
    are left alone, tuning included.
    """
    estate = session.get(Estate, estate_id)
    if estate is None:
        raise NotFound(f"no estate {estate_id}")
    anchor = monday_midnight(now or clock.now(), estate.timezone or DEFAULT_TZ)
    rows = [
        {
            "estate_id": estate_id,
            "room_id": None,
            "kind": spec.kind,
            "role": spec.role.value,
            "calendar": spec.calendar,
            "code": spec.code,
            "name_zh": spec.name_zh,
            "name_en": spec.name_en,
            "interval_minutes": spec.interval_minutes,
            "device_kinds": None,
            "grace_minutes": spec.grace_minutes,
            "anchor": anchor,
            "enabled": True,
        }
        for spec in DEFAULT_SERVICE_SCHEDULES
    ]
    stmt = (
        insert(RoundSchedule)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["estate_id", "code"], index_where=text("room_id IS NULL"))
    )
    created = session.execute(stmt.returning(RoundSchedule.id)).all()
    session.flush()
    return len(created)


# --- the periodic step: new windows and their tasks ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRoundsResult:
    created: int
    tasks: int
    nothing_due: int


_SCHEDULES = text(
    """
    SELECT s.id, s.estate_id, s.kind, s.calendar, s.anchor, s.interval_minutes, e.timezone, e.policy,
           (SELECT max(r.window_start) FROM inspection_rounds r WHERE r.schedule_id = s.id) AS last_start
    FROM round_schedules s JOIN estates e ON e.id = s.estate_id
    WHERE s.enabled AND s.kind <> 'equipment' AND s.anchor <= :now
    ORDER BY s.id
    """
)

# The units of an estate in one occupancy, with when a task of `kind` on each was last done and last assigned.
_CANDIDATES = text(
    """
    SELECT u.id,
           (SELECT max(t.performed_at) FROM round_tasks t JOIN inspection_rounds r ON r.id = t.round_id
            WHERE t.unit_id = u.id AND r.kind = :kind AND t.status = 'done') AS last_done,
           (SELECT max(r.window_start) FROM round_tasks t JOIN inspection_rounds r ON r.id = t.round_id
            WHERE t.unit_id = u.id AND r.kind = :kind) AS last_assigned
    FROM units u JOIN buildings b ON b.id = u.building_id
    WHERE b.estate_id = :estate AND u.occupancy = :occupancy
    ORDER BY last_done ASC NULLS FIRST, last_assigned ASC NULLS LAST, u.id
    """
)


def _units(session: Session, estate_id: int, occupancy: str) -> list[int]:
    return list(
        session.scalars(
            select(Unit.id)
            .join(Building, Building.id == Unit.building_id)
            .where(Building.estate_id == estate_id, Unit.occupancy == occupancy)
            .order_by(Building.code, Unit.code, Unit.id)
        )
    )


def _least_recent(session: Session, estate_id: int, occupancy: str, kind: str, n: int) -> list[int]:
    if n <= 0:
        return []
    rows = session.execute(_CANDIDATES, {"estate": estate_id, "occupancy": occupancy, "kind": kind}).all()
    return [int(r[0]) for r in rows[:n]]


def task_subjects(
    session: Session, estate_id: int, kind: str, policy: Mapping[str, Any] | None
) -> tuple[list[int], list[int]]:
    """(unit ids, building ids) a new round of `kind` in the estate gets tasks for, in the order chosen."""
    if kind == ServiceKind.vacant_units:
        return _units(session, estate_id, "vacant"), []
    if kind == ServiceKind.renovation_check:
        return _units(session, estate_id, "renovating"), []
    if kind == ServiceKind.renovation_sample:
        n = share_of(len(_units(session, estate_id, "renovating")), RENOVATION_SAMPLE_PCT)
        return _least_recent(session, estate_id, "renovating", kind, n), []
    if kind == ServiceKind.household_visits:
        try:
            pct = visit_share_pct(policy)
        except InvalidInput as exc:
            # A mistyped estate setting must not stop the worker's rounds job for every estate: the SOP's share.
            log.warning("estate %s: %s; visiting %s %% of households", estate_id, exc, VISIT_SHARE_PCT)
            pct = VISIT_SHARE_PCT
        n = share_of(len(_units(session, estate_id, "occupied")), pct)
        return _least_recent(session, estate_id, "occupied", kind, n), []
    if kind == ServiceKind.estate_patrol:
        buildings = session.scalars(
            select(Building.id).where(Building.estate_id == estate_id).order_by(Building.code, Building.id)
        )
        return [], [int(b) for b in buildings]
    raise InvalidInput(f"unknown service round kind {kind!r}")


def evaluate_service_rounds(session: Session, now: datetime | None = None) -> ServiceRoundsResult:
    """Create the rounds of the service schedules' windows that have begun, each with its tasks."""
    now = now or clock.now()
    created = tasks = nothing_due = 0
    for s in session.execute(_SCHEDULES, {"now": now}).mappings().all():
        tz = s["timezone"] or DEFAULT_TZ
        windows = windows_to_create(
            calendar=s["calendar"],
            anchor=s["anchor"],
            minutes=int(s["interval_minutes"]),
            tz=tz,
            now=now,
            last_start=s["last_start"],
        )
        for start, end in windows:
            round_id = session.scalar(
                insert(InspectionRound)
                .values(
                    schedule_id=s["id"],
                    estate_id=s["estate_id"],
                    room_id=None,
                    kind=s["kind"],
                    window_start=start,
                    window_end=end,
                    status=RoundStatus.open,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["schedule_id", "window_start"])
                .returning(InspectionRound.id)
            )
            if round_id is None:
                continue
            created += 1
            units, buildings = task_subjects(session, int(s["estate_id"]), s["kind"], s["policy"])
            subjects = [(u, None) for u in units] + [(None, b) for b in buildings]
            rows = [
                {
                    "round_id": round_id,
                    "estate_id": s["estate_id"],
                    "unit_id": unit_id,
                    "building_id": building_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for unit_id, building_id in subjects
            ]
            if rows:
                session.execute(insert(RoundTask), rows)
                tasks += len(rows)
            else:
                # Nothing to do this window (no vacant unit, no renovation): done as soon as it exists.
                nothing_due += 1
                session.execute(
                    text(
                        "UPDATE inspection_rounds SET status = 'done', satisfied_by = 'no_tasks', updated_at = :now "
                        "WHERE id = :id"
                    ),
                    {"id": round_id, "now": now},
                )
    session.flush()
    result = ServiceRoundsResult(created, tasks, nothing_due)
    if created:
        log.info("service rounds: %s", result)
    return result


# --- recording a task ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """Something wrong found on the round (⑧): a repair (patrol ticket) or a household's complaint."""

    text: str
    category: str = "civil"
    complaint: bool = False


_TITLES = {
    ServiceKind.vacant_units: "空置房检查发现问题",
    ServiceKind.renovation_check: "装修巡查发现问题",
    ServiceKind.renovation_sample: "装修抽查发现问题",
    ServiceKind.household_visits: "管家走访 住户报修",
    ServiceKind.estate_patrol: "小区巡查发现问题",
}
COMPLAINT_TITLE = "管家走访 住户投诉"


def _clean(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if "\x00" in value or len(value) > MAX_NOTE:
        raise InvalidInput(f"{what}: at most {MAX_NOTE} characters / 文字过长或含非法字符")
    return value or None


def record_task(
    session: Session,
    task_id: int,
    *,
    performed_by: str,
    performed_at: datetime | None = None,
    skipped: bool = False,
    notes: str | None = None,
    finding: Finding | None = None,
) -> RoundTask:
    """Record a task as done (with an optional finding, which opens a ticket) or skipped (a reason is required).

    Accepted while the round is open and late on a missed round (its alarm episode stays in the history). The
    round is done once no task is pending; then the schedule's missed alarm clears unless a later round is missed.
    """
    task = session.scalar(select(RoundTask).where(RoundTask.id == task_id).with_for_update())
    if task is None:
        raise TaskNotFound("task not found / 未找到该巡查任务")
    rnd = session.scalar(select(InspectionRound).where(InspectionRound.id == task.round_id).with_for_update())
    if rnd is None:  # the cascade makes this impossible; kept for the type checker
        raise RoundNotFound("round not found / 未找到该巡查")
    if task.status != TaskStatus.pending:
        raise RoundTransitionError("this task is already recorded / 该任务已记录")
    now = clock.now()
    at = performed_at or now
    if at.tzinfo is None:
        raise InvalidInput("performed_at needs a timezone / 时间须带时区")
    if at > now + CLOCK_SKEW:
        raise RoundTimeError("performed_at is in the future / 时间不能晚于当前时间")
    if at < rnd.window_start:
        raise RoundTimeError("performed_at is before the round's window / 时间早于本轮巡查周期")
    who = performed_by.strip()[:64]
    if not who:
        raise InvalidInput("performed_by is required / 须填写记录人")
    note = _clean(notes, "notes")
    if skipped and finding is not None:
        raise InvalidInput("a skipped task has no finding / 未完成的任务不能登记问题")
    if skipped and not note:
        raise InvalidInput("say why the task was not done / 请填写未能完成的原因")
    if finding is not None:
        _check_finding(finding)
    task.status = TaskStatus.skipped if skipped else TaskStatus.done
    task.outcome = None if skipped else ("finding" if finding is not None else "ok")
    task.performed_by = who
    task.performed_at = at
    task.notes = note
    task.updated_at = now
    session.flush()
    if finding is not None:
        task.ticket_id = _open_finding_ticket(session, task, rnd, finding, who, now)
        session.flush()
    _close_round_if_complete(session, rnd, who, now)
    return task


def _check_finding(finding: Finding) -> None:
    # Checked before anything is recorded (the ticket is opened after the task is marked done).
    if finding.category not in {c.value for c in Category}:
        raise InvalidInput(f"unknown category {finding.category!r} / 问题类别不正确")
    if not _clean(finding.text, "finding"):
        raise InvalidInput("describe what was found / 请描述发现的问题")


def _open_finding_ticket(
    session: Session, task: RoundTask, rnd: InspectionRound, finding: Finding, who: str, now: datetime
) -> int:
    from tickets.service import open_ticket

    text_ = _clean(finding.text, "finding")
    if not text_:
        raise InvalidInput("describe what was found / 请描述发现的问题")
    where = ""
    if task.unit_id is not None:
        where = session.scalar(select(Unit.code).where(Unit.id == task.unit_id)) or ""
    elif task.building_id is not None:
        building = session.get(Building, task.building_id)
        where = building.name if building is not None else ""
    schedule = session.get(RoundSchedule, rnd.schedule_id)
    estate = session.get(Estate, rnd.estate_id)
    tz = ZoneInfo((estate.timezone if estate else None) or DEFAULT_TZ)
    start, end = rnd.window_start.astimezone(tz), rnd.window_end.astimezone(tz)
    title = COMPLAINT_TITLE if finding.complaint else _TITLES.get(rnd.kind, "巡查发现问题")
    round_name = schedule.name_zh if schedule else KIND_LABELS.get(rnd.kind, (rnd.kind, ""))[0]
    description = f"{text_}\n——{round_name}（{start:%Y-%m-%d}–{end:%Y-%m-%d}）{where}，记录人 {who}。"
    ticket = open_ticket(
        session,
        estate_id=rnd.estate_id,
        source="complaint" if finding.complaint else "patrol",
        category=finding.category,
        priority="normal",
        title=f"{title}：{where} {text_}".strip()[:200],
        description=description,
        unit_id=task.unit_id,
        received_by=who,
        received_at=now,
        source_key=f"round_task:{task.id}",
    )
    return int(ticket.id)


def _close_round_if_complete(session: Session, rnd: InspectionRound, who: str, now: datetime) -> None:
    pending = session.scalar(
        text("SELECT count(*) FROM round_tasks WHERE round_id = :r AND status = 'pending'"), {"r": rnd.id}
    )
    if pending:
        return
    last = session.scalar(text("SELECT max(performed_at) FROM round_tasks WHERE round_id = :r"), {"r": rnd.id})
    was = rnd.status
    rnd.status = RoundStatus.done
    rnd.satisfied_by = "manual"
    rnd.performed_by = who
    rnd.performed_at = last
    rnd.updated_at = now
    session.flush()
    rule_id = session.scalar(select(AlarmRuleRow.id).where(AlarmRuleRow.code == ROUND_MISSED_RULE))
    if rule_id is not None and clear_recovered(session.connection(), int(rule_id), [rnd.id], now):
        log.info("service round %s done late (was %s): missed alarm cleared", rnd.id, was)


__all__ = [
    "ROUND_STATUS_LABELS",
    "TASK_STATUS_LABELS",
    "Finding",
    "ServiceRoundsResult",
    "TaskNotFound",
    "TaskStatus",
    "ensure_service_schedules",
    "evaluate_service_rounds",
    "interval_window",
    "monday_midnight",
    "next_quarter",
    "quarter_start",
    "quarter_window",
    "record_task",
    "share_of",
    "task_subjects",
    "visit_share_pct",
    "windows_to_create",
]
