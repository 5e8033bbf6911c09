"""Build the configured LLM provider from Settings (with the store's memory of structured-output methods), and
the LLM part of status."""

from __future__ import annotations

from gum_mcp.config import Settings
from gum_mcp.llm.base import LLMProvider
from gum_mcp.llm.budget import Accounting
from gum_mcp.llm.errors import LLMNotConfigured
from gum_mcp.llm.memory import METHOD_NAMES, MethodMemory, PauseMemory, config_fingerprint


def not_configured_reason(settings: Settings) -> str | None:
    """Why the configured provider cannot be used, naming the variable to set; None when it can."""
    if settings.llm_provider == "openai":
        if not settings.openai_api_key and not settings.openai_base_url:
            return (
                "no LLM provider configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                "OpenAI-compatible server such as Ollama (e.g. http://localhost:11434/v1), "
                "or GUM_LLM_PROVIDER=anthropic with ANTHROPIC_API_KEY"
            )
        return None
    if not settings.anthropic_api_key and not settings.anthropic_base_url:
        return (
            "no LLM provider configured: set ANTHROPIC_API_KEY, or ANTHROPIC_BASE_URL for an "
            "Anthropic-compatible server (GUM_LLM_PROVIDER is anthropic)"
        )
    return None


def llm_status(settings: Settings, accounting: Accounting) -> dict[str, object]:
    """The provider, why it cannot be used (None when it can: not configured, or the engine paused on an
    error that kept repeating), today's tokens against the budget, and the structured-output method the
    server was found to accept. Blocking (a few queries): async callers run it in a worker thread."""
    from gum_mcp.llm.budget import read_budget_state

    budget = read_budget_state(settings, accounting)
    paused = engine_pause_reason(settings, accounting)
    return {"provider": settings.llm_provider, "problem": not_configured_reason(settings) or paused,
            "engine_paused": paused, "structured_output": structured_output(settings, accounting),
            "tokens_today": budget.used, "daily_budget": budget.budget or None,
            "paused_until": budget.paused_until.isoformat() if budget.paused else None}


def engine_pause_reason(settings: Settings, memory: object) -> str | None:
    """Why the engine is paused on a repeated error, when it is and the configuration is the one it was
    paused under (any other configuration ends the pause). Blocking."""
    if not isinstance(memory, PauseMemory):
        return None
    pause = memory.engine_pause()
    if pause is None or pause.config != config_fingerprint(settings):
        return None
    return f"{pause.reason} (paused since {pause.paused_at.isoformat(timespec='seconds')}; `gum-mcp retry` resumes)"


def structured_output(settings: Settings, memory: object) -> str | None:
    """How the configured model is asked for structured output, when known. Blocking."""
    if settings.llm_provider == "anthropic":
        return METHOD_NAMES["tool"]
    if not isinstance(memory, MethodMemory):
        return None
    from gum_mcp.llm.openai_provider import DEFAULT_BASE_URL, DEFAULT_MODEL

    method = memory.remembered_method(settings.openai_base_url or DEFAULT_BASE_URL, settings.model or DEFAULT_MODEL)
    return METHOD_NAMES.get(method or "")


def build_provider(settings: Settings, accounting: Accounting | None) -> LLMProvider:
    """The provider `GUM_LLM_PROVIDER` names. Raises `LLMNotConfigured` with what to set.

    The caller owns the provider: `await provider.aclose()` (or `async with`) when done. A
    provider's HTTP client belongs to the event loop that first uses it.
    """
    reason = not_configured_reason(settings)
    if reason:
        raise LLMNotConfigured(reason)
    if settings.llm_provider == "openai":
        from gum_mcp.llm.openai_provider import OpenAIProvider

        memory = accounting if isinstance(accounting, MethodMemory) else None
        return OpenAIProvider(settings, accounting, memory=memory)
    from gum_mcp.llm.anthropic_provider import AnthropicProvider

    return AnthropicProvider(settings, accounting)


def default_models(provider: str) -> tuple[str, str]:
    """(model, vision model) used when GUM_MODEL / GUM_VISION_MODEL are not set."""
    if provider == "openai":
        from gum_mcp.llm.openai_provider import DEFAULT_MODEL, DEFAULT_VISION_MODEL
    else:
        from gum_mcp.llm.anthropic_provider import DEFAULT_MODEL, DEFAULT_VISION_MODEL
    return DEFAULT_MODEL, DEFAULT_VISION_MODEL
