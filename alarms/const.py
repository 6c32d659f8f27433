"""Alarm vocabulary (severities, states, rule kinds) and the tunables the rule kinds share."""

from __future__ import annotations

from enum import StrEnum

from core import glossary


class Severity(StrEnum):
    warning = "warning"  # 预警
    alarm = "alarm"  # 报警
    critical = "critical"  # 紧急

    @property
    def rank(self) -> int:
        """Return the order used for escalation (warning < alarm < critical)."""
        return SEVERITY_RANK[self]


# Explicit ranks rather than declaration order, so reordering the enum can never silently
# turn an escalation into a de-escalation.
SEVERITY_RANK = {Severity.warning: 1, Severity.alarm: 2, Severity.critical: 3}

SEVERITY_LABELS = {s: glossary.SEVERITY[s] for s in Severity}


class AlarmState(StrEnum):
    active = "active"  # 未确认: raised, nobody has acknowledged it yet
    acknowledged = "acknowledged"  # 已确认: someone owns it, the condition may still hold
    cleared = "cleared"  # 已恢复 (the condition ended) or 手动解除 (cleared by hand): the episode is closed


ALARM_STATE_LABELS = {s: glossary.ALARM_STATE[s] for s in AlarmState}


def alarm_state_label(state: str, clear_reason: str | None = None) -> tuple[str, str]:
    """(中文, English) of an alarm's state; a cleared alarm by how it ended: 已恢复, or 手动解除 by hand."""
    if state == AlarmState.cleared and clear_reason is not None and clear_reason in glossary.CLEARED_BY:
        return glossary.CLEARED_BY[clear_reason]
    return glossary.ALARM_STATE.get(state, (state, state))


class RuleKind(StrEnum):
    threshold = "threshold"
    repeat = "repeat"
    rate_of_change = "rate_of_change"
    stale = "stale"
    composite = "composite"
    meter = "meter"  # a meter anomaly of domain-defaults §3 (alarms/meter_evaluator.py, alarms/meter_jobs.py)
    round = "round"  # a missed inspection round (alarms/rounds.py)
    command = "command"  # a device command never acknowledged (alarms/commands.py, raised by worker/outbox.py)
    access = "access"  # denied-swipe streak, forced / held-open door, lost card (alarms/access_evaluator.py)


class Direction(StrEnum):
    above = "above"  # condition while value > level (over-temperature, overload)
    below = "below"  # condition while value < level (low pressure, low ΔT, under-voltage)


class Trend(StrEnum):
    rise = "rise"
    fall = "fall"
    either = "either"


class Combine(StrEnum):
    any_of = "any_of"
    all_of = "all_of"


# A point is stale when no reading arrived within STALE_FACTOR × its expected interval
# (domain-defaults §2). One missed report is already news, but the extra half interval absorbs
# device clock jitter, gateways that batch uplinks and broker redelivery after a reconnect, so a
# reading that is merely a little late does not raise an alarm that clears a minute later.
STALE_FACTOR = 1.5

# Upper bound on the (ts, value) samples a rate-of-change state keeps for its window. The state
# lives in a jsonb column rewritten on every reading, so it must stay small: 512 samples covers a
# 1-hour window at one reading every 7 s. With denser data the oldest samples drop out first,
# which can only shorten the effective window (miss a slow change), never invent a change.
RATE_MAX_SAMPLES = 512
