"""The LLM provider interface: one async structured call, our own retries, repair, accounting, budget.

Every inference in gum-mcp goes through `LLMProvider.complete`: it takes a pydantic model class
(the reply schema), a system prompt, text messages and optional JPEG images, and returns a
validated instance of the schema, or raises an `LLMError`. Callers treat every `LLMError` the same
way: leave the work pending and try again later. No partial result is ever returned.

Robustness lives here, not in the SDKs (they are built with `max_retries=0`); the loop is in
`LLMProvider.complete`, its pieces in `retry` (backoff, Retry-After, SDK errors), `schema`
(validation, the repair request), `budget` (accounting, the daily budget) and `errors`:

- Transport failures (HTTP 408/409/429/5xx, timeouts, connection errors) are retried up to
  `llm_max_retries` times with exponential backoff and full jitter
  (`uniform(0, min(llm_backoff_max, llm_backoff_base * 2**n))`), or after the server's
  `Retry-After` / `retry-after-ms` (seconds or an HTTP date), capped at `llm_backoff_max`.
- A reply that is not JSON, or does not validate against the schema, gets ONE repair request that
  shows the model its own reply and the validation error; a second failure raises
  `LLMInvalidReply`.
- Every attempt is accounted through `Accounting.record_llm_call` with the tokens the provider
  reported, the latency and the outcome: `ok`, `retry` (failed, will be retried), `error` (failed,
  given up), `invalid` (a reply that did not validate) or `budget` (refused by the daily budget,
  nothing was sent).
- With `daily_token_budget` > 0, a call is refused (`LLMBudgetExceeded`) once the tokens used since
  the start of today (UTC) reach the budget; `budget_state` reports it for status.

Prompt contents and API keys are never logged; the `gum_mcp.llm` logger gets stages, outcomes,
attempt numbers and delays only.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel

from gum_mcp.config import Settings
from gum_mcp.domain import LLMCall
from gum_mcp.llm.budget import Accounting, budget_state
from gum_mcp.llm.errors import LLMBudgetExceeded, LLMInvalidReply, LLMUnavailable, TransportFailure, short
from gum_mcp.llm.retry import backoff_delay, failure_kind
from gum_mcp.llm.schema import repair_prompt, validate_reply

log = logging.getLogger("gum_mcp.llm")

T = TypeVar("T", bound=BaseModel)


@dataclass
class RawReply:
    """What one successful HTTP exchange produced, before JSON parsing and validation.

    `data` is the structured value when the provider returned one (a forced tool's input);
    otherwise `text` holds the reply text that should be JSON. `problem` names a reason the reply
    cannot be used whatever it contains (a refusal, a missing tool call).
    """

    text: str | None = None
    data: Any = None
    input_tokens: int = 0
    output_tokens: int = 0
    problem: str | None = None
    latency_ms: float = 0.0  # set by the retry loop

    def shown(self) -> str:
        """The reply as the model should see it again in a repair request."""
        if self.data is not None:
            return json.dumps(self.data, ensure_ascii=False)
        return self.text or ""


class LLMProvider(ABC):
    """One LLM provider. Subclasses implement `_attempt` (one HTTP exchange) and `aclose`."""

    name: str  # "openai" | "anthropic"
    model: str
    vision_model: str
    base_url: str | None = None

    default_model: str  # used when neither the caller nor GUM_MODEL names one
    default_vision_model: str

    def __init__(
        self, settings: Settings, accounting: Accounting | None, *, model: str | None = None,
        vision_model: str | None = None,
    ) -> None:
        self.settings = settings
        self.accounting = accounting
        self.model = model or settings.model or self.default_model
        self.vision_model = vision_model or settings.vision_model or settings.model or self.default_vision_model

    # -- what implementations provide

    @abstractmethod
    async def _attempt(
        self,
        schema: type[BaseModel],
        *,
        model: str,
        system: str,
        messages: list[dict[str, str]],
        images: Sequence[bytes],
    ) -> RawReply:
        """Send one request. Return the raw reply, or raise `TransportFailure`. Never retry."""

    async def aclose(self) -> None:  # noqa: B027 - optional for implementations
        """Release the HTTP client."""

    async def __aenter__(self) -> LLMProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the one public call

    async def complete(
        self,
        schema: type[T],
        *,
        system: str,
        messages: list[dict[str, str]],
        stage: str,
        images: Sequence[bytes] = (),
        vision: bool = False,
    ) -> T:
        """Ask the model for an instance of `schema`. Raises an `LLMError` subclass on any failure."""
        if not messages:
            raise ValueError("complete() needs at least one message")
        for message in messages:
            if message.get("role") not in ("user", "assistant") or not isinstance(message.get("content"), str):
                raise ValueError("messages must be {'role': 'user'|'assistant', 'content': str}")
        model = self.vision_model if (vision or images) else self.model
        await self._check_budget(stage, model)

        conversation = [dict(message) for message in messages]
        for repairing in (False, True):
            reply = await self._with_retries(
                schema, model=model, system=system, messages=conversation, images=images, stage=stage
            )
            result, problem = self._validate(schema, reply)
            if result is not None:
                await self._record(stage, model, reply, outcome="ok")
                return result
            assert problem is not None
            await self._record(stage, model, reply, outcome="invalid", error=problem)
            if repairing:
                break
            log.warning("llm %s: %s reply did not validate; asking once for a repair", stage, self.name)
            conversation += [
                {"role": "assistant", "content": reply.shown() or "(empty reply)"},
                {"role": "user", "content": repair_prompt(problem)},
            ]
        log.warning("llm %s: %s reply invalid after repair", stage, self.name)
        detail = f"reply invalid after one repair attempt: {problem}"
        raise LLMInvalidReply(f"{self.name} {model}{self._where()}: {detail}", detail=detail)

    # -- internals

    async def _check_budget(self, stage: str, model: str) -> None:
        if self.accounting is None or self.settings.daily_token_budget <= 0:
            return
        state = await budget_state(self.settings, self.accounting)
        if not state.paused:
            return
        assert state.paused_until is not None
        message = (
            f"daily token budget spent ({state.used} of {state.budget} tokens, GUM_DAILY_TOKEN_BUDGET); "
            f"inference paused until {state.paused_until.isoformat()}"
        )
        await self._account(LLMCall(stage=stage, provider=self.name, model=model, outcome="budget", error=message))
        log.info("llm %s: refused, daily token budget spent", stage)
        raise LLMBudgetExceeded(message, used=state.used, budget=state.budget, paused_until=state.paused_until)

    async def _with_retries(
        self,
        schema: type[BaseModel],
        *,
        model: str,
        system: str,
        messages: list[dict[str, str]],
        images: Sequence[bytes],
        stage: str,
    ) -> RawReply:
        """One logical request: attempts until a reply arrives, retries run out, or a hard failure."""
        settings = self.settings
        attempts = settings.llm_max_retries + 1
        # A server that dribbles bytes could keep each read under the timeout forever: bound the
        # whole attempt as well.
        deadline = settings.llm_timeout * 2 + 1.0
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                with anyio.fail_after(deadline):
                    reply = await self._attempt(schema, model=model, system=system, messages=messages, images=images)
            except TimeoutError:
                failure = TransportFailure(f"timed out after {deadline:g}s", retryable=True, kind="timeout")
            except TransportFailure as exc:
                failure = exc
            else:
                reply.latency_ms = (time.monotonic() - started) * 1000.0
                return reply
            latency = (time.monotonic() - started) * 1000.0
            await anyio.sleep(await self._failed(failure, stage=stage, model=model, attempt=attempt,
                                                 attempts=attempts, latency_ms=latency))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _failed(self, failure: TransportFailure, *, stage: str, model: str, attempt: int, attempts: int,
                      latency_ms: float) -> float:
        """Account and log a failed attempt; the delay before the next one, or LLMUnavailable when this
        was the last attempt or the failure is not retryable."""
        last = attempt == attempts - 1 or not failure.retryable
        message = f"{self.name} {model}{self._where()}: {failure.message}"
        await self._account(LLMCall(stage=stage, provider=self.name, model=model, latency_ms=latency_ms,
                                    outcome="error" if last else "retry", error=short(failure.message)))
        if last:
            log.warning("llm %s: %s attempt %d/%d failed, giving up: %s",
                        stage, self.name, attempt + 1, attempts, failure_kind(failure))
            raise LLMUnavailable(message, detail=failure.message, status=failure.status, retryable=failure.retryable)
        delay = backoff_delay(attempt, self.settings, failure.retry_after)
        log.info("llm %s: %s attempt %d/%d failed (%s); retrying in %.2fs",
                 stage, self.name, attempt + 1, attempts, failure_kind(failure), delay)
        return delay

    def _where(self) -> str:
        return f" at {self.base_url}" if self.base_url else ""

    def _validate(self, schema: type[T], reply: RawReply) -> tuple[T | None, str | None]:
        if reply.problem:
            return None, reply.problem
        return validate_reply(schema, reply.data, reply.text)

    async def _record(self, stage: str, model: str, reply: RawReply, *, outcome: str, error: str | None = None) -> None:
        await self._account(
            LLMCall(
                stage=stage,
                provider=self.name,
                model=model,
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                latency_ms=reply.latency_ms,
                outcome=outcome,
                error=short(error) if error else None,
            )
        )

    async def _account(self, call: LLMCall) -> None:
        if self.accounting is None:
            return
        try:
            await anyio.to_thread.run_sync(self.accounting.record_llm_call, call)
        except Exception:  # accounting must never turn a paid-for result into a failure
            log.exception("llm %s: could not record the call", call.stage)
