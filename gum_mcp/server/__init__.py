"""The MCP server: the user model as tools, resources and prompts, over stdio or authenticated HTTP.

Thin: every tool parses its arguments, calls the runtime and the store, and shapes the output
(bounded to MAX_OUTPUT_BYTES). stdout belongs to the protocol: nothing here prints to it; logs go
to stderr and to `<data dir>/logs/gum-mcp.log`.

Laid out like the SDK's own `mcp.server.mcpserver`:
- app.py: `build_server` (the MCPServer and its lifespan) and `serve` (stdio, or HTTP with --http)
- context.py: `GumState`, what tools, resources and prompts reach the runtime through
- tools/: the tools, one module per kind of work (reading, telling, correcting, observing, status,
  suggestions)
- resources.py, prompts.py: the resources and the prompts
- shaping.py: shared output models, the 16 KiB bound, compact text
- notifications.py: telling subscribers that gum://suggestions changed, in both protocol eras
- sdk_adapter.py: the only code that touches private attributes of MCP SDK objects
- http.py, gate.py: the HTTP transport and the token, Host and Origin checks in front of it
- logs.py: where a serving process logs (one rotated file for every process of a data dir)
- wire.py: what clients see of every tool, prompt and resource (clean listings, compact JSON text,
  short errors without tracebacks)

The names below load on first use, so `gum_mcp.server.http` (the token commands) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gum_mcp.server.app import build_server, serve
    from gum_mcp.server.logs import log_to_file
    from gum_mcp.server.shaping import MAX_OUTPUT_BYTES

__all__ = ["MAX_OUTPUT_BYTES", "build_server", "log_to_file", "serve"]


def __getattr__(name: str) -> Any:
    if name in ("build_server", "serve"):
        from gum_mcp.server import app

        return getattr(app, name)
    if name == "log_to_file":
        from gum_mcp.server import logs

        return logs.log_to_file
    if name == "MAX_OUTPUT_BYTES":
        from gum_mcp.server import shaping

        return shaping.MAX_OUTPUT_BYTES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
