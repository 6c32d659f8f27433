"""Repair-ticket vocabulary (domain-defaults §4): statuses, priorities, categories, sources, callback channels.

Labels are (中文, English) pairs, Chinese first like every screen and notice of the product.
"""

from __future__ import annotations

from enum import StrEnum

from core import glossary


class TicketStatus(StrEnum):
    received = "received"  # 已受理: logged by the steward / the system
    dispatched = "dispatched"  # 已派单: assigned to a technician
    accepted = "accepted"  # 已接单: the technician took it (signed the 维修单)
    on_site = "on_site"  # 已到场
    resolved = "resolved"  # 已完工: work done, parts, labour, resident sign-off
    callback_done = "callback_done"  # 已回访
    closed = "closed"  # 已关闭


class Priority(StrEnum):
    urgent = "urgent"  # 紧急 (急修): flooding, power loss, lift entrapment, critical alarms — continuous work
    high = "high"  # 较急
    normal = "normal"  # 一般: general repair, within 2 days
    minor = "minor"  # 小修: same day


# How urgent a priority is, for raising a ticket and ordering a board: 小修 is due the same day, 一般 within
# 2 days, so minor ranks above normal (its deadline is the tighter one), below 较急 and 紧急.
PRIORITY_RANK: dict[str, int] = {"normal": 0, "minor": 1, "high": 2, "urgent": 3}


class ClockKind(StrEnum):
    """Which row of §4's platform table a ticket the platform opened by itself takes its clocks from.

    Resident reports, complaints, staff-logged tickets and patrol findings have none (None): they take
    the resident table's clocks by priority and source.
    """

    critical = "critical"  # water ingress, smoke, fire-pump fault, transformer trip level: 20 min, continuous work
    alarm = "alarm"  # alarm level (winding 155 °C, pressure low): on site within the shift (2 h), done same day
    warning = "warning"  # warning level, stale sensor, missed round, power factor: next round (24 h), 2 days
    meter_vacant = "meter_vacant"  # water in a vacant unit, valve closed remotely: same day, same day
    meter_vacant_manual = "meter_vacant_manual"  # … no remote valve: on site within 2 h, done same day
    meter = "meter"  # reverse, stuck, reset/replacement, night leak, building balance: done within 2 days


class Category(StrEnum):
    electrical = "electrical"
    water = "water"
    hot_water = "hot_water"
    heating = "heating"
    fire = "fire"
    civil = "civil"
    meter = "meter"
    access = "access"
    lift = "lift"
    other = "other"


class Source(StrEnum):
    alarm = "alarm"  # opened by tickets.from_alarms
    inspection = "inspection"  # a missed / failed inspection round (alarms/rounds)
    resident = "resident"  # 业主报修
    complaint = "complaint"  # 投诉: feedback within 24 h, closed within 12 days
    manual = "manual"  # staff-created
    patrol = "patrol"  # found on patrol: fixed within one week


class CallbackChannel(StrEnum):
    in_person = "in_person"  # 上门回访 (SOP: ≥ 70 %)
    phone = "phone"  # 电话回访 (~30 %)
    sms = "sms"
    wechat = "wechat"


class Fault(StrEnum):
    """The SOP's important items (seeds/004 回访流程 4.2.2: 停水、停供暖、停供冷、幕墙漏水…): called back in person."""

    outage = "outage"  # 停水 / 停电 / 停暖 / 停冷
    leak = "leak"  # 漏水 / 渗漏


# Callbacks after an outage or a leak are made in person (上门回访); other tickets may be called back by phone.
IN_PERSON_FAULTS = frozenset(Fault)


class WarrantyItem(StrEnum):
    """The developer's warranty items (seeds/002 4.2.3, domain-defaults §4)."""

    roof_waterproofing = "roof_waterproofing"  # 屋面防水、有防水要求的房间和外墙防渗漏: 5 years
    heating = "heating"  # 供热与供冷系统: 2 heating seasons
    decoration = "decoration"  # 装饰装修: 2 years
    mep = "mep"  # 电气管线、给排水管道、设备安装: 2 years


class Clock(StrEnum):
    """The SLA clocks a ticket can breach (tickets/sla.py, tickets/escalation.py)."""

    on_site = "on_site"
    resolve = "resolve"
    callback = "callback"
    feedback = "feedback"


STATUS_LABELS = {k: glossary.TICKET_STATUS[k] for k in TicketStatus}

PRIORITY_LABELS = {k: glossary.PRIORITY[k] for k in Priority}

CATEGORY_LABELS = {k: glossary.TICKET_CATEGORY[k] for k in Category}

SOURCE_LABELS = {k: glossary.TICKET_SOURCE[k] for k in Source}

CALLBACK_CHANNEL_LABELS = {
    CallbackChannel.in_person: ("上门回访", "In person"),
    CallbackChannel.phone: ("电话回访", "Phone"),
    CallbackChannel.sms: ("短信", "SMS"),
    CallbackChannel.wechat: ("微信", "WeChat"),
}

FAULT_LABELS = {
    Fault.outage: ("停水停电停暖", "Outage"),
    Fault.leak: ("漏水渗漏", "Leak"),
}

WARRANTY_ITEM_LABELS = {
    WarrantyItem.roof_waterproofing: ("屋面及防水", "Roof and waterproofing"),
    WarrantyItem.heating: ("供热与供冷系统", "Heating and cooling"),
    WarrantyItem.decoration: ("装饰装修", "Decoration"),
    WarrantyItem.mep: ("电气管线、给排水管道、设备安装", "Electrical, plumbing and equipment installation"),
}

CLOCK_KIND_LABELS = {k: glossary.CLOCK_KIND[k] for k in ClockKind}

CLOCK_LABELS = {
    Clock.on_site: ("到场时限", "On site"),
    Clock.resolve: ("完工时限", "Resolve"),
    Clock.callback: ("回访时限", "Callback"),
    Clock.feedback: ("投诉反馈时限", "Complaint feedback"),
}

S = TicketStatus
# Which status each status may move to. Re-dispatching (a new assignee) is dispatched/accepted → dispatched;
# arriving straight from `dispatched` counts as accepting (technicians on site forget to tap 接单);
# closing an unstarted ticket cancels it and needs a reason (tickets.service.close); reopening goes
# back to `dispatched` when someone is assigned, else to `received`.
TRANSITIONS: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.received: frozenset({S.dispatched, S.closed}),
    S.dispatched: frozenset({S.dispatched, S.accepted, S.on_site, S.closed}),
    S.accepted: frozenset({S.dispatched, S.on_site}),
    S.on_site: frozenset({S.resolved}),
    S.resolved: frozenset({S.callback_done, S.closed, S.dispatched, S.received}),
    S.callback_done: frozenset({S.closed, S.dispatched, S.received}),
    S.closed: frozenset({S.dispatched, S.received}),
}
OPEN_STATUSES = frozenset(TicketStatus) - {S.closed}
# Work has not started: the on-site clock runs in these.
BEFORE_ON_SITE = frozenset({S.received, S.dispatched, S.accepted})
# Not yet resolved: the resolve clock runs in these.
BEFORE_RESOLVED = BEFORE_ON_SITE | {S.on_site}
REOPENABLE = frozenset({S.resolved, S.callback_done, S.closed})

# Tickets where something is repaired: a redone one is 返修; any other reopened ticket is 重新处理 (a reopened
# complaint is not a repair). Manual tickets are the staff's own repair jobs (水泵房地漏堵塞).
REPAIR_SOURCES = frozenset({Source.resident, Source.alarm, Source.patrol, Source.manual})


def reporter_word(source: str) -> tuple[str, str]:
    """Who brought the ticket: 报修人 on a resident's repair, 报事人 on a complaint, else 联系人."""
    if source == Source.resident:
        return glossary.REPAIR_REPORTER
    if source == Source.complaint:
        return glossary.COMPLAINT_REPORTER
    return glossary.CONTACT


def assignee_word(source: str) -> tuple[str, str]:
    """Who the ticket is dispatched to: 处理人 on inspection and complaint tickets, else 维修人员."""
    if source in (Source.inspection, Source.complaint):
        return glossary.HANDLER
    return glossary.REPAIRER


def reopen_word(source: str) -> tuple[str, str]:
    """Reopening a finished ticket: 返修 when a repair is redone, else 重新处理."""
    return glossary.REPAIR_REDONE if source in REPAIR_SOURCES else glossary.REOPEN


def reopen_count_word(source: str) -> tuple[str, str]:
    return glossary.REOPEN_COUNT_REPAIR if source in REPAIR_SOURCES else glossary.REOPEN_COUNT


def reopened_event_word(source: str) -> tuple[str, str]:
    """The 'reopened' event on a ticket's timeline, worded as reopen_word."""
    return glossary.REPAIR_REDONE_EVENT if source in REPAIR_SOURCES else glossary.REOPENED_EVENT


# Sources with a resident to call back (回访率 100 %); others (alarms, rounds, patrols) close after resolving.
CALLBACK_SOURCES = frozenset({Source.resident, Source.complaint})

# Actor name on rows the platform writes by itself.
SYSTEM_ACTOR = "system"
# Ticket number prefix: 工单 (GongDan) + local date of receipt + a per-day sequence, e.g. GD20261126-0007.
NUMBER_PREFIX = "GD"

# Escalation levels (tickets.escalation): who hears of a breached clock.
ESCALATION_ROLES = {1: "supervisor", 2: "manager"}  # 工程主管, 项目经理
# Who an escalation notifies, as the notice names them (accounts/const.py has every role; tickets may not import it).
# "cs_supervisor" (客服主管) is a notice target, not yet a staff role: the WeCom group and the log name it, and
# no account receives its e-mail until accounts grows the role.
ESCALATION_ROLE_LABELS = {
    "supervisor": ("工程主管", "Engineering supervisor"),
    "manager": ("项目经理", "Project manager"),
    "cs_supervisor": ("客服主管", "Customer-service supervisor"),
    "service_manager": ("服务中心经理", "Service-centre manager"),
}


class EscalationRoute(StrEnum):
    """Who a breached clock goes to, level by level (§4's escalation routes)."""

    engineering = "engineering"  # resident repairs, critical alarms: 工程主管 at breach → 项目经理 + step
    engineering_supervisor = "engineering_supervisor"  # alarm / warning / meter anomaly: 工程主管 only
    customer_service = "customer_service"  # complaints: 客服主管 at breach → 服务中心经理 + step


# level → the role notified. The service-centre manager is the estate's 项目经理 account ("manager", whose
# e-mail it gets); the notice names them 服务中心经理 as §4 does.
ESCALATION_ROUTES: dict[EscalationRoute, dict[int, str]] = {
    EscalationRoute.engineering: {1: "supervisor", 2: "manager"},
    EscalationRoute.engineering_supervisor: {1: "supervisor"},
    EscalationRoute.customer_service: {1: "cs_supervisor", 2: "service_manager"},
}
# The staff role whose accounts get a notice target's e-mail (None: no account has it yet).
NOTIFY_STAFF_ROLE: dict[str, str | None] = {
    "supervisor": "supervisor",
    "manager": "manager",
    "cs_supervisor": None,
    "service_manager": "manager",
}
