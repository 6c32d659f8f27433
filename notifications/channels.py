"""The channels a delivery can go out on: each `send`s one `Message` and raises `ChannelError` on failure.

- `LogChannel`: the Python log (always on; what a development machine "sends").
- `SmtpChannel`: e-mail through an SMTP server (optionally STARTTLS and login); subject and body UTF-8.
- `WeComRobotChannel`: a 企业微信 group robot webhook (``…/cgi-bin/webhook/send?key=…``). WeCom answers
  HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}`` on success; any other errcode (e.g. 93000 invalid
  key, 45009 rate limit) or HTTP status is a failure to retry.

A channel holds no state between sends, so one instance serves every delivery of a dispatcher run.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol

from core import clock
from core.settings import Settings

log = logging.getLogger(__name__)

LOG = "log"
EMAIL = "email"
WECOM_ROBOT = "wecom_robot"
CHANNEL_NAMES = (LOG, EMAIL, WECOM_ROBOT)

# WeCom's limits on one robot message (bytes of UTF-8): markdown 4096, text 2048.
WECOM_MARKDOWN_MAX = 4096
WECOM_TEXT_MAX = 2048


class ChannelError(Exception):
    """The channel could not deliver the message; the dispatcher records the reason and retries."""


@dataclass(frozen=True, slots=True)
class Message:
    recipient: str
    subject: str
    body: str
    # Channel-specific extras: WeCom ``mentioned_list`` / ``mentioned_mobile_list`` (user ids, phone numbers).
    extra: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def send(self, message: Message) -> None:
        """Deliver `message` or raise `ChannelError` (any other exception counts as a failure too)."""
        ...


class LogChannel:
    name = LOG

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("steward.notifications")

    def send(self, message: Message) -> None:
        self.logger.info("notice to %s: %s\n%s", message.recipient, message.subject, message.body)


class SmtpChannel:
    """One SMTP connection per message: notices are few, and a long-lived connection would time out anyway."""

    name = EMAIL

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        user: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout_s = user, password, starttls, timeout_s

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()  # default policy: a non-ASCII subject becomes RFC 2047 encoded words
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(clock.now().timestamp())
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail.set_content(message.body, charset="utf-8")
        return mail

    def send(self, message: Message) -> None:
        if "@" not in message.recipient:
            raise ChannelError(f"not an e-mail address: {message.recipient!r}")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(self.compose(message))
        except (smtplib.SMTPException, OSError) as exc:
            raise ChannelError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        if refused:
            raise ChannelError(f"SMTP refused {sorted(refused)}")


def _clip_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", errors="ignore") + "…"


class WeComRobotChannel:
    """POSTs JSON to a 企业微信 group robot. With mentions (``extra``) it sends ``text`` (the only type that
    @-mentions by user id or phone); otherwise ``markdown``, the subject as its heading."""

    name = WECOM_ROBOT

    def __init__(self, webhook_url: str, *, timeout_s: float = 10.0) -> None:
        self.webhook_url = webhook_url
        self.timeout_s = timeout_s

    @staticmethod
    def payload(message: Message) -> dict[str, Any]:
        mentioned = [str(x) for x in message.extra.get("mentioned_list", [])]
        mobiles = [str(x) for x in message.extra.get("mentioned_mobile_list", [])]
        if mentioned or mobiles:
            text: dict[str, Any] = {"content": _clip_utf8(f"{message.subject}\n{message.body}", WECOM_TEXT_MAX)}
            if mentioned:
                text["mentioned_list"] = mentioned
            if mobiles:
                text["mentioned_mobile_list"] = mobiles
            return {"msgtype": "text", "text": text}
        content = _clip_utf8(f"### {message.subject}\n{message.body}", WECOM_MARKDOWN_MAX)
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def send(self, message: Message) -> None:
        data = json.dumps(self.payload(message), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ChannelError(f"WeCom robot HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ChannelError(f"WeCom robot unreachable: {exc}") from exc
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise ChannelError(f"WeCom robot answered no JSON: {raw[:200]!r}") from exc
        if not isinstance(answer, dict) or answer.get("errcode") != 0:
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            errmsg = answer.get("errmsg") if isinstance(answer, dict) else None
            raise ChannelError(f"WeCom robot errcode {errcode}: {errmsg}")


def channels_from_settings(settings: Settings) -> dict[str, Channel]:
    """The channels switched on in `settings` (``STEWARD_NOTIFY_CHANNELS``), by name; the log is always on."""
    out: dict[str, Channel] = {LOG: LogChannel()}
    on = settings.notify_channel_names
    if EMAIL in on:
        out[EMAIL] = SmtpChannel(
            settings.smtp_host or "",  # Settings refuses email without host and sender
            settings.smtp_port,
            sender=settings.smtp_sender or "",
            user=settings.smtp_user,
            password=settings.smtp_password.get_secret_value() or None,
            starttls=settings.smtp_starttls,
            timeout_s=settings.notify_timeout_s,
        )
    if WECOM_ROBOT in on:
        out[WECOM_ROBOT] = WeComRobotChannel(
            settings.wecom_robot_url.get_secret_value(), timeout_s=settings.notify_timeout_s
        )
    return out


__all__ = [
    "CHANNEL_NAMES",
    "EMAIL",
    "LOG",
    "WECOM_ROBOT",
    "Channel",
    "ChannelError",
    "LogChannel",
    "Message",
    "SmtpChannel",
    "WeComRobotChannel",
    "channels_from_settings",
]
