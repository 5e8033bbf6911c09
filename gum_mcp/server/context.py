"""How tools, resources and prompts reach the user model: the server's state (`GumState`), which the
server's lifespan yields and the SDK hands to every request as its lifespan context.

A tool or prompt takes `ctx: GumContext` and calls `gum(ctx)`; a static resource gets no context
from the SDK, so resources.py binds the state when it registers one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from mcp.server.mcpserver import Context

from gum_mcp.config import Settings
from gum_mcp.runtime import Runtime
from gum_mcp.server.notifications import SuggestionWatch
from gum_mcp.store import Store


@dataclass(frozen=True)
class GumState:
    """What every request of one server works with: the runtime and the gum://suggestions watch."""

    runtime: Runtime
    suggestions: SuggestionWatch

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


GumContext: TypeAlias = Context[GumState, Any]


def gum(ctx: Context[Any, Any]) -> GumState:
    """The state of the server `ctx`'s request came to."""
    state = ctx.request_context.lifespan_context
    if not isinstance(state, GumState):
        raise RuntimeError("no gum-mcp state in this request: the server was not made by build_server")
    return state
