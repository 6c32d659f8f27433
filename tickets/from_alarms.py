"""Open repair tickets for alarms as they are raised, inside the ingest batch transaction (DESIGN.md §5).

`open_for_alarms` is the `alarms.store.insert_alarms` ``on_raised`` hook. It sits on the ingest
path (p99 ≤ 250 ms), so it is set-based: whatever the number of alarms, at most six statements —
read the facts, find open tickets, allocate numbers, insert tickets, attach alarms + write events,
queue valve commands — and the last four only when there is something to write.

Ticket policy of an alarm: ``alarm_rules.ticket_policy`` with the rule's overrides merged over it,
estate, then room (the alarm's room, else its device's), then device — the most specific wins key by
key. Keys: ``min_severity`` (warning|alarm|critical|never; default "alarm", so warnings open no
ticket), ``category`` (default: from the rule's room/device kind, else "other"), ``priority`` (a
severity → priority mapping merged over warning→minor, alarm→high, critical→urgent, or one priority
for every severity).

At most one open ticket per alarm episode: ``source_key = alarm:<rule id>:<subject>``. A repeat
alarm on the same rule and subject while its ticket is open attaches to it ('alarm_attached' event);
an alarm below ``min_severity`` attaches too when a ticket is open, and otherwise opens nothing.
Two ingest transactions racing on one key both reach ``INSERT … ON CONFLICT DO NOTHING`` on the
partial unique index; the loser finds the winner's ticket and attaches to it.

`received_at` of an alarm ticket is ``clock.now()``, not the alarm's ``raised_at``: a late batch
(a gateway catching up) must not open a ticket whose on-site clock is already breached; the raise
time stays on the alarm and in the ticket description.

Clocks (domain-defaults §4, platform table): an alarm ticket takes the row of what was found — critical,
alarm or warning by severity, a meter anomaly by its kind (`clock_kind_for`) — not the resident's
20-minute clock; the row also picks the escalation route. When a worse alarm raises the ticket's
priority, the clocks are re-derived for the new row from that moment (a warning ticket whose sensor
turns critical three hours in gets 20 minutes from now, not a breach three hours old) and a clock
never moves later than it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from core import clock, glossary
from protocol.payloads import valve_command
from protocol.topics import downlink
from storage.notify import TICKETS_CHANNEL
from tickets import sla
from tickets.const import PRIORITY_RANK, SYSTEM_ACTOR, Category, ClockKind, Priority, Source
from tickets.service import allocate_numbers, local_day, local_minute

SEVERITY_RANK = {"warning": 1, "alarm": 2, "critical": 3, "never": 99}
DEFAULT_PRIORITY = {"warning": Priority.minor.value, "alarm": Priority.high.value, "critical": Priority.urgent.value}
ROOM_CATEGORY = {
    "power_room": Category.electrical,
    "heat_station": Category.heating,
    "pump_room": Category.water,
    "fire_pump_room": Category.fire,
    "hot_water_plant": Category.hot_water,
}
# Device-kind fragments, checked in order (a hot_water_meter is hot water before it is a meter).
DEVICE_CATEGORY = (
    ("hot_water", Category.hot_water),
    ("fire", Category.fire),
    ("smoke", Category.fire),
    ("lift", Category.lift),
    ("elevator", Category.lift),
    ("door", Category.access),
    ("access", Category.access),
    ("heat", Category.heating),
    ("water", Category.water),
    ("pump", Category.water),
    ("transformer", Category.electrical),
    ("electric", Category.electrical),
    ("power", Category.electrical),
    ("meter", Category.meter),
)
VALVE_COMMAND_TTL = timedelta(hours=1)  # a close command older than this is stale: the dispatcher drops it

_FACTS = text(
    """
    SELECT a.id, a.rule_id, a.subject, a.severity, a.estate_id, a.raised_at, a.point_id, a.ticket_id,
           coalesce(a.unit_id, d.unit_id) AS unit_id, coalesce(a.room_id, d.room_id) AS room_id, d.id AS device_id,
           e.code AS estate_code, e.timezone, e.policy AS estate_policy,
           d.code AS device_code, d.name AS device_name, d.kind AS device_kind,
           coalesce(d.has_valve, false) AS has_valve,
           r.code AS rule_code, r.title_zh, r.title_en, r.params, r.ticket_policy, r.device_kind AS rule_device_kind,
           r.room_kind AS rule_room_kind, rm.kind AS room_kind,
           oe.ticket_policy AS p_estate, orm.ticket_policy AS p_room, od.ticket_policy AS p_device
    FROM alarms a
    JOIN alarm_rules r ON r.id = a.rule_id
    JOIN estates e ON e.id = a.estate_id
    LEFT JOIN points p ON p.id = a.point_id
    LEFT JOIN devices d ON d.id = coalesce(a.device_id, p.device_id)
    LEFT JOIN rooms rm ON rm.id = coalesce(a.room_id, d.room_id)
    LEFT JOIN alarm_rule_overrides oe ON oe.rule_id = a.rule_id AND oe.scope = 'estate' AND oe.scope_id = a.estate_id
    LEFT JOIN alarm_rule_overrides orm
           ON orm.rule_id = a.rule_id AND orm.scope = 'room' AND orm.scope_id = coalesce(a.room_id, d.room_id)
    LEFT JOIN alarm_rule_overrides od ON od.rule_id = a.rule_id AND od.scope = 'device' AND od.scope_id = d.id
    WHERE a.id = ANY(CAST(:ids AS bigint[]))
    ORDER BY a.id
    """
)

_NOTIFY = text(f"SELECT pg_notify('{TICKETS_CHANNEL}', :payload)")

_OPEN = text(
    "SELECT source_key, id, number FROM tickets "
    "WHERE source_key = ANY(CAST(:keys AS text[])) AND status <> 'closed' AND source_key IS NOT NULL"
)

_INSERT = text(
    """
    INSERT INTO tickets (number, estate_id, source, source_key, category, priority, status, title, description,
                         unit_id, room_id, device_id, received_by, received_at, on_site_due_at, resolve_due_at,
                         clock_kind, updated_at)
    SELECT n, e, 'alarm', k, c, p, 'received', ti, de, u, rm, d, :by, :now, os, rs, ck, :now
    FROM unnest(CAST(:n AS text[]), CAST(:e AS int[]), CAST(:k AS text[]), CAST(:c AS text[]), CAST(:p AS text[]),
                CAST(:ti AS text[]), CAST(:de AS text[]), CAST(:u AS int[]), CAST(:rm AS int[]), CAST(:d AS int[]),
                CAST(:os AS timestamptz[]), CAST(:rs AS timestamptz[]), CAST(:ck AS text[]))
         AS v(n, e, k, c, p, ti, de, u, rm, d, os, rs, ck)
    ON CONFLICT (source_key) WHERE status <> 'closed' AND source_key IS NOT NULL DO NOTHING
    RETURNING source_key, id, number
    """
)

# One statement: link the alarms to their tickets and write the timeline rows.
_ATTACH = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:a AS bigint[]), CAST(:t AS bigint[]), CAST(:act AS text[]), CAST(:det AS text[]))
                 AS v(a, t, act, det)
    ), linked AS (
        UPDATE alarms SET ticket_id = v.t FROM v WHERE alarms.id = v.a RETURNING alarms.id
    )
    INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, detail)
    SELECT v.t, :now, :by, v.act, CASE WHEN v.act = 'opened' THEN NULL ELSE tk.status END, tk.status,
           CAST(v.det AS jsonb)
    FROM v JOIN tickets tk ON tk.id = v.t
    ORDER BY v.a
    """
)

_OUTBOX = text(
    """
    INSERT INTO outbox (device_id, topic, payload, created_at, expires_at, attempts)
    SELECT dev, tp, CAST(pl AS jsonb), :now, :exp, 0
    FROM unnest(CAST(:dev AS integer[]), CAST(:tp AS text[]), CAST(:pl AS text[])) AS v(dev, tp, pl)
    """
)


def merge_policy(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ticket policies, later layers winning key by key (the priority mapping merges one level deeper)."""
    out: dict[str, Any] = {"priority": dict(DEFAULT_PRIORITY)}
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        for key, value in layer.items():
            if key == "priority":
                if isinstance(value, str):
                    out["priority"] = dict.fromkeys(DEFAULT_PRIORITY, value)
                elif isinstance(value, Mapping):
                    out["priority"] = {**out["priority"], **value}
            else:
                out[key] = value
    return out


def category_for(policy: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    """The policy's category, else one from the rule's or the alarm's room / device kind, else "other"."""
    wanted = policy.get("category")
    if isinstance(wanted, str) and wanted in Category.__members__:
        return wanted
    for room_kind in (facts.get("rule_room_kind"), facts.get("room_kind")):
        if room_kind in ROOM_CATEGORY:
            return ROOM_CATEGORY[room_kind].value
    for kind in (facts.get("rule_device_kind"), facts.get("device_kind")):
        for fragment, category in DEVICE_CATEGORY:
            if kind and fragment in kind:
                return category.value
    return Category.other.value


def priority_for(policy: Mapping[str, Any], severity: str) -> str:
    value = policy["priority"].get(severity, DEFAULT_PRIORITY.get(severity, Priority.normal.value))
    return value if value in Priority.__members__ else DEFAULT_PRIORITY.get(severity, Priority.normal.value)


def opens_ticket(policy: Mapping[str, Any], severity: str) -> bool:
    minimum = policy.get("min_severity", "alarm")
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, SEVERITY_RANK["alarm"])


def clock_kind_for(severity: str, facts: Mapping[str, Any]) -> ClockKind:
    """The row of §4's platform table an alarm's ticket takes: critical above all; a meter anomaly by its
    kind (water in a vacant unit by whether the valve can be closed remotely); else by severity."""
    if severity == "critical":
        return ClockKind.critical
    anomaly = (facts.get("params") or {}).get("anomaly")
    if anomaly == "vacant_flow":
        return ClockKind.meter_vacant if facts.get("has_valve") else ClockKind.meter_vacant_manual
    if anomaly:
        return ClockKind.meter
    return ClockKind.alarm if severity == "alarm" else ClockKind.warning


@dataclass(frozen=True, slots=True)
class _Plan:
    alarm_id: int
    source_key: str
    opens: bool
    severity: str
    facts: Mapping[str, Any]
    category: str
    priority: str
    clock_kind: ClockKind


def source_key(policy: Mapping[str, Any], facts: Mapping[str, Any]) -> str:
    """One open ticket per alarm episode: per (rule, subject), or per (group, device) when the policy
    names a `group` — the three winding phases of one transformer overheating are one job, not three."""
    group = policy.get("group")
    if isinstance(group, str) and group and facts.get("device_id") is not None:
        return f"alarm:{group}:device:{facts['device_id']}"
    return f"alarm:{facts['rule_id']}:{facts['subject']}"


def _plan(facts: Mapping[str, Any]) -> _Plan:
    policy = merge_policy(facts["ticket_policy"], facts["p_estate"], facts["p_room"], facts["p_device"])
    severity = facts["severity"]
    return _Plan(
        alarm_id=int(facts["id"]),
        source_key=source_key(policy, facts),
        opens=opens_ticket(policy, severity),
        severity=severity,
        facts=facts,
        category=category_for(policy, facts),
        priority=priority_for(policy, severity),
        clock_kind=clock_kind_for(severity, facts),
    )


def _title(f: Mapping[str, Any]) -> str:
    what = f["title_zh"] or f["title_en"] or f["rule_code"]
    where = f["device_name"] or f["device_code"] or f["subject"]
    return f"{what} — {where}"[:200]


def _description(f: Mapping[str, Any]) -> str:
    """The rule's title and the raise time in the estate's local time, Chinese first (never a rule code or a
    UTC timestamp: the staff read this on the board)."""
    zh_sev, en_sev = glossary.SEVERITY.get(f["severity"], (f["severity"], f["severity"]))
    when = local_minute(f["raised_at"], f["timezone"])
    what_zh = f["title_zh"] or f["title_en"] or ""
    what_en = f["title_en"] or f["title_zh"] or ""
    return (
        f"{glossary.ALARM[0]}：{what_zh}；级别：{zh_sev}；发生时间：{when}（{glossary.ALARM[0]} #{f['id']}）\n"
        f"{glossary.ALARM[1]}: {what_en}; severity: {en_sev}; raised {when} (alarm #{f['id']})"
    )


# Which platform row wins when a ticket's priority rises: the route only ever widens (warning → critical).
KIND_RANK = {ClockKind.critical: 2, ClockKind.alarm: 1}

_TICKETS_TO_RAISE = text(
    """
    SELECT tk.id, tk.priority, tk.status, tk.category, tk.source, tk.received_at, tk.on_site_due_at,
           tk.resolve_due_at, tk.clock_kind, e.timezone, e.policy AS estate_policy
    FROM tickets tk JOIN estates e ON e.id = tk.estate_id
    WHERE tk.id = ANY(CAST(:ids AS bigint[])) AND tk.status NOT IN ('resolved', 'callback_done', 'closed')
    ORDER BY tk.id
    FOR UPDATE OF tk
    """
)
_RAISE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:t AS bigint[]), CAST(:p AS text[]), CAST(:on_site AS timestamptz[]),
                             CAST(:resolve AS timestamptz[]), CAST(:ck AS text[]), CAST(:det AS text[]))
                 AS v(t, p, on_site, resolve, ck, det)
    ), up AS (
        UPDATE tickets tk SET priority = v.p, on_site_due_at = v.on_site, resolve_due_at = v.resolve,
                              clock_kind = v.ck, updated_at = :now
        FROM v WHERE tk.id = v.t RETURNING tk.id, tk.status
    )
    INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, detail)
    SELECT up.id, :now, :by, 'priority_raised', up.status, up.status, CAST(v.det AS jsonb)
    FROM up JOIN v ON v.t = up.id ORDER BY up.id
    """
)


def _raise_priorities(conn: Connection, links: Sequence[tuple[int, _Plan]], now: datetime) -> None:
    """Raise each unfinished ticket to the priority its worst linked alarm calls for, re-deriving its clocks
    for the new platform row from `now`; SLA clocks only shorten."""
    want: dict[int, _Plan] = {}
    for ticket_id, plan in links:
        best = want.get(ticket_id)
        if best is None or PRIORITY_RANK[plan.priority] > PRIORITY_RANK[best.priority]:
            want[ticket_id] = plan
    if not want:
        return
    rows = conn.execute(_TICKETS_TO_RAISE, {"ids": sorted(want)}).mappings().all()
    t, p, on_site, resolve, ck, det = [], [], [], [], [], []
    for row in rows:
        plan = want[row["id"]]
        if PRIORITY_RANK[plan.priority] <= PRIORITY_RANK[row["priority"]]:
            continue
        kind = plan.clock_kind
        current = row["clock_kind"]
        if current is not None and KIND_RANK.get(ClockKind(current), 0) >= KIND_RANK.get(kind, 0):
            kind = ClockKind(current)
        # From now, not from receipt: the new row's window starts when what was found got worse.
        dues = sla.due_times(
            row["category"],
            plan.priority,
            row["source"],
            now,
            row["timezone"],
            sla.policy_from(row["estate_policy"]),
            kind,
        )
        t.append(row["id"])
        p.append(plan.priority)
        on_site.append(_earliest(row["on_site_due_at"], dues.on_site))
        resolve.append(_earliest(row["resolve_due_at"], dues.resolve))
        ck.append(kind.value)
        det.append(
            json.dumps(
                {
                    "from": row["priority"],
                    "to": plan.priority,
                    "alarm_id": plan.alarm_id,
                    "severity": plan.severity,
                    "clock_kind": kind.value,
                },
                ensure_ascii=False,
            )
        )
    if t:
        conn.execute(
            _RAISE,
            {
                "t": t,
                "p": p,
                "on_site": on_site,
                "resolve": resolve,
                "ck": ck,
                "det": det,
                "now": now,
                "by": SYSTEM_ACTOR,
            },
        )


def _earliest(current: datetime | None, new: datetime | None) -> datetime | None:
    if current is None or new is None:
        return current if new is None else new
    return min(current, new)


def _create(conn: Connection, plans: Sequence[_Plan], now: datetime) -> dict[str, tuple[int, str]]:
    """Insert one ticket per plan (distinct keys); returns key → (id, number) of those inserted."""
    numbers = allocate_numbers(conn, [local_day(now, p.facts["timezone"]) for p in plans])
    dues = []
    for p in plans:
        policy = sla.policy_from(p.facts["estate_policy"])
        dues.append(sla.due_times(p.category, p.priority, Source.alarm, now, p.facts["timezone"], policy, p.clock_kind))
    rows = conn.execute(
        _INSERT,
        {
            "by": SYSTEM_ACTOR,
            "now": now,
            "n": numbers,
            "e": [p.facts["estate_id"] for p in plans],
            "k": [p.source_key for p in plans],
            "c": [p.category for p in plans],
            "p": [p.priority for p in plans],
            "ti": [_title(p.facts) for p in plans],
            "de": [_description(p.facts) for p in plans],
            "u": [p.facts["unit_id"] for p in plans],
            "rm": [p.facts["room_id"] for p in plans],
            "d": [p.facts["device_id"] for p in plans],
            "os": [d.on_site for d in dues],
            "rs": [d.resolve for d in dues],
            "ck": [p.clock_kind.value for p in plans],
        },
    ).all()
    return {str(k): (int(i), str(n)) for k, i, n in rows}


def _valve_commands(
    plans: Sequence[_Plan], tickets: Mapping[str, tuple[int, str]], now: datetime
) -> list[tuple[str, str, int]]:
    """Close the valve of a meter flowing in a vacant unit (domain-defaults §3: prevent flooding)."""
    out = []
    for p in plans:
        f = p.facts
        params = f["params"] or {}
        if params.get("anomaly") != "vacant_flow" or not f["has_valve"] or not f["device_code"]:
            continue
        ticket = tickets.get(p.source_key)
        payload = valve_command(
            command_id=str(uuid.uuid4()),  # provisional: the dispatcher sends the outbox row id
            issued_at=now,
            expires_at=now + VALVE_COMMAND_TTL,
            action="close",
            reason="vacant_flow",
            ticket=ticket[1] if ticket else None,
        )
        topic = downlink(f["estate_code"], f["device_code"], "valve")
        out.append((topic, json.dumps(payload, ensure_ascii=False), int(f["device_id"])))
    return out


def open_for_alarms(conn: Connection, alarm_ids: list[int]) -> list[int]:
    """Open or attach tickets for just-raised alarms (inside the caller's transaction); returns the ticket ids."""
    if not alarm_ids:
        return []
    facts = [dict(row) for row in conn.execute(_FACTS, {"ids": list(alarm_ids)}).mappings()]
    now = clock.now()
    # An alarm that already has its ticket came back because it escalated (alarm → critical): its
    # ticket may need a higher priority, nothing else.
    linked = [_plan(f) for f in facts if f["ticket_id"] is not None]
    _raise_priorities(conn, [(int(p.facts["ticket_id"]), p) for p in linked], now)
    plans = [_plan(f) for f in facts if f["ticket_id"] is None]
    if not plans:
        return list(dict.fromkeys(int(p.facts["ticket_id"]) for p in linked))
    keys = sorted({p.source_key for p in plans})
    tickets: dict[str, tuple[int, str]] = {str(k): (int(i), str(n)) for k, i, n in conn.execute(_OPEN, {"keys": keys})}
    new: dict[str, _Plan] = {}
    for p in plans:  # the first alarm of a key in this batch opens its ticket
        if p.opens and p.source_key not in tickets and p.source_key not in new:
            new[p.source_key] = p
    created: dict[str, tuple[int, str]] = {}
    if new:
        created = _create(conn, list(new.values()), now)
        tickets.update(created)
        lost = [k for k in new if k not in created]
        if lost:  # a concurrent batch opened these keys first and has committed: attach to its tickets
            tickets.update({str(k): (int(i), str(n)) for k, i, n in conn.execute(_OPEN, {"keys": lost})})
    a, t, act, det = [], [], [], []
    for p in plans:
        ticket = tickets.get(p.source_key)
        if ticket is None:
            continue
        opener = p.source_key in created and new[p.source_key].alarm_id == p.alarm_id
        a.append(p.alarm_id)
        t.append(ticket[0])
        act.append("opened" if opener else "alarm_attached")
        detail: dict[str, Any] = {"alarm_id": p.alarm_id, "severity": p.severity, "rule": p.facts["rule_code"]}
        if opener:
            detail.update(number=ticket[1], source_key=p.source_key)
        det.append(json.dumps(detail, ensure_ascii=False))
    if a:
        conn.execute(_ATTACH, {"a": a, "t": t, "act": act, "det": det, "now": now, "by": SYSTEM_ACTOR})
        # A worse alarm attaching to an open ticket (a critical phase joining a high-priority
        # transformer ticket) raises the ticket's priority.
        by_alarm = {p.alarm_id: p for p in plans}
        _raise_priorities(conn, [(tid, by_alarm[aid]) for aid, tid in zip(a, t, strict=True)], now)
    commands = _valve_commands(plans, tickets, now)
    if commands:
        conn.execute(
            _OUTBOX,
            {
                "dev": [c[2] for c in commands],
                "tp": [c[0] for c in commands],
                "pl": [c[1] for c in commands],
                "now": now,
                "exp": now + VALVE_COMMAND_TTL,
            },
        )
    if created:
        # Delivered when (and only if) the transaction commits: the live ticket board and
        # bench/alarms.py hear of a new ticket the moment it exists.
        conn.execute(
            _NOTIFY,
            {"payload": json.dumps({"opened": [{"id": i, "number": n, "key": k} for k, (i, n) in created.items()]})},
        )
    return list(dict.fromkeys(t))


__all__ = [
    "TICKETS_CHANNEL",
    "category_for",
    "clock_kind_for",
    "merge_policy",
    "open_for_alarms",
    "opens_ticket",
    "priority_for",
    "source_key",
]
