"""The tagging job: gives existing propositions their sensitivity class, in the background of the owner.

New propositions get their class from the propose and revise steps (or from what they supersede); those
stored before classes existed, and any the model left without one, are untagged, and withheld from every
client a disclosure policy restricts until this job tags them.

- Resumable: the work left is what the store holds untagged (oldest first), so a restart goes on where it
  stopped; a class once set is never overwritten.
- Batched: up to `batch_size` propositions per LLM call (fewer when GUM_LLM_CONTEXT is small), each shown by
  its typed id and the start of its text (prompts/tagging.py). Ids the reply invents are ignored.
- Lineage: a proposition's class is the most sensitive of the model's answer and the classes of what it
  superseded (parents come first, being older); one whose parent is still untagged waits for it.
- Accounted and within the daily budget: every call goes through `LLMProvider.complete` (stage "tag"), which
  records it and refuses it once the budget is spent; the job then pauses until the budget resets. Without a
  provider it pauses, and it does nothing while no client is restricted (`needed`).
- Failures: an outage backs off (doubling, capped); an invalid reply halves the batch, and a proposition whose
  reply stays invalid on its own, or that replies keep leaving out, is set aside until the next start (it
  stays withheld).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from gum_mcp.config import Settings
from gum_mcp.domain import most_sensitive, utcnow
from gum_mcp.engine.prompts import ids
from gum_mcp.engine.prompts.common import capped, shaped
from gum_mcp.engine.prompts.tagging import TEXT_CHARS, TagReply, tag_message, tag_system
from gum_mcp.llm.errors import LLMBudgetExceeded, LLMError, LLMInvalidReply, LLMNotConfigured, describe

if TYPE_CHECKING:
    from gum_mcp.llm.base import LLMProvider
    from gum_mcp.store import Store
    from gum_mcp.store.sensitivity import Untagged

log = logging.getLogger("gum_mcp.engine")

STAGE = "tag"
BATCH_SIZE = 40
#: Replies that leave a proposition out before it is set aside.
MAX_MISSES = 2


def batch_size_for(settings: Settings, most: int = BATCH_SIZE) -> int:
    """Propositions per call: at most `most`, and their text in about half of GUM_LLM_CONTEXT (4 characters a
    token, TEXT_CHARS and some markup each)."""
    return max(1, min(most, settings.llm_context * 2 // (TEXT_CHARS + 40)))


@dataclass(frozen=True)
class TaggerStatus:
    state: str  # tagging | idle (nothing to tag) | paused | not needed (no client is restricted)
    untagged: int | None
    tagged: int  # by this process
    paused_reason: str | None = None
    paused_until: datetime | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "untagged": self.untagged, "tagged": self.tagged,
                "paused_reason": self.paused_reason,
                "paused_until": None if self.paused_until is None else self.paused_until.isoformat(),
                "last_error": self.last_error}


class Tagger:
    def __init__(
        self,
        store: Store,
        provider: Callable[[], LLMProvider | None],
        settings: Settings,
        *,
        needed: Callable[[], bool] = lambda: True,
        batch_size: int | None = None,
        poll_interval: float = 30.0,
        failure_backoff: float = 5.0,
        failure_backoff_max: float = 600.0,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """`provider()`: the LLM provider now (None: not configured); `needed()`: whether some client is
        restricted (otherwise there is no reason to spend tokens)."""
        self.store = store
        self.provider = provider
        self.settings = settings
        self.needed = needed
        self.most = batch_size or batch_size_for(settings)
        self.size = self.most
        self.poll_interval = poll_interval
        self.failure_backoff = failure_backoff
        self.failure_backoff_max = failure_backoff_max
        self.now = now
        self.set_aside: set[int] = set()
        self._misses: dict[int, int] = {}
        self._failures = 0
        self._retry_at: datetime | None = None
        self._paused_until: datetime | None = None
        self._state = "idle"
        self._paused_reason: str | None = None
        self._last_error: str | None = None
        self._untagged: int | None = None
        self._tagged = 0
        self._wake: anyio.Event | None = None

    def status(self) -> TaggerStatus:
        return TaggerStatus(state=self._state, untagged=self._untagged, tagged=self._tagged,
                            paused_reason=self._paused_reason, paused_until=self._paused_until,
                            last_error=self._last_error)

    def wake(self) -> None:
        """Look for untagged propositions now (e.g. after a batch committed). From the job's event loop."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Tag until cancelled."""
        self._wake = anyio.Event()
        task_status.started()
        while True:
            try:
                worked = await self.step()
            except Exception as exc:  # a busy store: note it, try again later
                log.exception("tagging: could not tag propositions")
                self._last_error = f"internal error: {describe(exc)}"
                worked = False
                self._backoff()
            if not worked:
                with anyio.move_on_after(self._wait()):
                    await self._wake.wait()
                self._wake = anyio.Event()

    def _wait(self) -> float:
        now = self.now()
        until = [t for t in (self._retry_at, self._paused_until) if t is not None and t > now]
        if until:
            return min(self.poll_interval, max(0.0, (min(until) - now).total_seconds()))
        return self.poll_interval

    def _backoff(self) -> None:
        self._failures += 1
        delay = min(self.failure_backoff_max, self.failure_backoff * 2.0 ** min(self._failures - 1, 32))
        self._retry_at = self.now() + timedelta(seconds=delay)

    def _pause(self, reason: str, until: datetime | None = None) -> bool:
        self._state, self._paused_reason, self._paused_until = "paused", reason, until
        return False

    async def step(self) -> bool:
        """Tag one batch if there is work and the job may run; return whether it got anywhere."""
        now = self.now()
        if not self.needed():
            self._state, self._paused_reason = "not needed", None
            return False
        if self._paused_until is not None:
            if now < self._paused_until:
                return False
            self._paused_until = None
        if self._retry_at is not None and now < self._retry_at:
            return False
        provider = self.provider()
        self._untagged = await self.store.aio.untagged_count()
        if provider is None:
            return self._pause("no LLM provider is configured")
        batch = await self.store.aio.untagged_propositions(limit=self.size, exclude=sorted(self.set_aside))
        if not batch:
            self._state, self._paused_reason = "idle", None
            return False
        self._state, self._paused_reason = "tagging", None
        ready = self._ready(batch)
        if not ready:
            return True  # set aside what waits for an untagged parent; the next batch goes on
        try:
            reply = await self._ask(provider, ready)
        except LLMBudgetExceeded as exc:
            return self._pause("the daily token budget is spent", exc.paused_until)
        except LLMNotConfigured as exc:
            return self._pause(str(exc))
        except LLMInvalidReply as exc:
            self._last_error = str(exc)
            if len(ready) > 1:
                self.size = max(1, len(ready) // 2)
            else:
                self.set_aside.add(ready[0].id)
                log.warning("tagging: proposition %d set aside: the reply about it stays invalid", ready[0].id)
            return True
        except LLMError as exc:
            self._last_error = str(exc)
            self._backoff()
            return False
        self._failures, self._retry_at, self.size = 0, None, self.most
        tags = self._classes(ready, reply)
        if tags:
            done = await self.store.aio.tag_propositions(tags)
            self._tagged += done
            self._untagged = max(0, (self._untagged or 0) - done)
            log.info("tagging: %d proposition(s) tagged, %d left", done, self._untagged)
        return True

    def _ready(self, batch: list[Untagged]) -> list[Untagged]:
        """The batch without those whose parent is untagged and not before them here (set aside for now)."""
        here: set[int] = set()
        ready = []
        for item in batch:
            if all(p.forgotten or p.sensitivity is not None or p.id in here for p in item.parents):
                ready.append(item)
                here.add(item.id)
            else:
                self.set_aside.add(item.id)
        return ready

    async def _ask(self, provider: LLMProvider, batch: list[Untagged]) -> TagReply:
        shown = {item.id for item in batch}
        typed = ids.typed_all(ids.PROPOSITION, sorted(shown))
        schema = capped(TagReply, "tags", 2 * len(batch))

        def check(reply: TagReply) -> str | None:
            if reply.tags and not any(ids.parse(t.id, ids.PROPOSITION) in shown for t in reply.tags):
                return f"none of the ids in the reply was shown; use only these: {', '.join(typed[:30])}"
            return None

        return await provider.complete(
            schema, system=tag_system(self.settings.user_name),
            messages=[{"role": "user", "content": tag_message([(item.id, item.text) for item in batch])}],
            stage=STAGE, check=check, max_tokens=64 + 24 * len(batch), json_schema=shaped(schema, {"id": typed}),
        )

    def _classes(self, batch: list[Untagged], reply: TagReply) -> dict[int, str]:
        """Each proposition's class: the model's, made at least as sensitive as what it superseded."""
        answered: dict[int, str] = {}
        for tag in reply.tags:
            pid = ids.parse(tag.id, ids.PROPOSITION)
            if pid is not None and pid not in answered:
                answered[pid] = tag.sensitivity
        final: dict[int, str] = {}
        for item in batch:  # oldest first: a parent in this batch is decided before its child
            if item.id not in answered:
                self._misses[item.id] = self._misses.get(item.id, 0) + 1
                if self._misses[item.id] >= MAX_MISSES:
                    self.set_aside.add(item.id)
                continue
            parents = [p.sensitivity or final.get(p.id) for p in item.parents if not p.forgotten]
            if any(parent is None for parent in parents):
                continue  # its parent was left out of the reply: both come again in the next batch
            found = most_sensitive([answered[item.id], *parents])
            if found is not None:
                final[item.id] = found
        return final
