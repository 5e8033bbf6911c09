"""The page's gate: the HTTP transport's Host and Origin policy (gum_mcp.hosts), a session cookie in place
of the bearer token, and the security headers every answer carries.

Checks, cheapest first:
- Host: `hosts.Policy.host_ok`, exactly as the MCP transport's gate (421);
- Origin: the transport's rule (`Policy.origin_ok`) and, because a page on another port of this machine
  is the same *site* (its requests carry a SameSite=Strict cookie), nothing but the page's own origin
  (403). A request that changes something must also not be marked cross-origin by the browser
  (`Sec-Fetch-Site`);
- session: the cookie of a session that `/login` started (401), except for `/login` itself and the
  static assets. The CSRF token of a change is checked by the route (routes.changes), after the form is read.

Headers: a Content-Security-Policy with no inline script or style and no eval (every asset comes from
this server), no framing, no referrer, no caching of pages (they hold what is believed about a person).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from gum_mcp.hosts import Policy, first_header, normalise, respond, split_authority
from gum_mcp.ui.sessions import COOKIE, Session, Sessions

log = logging.getLogger("gum_mcp.ui")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SESSION_KEY = "gum_ui_session"
SAFE_METHODS = ("GET", "HEAD")
OPEN_PATHS = ("/login", "/static/")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]

SIGNED_OUT = (b"<!doctype html><html lang=en><meta charset=utf-8><title>Signed out - gum-mcp</title>"
              b"<link rel=stylesheet href=/static/app.css><main class=solo><h1>You are not signed in</h1>"
              b"<p>Run <code>gum-mcp ui</code> in a terminal: it opens this page with a new one-time link.</p></main>")


def same_origin(origin: str, host: str | None) -> bool:
    """`origin` is this very server as the browser reached it (scheme http, the Host's name and port)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return False
    request = split_authority(host) if host else None
    if request is None or parts.scheme != "http" or not parts.hostname:
        return False
    return normalise(parts.hostname) == request[0] and (port or 80) == (request[1] or 80)


def cookie_value(headers: list[tuple[bytes, bytes]], name: str = COOKIE) -> str | None:
    raw = "; ".join(v.decode("latin-1") for k, v in headers if k.lower() == b"cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


class UIGate:
    """ASGI middleware in front of the page's routes (see the module docstring)."""

    def __init__(self, app: Any, *, sessions: Sessions, policy: Policy) -> None:
        self.app = app
        self.sessions = sessions
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        refusal, session = self.check(scope)
        if refusal is not None:
            status, body, headers = refusal
            await respond(send_with_headers, status, body, headers)
            return
        await self.app({**scope, SESSION_KEY: session}, receive, send_with_headers)

    def check(self, scope: Scope) -> tuple[tuple[int, bytes, list[tuple[bytes, bytes]]] | None, Session | None]:
        headers = scope.get("headers") or []
        host = first_header(headers, b"host")
        if not self.policy.host_ok(host):
            log.warning("page: refused a request with Host %r", host)
            return (421, b"Invalid Host header", [(b"content-type", b"text/plain")]), None
        origin = first_header(headers, b"origin")
        if origin is not None and not (self.policy.origin_ok(origin, host) and same_origin(origin, host)):
            log.warning("page: refused a request with Origin %r", origin)
            return (403, b"Invalid Origin header", [(b"content-type", b"text/plain")]), None
        method = scope.get("method", "GET")
        fetch_site = first_header(headers, b"sec-fetch-site")
        if method not in SAFE_METHODS and fetch_site not in (None, "same-origin", "none"):
            log.warning("page: refused a %s change from a %s page", method, fetch_site)
            return (403, b"Cross-site request refused", [(b"content-type", b"text/plain")]), None
        path = scope.get("path", "/")
        session = self.sessions.session(cookie_value(headers))
        if session is None and not path.startswith(OPEN_PATHS):
            return (401, SIGNED_OUT, [(b"content-type", b"text/html; charset=utf-8")]), None
        return None, session
