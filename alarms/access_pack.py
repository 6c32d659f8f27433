"""Default access alarm rules (issue 12 §4), judged by `alarms.access_evaluator` in the ingest batch.

Rows have ``kind='access'`` and ``metric='access_event'``; ``params.severity`` sets the alarm's level and
``params.threshold`` the denied-streak length (GB 50396-2007: alarm after a set number of consecutive
failed attempts; 5 by default). Titles are the alarm list's, Chinese first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from alarms.access_evaluator import DEFAULT_THRESHOLD, FORCED_RULE, HELD_RULE, LOST_CARD_RULE, STREAK_RULE
from alarms.const import RuleKind, Severity
from alarms.packs import RuleSpec, ensure_default_rules

ACCESS_METRIC = "access_event"


def _policy(min_severity: Severity, priority: str, **extra: Any) -> dict[str, Any]:
    # The access-control trade (tickets.const.Category.access) goes to the door.
    levels = [s for s in (Severity.warning, Severity.alarm, Severity.critical) if s.rank >= min_severity.rank]
    return {
        "min_severity": str(min_severity),
        "category": "access",
        "priority": {str(s): priority for s in levels},
        **extra,
    }


ACCESS_RULES: tuple[RuleSpec, ...] = (
    RuleSpec(
        STREAK_RULE,
        ACCESS_METRIC,
        RuleKind.access,
        {"severity": str(Severity.alarm), "threshold": DEFAULT_THRESHOLD},
        title_zh="门禁连续刷卡失败（疑似试卡）",
        title_en="Repeated denied swipes at a door (possible card probing)",
        ticket_policy=_policy(Severity.alarm, "high", task="check the door and who is there"),
    ),
    RuleSpec(
        FORCED_RULE,
        ACCESS_METRIC,
        RuleKind.access,
        {"severity": str(Severity.critical)},
        title_zh="门被强行打开",
        title_en="Door forced open",
        ticket_policy=_policy(Severity.critical, "urgent", on_site_minutes=5),
    ),
    RuleSpec(
        HELD_RULE,
        ACCESS_METRIC,
        RuleKind.access,
        {"severity": str(Severity.warning)},
        title_zh="门长时间未关",
        title_en="Door held open",
        # A warning: the alarm list shows it; no ticket unless an operator raises the level.
        ticket_policy=_policy(Severity.alarm, "normal"),
    ),
    RuleSpec(
        LOST_CARD_RULE,
        ACCESS_METRIC,
        RuleKind.access,
        {"severity": str(Severity.warning)},
        title_zh="挂失/注销卡被使用（安全事件）",
        title_en="Lost or revoked card used (security event)",
        ticket_policy=_policy(Severity.alarm, "normal"),
    ),
)


def ensure_access_rules(session: Session, specs: tuple[RuleSpec, ...] = ACCESS_RULES) -> int:
    """Insert the access rules or refresh existing ones by code (enabled left alone); returns the count. Flushes."""
    return ensure_default_rules(session, specs)


__all__ = ["ACCESS_METRIC", "ACCESS_RULES", "ensure_access_rules"]
