"""The staff roles: a vocabulary every domain's policy speaks (accounts grants them, tickets, alarms,
billing and access decide with them), so it sits below the layer-3 siblings that must not import each other."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    engineer = "engineer"  # 工程部: equipment, alarms, tickets
    steward = "steward"  # 管家/客服: units, residents, tickets, callbacks
    supervisor = "supervisor"  # 工程主管: first escalation of a breached SLA clock
    manager = "manager"  # 项目经理: second escalation; sees everything of the estate
    card_admin = "card_admin"  # 门禁卡管理
    billing_clerk = "billing_clerk"  # 收费员
    viewer = "viewer"  # read-only dashboards
