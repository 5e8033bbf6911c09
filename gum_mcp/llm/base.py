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
- A timed-out attempt is not retried at once (a local server is most likely still working on it and
  serves one request at a time): `LLMUnavailable(kind="timeout")` goes to the caller, whose backoff
  gives the server time to finish.
- A request shape the server refuses (see `openai_provider`: the structured-output method) is asked
  again at once in the next shape; that is not a retry and waits for nothing.
- Every call sends a bound on the reply (`max_tokens`, sized by the caller to its step and batch;
  `DEFAULT_MAX_TOKENS` otherwise). A reply cut off at that bound is asked for again, fresh (the same
  request with a note to be brief), never "repaired" by sending the runaway back.
- A reply that is not JSON, does not validate against the schema, or that the caller's `check`
  rejects as a whole (e.g. every id it cites is unknown), gets ONE repair request that shows the
  model a bounded excerpt of its own reply (`schema.REPAIR_EXCERPT_CHARS`, less for a small context)
  and the problem; a second failure raises `LLMInvalidReply`.
- The JSON schema sent may be the caller's own (`json_schema`: e.g. the ids shown in this prompt as
  an `enum`, for servers whose grammar enforces it); the reply is validated against `schema`.
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
from collections.abc import Callable, Sequence
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
from gum_mcp.llm.schema import REPAIR_EXCERPT_CHARS, excerpt, repair_prompt, reply_schema, validate_reply

log = logging.getLogger("gum_mcp.llm")

T = TypeVar("T", bound=BaseModel)

#: Request shapes a provider may try in one call after refusals (see `TransportFailure.fallback`).
MAX_FALLBACKS = 3


#: The bound on a reply when the caller gives none.
DEFAULT_MAX_TOKENS = 4096
#: Added to the last user message when a reply ran past its bound and is asked for again.
BRIEF_NOTE = (
    "\n\n(An earlier reply to this request ran past its length limit and was discarded. Be brief: "
    "fewer items, one or two short sentences per text field.)"
)


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
    truncated: bool = False  # cut off at the output bound: asked for again fresh, never repaired
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
        max_tokens: int,
        json_schema: dict[str, Any],
    ) -> RawReply:
        """Send one request asking for a reply of at most `max_tokens` that matches `json_schema` (the
        schema's name is `schema`'s). Return the raw reply, or raise `TransportFailure`. Never retry."""

    def method(self, model: str) -> str | None:
        """The structured-output method in use for `model` (doctor names it), when known."""
        return None

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
        check: Callable[[T], str | None] | None = None,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> T:
        """Ask the model for an instance of `schema`. Raises an `LLMError` subclass on any failure.

        `check(reply)` judges a reply that validated as a whole: it returns why the reply cannot be used
        (which counts as invalid: one repair, then `LLMInvalidReply`) or None. `max_tokens` bounds the
        reply (default `DEFAULT_MAX_TOKENS`; never more than GUM_LLM_CONTEXT). `json_schema` is the schema
        sent (default: `schema`'s own), e.g. with the ids of this prompt as an `enum`."""
        if not messages:
            raise ValueError("complete() needs at least one message")
        for message in messages:
            if message.get("role") not in ("user", "assistant") or not isinstance(message.get("content"), str):
                raise ValueError("messages must be {'role': 'user'|'assistant', 'content': str}")
        model = self.vision_model if (vision or images) else self.model
        await self._check_budget(stage, model)
        limit = max(16, min(max_tokens or DEFAULT_MAX_TOKENS, self.settings.llm_context))
        sent = json_schema if json_schema is not None else reply_schema(schema)

        original = [dict(message) for message in messages]
        conversation = original
        for repairing in (False, True):
            reply = await self._with_retries(
                schema, model=model, system=system, messages=conversation, images=images, stage=stage,
                max_tokens=limit, json_schema=sent,
            )
            result, problem = self._validate(schema, reply)
            if result is not None and check is not None:
                problem = check(result)
                if problem is not None:
                    result = None
            if result is not None:
                await self._record(stage, model, reply, outcome="ok")
                return result
            assert problem is not None
            await self._record(stage, model, reply, outcome="invalid", error=problem)
            if repairing:
                break
            if reply.truncated:
                # Sending the runaway back would only start it again: the same request, fresh, asking for less.
                log.warning("llm %s: %s reply ran past %d tokens; asking once more, fresh", stage, self.name, limit)
                conversation = brief(original)
                continue
            log.warning("llm %s: %s reply did not validate; asking once for a repair", stage, self.name)
            conversation = [
                *original,
                {"role": "assistant", "content": excerpt(reply.shown(), self._excerpt_chars()) or "(empty reply)"},
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
        max_tokens: int,
        json_schema: dict[str, Any],
    ) -> RawReply:
        """One logical request: attempts until a reply arrives, retries run out, or a hard failure."""
        settings = self.settings
        attempts = settings.llm_max_retries + 1
        # A server that dribbles bytes could keep each read under the timeout forever: bound the
        # whole attempt as well.
        deadline = settings.llm_timeout * 2 + 1.0
        attempt = switches = 0
        while True:
            started = time.monotonic()
            try:
                with anyio.fail_after(deadline):
                    reply = await self._attempt(schema, model=model, system=system, messages=messages, images=images,
                                                max_tokens=max_tokens, json_schema=json_schema)
            except TimeoutError:
                failure = TransportFailure(f"timed out after {deadline:g}s", retryable=True, kind="timeout")
            except TransportFailure as exc:
                failure = exc
            else:
                reply.latency_ms = (time.monotonic() - started) * 1000.0
                return reply
            latency = (time.monotonic() - started) * 1000.0
            if failure.fallback and switches < MAX_FALLBACKS:
                switches += 1  # the server refused this request shape: the provider asks in the next one, at once
                await self._account(LLMCall(stage=stage, provider=self.name, model=model, latency_ms=latency,
                                            outcome="retry", error=short(failure.message)))
                log.info("llm %s: %s refused the request shape (%s); asking in the next one",
                         stage, self.name, failure_kind(failure))
                continue
            delay = await self._failed(failure, stage=stage, model=model, attempt=attempt, attempts=attempts,
                                       latency_ms=latency)
            attempt += 1
            await anyio.sleep(delay)

    async def _failed(self, failure: TransportFailure, *, stage: str, model: str, attempt: int, attempts: int,
                      latency_ms: float) -> float:
        """Account and log a failed attempt; the delay before the next one, or LLMUnavailable when this
        was the last attempt, the failure is not retryable, or it was a timeout (the server may still be
        working on the request: asking again at once would queue behind it)."""
        timeout = failure.kind == "timeout"
        last = attempt == attempts - 1 or not failure.retryable or timeout
        message = f"{self.name} {model}{self._where()}: {failure.message}"
        if timeout:
            message += " (not retried at once: the server may still be working on it; GUM_LLM_TIMEOUT)"
        await self._account(LLMCall(stage=stage, provider=self.name, model=model, latency_ms=latency_ms,
                                    outcome="error" if last else "retry", error=short(failure.message)))
        if last:
            log.warning("llm %s: %s attempt %d/%d failed, giving up: %s",
                        stage, self.name, attempt + 1, attempts, failure_kind(failure))
            raise LLMUnavailable(message, detail=failure.message, status=failure.status, retryable=failure.retryable,
                                 kind=failure.kind)
        delay = backoff_delay(attempt, self.settings, failure.retry_after)
        log.info("llm %s: %s attempt %d/%d failed (%s); retrying in %.2fs",
                 stage, self.name, attempt + 1, attempts, failure_kind(failure), delay)
        return delay

    def _where(self) -> str:
        return f" at {self.base_url}" if self.base_url else ""

    def _excerpt_chars(self) -> int:
        """How much of an invalid reply a repair request quotes: REPAIR_EXCERPT_CHARS, or a tenth of the
        context (at ~3 characters a token) when that is less, so the repair still fits."""
        return min(REPAIR_EXCERPT_CHARS, self.settings.llm_context // 10 * 3)

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


def brief(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation with `BRIEF_NOTE` added to its last user message."""
    out = [dict(message) for message in messages]
    last = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last is None:
        return [*out, {"role": "user", "content": BRIEF_NOTE.strip()}]
    out[last]["content"] += BRIEF_NOTE
    return out
