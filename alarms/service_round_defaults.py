"""Default customer-service rounds of every estate (issue 14 §5), from the SOPs in seeds/001 and seeds/002.

seeds/001 《物业服务巡查内容》 and 《日常巡查管理方案》:
- 4.3.2 每季度对管辖区域内空置房检查1次 (engineering, 3.2 "工程部重点负责…空置房…装修管理巡查");
- 4.3.3 每周至少2次对管辖区域内所有装修户装修情况进行检查;
- ⑤ 每周辖区装修户至少抽查20% (客服主管: "客服主管每周一次对小区进行抽查");
- ⑦ 每周访问量为至少辖区入住户数的2%，并形成《走访记录表》 (the steward, 管家);
- 2) 客服至少每周一次对小区进行一遍全面巡查 (3.5.2: 每周一9:00~10:00);
- ⑧ 巡查中的异常情况 … 按报事报修规程处理: a finding becomes a ticket (alarms.service_rounds.record_task).

Windows: the quarter is calendar-based (Jan/Apr/Jul/Oct 1st, estate-local); the week starts Monday 00:00 local;
"twice a week" is the week cut in halves, Monday 00:00 → Thursday 12:00 → Monday (3½ days each).
Grace periods (after a window ends, before a round with pending tasks is *missed*) are **derived**: half a day for
the half-week renovation check (the next one has begun), a day for weekly rounds (Monday's backlog), a week for
the quarterly vacant-unit check.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.roles import Role


class ServiceKind:
    vacant_units = "vacant_units"
    renovation_check = "renovation_check"
    renovation_sample = "renovation_sample"
    household_visits = "household_visits"
    estate_patrol = "estate_patrol"


SERVICE_KINDS = (
    ServiceKind.vacant_units,
    ServiceKind.renovation_check,
    ServiceKind.renovation_sample,
    ServiceKind.household_visits,
    ServiceKind.estate_patrol,
)
# What a task of each kind is about: a unit, or a building (the patrol walks the estate building by building).
UNIT_KINDS = frozenset(SERVICE_KINDS) - {ServiceKind.estate_patrol}

WEEK_MINUTES = 7 * 24 * 60
HALF_WEEK_MINUTES = WEEK_MINUTES // 2  # Monday 00:00 → Thursday 12:00
QUARTER = "quarter"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One default customer-service schedule; `code` is the upsert key within the estate."""

    code: str
    kind: str
    name_zh: str
    name_en: str
    role: Role
    # Fixed windows of this many minutes from a Monday 00:00 (estate-local) anchor; 0 with a calendar.
    interval_minutes: int
    calendar: str | None
    grace_minutes: int


DEFAULT_SERVICE_SCHEDULES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "cs_vacant_quarterly",
        ServiceKind.vacant_units,
        "空置房检查（每季度）",
        "Vacant units check (quarterly)",
        Role.engineer,
        0,
        QUARTER,
        7 * 24 * 60,
    ),
    ServiceSpec(
        "cs_renovation_twice_weekly",
        ServiceKind.renovation_check,
        "装修户检查（每周2次）",
        "Renovating units check (twice a week)",
        Role.engineer,
        HALF_WEEK_MINUTES,
        None,
        12 * 60,
    ),
    ServiceSpec(
        "cs_renovation_sample_weekly",
        ServiceKind.renovation_sample,
        "装修户抽查（每周20%）",
        "Renovation spot check (20 % a week)",
        Role.supervisor,
        WEEK_MINUTES,
        None,
        24 * 60,
    ),
    ServiceSpec(
        "cs_visits_weekly",
        ServiceKind.household_visits,
        "管家走访（每周）",
        "Steward household visits (weekly)",
        Role.steward,
        WEEK_MINUTES,
        None,
        24 * 60,
    ),
    ServiceSpec(
        "cs_patrol_weekly",
        ServiceKind.estate_patrol,
        "小区全面巡查（每周一 9:00–10:00）",
        "Full estate patrol (Mondays 9:00–10:00)",
        Role.steward,
        WEEK_MINUTES,
        None,
        24 * 60,
    ),
)
SPEC_BY_KIND = {s.kind: s for s in DEFAULT_SERVICE_SCHEDULES}

# ⑤ at least 20 % of the renovating units a week (rounded up: one unit of four is still sampled).
RENOVATION_SAMPLE_PCT = Decimal(20)
# ⑦ at least 2 % of the occupied households a week, per estate in estates.policy (see VISIT_SHARE_KEY).
VISIT_SHARE_PCT = Decimal(2)
# estates.policy["service_rounds"]["visit_share_pct"]: the estate's weekly share of households visited, in percent.
POLICY_KEY = "service_rounds"
VISIT_SHARE_KEY = "visit_share_pct"

KIND_LABELS = {
    ServiceKind.vacant_units: ("空置房检查", "Vacant units"),
    ServiceKind.renovation_check: ("装修检查", "Renovation check"),
    ServiceKind.renovation_sample: ("装修抽查", "Renovation spot check"),
    ServiceKind.household_visits: ("管家走访", "Household visits"),
    ServiceKind.estate_patrol: ("全面巡查", "Estate patrol"),
}

__all__ = [
    "DEFAULT_SERVICE_SCHEDULES",
    "HALF_WEEK_MINUTES",
    "KIND_LABELS",
    "POLICY_KEY",
    "QUARTER",
    "RENOVATION_SAMPLE_PCT",
    "SERVICE_KINDS",
    "SPEC_BY_KIND",
    "UNIT_KINDS",
    "VISIT_SHARE_KEY",
    "VISIT_SHARE_PCT",
    "WEEK_MINUTES",
    "ServiceKind",
    "ServiceSpec",
]
