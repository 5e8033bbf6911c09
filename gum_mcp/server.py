"""The MCP server: the user model as tools over stdio (and, later, authenticated HTTP).

Thin: every tool parses, calls the store, and shapes the output. stdout belongs to the protocol:
nothing here prints; logs go to stderr and to a file under the data directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from gum_mcp import __version__
from gum_mcp.config import Settings
from gum_mcp.domain import Stats
from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.server")

INSTRUCTIONS = (
    "gum-mcp holds a private, local model of the person you are helping: confidence-weighted "
    "propositions inferred from how they use their computer. Call status to see what it knows."
)


def build_server(settings: Settings, store: Store) -> MCPServer:
    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        yield

    server = MCPServer(
        name="gum-mcp", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan,
        log_level="WARNING",
    )

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
    async def status() -> Stats:
        """Counts of observations (pending, processed, skipped, failed) and propositions, and LLM
        usage today. Use it to check whether gum-mcp is learning and whether work has failed."""
        return await store.aio.stats()

    return server


def serve(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "http", False):
        print("gum-mcp: --http is not available yet; run `gum-mcp serve` for stdio", file=sys.stderr)
        return 2
    store = Store.open(settings)
    if sys.stdin.isatty():
        print(
            "gum-mcp serve speaks MCP over stdio: start it from an MCP client, not a terminal.\n"
            f"  Claude Desktop / Cursor / Claude Code: command {sys.executable!r}, args ['-m', 'gum_mcp', 'serve']\n"
            f"  data dir: {settings.data_dir}\n"
            "  (Ctrl-C to stop)",
            file=sys.stderr,
        )
    try:
        build_server(settings, store).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0
