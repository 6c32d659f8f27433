"""The operations pages (dashboards/operations.py): device commands (设备指令) and notification deliveries
(通知发送记录) with "retry now", and marking a dunning task done on the dunning page.

Rows are committed to the shared dashboard world, so each test finds its own by id; staff of the sample estate
never see the second estate's rows."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AuditLog, Device, DunningTask, Estate, NotificationDelivery, Outbox
from tests.dashboards.conftest import DashWorld, login
from tests.support.ops import add_command, add_delivery, add_task, estate_id_of


def device_of(s: Session, estate: str) -> int:
    return int(
        s.scalars(
            select(Device.id)
            .join(Estate, Estate.id == Device.estate_id)
            .where(Estate.code == estate)
            .order_by(Device.id)
        ).first()
        or 0
    )


def device_code(world: DashWorld, command_id: int) -> str:
    with Session(world.engine) as s:
        return str(
            s.scalar(select(Device.code).join(Outbox, Outbox.device_id == Device.id).where(Outbox.id == command_id))
        )


def commands(world: DashWorld) -> dict[str, int]:
    """A billing and an alarm command in the sample estate, a billing one in the other estate."""
    with Session(world.engine) as s, s.begin():
        mine = device_of(s, world.estate)
        theirs = device_of(s, world.other_estate)
        ticket = f"GD-{uuid.uuid4().hex[:6]}"
        return {
            "billing": add_command(s, mine, reason="billing_restriction"),
            "alarm": add_command(s, mine, reason="vacant_flow", ticket=ticket, status="failed", last_error="no ack"),
            "theirs": add_command(s, theirs, reason="billing_restriction"),
        }


def test_commands_page_lists_the_viewers_estates_with_status_and_origin(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    ids = commands(dash_world)
    login(dash_client, "engineer-user")
    page = dash_client.get("/commands")
    assert page.status_code == 200
    assert '<a href="/commands">设备指令</a>' in page.text  # in the navigation
    assert f'data-command="{ids["billing"]}"' in page.text
    assert f'data-command="{ids["alarm"]}"' in page.text
    assert f'data-command="{ids["theirs"]}"' not in page.text  # another estate's command
    assert "欠费限供" in page.text
    assert "空置房水表走字" in page.text
    assert "关阀" in page.text
    failed = dash_client.get("/commands?status=failed")
    assert f'data-command="{ids["alarm"]}"' in failed.text
    assert f'data-command="{ids["billing"]}"' not in failed.text
    assert "no ack" in failed.text
    dash_client.cookies.set("lang", "en")
    en = dash_client.get("/commands?status=failed")
    assert "Device commands" in en.text
    assert "Close valve" in en.text
    # Head office sees both estates.
    login(dash_client, "head-office")
    everything = dash_client.get(f"/commands?origin=billing&device={device_code(dash_world, ids['theirs'])}")
    assert f'data-command="{ids["theirs"]}"' in everything.text


def test_the_billing_clerk_sees_billing_commands_and_stewards_none(
    dash_client: TestClient, dash_world: DashWorld
) -> None:
    ids = commands(dash_world)
    login(dash_client, "billing_clerk-user")
    page = dash_client.get("/commands")
    assert page.status_code == 200
    assert 'id="billing-only"' in page.text
    assert f'data-command="{ids["billing"]}"' in page.text
    assert f'data-command="{ids["alarm"]}"' not in page.text
    assert f'data-command="{ids["alarm"]}"' not in dash_client.get("/commands?origin=alarm").text
    login(dash_client, "steward-user")
    assert dash_client.get("/commands").status_code == 403
    assert '<a href="/commands">' not in dash_client.get("/").text


def test_commands_page_is_paged(dash_client: TestClient, dash_world: DashWorld) -> None:
    with Session(dash_world.engine) as s, s.begin():
        device = device_of(s, dash_world.estate)
        for _ in range(55):
            add_command(s, device, reason="billing_restoration", action="open")
    login(dash_client, "manager-user")
    first = dash_client.get("/commands")
    assert first.text.count("data-command=") == 50
    found = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert found is not None
    second = dash_client.get(found.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert second.text.count("data-command=") >= 5
    assert re.search(r'rel="prev"', second.text)


def deliveries(world: DashWorld) -> dict[str, int]:
    with Session(world.engine) as s, s.begin():
        mine, theirs = estate_id_of(s, world.estate), estate_id_of(s, world.other_estate)
        return {
            "failed": add_delivery(s, mine, recipient="wang.daming@example.com"),
            "sent": add_delivery(s, mine, channel="wecom_robot", recipient="role:manager", status="sent"),
            "theirs": add_delivery(s, theirs),
        }


def test_notifications_page_masks_recipients_and_filters(dash_client: TestClient, dash_world: DashWorld) -> None:
    ids = deliveries(dash_world)
    login(dash_client, "engineer-user")
    page = dash_client.get("/notifications")
    assert page.status_code == 200
    assert '<a href="/notifications">通知发送记录</a>' in page.text
    assert f'data-delivery="{ids["failed"]}"' in page.text
    assert f'data-delivery="{ids["theirs"]}"' not in page.text
    assert "wang.daming@example.com" not in page.text
    assert "w***@example.com" in page.text
    assert "SMTPServerDisconnected" in page.text
    assert 'action="/notifications/' not in page.text  # engineers look; they do not retry
    assert dash_client.post(f"/notifications/{ids['failed']}/retry").status_code == 403
    robots = dash_client.get("/notifications?channel=wecom_robot&status=sent")
    assert f'data-delivery="{ids["sent"]}"' in robots.text
    assert f'data-delivery="{ids["failed"]}"' not in robots.text
    dash_client.cookies.set("lang", "en")
    assert "Notification deliveries" in dash_client.get("/notifications").text
    login(dash_client, "steward-user")
    assert dash_client.get("/notifications").status_code == 403


def test_retry_now_makes_a_failed_delivery_due_and_is_audited(dash_client: TestClient, dash_world: DashWorld) -> None:
    ids = deliveries(dash_world)
    login(dash_client, "manager-user")
    page = dash_client.get("/notifications?status=failed")
    assert "wang.daming@example.com" in page.text  # the project manager sees whom it went to
    assert f'action="/notifications/{ids["failed"]}/retry"' in page.text
    assert f'action="/notifications/{ids["sent"]}/retry"' not in page.text
    assert dash_client.post(f"/notifications/{ids['theirs']}/retry").status_code == 404  # another estate's
    r = dash_client.post(f"/notifications/{ids['failed']}/retry", data={"back": "/notifications?status=failed"})
    assert r.status_code == 303
    assert r.headers["location"] == "/notifications?status=failed"
    with Session(dash_world.engine) as s:
        row = s.get(NotificationDelivery, ids["failed"])
        assert row is not None
        assert row.status == "failed"
        audit = s.scalars(
            select(AuditLog).where(
                AuditLog.action == "notification.retry", AuditLog.object == f"notification_delivery:{ids['failed']}"
            )
        ).one()
        assert audit.actor == "manager-user"
        # Due now rather than after its backoff (ten minutes after it was queued, tests/support/ops.py).
        assert row.next_attempt_at < datetime.fromisoformat(audit.detail["next_attempt_at"])
    assert "已安排立即重试" in dash_client.get("/notifications?status=failed").text
    r = dash_client.post(f"/notifications/{ids['sent']}/retry")
    assert r.status_code == 303
    assert "仅发送失败或已放弃的记录可立即重试" in dash_client.get("/notifications").text


def test_a_dunning_task_is_marked_done_from_the_page(dash_client: TestClient, dash_world: DashWorld) -> None:
    with Session(dash_world.engine) as s, s.begin():
        mine = add_task(s, estate_id_of(s, dash_world.estate))
        theirs = add_task(s, estate_id_of(s, dash_world.other_estate))
    login(dash_client, "billing_clerk-user")
    page = dash_client.get(f"/dunning/{dash_world.estate}")
    assert f'action="/dunning/tasks/{mine}/done"' in page.text
    assert dash_client.post(f"/dunning/tasks/{theirs}/done", data={"note": "x"}).status_code == 404
    dash_client.post(f"/dunning/tasks/{mine}/done", data={"note": "  "})
    assert "请填写办理情况" in dash_client.get(f"/dunning/{dash_world.estate}").text
    r = dash_client.post(f"/dunning/tasks/{mine}/done", data={"note": "律师函已由金诚律所发出"})
    assert r.status_code == 303
    after = dash_client.get(f"/dunning/{dash_world.estate}")
    assert "任务已标记完成" in after.text
    assert f'action="/dunning/tasks/{mine}/done"' not in after.text  # no longer open
    assert f'data-done-task="{mine}"' in after.text
    assert "律师函已由金诚律所发出" in after.text
    with Session(dash_world.engine) as s:
        task = s.get(DunningTask, mine)
        assert task is not None
        assert task.status == "done"
    case = dash_client.get(f"/dunning/cases/{task.case_id}")
    assert "已完成" in case.text
    assert "billing_clerk-user" in case.text
    assert "律师函已由金诚律所发出" in case.text
    login(dash_client, "steward-user")  # stewards see the ladder, they do not record tasks
    assert dash_client.post(f"/dunning/tasks/{theirs}/done", data={"note": "x"}).status_code == 403


def test_the_commands_page_streams_live(dash_client: TestClient, dash_world: DashWorld) -> None:
    """The page listens on /live/commands with its filters; the stream builds its first snapshot (here up to the
    per-user stream limit, which answers 429 once the snapshot is built) and refuses those who may not look."""
    assert dash_client.get("/live/commands").status_code == 401
    login(dash_client, "steward-user")
    assert dash_client.get("/live/commands").status_code == 401
    login(dash_client, "engineer-user")
    page = dash_client.get("/commands?status=failed&origin=alarm")
    assert "/live/commands?status=failed\\u0026origin=alarm" in page.text
    streams = dash_client.app.state.live.streams  # type: ignore[attr-defined]
    streams._open["engineer-user"] = streams.per_user
    try:
        r = dash_client.get("/live/commands?status=failed&origin=alarm")
        assert r.status_code == 429, r.text
    finally:
        streams._open.pop("engineer-user", None)
