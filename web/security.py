"""Browser-facing protections applied to every response and every state-changing cookie request.

One pure ASGI middleware (it must not buffer the SSE streams):

- **Origin check** (issue 9 #9): a non-GET request that a browser could send on its own — it carries the
  session cookie and no bearer token, or it is a login — must come from our own origin. ``Sec-Fetch-Site:
  cross-site``, or an ``Origin`` whose host is not ours (``null`` included), is refused with 403 before any
  route runs: JSON routes, the pages' forms, ``/login`` and ``/logout`` (login CSRF) alike. Bearer requests
  are exempt: a browser never adds that header by itself.
- **Security headers** (issue 9 #12) on every response — JSON, redirects, errors — not only the pages:
  nosniff, no framing, same-origin referrers, and ``Cache-Control: no-store`` on everything but the static
  assets (API answers carry personal data). HSTS in production (issue 9 #8).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from web.cookies import SESSION_COOKIE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The forms that hand out a credential (login CSRF): a staff login and a wall display connecting with its token.
LOGIN_PATHS = frozenset({"/login", "/api/auth/login", "/wall/connect"})

HSTS = "max-age=31536000; includeSubDomains"
# Set unless the response chose its own (the pages send a full CSP with frame-ancestors 'none').
HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "content-security-policy": "frame-ancestors 'none'",
}


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _has_session_cookie(cookie_header: str) -> bool:
    return any(part.strip().startswith(SESSION_COOKIE + "=") for part in cookie_header.split(";"))


def cross_site(method: str, path: str, headers: dict[str, str]) -> bool:
    """Whether this request is a state change a foreign page could have made the browser send."""
    if method in SAFE_METHODS:
        return False
    browser_credential = _has_session_cookie(headers.get("cookie", "")) and not headers.get("authorization")
    if not (browser_credential or path in LOGIN_PATHS):
        return False
    if headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser, or an old one: SameSite=Lax still keeps the cookie off cross-site posts
    return origin == "null" or urlsplit(origin).netloc != headers.get("host", "")


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = _headers(scope)
        if cross_site(scope["method"], path, headers):
            body = json.dumps({"detail": "cross-site request refused / 拒绝跨站请求"}, ensure_ascii=False).encode()
            await self._send_headers(
                send, {"type": "http.response.start", "status": 403, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())
                ]}, path,
            )  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._send_headers(send, message, path)
            else:
                await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _send_headers(self, send: Send, message: Message, path: str) -> None:
        raw = list(message.get("headers", []))
        present = {k.decode("latin-1").lower() for k, _ in raw}
        extra = dict(HEADERS)
        if not path.startswith("/static/"):
            extra["cache-control"] = "no-store"
        if self.hsts:
            extra["strict-transport-security"] = HSTS
        raw += [(k.encode(), v.encode()) for k, v in extra.items() if k not in present]
        message["headers"] = raw
        await send(message)
