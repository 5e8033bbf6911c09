"""What the LLM layer keeps in the store, through protocols the store satisfies (this layer imports no store):

- which structured-output method an OpenAI-compatible server accepts, per (base URL, model), so a server
  that refuses strict `json_schema` is asked the way it accepts from the first call on;
- the engine's pause after the same error repeated (`gum_mcp.engine.loop`), which status and doctor
  show; `gum-mcp retry` or a different configuration (`config_fingerprint`) ends it.

The store's `Store` is passed where `Accounting` is (`factory.build_provider`); it has these methods too.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Protocol, runtime_checkable

from gum_mcp.config import Settings

#: Structured-output methods of an OpenAI-compatible server, in the order they are tried.
METHODS = ("json_schema", "json_object", "tool")
#: How people are told which one is in use (doctor, status).
METHOD_NAMES = {
    "json_schema": "strict json_schema",
    "json_object": "json_object with the schema in the request and the prompt",
    "tool": "a forced tool call",
}


@runtime_checkable
class MethodMemory(Protocol):
    """Where the method a server accepted is remembered. Blocking (sqlite): called in a worker thread."""

    def remembered_method(self, base_url: str, model: str) -> str | None: ...

    def remember_method(self, base_url: str, model: str, method: str) -> None: ...


class StoredPause(Protocol):
    reason: str
    config: str
    paused_at: datetime


@runtime_checkable
class PauseMemory(Protocol):
    """Where the engine's pause on a repeated error is kept (so every process can show it)."""

    def engine_pause(self) -> StoredPause | None: ...


def config_fingerprint(settings: Settings) -> str:
    """What a pause on a repeated error was decided under: the provider settings. A pause recorded under
    another fingerprint is over (the configuration changed). Keys enter only as a hash."""
    keys = [settings.openai_api_key, settings.anthropic_api_key]
    values = {
        "provider": settings.llm_provider, "model": settings.model, "vision_model": settings.vision_model,
        "openai_base_url": settings.openai_base_url, "anthropic_base_url": settings.anthropic_base_url,
        "keys": [hashlib.sha256(k.encode()).hexdigest() if k else None for k in keys],
        "timeout": settings.llm_timeout, "context": settings.llm_context,
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
