"""Telling subscribed clients that `gum://suggestions` changed, in both protocol eras.

`gum://suggestions` lists the open suggestions; a client that subscribed is told when that list
changes:
- 2026-07-28 era: `subscriptions/listen` with `resource_subscriptions=["gum://suggestions"]`; we
  publish a `ResourceUpdated` event on the subscription bus `build_server` hands to the server
  (`MCPServer(subscriptions=...)`).
- handshake era: `resources/subscribe` (MCPServer serves no handler for it, so `sdk_adapter`
  registers one on the low-level server) and a `notifications/resources/updated` on that connection.
What counts as a change is the fingerprint of the open list (ids and statuses,
`Store.suggestions_fingerprint`). It is checked at once after suggest_actions and
respond_to_suggestion, woken by every forget done through this process's store (an after-forget
hook), and polled every `WATCH_INTERVAL` seconds while the server runs (its lifespan runs the
watch), which catches changes made by other processes (another client's server, `gum-mcp forget`)
and suggestions expiring.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import mcp_types
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated

from gum_mcp.domain import ForgetReport
from gum_mcp.server.sdk_adapter import RequestContext, connection_of, serve_resource_subscriptions

if TYPE_CHECKING:
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.server")

SUGGESTIONS_URI = "gum://suggestions"
WATCH_INTERVAL = 2.0


class ResourceNotifier:
    """Tells the clients subscribed to a resource that it changed, in both protocol eras."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self._bus = bus
        self._sessions: dict[str, dict[object, Any]] = {}  # uri -> connection -> a session on it

    def attach(self, server: MCPServer) -> None:
        """Serve the handshake era's resources/subscribe and resources/unsubscribe on `server`."""
        if not serve_resource_subscriptions(server, self._subscribe, self._unsubscribe):
            log.warning("resources/subscribe already has a handler; handshake-era clients will not be notified "
                        "of %s", SUGGESTIONS_URI)

    async def _subscribe(self, ctx: RequestContext, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
        self._sessions.setdefault(str(params.uri), {})[connection_of(ctx)] = ctx.session
        return mcp_types.EmptyResult()

    async def _unsubscribe(self, ctx: RequestContext, params: mcp_types.UnsubscribeRequestParams
                           ) -> mcp_types.EmptyResult:
        self._sessions.get(str(params.uri), {}).pop(connection_of(ctx), None)
        return mcp_types.EmptyResult()

    def subscribers(self, uri: str) -> int:
        """Handshake-era subscribers (listen streams are counted by the SDK, not here)."""
        return len(self._sessions.get(uri, {}))

    async def notify(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))
        for key, session in list(self._sessions.get(uri, {}).items()):
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # the client went away: forget its subscription
                log.info("dropping a %s subscriber: %s", uri, type(exc).__name__)
                self._sessions.get(uri, {}).pop(key, None)


class SuggestionWatch:
    """Notifies subscribers of gum://suggestions when the open list changes (see the module docstring)."""

    def __init__(self, store: Store, notifier: ResourceNotifier, interval: float = WATCH_INTERVAL) -> None:
        self.store = store
        self.notifier = notifier
        self.interval = interval
        self.last = store.suggestions_fingerprint()
        self._waiters: list[tuple[int, Any, anyio.Event]] = []  # (loop thread id, loop token, wake event)
        self._lock = threading.Lock()

    async def check(self) -> bool:
        """Notify if the open list changed since the last notification; True if it did."""
        fingerprint = await self.store.aio.suggestions_fingerprint()
        if fingerprint == self.last:
            return False
        self.last = fingerprint
        await self.notifier.notify(SUGGESTIONS_URI)
        return True

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        waiter = (threading.get_ident(), anyio.lowlevel.current_token(), anyio.Event())
        with self._lock:
            self._waiters.append(waiter)
        task_status.started()
        try:
            while True:
                with anyio.move_on_after(self.interval):
                    await waiter[2].wait()
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    waiter = (waiter[0], waiter[1], anyio.Event())
                    self._waiters.append(waiter)
                try:
                    await self.check()
                except Exception:  # a busy or closing store must not end the watch
                    log.exception("checking %s for changes failed", SUGGESTIONS_URI)
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def poke(self, _report: ForgetReport | None = None) -> None:
        """Wake the watchers now (an after-forget hook: runs in whatever thread forgot)."""
        with self._lock:
            waiters = list(self._waiters)
        here = threading.get_ident()
        for thread_id, token, event in waiters:
            try:
                if thread_id == here:
                    event.set()
                else:
                    anyio.from_thread.run_sync(event.set, token=token)
            except Exception:  # that loop is closing; its watcher is gone
                pass
