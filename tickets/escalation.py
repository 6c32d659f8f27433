"""Escalate tickets whose SLA clock is breached (domain-defaults §4: steward → supervisor → project manager).

The worker calls `escalate_due` every minute. A breached clock escalates to level 1 at its due minute
and to level 2 when it is still running ``escalation_step_minutes`` later (tickets/sla.py, per estate).
Who each level is follows the ticket's route (`sla.escalation_route`, §4): resident repairs and critical
alarms 工程主管 then 项目经理; alarm-level, warning and meter-anomaly tickets 工程主管 only; complaints
the customer-service line, 客服主管 then 服务中心经理. Urgent tickets escalate at the breach like every
other; their short on-site clock is what makes them escalate early.

Each (clock, due time, level) is escalated once: an 'escalated' event with
``{clock, level, notify_role, due_at}`` records it, so a second run at the same minute, or a second
worker, changes nothing. Each new escalation queues its notices in the same transaction (a WeCom group
message naming the role, e-mail to that role's staff on the estate: tickets/escalation_notices.py),
keyed by the same identity, so it is announced once. A reopened ticket gets new due times and so can escalate again.
Rows are taken FOR UPDATE SKIP LOCKED: two workers split the tickets between them, and a ticket
someone is editing right now is simply picked up by the next minute's run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from core import clock
from storage.models import Estate, Ticket, TicketEvent
from tickets import sla
from tickets.const import BEFORE_ON_SITE, BEFORE_RESOLVED, SYSTEM_ACTOR, TicketStatus
from tickets.escalation_notices import Escalation, enqueue_escalation_notices


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _breach_filter(now: datetime) -> Any:
    # The SQL twin of sla.breached_clocks, so only breached tickets are read and locked.
    return or_(
        and_(
            Ticket.on_site_due_at <= now,
            Ticket.on_site_at.is_(None),
            Ticket.status.in_([s.value for s in BEFORE_ON_SITE]),
        ),
        and_(
            Ticket.resolve_due_at <= now,
            Ticket.resolved_at.is_(None),
            Ticket.status.in_([s.value for s in BEFORE_RESOLVED]),
        ),
        and_(
            Ticket.callback_due_at <= now,
            Ticket.callback_at.is_(None),
            Ticket.status == TicketStatus.resolved.value,
        ),
        and_(Ticket.feedback_due_at <= now, Ticket.feedback_at.is_(None)),
    )


def escalate_due(session: Session, now: datetime | None = None) -> list[tuple[int, int]]:
    """Escalate every open ticket with a breached clock; returns (ticket id, level) per new escalation."""
    now = now or clock.now()
    rows = session.execute(
        select(Ticket, Estate.policy)
        .join(Estate, Estate.id == Ticket.estate_id)
        .where(Ticket.status != TicketStatus.closed.value, _breach_filter(now))
        .order_by(Ticket.id)
        .with_for_update(of=Ticket, skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    if not rows:
        return []
    ids = [t.id for t, _ in rows]
    done = {
        (tid, d.get("clock"), d.get("due_at"), d.get("level"))
        for tid, d in session.execute(
            select(TicketEvent.ticket_id, TicketEvent.detail).where(
                TicketEvent.ticket_id.in_(ids), TicketEvent.action == "escalated"
            )
        )
    }
    out: list[tuple[int, int]] = []
    notices: list[Escalation] = []
    for ticket, estate_policy in rows:
        step = sla.policy_from(estate_policy).escalation_step_minutes
        route = sla.escalation_route(ticket.source, ticket.clock_kind)
        levels = sla.route_levels(route)
        for clock_name, due in sorted(sla.breached_clocks(ticket, now).items()):
            for level in range(1, sla.escalation_level(due, now, step, max(levels)) + 1):
                if (ticket.id, clock_name.value, _utc(due), level) in done:
                    continue
                detail = {
                    "clock": clock_name.value,
                    "level": level,
                    "route": route.value,
                    "notify_role": levels[level],
                    "due_at": _utc(due),
                    "breached_at": _utc(sla.level_due_at(due, level, step)),
                }
                session.add(
                    TicketEvent(
                        ticket_id=ticket.id,
                        at=now,
                        actor=SYSTEM_ACTOR,
                        action="escalated",
                        from_status=ticket.status,
                        to_status=ticket.status,
                        detail=detail,
                    )
                )
                notices.append(Escalation(ticket, detail))
                if level > ticket.escalation_level:
                    ticket.escalation_level = level
                ticket.escalated_at = now
                out.append((ticket.id, level))
    session.flush()
    enqueue_escalation_notices(session, notices, now)
    return out
