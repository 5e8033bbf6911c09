"""The LLM provider interface: one async structured call, our own retries, repair, accounting, budget.

Every inference in gum-mcp goes through `LLMProvider.complete`: it takes a pydantic model class
(the reply schema), a system prompt, text messages and optional JPEG images, and returns a
validated instance of the schema, or raises an `LLMError`. Callers treat every `LLMError` the same
way: leave the work pending and try again later. No partial result is ever returned.

Robustness lives here, not in the SDKs (they are built with `max_retries=0`):

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

import email.utils
import json
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError

from gum_mcp.config import Settings
from gum_mcp.domain import LLMCall, utcnow

log = logging.getLogger("gum_mcp.llm")

T = TypeVar("T", bound=BaseModel)

# The most characters of a provider's error message that we keep (in accounting and messages).
_MAX_ERROR_CHARS = 500


# --------------------------------------------------------------------------------------- errors


class LLMError(Exception):
    """Inference did not produce a validated result. Callers leave the work pending.

    `str(error)` names the provider, model and failure; `detail` is the failure alone.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class LLMUnavailable(LLMError):
    """The provider could not be reached or refused the request (retries exhausted, or not retryable)."""

    def __init__(
        self, message: str, *, detail: str | None = None, status: int | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message, detail=detail)
        self.status = status
        self.retryable = retryable


class LLMInvalidReply(LLMError):
    """The model's reply was not valid JSON for the schema, even after one repair attempt."""


class LLMNotConfigured(LLMError):
    """No provider credentials or base URL; the message names the variable to set."""


class LLMBudgetExceeded(LLMError):
    """The daily token budget is spent; inference is paused until `paused_until` (UTC)."""

    def __init__(self, message: str, *, used: int, budget: int, paused_until: datetime) -> None:
        super().__init__(message)
        self.used = used
        self.budget = budget
        self.paused_until = paused_until


# ----------------------------------------------------------------------------------- accounting


@runtime_checkable
class Accounting(Protocol):
    """Where LLM calls are recorded: the store. Both methods block (sqlite); we call them in a thread."""

    def record_llm_call(self, call: LLMCall) -> None: ...

    def tokens_used_since(self, since: datetime) -> int: ...


@dataclass(frozen=True)
class BudgetState:
    """The daily token budget as status shows it. `budget` 0 means no budget."""

    used: int
    budget: int
    paused_until: datetime | None

    @property
    def paused(self) -> bool:
        return self.paused_until is not None


def start_of_day(now: datetime | None = None) -> datetime:
    now = (now or utcnow()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _budget_from(used: int, budget: int, now: datetime | None) -> BudgetState:
    if budget <= 0 or used < budget:
        return BudgetState(used=used, budget=budget, paused_until=None)
    return BudgetState(used=used, budget=budget, paused_until=start_of_day(now) + timedelta(days=1))


def read_budget_state(settings: Settings, accounting: Accounting, now: datetime | None = None) -> BudgetState:
    """The budget state, blocking (for sync callers such as the CLI)."""
    used = int(accounting.tokens_used_since(start_of_day(now)))
    return _budget_from(used, settings.daily_token_budget, now)


async def budget_state(settings: Settings, accounting: Accounting, now: datetime | None = None) -> BudgetState:
    """The budget state: tokens used today (UTC), the budget, and until when inference is paused."""
    used = await anyio.to_thread.run_sync(accounting.tokens_used_since, start_of_day(now))
    return _budget_from(int(used), settings.daily_token_budget, now)


# -------------------------------------------------------------------------- provider plumbing


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


@dataclass
class TransportFailure(Exception):
    """One failed attempt, classified by the provider implementation."""

    message: str
    retryable: bool
    kind: str = "error"  # for logs: "timeout", "connection", "HTTP 429", ...
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked us to wait
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_retry_after(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), or None."""
    if not headers:
        return None
    lower = {key.lower(): value for key, value in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def backoff_delay(attempt: int, settings: Settings, retry_after: float | None = None) -> float:
    """How long to wait before retry number `attempt + 1` (attempt counts from 0)."""
    cap = settings.llm_backoff_max
    if retry_after is not None:
        return min(retry_after, cap)
    ceiling = min(cap, settings.llm_backoff_base * (2**attempt))
    return random.uniform(0.0, ceiling)


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def with_images(
    messages: list[dict[str, str]], images: Sequence[bytes], content: Callable[[str, Sequence[bytes]], Any]
) -> list[dict[str, Any]]:
    """The caller's turns, with the images (in the provider's format, built by `content`) on the last
    user message."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    return [{"role": m["role"], "content": content(m["content"], images) if i == last_user else m["content"]}
            for i, m in enumerate(messages)]


def sdk_failure(exc: Exception, sdk: Any, timeout: float) -> TransportFailure:
    """Map an `openai` or `anthropic` SDK exception (both SDKs share these class names) to a
    TransportFailure: timeouts, connection errors and 408/409/429/5xx are retryable."""
    if isinstance(exc, sdk.APITimeoutError):
        return TransportFailure(f"timed out after {timeout:g}s", retryable=True, kind="timeout")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        return TransportFailure(f"connection failed ({describe(cause) if cause else exc})", retryable=True,
                                kind="connection")
    if isinstance(exc, sdk.APIStatusError):
        headers = dict(exc.response.headers)
        return TransportFailure(
            f"HTTP {exc.status_code}: {short(_status_message(exc))}",
            retryable=is_retryable_status(exc.status_code),
            status=exc.status_code,
            retry_after=parse_retry_after(headers),
            headers=headers,
        )
    return TransportFailure(f"{type(exc).__name__}: {short(str(exc))}", retryable=False)


def _status_message(exc: Any) -> str:
    """The provider's own error message from an API status error's body."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message if isinstance(exc.message, str) else json.dumps(body)


def short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def describe(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused`, or just the type when there is no message."""
    text = short(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def tool_name(schema: type[BaseModel]) -> str:
    """A name for the schema that both APIs accept: ^[a-zA-Z0-9_-]{1,64}$."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64]
    return name or "reply"


def image_media_type(data: bytes) -> str:
    """The media type of an image from its magic bytes; JPEG unless recognised as something else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline every non-recursive `$ref` to `#/$defs/...`; keep `$defs` only for recursive ones."""
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    kept: set[str] = set()

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            if name in stack or name not in defs:
                kept.add(name)
                return {"$ref": ref}
            target = walk(defs[name], (*stack, name))
            if isinstance(target, dict) and siblings.get("description"):
                target = {**target, "description": siblings["description"]}
            return target
        return {key: walk(value, stack) for key, value in node.items() if key != "$defs"}

    result = walk(schema, ())
    if kept:
        # Recursive definitions stay as definitions (walked once more, so their own inner refs
        # are inlined or kept alike).
        result["$defs"] = {}
        pending = list(kept)
        done: set[str] = set()
        while pending:
            name = pending.pop()
            if name in done or name not in defs:
                continue
            done.add(name)
            before = set(kept)
            result["$defs"][name] = walk(defs[name], (name,))
            pending.extend(kept - before)
    return result


# --------------------------------------------------------------------------------- the provider


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
                {"role": "user", "content": _repair_prompt(problem)},
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
            last = attempt == attempts - 1 or not failure.retryable
            message = f"{self.name} {model}{self._where()}: {failure.message}"
            await self._account(
                LLMCall(
                    stage=stage,
                    provider=self.name,
                    model=model,
                    latency_ms=latency,
                    outcome="error" if last else "retry",
                    error=short(failure.message),
                )
            )
            if last:
                log.warning(
                    "llm %s: %s attempt %d/%d failed, giving up: %s",
                    stage,
                    self.name,
                    attempt + 1,
                    attempts,
                    _kind(failure),
                )
                raise LLMUnavailable(
                    message, detail=failure.message, status=failure.status, retryable=failure.retryable
                )
            delay = backoff_delay(attempt, settings, failure.retry_after)
            log.info(
                "llm %s: %s attempt %d/%d failed (%s); retrying in %.2fs",
                stage,
                self.name,
                attempt + 1,
                attempts,
                _kind(failure),
                delay,
            )
            await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _where(self) -> str:
        return f" at {self.base_url}" if self.base_url else ""

    def _validate(self, schema: type[T], reply: RawReply) -> tuple[T | None, str | None]:
        if reply.problem:
            return None, reply.problem
        data = reply.data
        if data is None:
            text = (reply.text or "").strip()
            if not text:
                return None, "the reply was empty; it must be a JSON object"
            try:
                data = json.loads(_strip_fence(text))
            except json.JSONDecodeError as exc:
                return (
                    None,
                    f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                )
        try:
            return schema.model_validate(data), None
        except ValidationError as exc:
            return None, "the reply does not match the schema:\n" + _validation_lines(exc)

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


def _kind(failure: TransportFailure) -> str:
    return f"HTTP {failure.status}" if failure.status else failure.kind


def _strip_fence(text: str) -> str:
    """Accept a reply wrapped in a ```json fence (some local models add one)."""
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text


def _validation_lines(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False)[:20]:
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"- {where}: {error['msg']}")
    return "\n".join(lines)


def _repair_prompt(problem: str) -> str:
    return (
        "Your previous reply could not be used: "
        f"{problem}\n"
        "Reply again with only a JSON object that matches the required schema exactly: "
        "every required field, the right types, no extra fields, no commentary."
    )
