"""The demo estate's staff: who a newcomer signs in as to dispatch, accept on a phone and escalate.

Every account is scoped to the sample estate except ``demo`` (a head-office administrator). They all
share the demo password: the demo listens on loopback only, and production refuses both the demo and
anyone signing in with that password (accounts.service.authenticate).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts.const import DEMO_PASSWORD, DEMO_USERNAME, ROLE_LABELS, Role


@dataclass(frozen=True, slots=True)
class Member:
    username: str
    role: Role
    name: str
    all_estates: bool = False

    def role_label(self, lang: str) -> str:
        zh, en = ROLE_LABELS[self.role]
        return zh if lang == "zh" else en


DEMO_ADMIN = Member(DEMO_USERNAME, Role.admin, "演示管理员", all_estates=True)
# A project's engineering and service team (seeds/001: 工程主管 dispatches, engineers accept and
# repair, 管家 calls residents back, 项目经理 is the second escalation), plus card and billing clerks.
DEMO_TEAM: tuple[Member, ...] = (
    DEMO_ADMIN,
    Member("zhao", Role.supervisor, "赵主管"),
    Member("wang", Role.engineer, "王工"),
    Member("zhang", Role.engineer, "张工"),
    Member("li", Role.steward, "李管家"),
    Member("chen", Role.manager, "陈经理"),
    Member("sun", Role.card_admin, "孙敏"),
    Member("zhou", Role.billing_clerk, "周丽"),
)
DEMO_CLERK = "zhou"  # the billing clerk: took the opening top-ups (demo_billing.py), approves and sends notices


def ensure_demo_team(session: Session, estate_code: str) -> list[Member]:
    """Create the team's accounts that do not exist yet (a rerun keeps passwords someone changed)."""
    from accounts.service import create_user
    from storage.models import StaffUser

    created = []
    for m in DEMO_TEAM:
        if session.scalar(select(StaffUser.id).where(StaffUser.username == m.username)) is None:
            create_user(
                session,
                username=m.username,
                password=DEMO_PASSWORD,
                role=m.role,
                display_name=m.name,
                estates=[] if m.all_estates else [estate_code],
                all_estates=m.all_estates,
            )
            created.append(m)
    return created
