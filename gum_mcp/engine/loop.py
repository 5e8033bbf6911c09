"""The engine loop: one async task that turns the inbox into propositions, batch by batch.

When a batch is due:
- at least `batch_min` observations are pending (capped at `batch_max`), or
- the oldest pending observation has waited `batch_max_wait` seconds, so a lone observation is
  processed within that time (plus at most one poll interval).

A batch is at most `batch_max` observations, oldest first. The loop looks at the inbox every
`poll_interval` seconds (to notice observations added by other processes) and at once when
`notify()` is called (this process added one). All timing decisions use the injectable `now()`.

Failures: an outage (the provider unreachable, timing out, or answering 429 / 5xx after the
provider's own retries) counts no attempt: the batch stays whole and pending and the loop backs
off, so a provider that is down for hours loses and fails nothing. A `StaleBatch` (another process
changed a proposition the batch was decided against, e.g. feedback) counts no attempt either: the
batch is decided again at once against the new state (after three in a row, with the backoff).

An invalid reply (after the provider's one repair) for a batch of several observations splits the
batch in halves, level by level (`_isolate`), so the good observations go through and only the
one(s) whose reply stays invalid on their own are marked failed at once, with the reason. When no
part goes through in the first `BLIND_SPLIT_LEVELS` levels, the model rather than an observation is
at fault: the rest counts one attempt, as below. An outage, a stale batch, a pause or another error
while splitting stops it; what is left is handled as that error says.

Any other `LLMError` (an invalid reply for a lone observation, a 4xx such as a bad key) or an
unexpected error counts one attempt on every observation of the batch (`Store.fail_batch`); after
`GUM_MAX_ATTEMPTS` they become failed with the reason, and `Store.retry_failed` re-queues them.
After a failure the loop waits `failure_backoff * 2**(n-1)` seconds, capped at
`failure_backoff_max` (`backoff_delay`: no overflow at any n), before the next batch.
`LLMBudgetExceeded` pauses the engine until the budget resets and `LLMNotConfigured` until
`resume()`; neither counts an attempt, so nothing is dropped.

An error that does not change is not an outage: when the provider answers the same HTTP error (any
status but 408, 409, 429, 502, 503 and 504, which mean "busy" or "down for now"; the message compared
with its numbers blanked) `GUM_LLM_SAME_ERROR_LIMIT` times in a row (default 5), the server rejects
what we send (an incompatible server, a wrong model name or key): the engine pauses with the reason
("the server at ... rejects every request for ...: ..."), kept in the store (`engine_pause`) so status
and doctor show it in every process. `gum-mcp retry` clears it (the running engine looks each poll);
an engine started under another configuration (`llm.memory.config_fingerprint`) clears it itself.
Connection errors, timeouts and the statuses above keep backing off without end, as before.

A timed-out call leaves a local server busy with it: the backoff after a timeout is at least
GUM_LLM_TIMEOUT (capped at `failure_backoff_max`), so the next call does not queue behind it.

Bounded prompts (`gum_mcp.engine.fit`): a claimed batch is cut to the observations whose prompts fit
GUM_LLM_CONTEXT (`pipeline.fitting`); a step whose prompt still does not fit (`PromptTooLarge`) makes
the engine decide half as many at a time, counting no attempt, and the size grows back after each
committed batch. A single observation that cannot fit counts an attempt like any other error.

Cancellation: cancelling `run()` mid-batch leaves the batch pending (nothing is written before the
one `complete_batch` transaction).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from gum_mcp.config import Settings
from gum_mcp.domain import Observation, utcnow
from gum_mcp.engine.fit import PromptTooLarge
from gum_mcp.engine.pipeline import BatchOutcome, RelatedFn, fitting, process_batch
from gum_mcp.llm.errors import (
    LLMBudgetExceeded,
    LLMError,
    LLMInvalidReply,
    LLMNotConfigured,
    LLMUnavailable,
    describe,
)
from gum_mcp.llm.memory import config_fingerprint
from gum_mcp.store.forget_guard import BatchForgotten
from gum_mcp.store.propositions import StaleBatch

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.engine")

#: Called after each committed batch (the runtime updates the vector index). Errors are logged.
AfterCommitHook = Callable[[BatchOutcome], Awaitable[None]]

#: Splitting a batch whose reply is invalid: levels of halves tried before concluding, when no part
#: went through, that the model rather than an observation is at fault.
BLIND_SPLIT_LEVELS = 2
#: Stale batches decided again at once before the backoff applies (another process keeps changing things).
STALE_AT_ONCE = 3
#: HTTP statuses that mean "busy" or "down for now": an outage however often they repeat.
TRANSIENT_STATUSES = frozenset({408, 409, 429, 502, 503, 504})


def same_error_key(exc: BaseException) -> str | None:
    """What makes two errors "the same" for the repeated-error pause, or None for an error that never
    pauses (an outage, an invalid reply, anything but an HTTP error the server keeps giving)."""
    if not isinstance(exc, LLMUnavailable) or exc.status is None or exc.status in TRANSIENT_STATUSES:
        return None
    return f"{exc.status} {re.sub(r'[0-9]+', '#', exc.detail.casefold())[:300]}"


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """`base * 2**(failures-1)` seconds, at most `cap`; finite and capped for any count (the exponent
    stops growing long before a float would overflow)."""
    if failures <= 0 or base <= 0:
        return 0.0
    return min(cap, base * 2.0 ** min(failures - 1, 64))


def _halves(batch: list[Observation]) -> list[list[Observation]]:
    middle = len(batch) // 2
    return [part for part in (batch[:middle], batch[middle:]) if part]


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of the engine for status displays."""

    running: bool
    paused_reason: str | None
    paused_until: datetime | None
    last_batch_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    batches_done: int
    batches_failed: int
    observations_done: int
    consecutive_failures: int
    waiting: int  # pending observations seen at the last look (at most batch_max)

    @property
    def paused(self) -> bool:
        return self.paused_reason is not None


class Engine:
    def __init__(
        self,
        store: Store,
        provider: LLMProvider | None,
        settings: Settings | None = None,
        *,
        related: RelatedFn,
        now: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
        failure_backoff: float = 5.0,
        failure_backoff_max: float = 300.0,
        after_commit: Sequence[AfterCommitHook] = (),
    ) -> None:
        """`provider` None means no provider is configured: the engine starts paused."""
        self.store = store
        self.provider = provider
        self.settings = settings or store.settings
        self.related = related
        self.now = now
        self.poll_interval = poll_interval
        self.failure_backoff = failure_backoff
        self.failure_backoff_max = failure_backoff_max
        self.after_commit: list[AfterCommitHook] = list(after_commit)

        self._running = False
        self._token: Any = None
        self._loop_thread: int | None = None
        self._wake: anyio.Event | None = None
        self._paused_reason: str | None = None
        self._paused_until: datetime | None = None
        self._retry_at: datetime | None = None
        self._hint: float = poll_interval
        self._last_batch_at: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._batches_done = 0
        self._batches_failed = 0
        self._observations_done = 0
        self._consecutive_failures = 0
        self._stale_streak = 0
        self._waiting = 0
        self._fit: int | None = None  # observations per batch while prompts do not fit (None: batch_max)
        self._same: tuple[str | None, int] = (None, 0)  # the repeated error and how often in a row
        self._stuck = False  # paused on a repeated error: resumed when its stored record is cleared
        self._pause_loaded = False
        if provider is None:
            from gum_mcp.llm.factory import not_configured_reason

            self._paused_reason = not_configured_reason(self.settings) or "no LLM provider"

    # -- control

    def status(self) -> EngineStatus:
        return EngineStatus(
            running=self._running,
            paused_reason=self._paused_reason,
            paused_until=self._paused_until,
            last_batch_at=self._last_batch_at,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            batches_done=self._batches_done,
            batches_failed=self._batches_failed,
            observations_done=self._observations_done,
            consecutive_failures=self._consecutive_failures,
            waiting=self._waiting,
        )

    def notify(self) -> None:
        """Look at the inbox now. Safe from any thread; a no-op when the engine is not running."""
        token, wake = self._token, self._wake
        if token is None or wake is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone
            anyio.from_thread.run_sync(wake.set, token=token)

    def resume(self, provider: LLMProvider | None = None) -> None:
        """Clear a pause (e.g. after the provider was configured), a pause on a repeated error (and its
        stored record), and the failure backoff."""
        if provider is not None:
            self.provider = provider
        if self.provider is not None:
            self._paused_reason = None
            self._paused_until = None
            if self._stuck:
                self._stuck = False
                try:
                    self.store.clear_engine_pause()
                except Exception:
                    log.exception("engine: could not clear the stored pause")
        self._same = (None, 0)
        self._retry_at = None
        self.notify()

    # -- the loop

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Process the inbox until cancelled."""
        if self._running:
            raise RuntimeError("the engine is already running")
        self._running = True
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._wake = anyio.Event()
        try:
            task_status.started()
            while True:
                try:
                    busy = await self.step()
                except Exception as exc:  # e.g. the database stayed locked: note it, look again later
                    log.exception("engine: could not look at the inbox")
                    self._last_error = f"internal error: {describe(exc)}"
                    self._last_error_at = self.now()
                    busy, self._hint = False, self.poll_interval
                if not busy:
                    await self._sleep(min(self.poll_interval, max(self._hint, 0.0)))
        finally:
            self._running = False
            self._token = None
            self._wake = None

    async def _sleep(self, seconds: float) -> None:
        wake = self._wake
        assert wake is not None
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await wake.wait()
        else:
            await anyio.lowlevel.checkpoint()
        if wake.is_set():
            self._wake = anyio.Event()

    async def step(self) -> bool:
        """Process one batch if one is due; return whether a batch was attempted."""
        self._hint = self.poll_interval
        now = self.now()
        if not self._pause_loaded:
            await self._load_pause()
        elif self._stuck:
            await self._look_at_pause()
        if self._paused_until is not None and now >= self._paused_until:
            log.info("engine resumes: the pause until %s is over", self._paused_until.isoformat())
            self._paused_reason = None
            self._paused_until = None
        if self._paused_reason is not None:
            return False
        if self._retry_at is not None:
            if now < self._retry_at:
                self._hint = (self._retry_at - now).total_seconds()
                return False
            self._retry_at = None
        limit = self.settings.batch_max if self._fit is None else min(self._fit, self.settings.batch_max)
        batch: list[Observation] = await self.store.aio.claim_batch(limit)
        self._waiting = len(batch)
        if not batch:
            return False
        if len(batch) < min(self.settings.batch_min, limit):
            waited = (now - min(o.created_at for o in batch)).total_seconds()
            if waited < self.settings.batch_max_wait:
                self._hint = self.settings.batch_max_wait - waited
                return False
        fits = len(batch) if len(batch) == 1 else await anyio.to_thread.run_sync(fitting, batch, self.settings)
        if fits < len(batch):
            log.info("engine: %d of %d observations fit one batch within GUM_LLM_CONTEXT", fits, len(batch))
            batch = batch[:fits]
        await self._process(batch)
        return True

    # -- the pause on a repeated error

    async def _load_pause(self) -> None:
        """At the first look: a stored pause on a repeated error holds if the configuration is the one it
        was decided under; under another one it is over."""
        self._pause_loaded = True
        try:
            pause = await self.store.aio.engine_pause()
            if pause is None:
                return
            if pause.config != config_fingerprint(self.settings):
                await self.store.aio.clear_engine_pause()
                log.info("engine: the configuration changed since it paused on a repeated error; resuming")
                return
        except Exception:
            log.exception("engine: could not read the stored pause")
            return
        if self._paused_reason is None:
            self._paused_reason, self._stuck = pause.reason, True
            log.warning("engine paused: %s", pause.reason)

    async def _look_at_pause(self) -> None:
        """Paused on a repeated error: resume once its stored record is gone (`gum-mcp retry`)."""
        try:
            pause = await self.store.aio.engine_pause()
        except Exception:
            log.exception("engine: could not read the stored pause")
            return
        if pause is None:
            log.info("engine resumes: the pause on a repeated error was cleared")
            self._stuck = False
            self._paused_reason = None
            self._same = (None, 0)
            self._retry_at = None

    async def _note_error(self, exc: BaseException) -> None:
        """Count the same error in a row; pause when it reached GUM_LLM_SAME_ERROR_LIMIT."""
        key = same_error_key(exc)
        if key is None:
            self._same = (None, 0)
            return
        count = self._same[1] + 1 if key == self._same[0] else 1
        self._same = (key, count)
        limit = self.settings.llm_same_error_limit
        if not limit or count < limit or self._stuck:
            return
        assert isinstance(exc, LLMUnavailable)
        provider = self.provider
        server = "the server" if provider is None else (
            f"the server at {provider.base_url}" if provider.base_url else f"the {provider.name} API")
        model = "" if provider is None else f" for {provider.model}"
        reason = (f"{server} rejects every request{model}: {exc.detail} ({count} times in a row); fix the "
                  "configuration (see `gum-mcp doctor`), then run `gum-mcp retry`")
        self._pause(reason)
        self._stuck = True
        self._retry_at = None
        try:
            await self.store.aio.set_engine_pause(reason, config_fingerprint(self.settings))
        except Exception:
            log.exception("engine: could not store the pause")

    async def _process(self, batch: list[Observation]) -> None:
        try:
            outcome = await self._decide(batch)
        except Exception as exc:
            await self._on_error(batch, exc)
            return
        await self._done(outcome)

    async def _decide(self, batch: list[Observation]) -> BatchOutcome:
        provider = self.provider
        assert provider is not None
        return await process_batch(
            batch, store=self.store, provider=provider, related=self.related, settings=self.settings, at=self.now(),
        )

    async def _on_error(self, batch: list[Observation], exc: Exception, *, split: bool = True) -> None:
        """What a failed batch means: a pause, a backoff, a split, or an attempt; and a pause when the
        same error keeps coming."""
        await self._handle(batch, exc, split=split)
        await self._note_error(exc)

    async def _handle(self, batch: list[Observation], exc: Exception, *, split: bool) -> None:
        ids = [o.id for o in batch]
        if isinstance(exc, LLMBudgetExceeded):
            self._pause(str(exc), until=exc.paused_until)
        elif isinstance(exc, LLMNotConfigured):
            self._pause(str(exc))
        elif isinstance(exc, BatchForgotten):  # a forget won the race: decide again from what is left, no attempt
            log.info("engine: batch abandoned: %s", exc)
        elif isinstance(exc, LLMUnavailable) and exc.retryable:
            self._outage(str(exc), timeout=exc.kind == "timeout")  # not the batch's fault: back off, no attempt
        elif isinstance(exc, StaleBatch):
            self._stale(str(exc))  # nor is another process's change: decide again, count no attempt
        elif isinstance(exc, PromptTooLarge) and len(batch) > 1:
            self._fit = max(1, len(batch) // 2)  # decide fewer at a time; nobody's fault, no attempt
            log.info("engine: %s; deciding %d observations at a time", exc, self._fit)
        elif isinstance(exc, LLMInvalidReply) and split and len(batch) > 1:
            await self._isolate(batch, exc)
        elif isinstance(exc, LLMError | PromptTooLarge):
            await self._failed(ids, str(exc))
        else:  # a bug or a database error: count it, never spin on it
            log.error("engine: batch of %d observations failed", len(ids), exc_info=exc)
            await self._failed(ids, f"internal error: {describe(exc)}")

    async def _done(self, outcome: BatchOutcome) -> None:
        ids = outcome.observation_ids
        self._batches_done += 1
        self._observations_done += len(ids)
        self._consecutive_failures = 0
        self._stale_streak = 0
        self._same = (None, 0)
        if self._fit is not None:  # prompts fitted: try larger batches again, step by step
            self._fit = None if self._fit * 2 >= self.settings.batch_max else self._fit * 2
        self._last_batch_at = self.now()
        log.info(
            "engine: batch of %d observations: %d new, %d reinforced, %d skipped, %d LLM calls",
            len(ids), len(outcome.new_ids), len(outcome.result.reinforce), len(outcome.result.skipped),
            outcome.llm_calls,
        )
        for hook in list(self.after_commit):
            try:
                await hook(outcome)
            except Exception:
                log.exception("engine: an after-commit hook failed")

    async def _isolate(self, batch: list[Observation], first: LLMInvalidReply) -> None:
        """The reply for `batch` (several observations) stayed invalid after repair: split it in halves,
        level by level, until the parts whose reply stays invalid are single observations. Those are
        failed at once when some other part went through (the model works; they are the poison)."""
        log.warning("engine: invalid reply for a batch of %d observations; splitting it to find the ones at fault",
                    len(batch))
        level, depth, succeeded = _halves(batch), 1, 0
        suspects: list[tuple[Observation, str]] = []
        while level:
            below: list[list[Observation]] = []
            for i, part in enumerate(level):
                try:
                    outcome = await self._decide(part)
                except LLMInvalidReply as exc:
                    if len(part) == 1:
                        suspects.append((part[0], str(exc)))
                    else:
                        below.extend(_halves(part))
                    continue
                except Exception as exc:  # not the reply's content: stop splitting, handle what is left
                    await self._settle(suspects, succeeded, first)
                    await self._on_error([o for p in [*level[i:], *below] for o in p], exc, split=False)
                    return
                succeeded += 1
                await self._done(outcome)
            if not succeeded and below and depth >= BLIND_SPLIT_LEVELS:
                # Nothing went through: the model, not an observation, is failing. One attempt on all.
                rest = [o for p in below for o in p] + [o for o, _ in suspects]
                await self._failed([o.id for o in rest], str(first))
                return
            level, depth = below, depth + 1
        await self._settle(suspects, succeeded, first)

    async def _settle(self, suspects: list[tuple[Observation, str]], succeeded: int, first: LLMInvalidReply) -> None:
        if not suspects:
            return
        if not succeeded:  # no evidence that the model works: an ordinary attempt
            await self._failed([o.id for o, _ in suspects], str(first))
            return
        now = self.now()
        for obs, problem in suspects:
            reason = ("the reply for this observation alone stayed invalid (its batch went through without it): "
                      f"{problem}")
            self._batches_failed += 1
            self._last_error, self._last_error_at = reason, now
            try:
                await self.store.aio.fail_batch([obs.id], reason, max_attempts=1)
            except Exception:
                log.exception("engine: could not mark observation %d failed", obs.id)
            else:
                log.warning("engine: observation %d failed on its own: %s", obs.id, problem)

    def _pause(self, reason: str, *, until: datetime | None = None) -> None:
        log.warning("engine paused: %s", reason)
        self._paused_reason = reason
        self._paused_until = until

    def _outage(self, reason: str, *, timeout: bool = False) -> None:
        """The provider is unreachable (connection, timeout, 429, 5xx after our retries): keep the
        batch pending with its attempt count unchanged and try again after a growing delay; after a
        timeout at least GUM_LLM_TIMEOUT (the server may still be working on the abandoned call)."""
        now = self.now()
        self._consecutive_failures += 1
        self._last_error = f"provider unavailable: {reason}"
        self._last_error_at = now
        delay = backoff_delay(self._consecutive_failures, self.failure_backoff, self.failure_backoff_max)
        if timeout:
            delay = max(delay, min(self.settings.llm_timeout, self.failure_backoff_max))
        log.warning("engine: provider unavailable, batch stays pending; next try in %.0f s: %s", delay, reason)
        self._retry_at = now + timedelta(seconds=delay)

    def _stale(self, reason: str) -> None:
        """A proposition the batch was decided against changed meanwhile (another process): decide the
        batch again against the new state, counting no attempt; at once, then with the backoff."""
        self._stale_streak += 1
        late = self._stale_streak - STALE_AT_ONCE
        delay = backoff_delay(late, self.failure_backoff, self.failure_backoff_max)
        log.info("engine: stale batch, deciding it again%s: %s", f" in {delay:.0f} s" if delay else "", reason)
        if delay > 0:
            self._retry_at = self.now() + timedelta(seconds=delay)

    async def _failed(self, ids: list[int], reason: str) -> None:
        now = self.now()
        self._batches_failed += 1
        self._consecutive_failures += 1
        self._last_error = reason
        self._last_error_at = now
        try:
            gave_up = await self.store.aio.fail_batch(ids, reason, max_attempts=self.settings.max_attempts)
        except Exception:
            log.exception("engine: could not record the failed attempt")
            gave_up = 0
        if gave_up:
            log.warning("engine: %d observations failed after %d attempts: %s",
                        gave_up, self.settings.max_attempts, reason)
        else:
            log.info("engine: batch failed, will retry: %s", reason)
        delay = backoff_delay(self._consecutive_failures, self.failure_backoff, self.failure_backoff_max)
        if delay > 0:
            self._retry_at = now + timedelta(seconds=delay)
