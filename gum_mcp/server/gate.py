"""One gate for gum-mcp's HTTP: every request must name an allowed Host, come from an allowed Origin
(or none), and carry the bearer token of a client, or it is turned away before it reaches an app.

`Gate` is plain ASGI middleware, so the MCP transport (http.py) and any other page served beside it
share the same checks; the caller a token stands for (clients.Caller: its name and scopes) goes on
in the request's ASGI scope, where the MCP server's guard finds it. Tokens are looked up on every
request (`authenticate`), so a token added, revoked or rotated counts from the next request.

Host (DNS-rebinding protection). A rebinding page makes the browser send its own host name, so the
Host must be a name or address this server is actually reached by, derived from the bind address:
- a loopback address: that address, and `localhost` for 127.0.0.1 and ::1 (any other loopback
  address, e.g. 127.0.0.2, is not what `localhost` reaches);
- `localhost`: localhost, 127.0.0.1 and ::1;
- `0.0.0.0` (with --allow-remote): any IPv4 address, localhost, and this machine's host names; `::`
  the same plus any IPv6 address (a dual-stack socket takes both);
- another address or host name: exactly that;
- plus the names given with `--allow-host` (a proxy's or a VPN's name for this machine).
An IP address cannot be rebound, so accepting one never lets a rebinding page in. The port is not
checked: a tunnel (`ssh -L`) or a proxy may change it, and rebinding does not depend on it.

Origin (cross-site requests from browser pages). Absent passes (not a browser). Otherwise it must be a
page on a loopback address (this machine, e.g. the MCP Inspector on localhost), the request's own
origin (same scheme-default port, same host as the Host header), or a name given with --allow-host.

Checks run in that order: Host (421), Origin (403), token (401), cheapest and token-free first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gum_mcp.hosts import (  # noqa: F401  (the policy lives below every entry point; re-exported here)
    Policy,
    first_header,
    ip_of,
    is_loopback,
    machine_names,
    normalise,
    policy_for,
    respond,
    split_authority,
)
from gum_mcp.server.clients import SCOPE_KEY, Caller

log = logging.getLogger("gum_mcp.http")

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Authenticate = Callable[[str], Awaitable[Caller | None]]

UNAUTHORIZED = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>; a client's token comes from "
                                   "`gum-mcp token add NAME --scope ...`"})


def bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; empty when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


# ---------------------------------------------------------------------------------------- the gate
class Gate:
    """ASGI middleware: the Host, Origin and token checks on every HTTP request (see the module docstring)."""

    def __init__(self, app: Any, *, authenticate: Authenticate, host: str, port: int,
                 allow_hosts: Sequence[str] = (), policy: Policy | None = None) -> None:
        self.app = app
        self.authenticate = authenticate
        self.port = port
        self.policy = policy or policy_for(host, allow_hosts=allow_hosts)

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] == "websocket":  # nothing here speaks WebSocket; refuse before anything else
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http":
            caller, refusal = await self.check(scope)
            if refusal is not None:
                await respond(send, *refusal)
                return
            scope = {**scope, SCOPE_KEY: caller}
        await self.app(scope, receive, send)

    async def check(self, scope: Scope) -> tuple[Caller | None, tuple[int, bytes, list[tuple[bytes, bytes]]] | None]:
        """(the caller, None) for a request the gate lets through; (None, (status, body, extra headers))
        for one it turns away."""
        headers = scope.get("headers") or []
        host = first_header(headers, b"host")
        if not self.policy.host_ok(host):
            log.warning("refused a request with Host %r", host)
            return None, (421, b"Invalid Host header", [])
        origin = first_header(headers, b"origin")
        if not self.policy.origin_ok(origin, host):
            log.warning("refused a request with Origin %r", origin)
            return None, (403, b"Invalid Origin header", [])
        secret = bearer(first_header(headers, b"authorization"))
        caller = await self.authenticate(secret) if secret else None
        if caller is None:
            return None, (401, UNAUTHORIZED.encode(), [(b"content-type", b"application/json"),
                                                       (b"www-authenticate", b'Bearer realm="gum-mcp"')])
        return caller, None
