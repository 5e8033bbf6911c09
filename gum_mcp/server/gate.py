"""One gate for gum-mcp's HTTP: every request must carry the bearer token, name an allowed Host, and
come from an allowed Origin (or none), or it is turned away before it reaches an app.

`Gate` is plain ASGI middleware, so the MCP transport (http.py) and any other page served beside it
share the same checks. The rest are pure functions: which Host and Origin values a server bound to
host:port accepts (DNS-rebinding protection), and the checks themselves. The policy is the MCP SDK's
own (mcp.server.transport_security), which http.py therefore switches off in the transport:
- bound to 127.0.0.1, localhost or ::1: Host `127.0.0.1:*`, `localhost:*` or `[::1]:*`, Origin
  `http://` and the same;
- bound to another, non-loopback address (`--allow-remote`): Host `host:port` or `host`, Origin
  `http://host:port`;
- any other loopback address (e.g. 127.0.0.2): no Host or Origin check.
Checks run in that order: token (401), Host (421), Origin (403); an absent Origin passes.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("gum_mcp.http")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: the bind addresses the MCP SDK protects with its loopback allow-lists
LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]

UNAUTHORIZED = json.dumps({"error": "unauthorized: send Authorization: Bearer <token> (see `gum-mcp token`)"})


# ---------------------------------------------------------------------------------------- policy
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> list[str] | None:
    """The Host header values a server bound to host:port accepts; None: any."""
    if host in LOOPBACK_BINDS:
        return list(LOOPBACK_HOSTS)
    return None if is_loopback(host) else [f"{host}:{port}", host]


def allowed_origins(host: str, port: int) -> list[str] | None:
    """The Origin header values a server bound to host:port accepts (an absent Origin always passes); None: any."""
    if host in LOOPBACK_BINDS:
        return list(LOOPBACK_ORIGINS)
    return None if is_loopback(host) else [f"http://{host}:{port}"]


def matches(value: str, allowed: Sequence[str]) -> bool:
    """`value` is one of `allowed`, where `x:*` stands for x with any port."""
    return value in allowed or any(a.endswith(":*") and value.startswith(a[:-1]) for a in allowed)


def host_ok(host: str | None, allowed: Sequence[str] | None) -> bool:
    return allowed is None or (bool(host) and matches(host or "", allowed))


def origin_ok(origin: str | None, allowed: Sequence[str] | None) -> bool:
    return allowed is None or not origin or matches(origin, allowed)


def token_ok(authorization: bytes, token: str) -> bool:
    return hmac.compare_digest(authorization, f"Bearer {token}".encode())


# ---------------------------------------------------------------------------------------- the gate
class Gate:
    """ASGI middleware: the token, Host and Origin checks on every HTTP request (see the module docstring)."""

    def __init__(self, app: Any, *, token: str, host: str, port: int) -> None:
        self.app = app
        self.token = token
        self.hosts = allowed_hosts(host, port)
        self.origins = allowed_origins(host, port)

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await respond(send, *refusal)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, bytes, list[tuple[bytes, bytes]]] | None:
        """(status, body, extra headers) for a request the gate turns away; None to let it through."""
        headers = scope.get("headers") or []
        if not token_ok(dict(headers).get(b"authorization", b""), self.token):
            return 401, UNAUTHORIZED.encode(), [(b"content-type", b"application/json"),
                                                (b"www-authenticate", b'Bearer realm="gum-mcp"')]
        host = first_header(headers, b"host")
        if not host_ok(host, self.hosts):
            log.warning("refused a request with Host %r", host)
            return 421, b"Invalid Host header", []
        origin = first_header(headers, b"origin")
        if not origin_ok(origin, self.origins):
            log.warning("refused a request with Origin %r", origin)
            return 403, b"Invalid Origin header", []
        return None


def first_header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in headers if key.lower() == name), None)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
