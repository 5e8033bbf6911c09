"""The one place gum-mcp touches private attributes of MCP SDK objects (mcp 2.3).

Everything else in `gum_mcp.server` uses the SDK's public surface: the `MCPServer` constructor
(`lifespan=`, `subscriptions=`, `middleware=`), `add_tool`/`add_resource`/`prompt`, `Context`,
`SubscriptionBus.publish` and `ServerSession.send_resource_updated`. Two things have no public hook:

- Serving the handshake era's `resources/subscribe` and `resources/unsubscribe`. MCPServer registers
  no handler for them and the low-level `Server.add_request_handler` that would add one is public, but
  MCPServer keeps its low-level server in `_lowlevel_server`. (`MCPServer.middleware`, provisional,
  could answer the requests, but the SDK derives the `resources.subscribe` capability from the
  registered handlers, so clients would never be told they may subscribe.)
- Telling client connections apart in those handlers: `ctx.session` is a per-request proxy; the
  connection it rides is `ctx.session._connection`.

`missing_internals` names what moved; tests/test_sdk_adapter.py fails loudly when the SDK moves any
of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer

RequestContext = ServerRequestContext[Any, Any]
SubscribeHandler = Callable[[RequestContext, mcp_types.SubscribeRequestParams], Awaitable[mcp_types.EmptyResult]]
UnsubscribeHandler = Callable[[RequestContext, mcp_types.UnsubscribeRequestParams], Awaitable[mcp_types.EmptyResult]]


def missing_internals(server: MCPServer) -> list[str]:
    """The SDK internals this module relies on that `server` lacks (empty when all are there)."""
    low = getattr(server, "_lowlevel_server", None)
    if low is None:
        return ["MCPServer._lowlevel_server"]
    return [f"Server.{name}" for name in ("add_request_handler", "get_request_handler")
            if not callable(getattr(low, name, None))]


def require_internals(server: MCPServer) -> None:
    if problems := missing_internals(server):
        raise RuntimeError(f"this mcp SDK version moved {', '.join(problems)}; update gum_mcp/server/sdk_adapter.py")


def serve_resource_subscriptions(server: MCPServer, subscribe: SubscribeHandler,
                                 unsubscribe: UnsubscribeHandler) -> bool:
    """Serve handshake-era `resources/subscribe` and `resources/unsubscribe` on `server`; False if
    something already serves them (then they are left alone)."""
    require_internals(server)
    low = server._lowlevel_server
    if low.get_request_handler("resources/subscribe") is not None:
        return False
    low.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", mcp_types.UnsubscribeRequestParams, unsubscribe)
    return True


def connection_of(ctx: RequestContext) -> object:
    """A key for the client connection a low-level handler's request came on: each request gets its
    own session proxy over the connection."""
    return getattr(ctx.session, "_connection", ctx.session)
