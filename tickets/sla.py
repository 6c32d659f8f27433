"""SLA clocks of repair tickets as pure functions (domain-defaults §4; SOP seeds/002 §3.1, seeds/004 接修/投诉/回访).

Defaults, all whole minutes, each overridable per estate in ``estates.policy["sla"]`` (a dict merged over
`SlaPolicy`'s defaults; an unknown key or a value of the wrong type is ignored, so a typo in one estate's
settings can never stop ingest from opening tickets):

===============================  =======  ==============================================================
key                              default  meaning
===============================  =======  ==============================================================
on_site_minutes                  20       technician on site, general repair (接到报修后 20 分钟到现场)
on_site_minutes_hot_water        15       … hot-water fault (热水故障 15 分钟内到达)
on_site_minutes_urgent           20       … urgent repair (急修)
resolve_minutes_urgent           240      urgent: work is continuous until fixed (连续抢修); this target
                                          only makes an unfinished urgent job escalate after 4 h
resolve_minutes_high             1440     较急: within 24 h (derived: between same-day and 2 days)
resolve_minutes_normal           2880     一般维修 2 天内完成
minor_due_local                  "23:59"  小修当天完成: due at this local time of the day received (the
                                          next day's if received at or after it)
same_day_late_after              "20:00"  a "same day" ticket received at or after this local time …
same_day_late_due                "12:00"  … is due at this local time the next day (§4), not at 23:59
callback_minutes                 1440     回访 within 24 h of resolution (derived: the SOP fixes only hot water)
callback_same_day_categories     [hot_water]  these are called back the same local day, by callback_due_local
callback_due_local               "23:59"  (管家在维修结束后当日内回访)
complaint_feedback_minutes       1440     投诉 24 小时有反馈
complaint_close_minutes          17280    普通投诉处理周期 12 天
patrol_resolve_minutes           10080    巡查发现的问题一周内整改 (urgent patrol findings use the urgent clocks)
escalation_step_minutes          30       breached → supervisor at once; still breached this much later → manager
critical_on_site_minutes         20       platform: critical alarm, on site day and night (done: continuous work,
                                          escalating after resolve_minutes_urgent like an urgent repair)
alarm_on_site_minutes            120      platform: alarm level, on site within the shift; done the same day
warning_on_site_minutes          1440     platform: warning / stale sensor / missed round / power factor:
                                          checked on the next round, within 24 h …
warning_resolve_minutes          2880     … and done within 2 days
meter_vacant_manual_on_site_minutes 120   platform: vacant-unit water without a remote valve: on site ≤ 2 h
                                          (with the valve closed remotely: the same day); done the same day
meter_resolve_minutes            2880     platform: other meter anomalies (no on-site clock), done within 2 days
===============================  =======  ==============================================================

Which clocks a ticket gets: a ticket the platform opened by itself has a `ClockKind` (§4's second
table: critical / alarm / warning / meter anomaly) and takes that row's clocks, whatever its priority —
a silent sensor is not a resident waiting at the door. Otherwise (§4's first table, resident reports):
a complaint has feedback + resolve (close) clocks and no on-site clock; a patrol finding has only the
one-week resolve clock unless it is urgent; every other ticket has on-site + resolve clocks by priority.
Due times are computed when the ticket is opened and stored, so a policy change never moves a running
clock; they are re-derived (never later than before) when an alarm raises the ticket's priority.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from tickets.const import (
    BEFORE_ON_SITE,
    BEFORE_RESOLVED,
    ESCALATION_ROUTES,
    Category,
    Clock,
    ClockKind,
    EscalationRoute,
    Priority,
    Source,
    TicketStatus,
)

DEFAULT_TZ = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    on_site_minutes: int = 20
    on_site_minutes_hot_water: int = 15
    on_site_minutes_urgent: int = 20
    resolve_minutes_urgent: int = 240
    resolve_minutes_high: int = 1440
    resolve_minutes_normal: int = 2880
    minor_due_local: str = "23:59"
    callback_minutes: int = 1440
    callback_same_day_categories: tuple[str, ...] = (Category.hot_water.value,)
    callback_due_local: str = "23:59"
    complaint_feedback_minutes: int = 1440
    complaint_close_minutes: int = 12 * 1440
    patrol_resolve_minutes: int = 7 * 1440
    escalation_step_minutes: int = 30
    same_day_late_after: str = "20:00"
    same_day_late_due: str = "12:00"
    critical_on_site_minutes: int = 20
    alarm_on_site_minutes: int = 120
    warning_on_site_minutes: int = 1440
    warning_resolve_minutes: int = 2880
    meter_vacant_manual_on_site_minutes: int = 120
    meter_resolve_minutes: int = 2880


DEFAULT_POLICY = SlaPolicy()
_FIELDS = {f.name: f for f in dataclasses.fields(SlaPolicy)}


def _valid(name: str, value: Any) -> bool:
    default = getattr(DEFAULT_POLICY, name)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 366 * 1440
    if isinstance(default, str):
        return isinstance(value, str) and _parse_hhmm(value) is not None
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def policy_from(estate_policy: Mapping[str, Any] | None) -> SlaPolicy:
    """The estate's SLA policy: ``estate_policy["sla"]`` merged over the defaults (bad entries ignored)."""
    overrides = (estate_policy or {}).get("sla")
    if not isinstance(overrides, Mapping):
        return DEFAULT_POLICY
    changes: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if k in _FIELDS and _valid(k, v)
    }
    return dataclasses.replace(DEFAULT_POLICY, **changes) if changes else DEFAULT_POLICY


def _parse_hhmm(value: str) -> time | None:
    try:
        hh, mm = value.split(":")
        return time(int(hh), int(mm))
    except ValueError:
        return None


def _zone(tz: str | ZoneInfo | None) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz or DEFAULT_TZ)


def local_deadline(at: datetime, hhmm: str, tz: str | ZoneInfo | None) -> datetime:
    """The next ``hhmm`` local time strictly after `at` in `tz` (same day unless `at` is already past it)."""
    zone = _zone(tz)
    local = at.astimezone(zone)
    cutoff = _parse_hhmm(hhmm) or time(23, 59)
    due = datetime.combine(local.date(), cutoff, tzinfo=zone)
    if due <= local:
        due = datetime.combine(local.date() + timedelta(days=1), cutoff, tzinfo=zone)
    return due


def same_day_deadline(at: datetime, tz: str | ZoneInfo | None, policy: SlaPolicy = DEFAULT_POLICY) -> datetime:
    """A "same day" deadline for something received at `at`: ``minor_due_local`` of the local day, except
    that from ``same_day_late_after`` (20:00) on it is ``same_day_late_due`` (noon) the next day — nobody
    repairs a dripping tap reported at 22:00 before midnight, and 23:59 would only breach overnight."""
    zone = _zone(tz)
    local = at.astimezone(zone)
    late = _parse_hhmm(policy.same_day_late_after) or time(20, 0)
    if local.time() >= late:
        noon = _parse_hhmm(policy.same_day_late_due) or time(12, 0)
        return datetime.combine(local.date() + timedelta(days=1), noon, tzinfo=zone)
    return local_deadline(at, policy.minor_due_local, tz)


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


@dataclass(frozen=True, slots=True)
class DueTimes:
    on_site: datetime | None
    resolve: datetime | None
    feedback: datetime | None
    # Urgent (急修): work goes on until fixed; the resolve time is an escalation target, not a promise.
    continuous: bool = False


def platform_due_times(
    kind: str, received_at: datetime, tz: str | ZoneInfo | None = DEFAULT_TZ, policy: SlaPolicy = DEFAULT_POLICY
) -> DueTimes:
    """Due times of a ticket the platform opened by itself, from §4's platform table row `kind`."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must carry a timezone")
    r, p = received_at, policy
    match ClockKind(kind):
        case ClockKind.critical:
            return DueTimes(
                r + _minutes(p.critical_on_site_minutes), r + _minutes(p.resolve_minutes_urgent), None, True
            )
        case ClockKind.alarm:
            return DueTimes(r + _minutes(p.alarm_on_site_minutes), same_day_deadline(r, tz, p), None)
        case ClockKind.warning:
            return DueTimes(r + _minutes(p.warning_on_site_minutes), r + _minutes(p.warning_resolve_minutes), None)
        case ClockKind.meter_vacant:
            day = same_day_deadline(r, tz, p)
            return DueTimes(day, day, None)
        case ClockKind.meter_vacant_manual:
            return DueTimes(r + _minutes(p.meter_vacant_manual_on_site_minutes), same_day_deadline(r, tz, p), None)
        case ClockKind.meter:
            return DueTimes(None, r + _minutes(p.meter_resolve_minutes), None)
    raise AssertionError(kind)  # pragma: no cover - ClockKind(kind) already refused anything else


def escalation_route(source: str, kind: str | None) -> EscalationRoute:
    """Who a breached clock goes to (§4): complaints on the customer-service line; critical alarms and
    resident repairs 工程主管 then 项目经理; other platform tickets 工程主管 only."""
    if source == Source.complaint:
        return EscalationRoute.customer_service
    if kind is None or kind == ClockKind.critical:
        return EscalationRoute.engineering
    return EscalationRoute.engineering_supervisor


def route_levels(route: EscalationRoute | str) -> dict[int, str]:
    """level → notice target of `route` (tickets.const.ESCALATION_ROUTES)."""
    return ESCALATION_ROUTES[EscalationRoute(route)]


def due_times(
    category: str,
    priority: str,
    source: str,
    received_at: datetime,
    tz: str | ZoneInfo | None = DEFAULT_TZ,
    policy: SlaPolicy = DEFAULT_POLICY,
    clock_kind: str | None = None,
) -> DueTimes:
    """Due times of a ticket received at `received_at` (aware) for an estate in timezone `tz`: the platform
    table's row when the platform opened it (`clock_kind`), else the resident table's by priority."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must carry a timezone")
    if clock_kind is not None:
        return platform_due_times(clock_kind, received_at, tz, policy)
    r, p = received_at, policy
    if source == Source.complaint:
        return DueTimes(
            on_site=None,
            resolve=r + _minutes(p.complaint_close_minutes),
            feedback=r + _minutes(p.complaint_feedback_minutes),
        )
    if priority == Priority.urgent:
        on_site = p.on_site_minutes_hot_water if category == Category.hot_water else p.on_site_minutes_urgent
        return DueTimes(r + _minutes(on_site), r + _minutes(p.resolve_minutes_urgent), None, continuous=True)
    if source == Source.patrol:
        return DueTimes(None, r + _minutes(p.patrol_resolve_minutes), None)
    on_site = p.on_site_minutes_hot_water if category == Category.hot_water else p.on_site_minutes
    if priority == Priority.minor:
        resolve = same_day_deadline(r, tz, p)
    elif priority == Priority.high:
        resolve = r + _minutes(p.resolve_minutes_high)
    else:
        resolve = r + _minutes(p.resolve_minutes_normal)
    return DueTimes(r + _minutes(on_site), resolve, None)


def callback_due(
    category: str, resolved_at: datetime, tz: str | ZoneInfo | None = DEFAULT_TZ, policy: SlaPolicy = DEFAULT_POLICY
) -> datetime:
    """When the callback (回访) is due after a repair resolved at `resolved_at`.

    Hot water (and any category in ``callback_same_day_categories``) by ``callback_due_local`` of the
    resolution's local day, as the SOP says 当日内回访; everything else ``callback_minutes`` after resolution.
    """
    if resolved_at.tzinfo is None:
        raise ValueError("resolved_at must carry a timezone")
    if category in policy.callback_same_day_categories:
        return local_deadline(resolved_at, policy.callback_due_local, tz)
    return resolved_at + _minutes(policy.callback_minutes)


# --- breaches and escalation -------------------------------------------------------------------------------------


class HasClocks(Protocol):
    """What the clock functions read of a ticket (a `storage.models.Ticket` fits)."""

    @property
    def status(self) -> str: ...
    @property
    def on_site_due_at(self) -> datetime | None: ...
    @property
    def on_site_at(self) -> datetime | None: ...
    @property
    def resolve_due_at(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def callback_due_at(self) -> datetime | None: ...
    @property
    def callback_at(self) -> datetime | None: ...
    @property
    def feedback_due_at(self) -> datetime | None: ...
    @property
    def feedback_at(self) -> datetime | None: ...


def running_clocks(t: HasClocks) -> dict[Clock, datetime]:
    """The clocks still running on `t` (the step they time has not happened yet), with their due times."""
    status = TicketStatus(t.status)
    out: dict[Clock, datetime] = {}
    if status == TicketStatus.closed:
        return out
    if t.on_site_due_at is not None and t.on_site_at is None and status in BEFORE_ON_SITE:
        out[Clock.on_site] = t.on_site_due_at
    if t.resolve_due_at is not None and t.resolved_at is None and status in BEFORE_RESOLVED:
        out[Clock.resolve] = t.resolve_due_at
    if t.callback_due_at is not None and t.callback_at is None and status == TicketStatus.resolved:
        out[Clock.callback] = t.callback_due_at
    if t.feedback_due_at is not None and t.feedback_at is None:
        out[Clock.feedback] = t.feedback_due_at
    return out


def breached_clocks(t: HasClocks, now: datetime) -> dict[Clock, datetime]:
    """Running clocks whose due time has come (a clock is breached from its due minute on)."""
    return {clock: due for clock, due in running_clocks(t).items() if now >= due}


def escalation_level(due_at: datetime, now: datetime, step_minutes: int, top: int = 2) -> int:
    """0 before `due_at`; 1 (supervisor) from `due_at`; 2 (project manager) from `due_at` + step — capped at
    `top`, the last level of the ticket's route (a warning stops at 工程主管)."""
    if now < due_at:
        return 0
    return min(top, 2 if now >= due_at + _minutes(step_minutes) else 1)


def level_due_at(due_at: datetime, level: int, step_minutes: int) -> datetime:
    """When a clock due at `due_at` reaches escalation `level` (1 or 2)."""
    return due_at if level <= 1 else due_at + _minutes(step_minutes * (level - 1))


class HasStarts(HasClocks, Protocol):
    @property
    def received_at(self) -> datetime: ...


def clock_start(t: HasStarts, clock: Clock, restarted_at: datetime | None = None) -> datetime | None:
    """When a clock's window began: the callback clock at resolution; the on-site and resolve clocks at the
    last reopen (``service.reopen`` restarts them) or else at receipt, like every other clock."""
    if clock == Clock.callback:
        return t.resolved_at
    if clock in (Clock.on_site, Clock.resolve) and restarted_at is not None:
        return restarted_at
    return t.received_at
