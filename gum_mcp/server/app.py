"""The MCP server: `build_server` puts the tools, resources and prompts over a Runtime, and `serve`
runs it over stdio or (with --http) authenticated HTTP.

The server's lifespan runs the runtime (unless the caller does) and the gum://suggestions watch, and
yields the `GumState` every request reaches through its context (context.py).

Over stdio, `serve` answers the client's handshake first: opening the store and loading the tools,
resources and prompts take longer than the MCP SDK takes to start, so they happen in a worker thread
once the handshake has been answered, and every other request waits for them (`Serving`). A store
that cannot be opened (a wrong key, say) then ends the process with the one-line error and the exit
code of any `gum-mcp` command.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.abc
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from gum_mcp import __version__
from gum_mcp.config import ConfigError, Settings
from gum_mcp.server.logs import log_to_file
from gum_mcp.server.notifications import ResourceNotifier, SuggestionWatch

if TYPE_CHECKING:
    from gum_mcp.runtime import Runtime
    from gum_mcp.server.context import GumState

__all__ = ["INSTRUCTIONS", "build_server", "log_to_file", "serve"]

INSTRUCTIONS = """\
gum-mcp is a private, local model of the person you are helping, learned from how they use their
computer: confidence-weighted propositions (confidence 1-10; decay 1-10, where 10 means a lasting
trait and 1 a passing state), each with its reasoning and evidence. Call query_user before you
personalise an answer or make an assumption about the person; get_recent_activity to see what they
are doing now; record_observation when you learn something durable about them; give_feedback when
they confirm or correct something. Treat propositions as inferences, not facts: weigh confidence
and age, and never reveal them to third parties."""

#: What `serve` answers before its store is open: the handshake and pings (notifications pass too).
BEFORE_OPEN = frozenset({"initialize", "ping"})
#: `serve` opens its store this many seconds after it started at the latest, even if no client asks.
OPEN_GRACE = 1.0

CallNext = Callable[[Any], Awaitable[Any]]


def build_server(runtime: Runtime, *, manage_runtime: bool = True) -> MCPServer:
    """The MCP server over `runtime`. With manage_runtime, the server's lifespan runs it."""
    return Serving(runtime, manage_runtime=manage_runtime).server


class Serving:
    """One MCP server and what it serves: the runtime, the gum://suggestions watch, the tools, resources and
    prompts, and the middleware every request passes on its way to them (RequestServed; the guard, guard.py:
    scopes, the access log, disclosure; the client view, wire.py). It is the server's own middleware and runs
    theirs.

    Made over a runtime (`build_server`), it is assembled at once. Made from settings (`serve`), it answers the
    handshake, pings and notifications at once, and the first message after the handshake (the client's
    `notifications/initialized`, sent once the answer reached it), or OPEN_GRACE, opens the runtime and
    assembles the rest in a worker thread; any other request waits for that."""

    def __init__(self, runtime: Runtime | None = None, *, settings: Settings | None = None,
                 manage_runtime: bool = True) -> None:
        self.settings = settings
        self.manage_runtime = manage_runtime
        self.runtime = runtime
        self.state: GumState | None = None  # once assembled (and, for `serve`, running): every request gets it
        self.middleware: tuple[Any, ...] = ()
        bus = InMemorySubscriptionBus()
        self.notifier = ResourceNotifier(bus)
        self.server: MCPServer = MCPServer(
            name="gum-mcp", title="General User Model", version=__version__, instructions=INSTRUCTIONS,
            lifespan=self.lifespan, log_level="WARNING", subscriptions=bus, middleware=[self],
        )
        self.notifier.attach(self.server)
        self._wanted: anyio.Event | None = None  # set: open the store now
        self._opened: anyio.Event | None = None  # set: the state is there
        self._passed = False  # a message was answered before the store was open
        if runtime is not None:
            self.state, self.middleware = self.assemble(runtime)

    def assemble(self, runtime: Runtime) -> tuple[GumState, tuple[Any, ...]]:
        """The tools, resources and prompts over `runtime`, registered on the server; the state and the middleware
        requests pass. Blocking: it loads them."""
        from gum_mcp.server import access, prompts, resources, tools
        from gum_mcp.server.context import GumState
        from gum_mcp.server.guard import Guard
        from gum_mcp.server.wire import ClientView

        server = self.server
        watch = SuggestionWatch(runtime.store, self.notifier)
        runtime.store.after_forget_hooks.append(watch.poke)
        state = GumState(runtime=runtime, suggestions=watch)
        tools.register(server)
        resources.register(server, state)
        access.register(server, state)
        prompts.register(server)
        server.gum_runtime = runtime  # type: ignore[attr-defined]
        server.gum_suggestions = watch  # type: ignore[attr-defined]
        return state, (RequestServed(runtime), Guard(server), ClientView(server))

    @asynccontextmanager
    async def lifespan(self, _server: MCPServer) -> AsyncIterator[Any]:
        """For as long as the server runs (each connection's lifespan, in-process clients too): the runtime
        (with manage_runtime), then the gum://suggestions watch. For `serve`, they start once the store is open."""
        state = self.state
        if state is not None:
            async with self._running(state):
                yield state
            return
        self._wanted, self._opened = anyio.Event(), anyio.Event()
        async with running(self._open):
            yield self  # requests get the state once it is there (`__call__`)

    @asynccontextmanager
    async def _running(self, state: GumState) -> AsyncIterator[None]:
        """The runtime (with manage_runtime), then the gum://suggestions watch, for the block."""
        async with running(state.runtime.run, self.manage_runtime), running(state.suggestions.run):
            yield

    async def _open(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """`serve`: open the runtime when asked (or after OPEN_GRACE), run it, and let waiting requests in."""
        assert self._wanted is not None and self._opened is not None
        task_status.started()
        with anyio.move_on_after(OPEN_GRACE):
            await self._wanted.wait()
        try:
            state, middleware = await anyio.to_thread.run_sync(self._open_runtime)
        except Exception as exc:
            _exit_with(exc)
        async with self._running(state):
            if self._passed:
                state.runtime.request_served()  # what RequestServed did not see
            self.state, self.middleware = state, middleware
            self._opened.set()
            await anyio.sleep_forever()

    def _open_runtime(self) -> tuple[GumState, tuple[Any, ...]]:
        from gum_mcp.runtime import Runtime

        assert self.settings is not None
        self.runtime = runtime = Runtime(self.settings)
        return self.assemble(runtime)

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        state = self.state
        if state is None:  # `serve`, before its store is open
            if ctx.method != "initialize" and self._wanted is not None:
                self._wanted.set()  # the answer to the handshake reached the client (or there was none)
            if ctx.method in BEFORE_OPEN or ctx.request_id is None:
                try:
                    return await call_next(ctx)
                finally:
                    self._passed = True
            assert self._opened is not None, "the lifespan opens the store"
            await self._opened.wait()
            state = self.state
        if ctx.lifespan_context is not state:  # `serve`'s lifespan yielded before the state was there
            ctx = replace(ctx, lifespan_context=state)
        for outer in reversed(self.middleware):
            call_next = functools.partial(_apply, outer, call_next)
        return await call_next(ctx)

    def close(self) -> None:
        """Close the runtime's store; call after the server has stopped."""
        if self.runtime is not None:
            self.runtime.close()


def _apply(middleware: Any, call_next: CallNext, ctx: Any) -> Awaitable[Any]:
    return middleware(ctx, call_next)


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

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        try:
            return await call_next(ctx)
        finally:
            self.runtime.request_served()


def _exit_with(exc: BaseException) -> NoReturn:
    """End `serve` now because its store could not be opened, reporting `exc` as the CLI reports an error (one
    line and exit code 2 for a setting or a key; else the traceback and 1). At once: the stdio transport waits
    for the client's next line in a thread, and the client waits for answers."""
    if isinstance(exc, ConfigError):
        print(f"gum-mcp: {exc}", file=sys.stderr)
        code = 2
    else:
        traceback.print_exception(exc)
        code = 1
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def serve(settings: Settings, args: argparse.Namespace) -> int:
    """`gum-mcp serve`: MCP over stdio, or over authenticated HTTP with --http."""
    if getattr(args, "http", False):
        from gum_mcp.server.http import serve_http

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
    serving = Serving(settings=settings)  # the store opens once the handshake has been answered
    try:
        serving.server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        serving.close()
    return 0
