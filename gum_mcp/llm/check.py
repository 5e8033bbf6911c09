"""One tiny structured call to show whether the configured provider works (`gum-mcp doctor`)."""

from __future__ import annotations

import time

import anyio.to_thread
from pydantic import BaseModel, ConfigDict

from gum_mcp.config import Settings
from gum_mcp.llm.budget import Accounting
from gum_mcp.llm.errors import LLMError, LLMUnavailable
from gum_mcp.llm.factory import build_provider, default_models, engine_pause_reason
from gum_mcp.llm.memory import METHOD_NAMES

STAGE = "doctor"
PONG_TOKENS = 64  # {"ok": true}, with room for whitespace


class Pong(BaseModel):
    """The reply to the provider check."""

    model_config = ConfigDict(extra="forbid")
    ok: bool


class ProviderCheck(BaseModel):
    ok: bool
    provider: str
    model: str
    base_url: str | None = None
    latency_ms: float | None = None
    reason: str | None = None  # the exact failure when not ok
    method: str | None = None  # how structured output is asked for (memory.METHOD_NAMES), when known
    paused: str | None = None  # why the engine is paused on an error that kept repeating

    def line(self) -> str:
        """One line for people: `openai gpt-5-mini: ok in 412 ms (structured output: strict json_schema)`
        or the reason it failed; and the engine's pause on a repeated error, if any."""
        where = f" at {self.base_url}" if self.base_url else ""
        method = f" (structured output: {self.method})" if self.method else ""
        paused = f"; the engine is paused: {self.paused}" if self.paused else ""
        if self.ok:
            return f"{self.provider} {self.model}{where}: ok in {self.latency_ms:.0f} ms{method}{paused}"
        return f"{self.provider} {self.model}{where}: FAILED: {self.reason}{method}{paused}"


async def check_provider(settings: Settings, accounting: Accounting | None) -> ProviderCheck:
    """Make one tiny structured call (no retries, so the first failure is the reason shown)."""
    settings = settings.model_copy(update={"llm_max_retries": 0})
    base_url = settings.openai_base_url if settings.llm_provider == "openai" else settings.anthropic_base_url
    model = settings.model or default_models(settings.llm_provider)[0]
    result = ProviderCheck(ok=False, provider=settings.llm_provider, model=model, base_url=base_url)
    if accounting is not None:
        paused = await anyio.to_thread.run_sync(engine_pause_reason, settings, accounting)
        result = result.model_copy(update={"paused": paused})
    try:
        provider = build_provider(settings, accounting)
    except LLMError as exc:
        return result.model_copy(update={"reason": str(exc)})
    started = time.monotonic()
    try:
        async with provider:
            try:
                reply = await provider.complete(
                    Pong,
                    system="You are a health check. Reply with JSON only.",
                    messages=[{"role": "user", "content": 'Reply with {"ok": true}.'}],
                    stage=STAGE,
                    max_tokens=PONG_TOKENS,
                )
            finally:
                method = provider.method(provider.model)
                result = result.model_copy(update={"method": METHOD_NAMES.get(method or "")})
    except LLMError as exc:
        reason = exc.detail
        if isinstance(exc, LLMUnavailable) and exc.status == 404 and base_url:
            reason += f" (is the model {model!r} available there? set GUM_MODEL)"
        return result.model_copy(update={"reason": reason, "latency_ms": (time.monotonic() - started) * 1000})
    latency = (time.monotonic() - started) * 1000
    if not reply.ok:
        return result.model_copy(update={"latency_ms": latency, "reason": 'the model answered {"ok": false}'})
    return result.model_copy(update={"ok": True, "latency_ms": latency})
