"""What one gum-mcp process runs for a data directory, and who does the writing.

Every process (an MCP server started by Claude Desktop, another by an IDE, `gum-mcp observe`)
opens the same SQLite store. Exactly one of them, the holder of the engine lock, is the **owner**:
it runs the engine, keeps the vector index in step with the store (from `index_log`) and answers
vector searches for the others over a Unix socket in the data directory. The others are
**followers**: they read and write SQLite (observations, feedback, forget), which the owner picks
up, forward searches to the owner, and fall back to keyword search when it cannot be reached. A
follower tries the lock every second, so when the owner exits another live process takes over.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import anyio.to_thread

from gum_mcp.config import LiveSettings, Settings
from gum_mcp.domain import utcnow
from gum_mcp.forgetting import open_store
from gum_mcp.lock import EngineLock
from gum_mcp.store.policy import PolicyFile

if TYPE_CHECKING:
    from gum_mcp.engine.loop import Engine
    from gum_mcp.engine.tagging import Tagger
    from gum_mcp.index.vector_index import VectorIndex
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.observers import ObserverSet
    from gum_mcp.retrieval import Hit, Over
    from gum_mcp.store import Store
    from gum_mcp.store.retention import RetentionReport

log = logging.getLogger("gum_mcp.runtime")

SOCKET_NAME = "engine.sock"
#: How long a serving process's heavy start (the engine, the vector index and its model) waits for
#: the first request to be answered, so a client's handshake is not slowed by it. A process that
#: serves no requests (`gum-mcp observe`) starts at once.
STARTUP_GRACE = 2.0
#: Test-only: the engine's start waits until this file exists (like the store's crash points, it is
#: read from the environment and does nothing unless set), so a test can prove what does not wait
#: for the engine.
ENGINE_START_GATE_ENV = "GUM_TEST_ENGINE_START_GATE"
RPC_TIMEOUT = 10.0  # on top of the owner's own bounded wait for its index (GUM_INDEX_WAIT)
CHROMA_RETRY = 5.0  # seconds between attempts to open a Chroma server (GUM_CHROMA_URL) that did not answer
MAX_RPC_BYTES = 4 * 1024 * 1024

Role = Literal["starting", "owner", "follower"]


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    note: str | None  # why results may be weaker than usual (e.g. keyword search only)


class Runtime:
    def __init__(
        self, settings: Settings, *, engine: bool = True, serving: bool = True, takeover_interval: float = 1.0,
        index_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.lock = EngineLock(settings.data_dir)
        self.role: Role = "starting"
        self.run_engine = engine
        self.serving = serving
        self.takeover_interval = takeover_interval
        self.index_interval = index_interval
        self.index: VectorIndex | None = None
        self.index_problem: str | None = "starting"
        self.engine: Engine | None = None
        self.observers: ObserverSet | None = None
        self.provider: LLMProvider | None = None
        self.policy = PolicyFile(settings.policy_path)  # who may see what (gum_mcp/store/policy.py)
        self.tagger: Tagger | None = None
        self.socket_path = settings.data_dir / SOCKET_NAME
        self._index_wake: anyio.Event | None = None
        self._owner_ready: anyio.Event | None = None
        self._first_request: anyio.Event | None = None
        self._index_settled: anyio.Event | None = None  # set once searches are as good as they will get

    # -- lifecycle
    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: become the owner as soon as the lock is free."""
        self._owner_ready = anyio.Event()
        self._first_request = anyio.Event()
        self._index_settled = anyio.Event()
        task_status.started()
        if self.serving:
            with anyio.move_on_after(STARTUP_GRACE):
                await self._first_request.wait()
                await anyio.sleep(0.05)  # let the answer to that request reach the client first
        try:
            while True:
                if self.lock.try_acquire():
                    log.info("this process (pid %d) owns %s", os.getpid(), self.settings.data_dir)
                    await self._run_owner()
                if self.role != "follower":
                    owner = self.lock.owner()
                    log.info("pid %s owns %s; following", owner.pid if owner else "?", self.settings.data_dir)
                self.role = "follower"
                self._index_settled.set()  # the owner's index answers our searches
                await anyio.sleep(self.takeover_interval)
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    def request_served(self) -> None:
        """The server answered a request: heavy start-up may begin."""
        if self._first_request is not None and not self._first_request.is_set():
            self._first_request.set()

    async def wait_owner_ready(self) -> None:
        """Wait until this process is the owner and its index and engine have started (tests)."""
        if self._owner_ready is None:
            raise RuntimeError("Runtime.run() has not started")
        await self._owner_ready.wait()

    async def _run_owner(self) -> None:
        self.role = "owner"
        self.index_problem = "the vector index is still loading"  # (an encrypted one reads every vector first)
        if self._index_settled.is_set():  # a follower taking over: searches wait for our index now
            self._index_settled = anyio.Event()
        self._index_wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            await tg.start(self._serve_rpc)
            if self.settings.observe:  # first: observing must not wait for the engine or the index
                await self._start_observers()
            tg.start_soon(self._keep_index)
            tg.start_soon(self._keep_private)
            if self.run_engine:
                await self._start_engine(tg)
                tg.start_soon(self._keep_tidy)
                await self._start_tagger(tg)

    async def _shutdown(self) -> None:
        if self.observers is not None:
            observers, self.observers = self.observers, None
            await anyio.to_thread.run_sync(observers.stop)  # flushes coalesced file activity
        if self.provider is not None:
            await self.provider.aclose()
            self.provider = None
        if self.index is not None:
            index, self.index = self.index, None
            await anyio.to_thread.run_sync(index.close)
        if self.role == "owner":
            self.socket_path.unlink(missing_ok=True)
        self.lock.release()
        self.engine = None
        self.tagger = None
        self.role = "starting"

    def close(self) -> None:
        """Close the store; call after run() has ended."""
        self.store.close()

    def run_beside(self, serve: Callable[[], Awaitable[object]]) -> None:
        """Run this runtime beside `serve` (an HTTP server, say) until `serve` returns or Ctrl-C, then
        close the store: what `serve --http` and `gum-mcp ui` both do."""

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(self.run)
                await serve()
                tg.cancel_scope.cancel()

        try:
            anyio.run(main)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    # -- the engine (owner only)
    async def _start_engine(self, tg: anyio.abc.TaskGroup) -> None:
        from gum_mcp.engine.loop import Engine
        from gum_mcp.llm.errors import LLMNotConfigured
        from gum_mcp.llm.factory import build_provider

        gate = os.environ.get(ENGINE_START_GATE_ENV)
        while gate and not os.path.exists(gate):
            await anyio.sleep(0.05)
        try:
            self.provider = build_provider(self.settings, self.store)
        except LLMNotConfigured as exc:
            log.warning("%s; serving what is stored", exc)
            self.provider = None
        self.engine = Engine(self.store, self.provider, self.settings, related=self.related_fn(),
                             after_commit=[self._after_commit])
        tg.start_soon(self.engine.run)
        log.info("engine started")

    async def _start_observers(self) -> None:
        """Observers only append to the inbox; the engine picks their observations up."""
        from gum_mcp.observers import ObserverSet

        self.observers = ObserverSet(self.settings, self.store)
        await anyio.to_thread.run_sync(self.observers.start)
        log.info("observing: %s", ", ".join(self.settings.observe))

    async def _related(self, text: str, k: int) -> Sequence[Hit]:
        """The engine's gather (and its audit's context): the search set up for deduplication, not the
        one users see: no MMR, no recency or confidence weight, vector and keyword, at most 20 hits,
        each with its cosine (`gum_mcp.retrieval.dedup`). The engine runs in the owner, so the search
        is local; right after start it waits (bounded, GUM_INDEX_WAIT) for the index like any search."""
        from gum_mcp.retrieval.dedup import dedup_search

        await self._wait_index_settled(anyio.current_time() + self.settings.index_wait)
        index = self.index
        return await anyio.to_thread.run_sync(functools.partial(dedup_search, self.store, index, text, k))

    async def _related_many(self, texts: Sequence[str], k: int) -> list[Sequence[Hit]]:
        """`_related` for a batch's drafts, embedded in one call (`gum_mcp.retrieval.dedup.dedup_search_many`)."""
        from gum_mcp.retrieval.dedup import dedup_search_many

        await self._wait_index_settled(anyio.current_time() + self.settings.index_wait)
        index = self.index
        return await anyio.to_thread.run_sync(functools.partial(dedup_search_many, self.store, index, list(texts), k))

    def related_fn(self) -> Any:
        """The engine's `related` (`_related`), with its batched form as `.many` (`_related_many`)."""

        async def related(text: str, k: int) -> Sequence[Hit]:
            return await self._related(text, k)

        related.many = self._related_many  # type: ignore[attr-defined]
        return related

    async def _keep_private(self) -> None:
        """Owner only: redact stored text again when the redactor improved (store/reredact.py, resumable, a
        batch at a time), then delete the content of observations the audit skipped once it has been kept
        GUM_SKIPPED_RETENTION_DAYS for review (store/skipped.py), at start and every few minutes."""
        from gum_mcp.store import reredact, skipped

        store = self.store
        try:
            while not (done := await anyio.to_thread.run_sync(reredact.step, store.db, store.redactor)).current:
                await anyio.sleep(0)
            if done.changed:
                self.wake_index()  # a rebuild was requested: the vectors came from the old text
        except Exception:  # a busy or broken store must not stop the engine; the next start goes on
            log.exception("re-redaction failed")
        retention = timedelta(days=self.settings.skipped_retention_days)
        while True:
            try:
                if await anyio.to_thread.run_sync(functools.partial(skipped.purge_content, store.db,
                                                                    retention=retention)):
                    self.wake_index()
            except Exception:
                log.exception("deleting the content of skipped observations failed")
            await anyio.sleep(min(self.settings.retention_interval, max(1.0, retention.total_seconds() / 4)))

    async def _keep_tidy(self) -> None:
        """Retention, at start and every GUM_RETENTION_INTERVAL seconds (owner only; see store/retention.py)."""
        while True:
            # an index that is off for good never compacts index_log itself
            compact = self.index is None and self._index_settled is not None and self._index_settled.is_set()
            try:
                report = await anyio.to_thread.run_sync(
                    functools.partial(apply_retention, self.store, compact_index_log=compact))
            except Exception:  # a busy or broken store must not stop the engine; try again next time
                log.exception("retention failed")
            else:
                if report.removed:
                    self.wake_index()
            await anyio.sleep(self.settings.retention_interval)

    async def _start_tagger(self, tg: anyio.abc.TaskGroup) -> None:
        """The tagging job (gum_mcp/engine/tagging.py): classes for untagged propositions, with the engine's
        provider, while the disclosure policy restricts some client."""
        from gum_mcp.engine.tagging import Tagger

        self.tagger = Tagger(self.store, lambda: self.provider, self.settings,
                             needed=lambda: self.policy.current().restricts_anyone)
        await tg.start(self.tagger.run)

    async def _after_commit(self, _outcome: object) -> None:
        self.wake_index()
        if self.tagger is not None:  # a proposition the model gave no class waits for the job
            self.tagger.wake()

    def notify(self) -> None:
        """This process added an observation: let the engine look now (owner only)."""
        if self.engine is not None:
            self.engine.notify()

    # -- the vector index (owner only)
    def wake_index(self) -> None:
        if self._index_wake is not None:
            self._index_wake.set()

    async def _keep_index(self) -> None:
        from gum_mcp.index.vector_index import open_index

        self.index, self.index_problem = await anyio.to_thread.run_sync(open_index, self.settings)
        self._index_settled.set()  # open (searches are hybrid from here on) or off for good
        # A Chroma server (GUM_CHROMA_URL) that cannot be reached now may be later: keep trying to open it.
        while self.index is None and self.settings.chroma_url and self.index_problem and (
                "unavailable (" in self.index_problem):
            log.warning("vector search off until the Chroma server answers: %s", self.index_problem)
            self._owner_ready.set()
            await anyio.sleep(CHROMA_RETRY)
            self.index, self.index_problem = await anyio.to_thread.run_sync(open_index, self.settings)
        if self.index is None:
            log.warning("vector search off: %s", self.index_problem)
            self._owner_ready.set()
            return
        while True:
            try:
                if await self.store.aio.take_reindex_request():
                    log.info("rebuilding the vector index, as another process asked")
                    await anyio.to_thread.run_sync(self.index.rebuild, self.store)
                await anyio.to_thread.run_sync(self.index.catch_up, self.store)  # it logs what it did
            except Exception as exc:  # a broken index must not stop the engine or the server
                problem = f"catch-up failed: {type(exc).__name__}: {exc}"
                if problem != self.index_problem:  # once per problem (a server down fails every second)
                    log.exception("index catch-up failed; retrying")
                self.index_problem = problem
            else:
                if self.index_problem:
                    log.info("the vector index is in step again")
                self.index_problem = None
            self._owner_ready.set()
            with anyio.move_on_after(self.index_interval):
                await self._index_wake.wait()
            self._index_wake = anyio.Event()

    # -- search: local for the owner, forwarded for followers
    async def search(
        self, query: str | None, *, k: int = 5, since: datetime | None = None, until: datetime | None = None,
        min_confidence: int | None = None, over: Over = "propositions",
    ) -> SearchResult:
        from gum_mcp import retrieval

        args = {"query": query, "k": k, "since": since, "until": until, "min_confidence": min_confidence,
                "over": over}
        # Right after start the index is still opening (here or in the owner): wait for it, bounded.
        deadline = anyio.current_time() + self.settings.index_wait
        self.request_served()  # a search is waiting: the heavy start need not wait any longer
        while True:
            await self._wait_index_settled(deadline)
            if self.role == "owner":
                return await self._search_local(args)
            try:
                hits, note = await self._search_remote(args)
                return SearchResult(hits, note)
            except (OSError, TimeoutError, ValueError, anyio.EndOfStream, anyio.BrokenResourceError) as exc:
                if anyio.current_time() < deadline and not isinstance(exc, ValueError):
                    await anyio.sleep(0.05)  # an owner starting or handing over: try again (or become it)
                    continue
                log.info("owner unreachable for search (%s); keyword search only", exc)
                hits = await anyio.to_thread.run_sync(lambda: retrieval.search(self.store, None, **args))
                return SearchResult(
                    hits, "keyword search only: the process that owns the vector index is unreachable")

    async def _wait_index_settled(self, deadline: float) -> None:
        """Until this process's index has opened (owner), a live owner answers (follower), or `deadline`."""
        if self._index_settled is None:  # run() has not started (a runtime used without its loop)
            return
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            await self._index_settled.wait()

    async def _search_local(self, args: dict[str, Any]) -> SearchResult:
        from gum_mcp import retrieval

        index = self.index
        notes: list[str] = []  # the vector side failing (a Chroma server down) answers by keyword, with a note
        hits = await anyio.to_thread.run_sync(lambda: retrieval.search(self.store, index, **args, notes=notes))
        note = f"keyword search only: {self.index_problem}" if index is None else (notes[0] if notes else None)
        return SearchResult(hits, note)

    async def _search_remote(self, args: dict[str, Any]) -> tuple[list[Hit], str | None]:
        request = {"op": "search", "args": {**args, "since": _iso(args["since"]), "until": _iso(args["until"])}}
        with anyio.fail_after(RPC_TIMEOUT + self.settings.index_wait):
            stream = await anyio.connect_unix(self.socket_path)
            async with stream:
                await stream.send(json.dumps(request).encode() + b"\n")
                reply = await _read_line(stream)
        data = json.loads(reply)
        if "error" in data:
            raise ValueError(data["error"])
        from gum_mcp.retrieval import Hit

        found = [Hit.from_dict(item) for item in data["hits"]]
        # the owner sends ids and scores; the records come from our own connection to the store
        props = await self.store.aio.get_propositions([h.id for h in found if h.kind == "proposition"])
        hits = []
        for hit in found:
            if hit.kind == "proposition":
                if hit.id in props and props[hit.id].current:
                    hits.append(replace(hit, proposition=props[hit.id]))
            else:
                try:
                    hits.append(replace(hit, observation=await self.store.aio.get_observation(hit.id)))
                except LookupError:
                    continue
        return hits, data.get("note")

    async def _serve_rpc(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.socket_path.unlink(missing_ok=True)
        try:
            listener = await anyio.create_unix_listener(self.socket_path)
        except (OSError, NotImplementedError) as exc:  # path too long, no AF_UNIX (some Windows)
            log.warning("cannot serve searches to other processes (%s); they will use keyword search", exc)
            task_status.started()
            return
        os.chmod(self.socket_path, 0o600)
        task_status.started()
        async with listener:
            await listener.serve(self._handle_rpc)

    async def _handle_rpc(self, stream: anyio.abc.SocketStream) -> None:
        # Nothing a client does (leaving mid-request, sending garbage) may escape: the listener runs
        # this in the owner's task group, so an exception here would stop the engine and the index.
        try:
            await self._answer_rpc(stream)
        except Exception as exc:
            log.info("a search request from another process ended early: %s: %s", type(exc).__name__, exc)

    async def _answer_rpc(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                request = json.loads(await _read_line(stream))
                if request.get("op") != "search":
                    raise ValueError(f"unknown op {request.get('op')!r}")
                args = dict(request["args"])
                args["since"] = _from_iso(args.get("since"))
                args["until"] = _from_iso(args.get("until"))
                # the caller's client waits too: give our index the same bounded time to open
                await self._wait_index_settled(anyio.current_time() + self.settings.index_wait)
                result = await self._search_local(args)
                reply: dict[str, Any] = {"hits": [hit.as_dict() for hit in result.hits], "note": result.note}
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            await stream.send(json.dumps(reply).encode() + b"\n")

    # -- status
    def observing(self) -> dict[str, Any]:
        """Which observers run (in the owner) and whether observing is paused (for every process)."""
        from gum_mcp.observers import paused_until, show_pause

        if self.observers is not None:
            return self.observers.status()
        paused = show_pause(paused_until(self.settings))
        note = ("in the owning process" if self.role == "follower" else
                "none (set GUM_OBSERVE or run `gum-mcp serve --observe screen,files`)")
        return {"paused_until": paused, "observers": [], "note": note}

    def status(self) -> dict[str, Any]:
        owner = self.lock.owner()
        engine = self.engine.status() if self.engine is not None else None
        return {
            "role": self.role,
            "pid": os.getpid(),
            "engine_owner": None if owner is None else owner.describe(),
            "engine": None if engine is None else {
                "running": engine.running, "paused_reason": engine.paused_reason,
                "last_batch_at": _iso(engine.last_batch_at), "last_error": engine.last_error,
                "batches_done": engine.batches_done, "batches_failed": engine.batches_failed,
            },
            "observing": self.observing(),
            "vector_index": "ready" if self.index is not None else (
                "in the owning process" if self.role == "follower" else f"off: {self.index_problem}"),
            "tagging": None if self.tagger is None else self.tagger.status().as_dict(),
        }


def apply_retention(store: Store, *, now: datetime | None = None, retention_days: int | None = None,
                    compact_index_log: bool = False) -> RetentionReport:
    """Apply the store's retention (its settings; `retention_days` overrides GUM_RETENTION_DAYS), delete the
    kept screenshots older than the retention period, record the run for status and log what was removed.
    Blocking: async callers run it in a worker thread."""
    from gum_mcp.observers import forget_screenshots
    from gum_mcp.store.retention import RetentionPolicy

    settings = LiveSettings(store.settings).current()  # GUM_RETENTION_DAYS as <data dir>/.env says now
    now = now or utcnow()
    report = store.apply_retention(RetentionPolicy.from_settings(settings, retention_days=retention_days), now=now)
    if report.retention_days > 0:
        report.screenshots_deleted = forget_screenshots(
            settings, until=now - timedelta(days=report.retention_days), pending=False)
    if compact_index_log:
        report.index_log_compacted = store.compact_index_log(store.index_log_max_seq())
    store.record_retention(report)
    log.info("retention: %s (%.1f s)", report.line(), report.seconds)
    return report


async def _read_line(stream: anyio.abc.ByteReceiveStream) -> bytes:
    buffer = b""
    while not buffer.endswith(b"\n"):
        chunk = await stream.receive()
        buffer += chunk
        if len(buffer) > MAX_RPC_BYTES:
            raise ValueError("reply too large")
    return buffer


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME
