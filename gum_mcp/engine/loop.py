"""The engine loop: one async task that turns the inbox into propositions, batch by batch.

When a batch is due:
- at least `batch_min` observations are pending (capped at `batch_max`), or
- the oldest pending observation has waited `batch_max_wait` seconds, so a lone observation is
  processed within that time (plus at most one poll interval).

A batch is at most `batch_max` observations, oldest first. The loop looks at the inbox every
`poll_interval` seconds (to notice observations added by other processes) and at once when
`notify()` is called (this process added one). All timing decisions use the injectable `now()`.

Failures: an outage (the provider unreachable, timing out, or answering 429 / 5xx after the
provider's own retries) counts no attempt: the batch stays pending and the loop backs off, so a
provider that is down for hours loses and fails nothing. Any other `LLMError` (an invalid reply
after repair, a 4xx such as a bad key), a `StaleBatch` or an unexpected error counts one attempt on
every observation of the batch (`Store.fail_batch`); after
`GUM_MAX_ATTEMPTS` they become failed with the reason, and `Store.retry_failed` re-queues them.
After a failure the loop waits `failure_backoff * 2**(n-1)` seconds (capped) before the next
batch. `LLMBudgetExceeded` pauses the engine until the budget resets and `LLMNotConfigured` until
`resume()`; neither counts an attempt, so nothing is dropped.

Cancellation: cancelling `run()` mid-batch leaves the batch pending (nothing is written before the
one `complete_batch` transaction).
"""

from __future__ import annotations

import contextlib
import logging
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
from gum_mcp.engine.pipeline import BatchOutcome, RelatedFn, process_batch
from gum_mcp.llm.errors import LLMBudgetExceeded, LLMError, LLMNotConfigured, LLMUnavailable, describe
from gum_mcp.store.propositions import StaleBatch

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.engine")

#: Called after each committed batch (the runtime updates the vector index). Errors are logged.
AfterCommitHook = Callable[[BatchOutcome], Awaitable[None]]


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
        self._waiting = 0
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
        """Clear a pause (e.g. after the provider was configured) and the failure backoff."""
        if provider is not None:
            self.provider = provider
        if self.provider is not None:
            self._paused_reason = None
            self._paused_until = None
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
        batch: list[Observation] = await self.store.aio.claim_batch(self.settings.batch_max)
        self._waiting = len(batch)
        if not batch:
            return False
        if len(batch) < min(self.settings.batch_min, self.settings.batch_max):
            waited = (now - min(o.created_at for o in batch)).total_seconds()
            if waited < self.settings.batch_max_wait:
                self._hint = self.settings.batch_max_wait - waited
                return False
        await self._process(batch)
        return True

    async def _process(self, batch: list[Observation]) -> None:
        ids = [o.id for o in batch]
        provider = self.provider
        assert provider is not None
        try:
            outcome = await process_batch(
                batch, store=self.store, provider=provider, related=self.related, settings=self.settings,
                at=self.now(),
            )
        except LLMBudgetExceeded as exc:
            self._pause(str(exc), until=exc.paused_until)
            return
        except LLMNotConfigured as exc:
            self._pause(str(exc))
            return
        except LLMUnavailable as exc:
            if exc.retryable:  # an outage is not the batch's fault: back off, count no attempt
                self._outage(str(exc))
                return
            await self._failed(ids, str(exc))
            return
        except (LLMError, StaleBatch) as exc:
            reason = str(exc) if isinstance(exc, LLMError) else f"stale batch: {exc}"
            await self._failed(ids, reason)
            return
        except Exception as exc:  # a bug or a database error: count it, never spin on it
            log.exception("engine: batch of %d observations failed", len(ids))
            await self._failed(ids, f"internal error: {describe(exc)}")
            return
        self._batches_done += 1
        self._observations_done += len(ids)
        self._consecutive_failures = 0
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

    def _pause(self, reason: str, *, until: datetime | None = None) -> None:
        log.warning("engine paused: %s", reason)
        self._paused_reason = reason
        self._paused_until = until

    def _outage(self, reason: str) -> None:
        """The provider is unreachable (connection, timeout, 429, 5xx after our retries): keep the
        batch pending with its attempt count unchanged and try again after a growing delay."""
        now = self.now()
        self._consecutive_failures += 1
        self._last_error = f"provider unavailable: {reason}"
        self._last_error_at = now
        delay = min(self.failure_backoff_max, self.failure_backoff * 2 ** (self._consecutive_failures - 1))
        log.warning("engine: provider unavailable, batch stays pending; next try in %.0f s: %s", delay, reason)
        self._retry_at = now + timedelta(seconds=delay)

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
        delay = min(self.failure_backoff_max, self.failure_backoff * 2 ** (self._consecutive_failures - 1))
        if delay > 0:
            self._retry_at = now + timedelta(seconds=delay)
