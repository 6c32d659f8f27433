"""Door alarms judged per ingest batch (issue 12 §4): denied-swipe streaks, forced / held-open doors, lost cards.

Usable as a `Pipeline` hook: `hook(conn, decoded, result)`, inside the batch transaction after the rows
are written. Like `alarms.meter_evaluator`, only the `access_events` rows this transaction inserted
(``xmin`` = our transaction id) count as new, so a redelivered batch raises and clears nothing.

Per batch with new events, ONE query loads, for each door that has new events: the events from the
earliest new one on, the `threshold` card swipes and the last door event of each kind just before it
(enough to know the denied run and the door's state when the new events begin: the run count saturates
at the threshold), and the door's existing alarm episodes of the access rules. Device time orders
everything; arrival order never matters.

* `access.denied_streak` (GB 50396: 5 or more consecutive denied swipes at one door; ``params.threshold``):
  an episode starts at the threshold-th denied swipe of a run and ends at the next granted swipe.
* `access.door_forced` (critical) / `access.door_held` (warning): from ``forced_open`` / ``held_open`` to
  the door's ``closed``.

An episode the walk finds is raised only if no stored episode of that (rule, door) overlaps it in device
time, so a late event inside an episode already raised (or cleared) changes nothing, while a late run
that forms a new episode in the past is recorded (already cleared, when its end is known). An open alarm
whose episode a late event ended is cleared; one a late granted swipe split below the threshold is cleared
with reason `SPLIT` and covers nothing afterwards, so late denied swipes refilling that run raise again.

* `access.lost_card` (warning, "security event"): a swipe by a UID the estate knows only as lost or
  revoked (no active card with that UID) raises per card, naming it masked; it stays open until handled.
  Late swipes older than the card's last episode mark raise nothing. Unknown cards only count toward the
  streak. One more query, only when the batch has new card swipes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, text

from alarms.const import RuleKind, Severity
from alarms.store import NewAlarm, OnRaised, clear_open, insert_alarms

log = logging.getLogger(__name__)

STREAK_RULE = "access.denied_streak"
FORCED_RULE = "access.door_forced"
HELD_RULE = "access.door_held"
LOST_CARD_RULE = "access.lost_card"
DOOR_RULES = (STREAK_RULE, FORCED_RULE, HELD_RULE)
# GB 50396-2007 §5.1: the system alarms after a set number of consecutive failed attempts; 5 is the usual default.
DEFAULT_THRESHOLD = 5
REFRESH_EVERY_S = 60.0  # rule rows are re-read this often (as alarms.meter_evaluator does)
NO_CARD = ""  # ingest.decode.NO_CARD: a door event (alarms never import ingest)
FORCED_OPEN, HELD_OPEN, CLOSED = "forced_open", "held_open", "closed"


class SwipeColumns(Protocol):
    """What the evaluator needs of a batch (ingest's DecodedBatch): (ts, controller_id, door, card, granted, …)."""

    swipes: list[tuple[datetime, int, str, str, bool, str | None, int | None, datetime]]


def door_subject(controller_id: int, door: str) -> str:
    return f"door:{controller_id}:{door}"


def card_subject(card_id: int) -> str:
    return f"card:{card_id}"


def mask_uid(uid: str) -> str:
    """Enough of the UID to find the card at the desk, not enough to clone it from the alarm list."""
    return uid[:4] + "*" * max(len(uid) - 4, 0)


# --- the episodes, as pure functions (the property tests compare them with a simple model) ---------


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    card: str  # NO_CARD for a door event
    granted: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class Episode:
    start: datetime | None  # None: began before the events walked (already judged by an earlier batch)
    end: datetime | None  # None: still going at the last event


def streak_episodes(events: Sequence[Event], threshold: int) -> list[Episode]:
    """Denied-run episodes of a door's events (sorted by ts); door events neither count nor break a run.

    The caller passes the `threshold` swipes before the new ones, so the run count is right from the
    first new event on; an episode that had already begun there is reported starting before the new
    events, which `reconcile` knows an earlier batch judged.
    """
    out: list[Episode] = []
    run = 0
    start: datetime | None = None
    for e in events:
        if e.card == NO_CARD:
            continue
        if e.granted:
            if run >= threshold:
                out.append(Episode(start, e.ts))
            run, start = 0, None
            continue
        run += 1
        if run == threshold:
            start = e.ts
    if run >= threshold:
        out.append(Episode(start, None))
    return out


def door_episodes(events: Sequence[Event], opening: str) -> list[Episode]:
    """Episodes of one door event (`forced_open` or `held_open`), each ended by the next `closed`."""
    out: list[Episode] = []
    start: datetime | None = None
    is_open = False
    for e in events:
        if e.card != NO_CARD:
            continue
        if e.reason == opening and not is_open:
            is_open, start = True, e.ts
        elif e.reason == CLOSED and is_open:
            out.append(Episode(start, e.ts))
            is_open, start = False, None
    if is_open:
        out.append(Episode(start, None))
    return out


# Clear reason of an episode a late granted swipe showed was never a streak (it covers no later one).
SPLIT = "late_event_split"


@dataclass(frozen=True, slots=True)
class Stored:
    raised_at: datetime
    cleared_at: datetime | None
    split: bool = False

    def overlaps(self, ep: Episode) -> bool:
        lo = ep.start
        hi = ep.end
        return (hi is None or self.raised_at <= hi) and (lo is None or self.cleared_at is None or self.cleared_at >= lo)


def reconcile(
    episodes: Sequence[Episode], stored: Sequence[Stored], first_new: datetime
) -> tuple[list[Episode], datetime | None, bool]:
    """(episodes to record, when to clear the open alarm or None, whether that clear is a `SPLIT`) for
    one (rule, door).

    An episode is recorded when the walk saw it begin among the new events and no stored episode
    overlaps it. The open alarm is cleared at the end of the episode that covers it, or at its own
    raise time when no episode of the walk covers it and none is going (a late granted swipe split
    the run below the threshold: the episode it raised ended there).
    """
    open_ = next((s for s in stored if s.cleared_at is None), None)
    new: list[Episode] = []
    clear_at: datetime | None = None
    covered = False
    for ep in episodes:
        if open_ is not None and not covered and open_.overlaps(ep):
            covered = True
            if ep.end is not None:
                clear_at = max(ep.end, open_.raised_at)
            continue
        if ep.start is not None and ep.start >= first_new and not any(s.overlaps(ep) for s in stored if not s.split):
            new.append(ep)
    going = bool(episodes) and episodes[-1].end is None
    split = open_ is not None and not covered and not going
    if split and open_ is not None:
        clear_at = open_.raised_at
    if open_ is not None and clear_at is None:
        new = [ep for ep in new if ep.end is not None]  # one open per (rule, door): the stored one stands
    return new, clear_at, split


# --- rule rows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRule:
    id: int
    code: str
    severity: str
    threshold: int
    enabled: bool


def load_access_rules(conn: Connection) -> dict[str, AccessRule]:
    """The access rule rows by code; one whose params do not parse is logged and left out (a bad edit must
    not stop ingestion: the batch hook runs inside the batch transaction)."""
    out = {}
    for rid, code, params, enabled in conn.execute(
        text("SELECT id, code, params, enabled FROM alarm_rules WHERE kind = :k"), {"k": str(RuleKind.access)}
    ):
        params = params or {}
        try:
            severity = Severity(params.get("severity", Severity.warning))
            threshold = int(params.get("threshold", DEFAULT_THRESHOLD))
            if threshold < 1:
                raise ValueError("threshold must be at least 1")
        except (TypeError, ValueError) as exc:
            log.error("access rule %s has bad params, skipped: %s", code, exc)
            continue
        out[code] = AccessRule(rid, code, str(severity), threshold, bool(enabled))
    return out


# --- the hook --------------------------------------------------------------------------------------

_BATCH_SQL = text(
    """
    WITH k AS (
      SELECT DISTINCT c, t, u
      FROM unnest(CAST(:c AS int[]), CAST(:t AS timestamptz[]), CAST(:u AS text[])) AS k(c, t, u)
    ), new AS (
      SELECT e.controller_id, e.door, min(e.ts) AS first_new
      FROM access_events e JOIN k ON e.controller_id = k.c AND e.ts = k.t AND e.card_uid = k.u
      WHERE e.xmin = pg_current_xact_id()::xid
      GROUP BY e.controller_id, e.door
    )
    SELECT n.controller_id, n.door, n.first_new, dv.estate_id, dv.room_id,
           w.ts, w.card, w.granted, w.reason, a.rules, a.raised, a.cleared, a.reasons
    FROM new n
    JOIN devices dv ON dv.id = n.controller_id
    CROSS JOIN LATERAL (
      SELECT array_agg(s.ts ORDER BY s.ts, s.card_uid) AS ts, array_agg(s.card_uid ORDER BY s.ts, s.card_uid) AS card,
             array_agg(s.granted ORDER BY s.ts, s.card_uid) AS granted,
             array_agg(coalesce(s.reason, '') ORDER BY s.ts, s.card_uid) AS reason
      FROM (
        SELECT e.ts, e.card_uid, e.granted, e.reason FROM access_events e
        WHERE e.controller_id = n.controller_id AND e.door = n.door AND e.ts >= n.first_new
        UNION ALL
        (SELECT e.ts, e.card_uid, e.granted, e.reason FROM access_events e
         WHERE e.controller_id = n.controller_id AND e.door = n.door AND e.ts < n.first_new AND e.card_uid <> ''
         ORDER BY e.ts DESC LIMIT :lim)
        UNION ALL
        (SELECT DISTINCT ON (e.reason) e.ts, e.card_uid, e.granted, e.reason FROM access_events e
         WHERE e.controller_id = n.controller_id AND e.door = n.door AND e.ts < n.first_new AND e.card_uid = ''
         ORDER BY e.reason, e.ts DESC)
      ) s
    ) w
    LEFT JOIN LATERAL (
      SELECT array_agg(al.rule_id) AS rules, array_agg(al.raised_at) AS raised, array_agg(al.cleared_at) AS cleared,
             array_agg(coalesce(al.clear_reason, '')) AS reasons
      FROM alarms al
      WHERE al.subject = 'door:' || n.controller_id || ':' || n.door AND al.rule_id = ANY(CAST(:rules AS int[]))
    ) a ON true
    """
)

# Cards of the swiping controllers' estates known only as lost or revoked (no active card with the UID),
# with the mark (last raise or clear) of their security-event episode.
_LOST_SQL = text(
    """
    WITH s AS (
      SELECT DISTINCT e.card_uid, dv.estate_id
      FROM unnest(CAST(:c AS int[]), CAST(:t AS timestamptz[]), CAST(:u AS text[])) AS k(c, t, u)
      JOIN access_events e ON e.controller_id = k.c AND e.ts = k.t AND e.card_uid = k.u
      JOIN devices dv ON dv.id = e.controller_id
      WHERE e.xmin = pg_current_xact_id()::xid
    )
    SELECT DISTINCT ON (c.estate_id, c.uid) c.id, c.estate_id, c.uid, c.unit_id, c.status, m.mark, m.open
    FROM s JOIN access_cards c ON c.uid = s.card_uid AND c.estate_id = s.estate_id AND c.status IN ('lost', 'revoked')
    LEFT JOIN LATERAL (
      SELECT max(greatest(al.raised_at, al.cleared_at)) AS mark, bool_or(al.state <> 'cleared') AS open
      FROM alarms al WHERE al.rule_id = :rule AND al.subject = 'card:' || c.id
    ) m ON true
    WHERE NOT EXISTS (SELECT 1 FROM access_cards a
                      WHERE a.uid = c.uid AND a.estate_id = c.estate_id AND a.status = 'active')
    ORDER BY c.estate_id, c.uid, c.id DESC
    """
)


class AccessEvaluator:
    """Pipeline hook: swipes and door events → access alarms (raise once per episode, clear when it ends)."""

    def __init__(self, on_raised: OnRaised | None = None, *, refresh_every_s: float = REFRESH_EVERY_S) -> None:
        self.on_raised = on_raised
        self.refresh_every_s = refresh_every_s
        self._rules: dict[str, AccessRule] = {}
        self._loaded_at = float("-inf")

    def rules(self, conn: Connection) -> dict[str, AccessRule]:
        """The enabled access rules, cached: a batch with swipes then costs the one streak query (plus the
        lost-card one); an operator's change (threshold, severity, enabled) applies within `refresh_every_s`."""
        if time.monotonic() - self._loaded_at > self.refresh_every_s:
            self._rules = {c: r for c, r in load_access_rules(conn).items() if r.enabled}
            self._loaded_at = time.monotonic()
        return self._rules

    def __call__(self, conn: Connection, decoded: SwipeColumns, result: object = None) -> list[int]:
        """Evaluate the batch's access events; returns the ids of alarms raised."""
        if not decoded.swipes:
            return []
        rules = self.rules(conn)
        if not rules:
            return []
        keys: dict[str, list[Any]] = {
            "c": [s[1] for s in decoded.swipes],
            "t": [s[0] for s in decoded.swipes],
            "u": [s[3] for s in decoded.swipes],
        }
        raises: list[NewAlarm] = []
        door_rules = [rules[c] for c in DOOR_RULES if c in rules]
        if door_rules:
            raises += self._doors(conn, keys, door_rules)
        lost = rules.get(LOST_CARD_RULE)
        if lost is not None and any(s[3] != NO_CARD for s in decoded.swipes):
            raises += self._lost_cards(conn, keys, lost, decoded)
        return insert_alarms(conn, raises, self.on_raised) if raises else []

    def _doors(self, conn: Connection, keys: dict[str, list[Any]], rules: list[AccessRule]) -> list[NewAlarm]:
        streak = next((r for r in rules if r.code == STREAK_RULE), None)
        lim = streak.threshold if streak is not None else 0
        rows = conn.execute(_BATCH_SQL, {**keys, "lim": lim, "rules": [r.id for r in rules]}).all()
        raises: list[NewAlarm] = []
        clears: dict[tuple[int, datetime, bool], list[str]] = {}
        for row in rows:
            events = [
                Event(ts, card, granted, reason or None)
                for ts, card, granted, reason in zip(row.ts, row.card, row.granted, row.reason, strict=True)
            ]
            subject = door_subject(row.controller_id, row.door)
            stored: dict[int, list[Stored]] = {}
            for rule_id, raised, cleared, reason in zip(
                row.rules or (), row.raised or (), row.cleared or (), row.reasons or (), strict=True
            ):
                stored.setdefault(rule_id, []).append(Stored(raised, cleared, reason == SPLIT))
            for rule in rules:
                if rule.code == STREAK_RULE:
                    episodes = streak_episodes(events, rule.threshold)
                else:
                    episodes = door_episodes(events, FORCED_OPEN if rule.code == FORCED_RULE else HELD_OPEN)
                new, clear_at, split = reconcile(episodes, stored.get(rule.id, []), row.first_new)
                if clear_at is not None:
                    clears.setdefault((rule.id, clear_at, split), []).append(subject)
                for ep in new:
                    assert ep.start is not None
                    raises.append(
                        NewAlarm(
                            rule_id=rule.id,
                            subject=subject,
                            estate_id=row.estate_id,
                            severity=rule.severity,
                            raised_at=ep.start,
                            cleared_at=ep.end,
                            device_id=row.controller_id,
                            room_id=row.room_id,
                            detail={"rule": rule.code, "door": row.door},
                        )
                    )
        for (rule_id, at, split), subjects in sorted(clears.items()):
            clear_open(conn, rule_id, subjects, at, SPLIT if split else "condition_ended")
        return raises

    def _lost_cards(
        self, conn: Connection, keys: dict[str, list[Any]], rule: AccessRule, decoded: SwipeColumns
    ) -> list[NewAlarm]:
        rows = conn.execute(_LOST_SQL, {**keys, "rule": rule.id}).all()
        if not rows:
            return []
        first: dict[str, tuple[datetime, int, str]] = {}  # uid → earliest swipe of this batch (ts, controller, door)
        for ts, controller, door, card, *_ in decoded.swipes:
            if card and (card not in first or ts < first[card][0]):
                first[card] = (ts, controller, door)
        raises = []
        for row in rows:
            ts, controller, door = first[row.uid]
            if row.open or (row.mark is not None and ts <= row.mark):
                continue
            raises.append(
                NewAlarm(
                    rule_id=rule.id,
                    subject=card_subject(row.id),
                    estate_id=row.estate_id,
                    severity=rule.severity,
                    raised_at=ts,
                    device_id=controller,
                    unit_id=row.unit_id,
                    detail={"rule": rule.code, "card": mask_uid(row.uid), "card_status": row.status, "door": door},
                )
            )
        return raises


__all__ = [
    "DEFAULT_THRESHOLD",
    "DOOR_RULES",
    "FORCED_RULE",
    "HELD_RULE",
    "LOST_CARD_RULE",
    "STREAK_RULE",
    "AccessEvaluator",
    "Episode",
    "Event",
    "Stored",
    "card_subject",
    "door_episodes",
    "door_subject",
    "mask_uid",
    "reconcile",
    "streak_episodes",
]
