"""The channels against real servers: SMTP (aiosmtpd) keeps Chinese intact, the WeCom robot gets its real JSON."""

from __future__ import annotations

import logging

import pytest

from core.settings import Settings
from notifications.channels import (
    ChannelError,
    LogChannel,
    Message,
    SmtpChannel,
    WeComRobotChannel,
    channels_from_settings,
)
from tests.support.notify_servers import RobotServer, SmtpServer, free_port

SUBJECT = "【热水续费通知书】3-1-1201 余额不足"
BODY = "尊敬的业主：您的热水账户余额为 ¥12.50，按近30天平均用量约可使用 4 天，请于 2026年12月10日 前续费。"


def test_smtp_delivers_chinese_subject_and_body(smtp_server: SmtpServer) -> None:
    channel = SmtpChannel("127.0.0.1", smtp_server.port, sender="steward@wuye.example.cn")
    channel.send(Message("zhangsan@example.cn", SUBJECT, BODY))
    assert len(smtp_server.received) == 1
    envelope, mail = smtp_server.received[0]
    assert envelope.mail_from == "steward@wuye.example.cn"
    assert envelope.rcpt_tos == ["zhangsan@example.cn"]
    assert mail["Subject"] == SUBJECT  # RFC 2047 on the wire, decoded back intact
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().strip() == BODY
    assert mail["From"] == "steward@wuye.example.cn"


def test_smtp_unreachable_or_bad_address_is_a_channel_error(smtp_server: SmtpServer) -> None:
    with pytest.raises(ChannelError, match="SMTP"):
        SmtpChannel("127.0.0.1", free_port(), sender="s@x.cn", timeout_s=2).send(Message("a@b.cn", "s", "b"))
    with pytest.raises(ChannelError, match="not an e-mail address"):
        SmtpChannel("127.0.0.1", smtp_server.port, sender="s@x.cn").send(Message("role:manager", "s", "b"))
    assert smtp_server.received == []


def test_wecom_markdown_is_the_real_format(robot: RobotServer) -> None:
    WeComRobotChannel(robot.url).send(Message("role:supervisor", "工单升级", "> 小区：阳光花园"))
    assert robot.posts == [{"msgtype": "markdown", "markdown": {"content": "### 工单升级\n> 小区：阳光花园"}}]
    assert robot.paths == ["/cgi-bin/webhook/send?key=test-key"]


def test_wecom_text_with_mentions(robot: RobotServer) -> None:
    extra = {"mentioned_list": ["wangwu", "@all"], "mentioned_mobile_list": ["13800001111"]}
    WeComRobotChannel(robot.url).send(Message("role:manager", "停供提醒", "3-1-1201 明日 09:00 停供", extra))
    assert robot.posts == [
        {
            "msgtype": "text",
            "text": {
                "content": "停供提醒\n3-1-1201 明日 09:00 停供",
                "mentioned_list": ["wangwu", "@all"],
                "mentioned_mobile_list": ["13800001111"],
            },
        }
    ]


def test_wecom_long_markdown_is_cut_to_4096_bytes_on_a_character(robot: RobotServer) -> None:
    WeComRobotChannel(robot.url).send(Message("g", "长", "热" * 3000))
    content = robot.posts[0]["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert content.endswith("…")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((200, {"errcode": 93000, "errmsg": "invalid webhook url"}), "errcode 93000"),
        ((200, {"errcode": 45009, "errmsg": "api freq out of limit"}), "errcode 45009"),
        ((500, {"error": "internal"}), "HTTP 500"),
        ((200, ["not", "an", "object"]), "errcode None"),
    ],
)
def test_wecom_failures_raise(robot: RobotServer, answer: tuple[int, object], error: str) -> None:
    robot.script.append(answer)  # type: ignore[arg-type]
    with pytest.raises(ChannelError, match=error):
        WeComRobotChannel(robot.url).send(Message("g", "s", "b"))
    assert len(robot.posts) == 1


def test_wecom_unreachable_is_a_channel_error() -> None:
    with pytest.raises(ChannelError, match="unreachable"):
        WeComRobotChannel(f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=k", timeout_s=2).send(
            Message("g", "s", "b")
        )


def test_log_channel_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="steward.notifications"):
        LogChannel().send(Message("role:supervisor", "工单升级", "GD20261126-0007"))
    assert "工单升级" in caplog.text
    assert "GD20261126-0007" in caplog.text


def test_channels_from_settings(robot: RobotServer) -> None:
    assert set(channels_from_settings(Settings(notify_channels=""))) == {"log"}
    on = channels_from_settings(
        Settings(
            notify_channels="email,wecom_robot",
            smtp_host="127.0.0.1",
            smtp_port=2525,
            smtp_sender="s@x.cn",
            wecom_robot_url=robot.url,  # type: ignore[arg-type]
        )
    )
    assert set(on) == {"log", "email", "wecom_robot"}
    email = on["email"]
    assert isinstance(email, SmtpChannel)
    assert (email.host, email.port, email.sender) == ("127.0.0.1", 2525, "s@x.cn")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"notify_channels": "sms"}, "unknown channel"),
        ({"notify_channels": "email"}, "STEWARD_SMTP_HOST"),
        ({"notify_channels": "wecom_robot"}, "STEWARD_WECOM_ROBOT_URL"),
    ],
)
def test_settings_refuse_a_channel_without_its_settings(kwargs: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Settings(**kwargs)  # type: ignore[arg-type]
