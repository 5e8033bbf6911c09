"""The MCP server: `build_server` puts the tools, resources and prompts over a Runtime, and `serve`
runs it over stdio or (with --http) authenticated HTTP.

The server's lifespan runs the runtime (unless the caller does) and the gum://suggestions watch, and
yields the `GumState` every request reaches through its context (context.py).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from gum_mcp import __version__
from gum_mcp.config import Settings
from gum_mcp.runtime import Runtime
from gum_mcp.server import access, prompts, resources, tools
from gum_mcp.server.context import GumState
from gum_mcp.server.guard import Guard
from gum_mcp.server.http import serve_http
from gum_mcp.server.logs import log_to_file
from gum_mcp.server.notifications import ResourceNotifier, SuggestionWatch
from gum_mcp.server.wire import ClientView

__all__ = ["INSTRUCTIONS", "build_server", "log_to_file", "serve"]

INSTRUCTIONS = """\
gum-mcp is a private, local model of the person you are helping, learned from how they use their
computer: confidence-weighted propositions (confidence 1-10; decay 1-10, where 10 means a lasting
trait and 1 a passing state), each with its reasoning and evidence. Call query_user before you
personalise an answer or make an assumption about the person; get_recent_activity to see what they
are doing now; record_observation when you learn something durable about them; give_feedback when
they confirm or correct something. Treat propositions as inferences, not facts: weigh confidence
and age, and never reveal them to third parties."""


def build_server(runtime: Runtime, *, manage_runtime: bool = True) -> MCPServer:
    """The MCP server over `runtime`. With manage_runtime, the server's lifespan runs it."""
    bus = InMemorySubscriptionBus()
    notifier = ResourceNotifier(bus)
    watch = SuggestionWatch(runtime.store, notifier)
    runtime.store.after_forget_hooks.append(watch.poke)
    state = GumState(runtime=runtime, suggestions=watch)
    guard = Guard()  # scopes and the access log, for every tool, resource and prompt (guard.py)
    server: MCPServer = MCPServer(
        name="gum-mcp", title="General User Model", version=__version__, instructions=INSTRUCTIONS,
        lifespan=functools.partial(lifespan, state=state, manage_runtime=manage_runtime), log_level="WARNING",
        subscriptions=bus, middleware=[RequestServed(runtime), guard],
    )
    guard.server = server
    server.middleware.append(ClientView(server))
    tools.register(server)
    resources.register(server, state)
    access.register(server, state)
    prompts.register(server)
    notifier.attach(server)
    server.gum_runtime = runtime  # type: ignore[attr-defined]
    server.gum_suggestions = watch  # type: ignore[attr-defined]
    return server


@asynccontextmanager
async def lifespan(_server: MCPServer, *, state: GumState, manage_runtime: bool) -> AsyncIterator[GumState]:
    """For as long as the server runs (each connection's lifespan, in-process clients too): the runtime
    (with manage_runtime), then the gum://suggestions watch."""
    async with running(state.runtime.run, manage_runtime), running(state.suggestions.run):
        yield state


@asynccontextmanager
async def running(task: Callable[..., Awaitable[Any]], enabled: bool = True) -> AsyncIterator[None]:
    """Run `task` (started with task_status) in the background of the block; cancel it at the end."""
    if not enabled:
        yield
        return
    async with anyio.create_task_group() as tg:
        await tg.start(task)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


class RequestServed:
    """Server middleware: tell the runtime each request was served (the first lets heavy start-up begin)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await call_next(ctx)
        finally:
            self.runtime.request_served()


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """`gum-mcp serve`: MCP over stdio, or over authenticated HTTP with --http."""
    if getattr(args, "http", False):
        return serve_http(settings, args, build=functools.partial(build_server, manage_runtime=False))
    log_to_file(settings)
    if sys.stdin.isatty():
        print(
            "gum-mcp serve speaks MCP over stdio: an MCP client starts it, not a terminal.\n"
            f"  command: {sys.executable}   args: -m gum_mcp serve\n"
            f"  data dir: {settings.data_dir}\n"
            "  `gum-mcp install <client>` writes this into a client's config. Ctrl-C to stop.",
            file=sys.stderr,
        )
    runtime = Runtime(settings)
    try:
        build_server(runtime).run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0
