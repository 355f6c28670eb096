"""What keeps the dashboard safe to run: where it may listen, who may look, who may act.

- ``check_bind``: loopback by default; any other address needs a password.
- ``Guard``: an ASGI middleware in front of every route. It answers with
  strict headers (a Content-Security-Policy that allows only this server's
  own scripts and styles, no framing, no sniffing), asks for the password
  (HTTP Basic) when one is set, and refuses a POST whose CSRF token does
  not match the browser's cookie, or that comes from another origin.

CSRF, double-submit with a signature: each browser gets a random cookie
(``HttpOnly``, ``SameSite=Strict``); every form carries the HMAC of that
cookie under a secret made when the dashboard starts. Another site can
neither read the cookie nor compute the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from .._errors import ConfigurationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSRF_COOKIE = "offload_csrf"
CSRF_FIELD = "csrf"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Only this server's own files run or style the page: no inline script, no CDN."""

HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Not "no-referrer": Chromium then sends "Origin: null" with the forms' POSTs.
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def check_bind(host: str, password: str | None) -> None:
    """Refuse to listen beyond loopback without a password, saying why and what to do."""
    if is_loopback(host) or password:
        return
    raise ConfigurationError(
        f"refusing to serve the dashboard on {host}: it shows job arguments and results and "
        f"can retry and delete jobs, and {host} is reachable from other machines. Set a "
        "password (--password or OFFLOAD_DASHBOARD_PASSWORD), or bind to 127.0.0.1 and "
        "reach it through an SSH tunnel."
    )


class Csrf:
    """Tokens that tie a form to the browser's own cookie."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def token(self, cookie: str) -> str:
        """The token a form of the browser holding ``cookie`` carries."""
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.token(cookie), token)


def request_cookie(scope: Scope, name: str) -> str | None:
    """The value of cookie ``name`` in a request's headers, if any."""
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
                return None
            morsel = jar.get(name)
            if morsel is not None:
                return morsel.value
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _authorised(scope: Scope, password: str) -> bool:
    """HTTP Basic: any user name, this password (compared in constant time)."""
    value = _header(scope, b"authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    given = decoded.partition(":")[2]
    return hmac.compare_digest(given.encode(), password.encode())


def _same_origin(scope: Scope) -> bool:
    """A POST from a page of this server (or a client that sends no Origin, e.g. curl)."""
    origin = _header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    host = _header(scope, b"host") or ""
    return origin.split("://", 1)[-1] == host


class Guard:
    """ASGI middleware: headers on every answer, the password, the CSRF cookie."""

    def __init__(self, app: ASGIApp, *, password: str | None) -> None:
        self.app = app
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = request_cookie(scope, CSRF_COOKIE)
        fresh = None if cookie else secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf_cookie"] = cookie or fresh

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += HEADERS
                if fresh is not None:
                    headers.append((b"set-cookie", _cookie_header(fresh, scope)))
                message["headers"] = headers
            await send(message)

        if self.password and not _authorised(scope, self.password):
            await _deny(send_with_headers, 401, "the dashboard asks for its password")
            return
        if scope["method"] == "POST" and not _same_origin(scope):
            await _deny(send_with_headers, 403, "refused: this form came from another site")
            return
        await self.app(scope, receive, send_with_headers)


def _cookie_header(value: str, scope: Scope) -> bytes:
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return f"{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()


async def _deny(send: Send, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 401:
        headers.append((b"www-authenticate", b'Basic realm="offload dashboard"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": (text + "\n").encode()})
