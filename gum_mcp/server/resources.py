"""The MCP resources: gum://profile, gum://propositions/{id}, gum://activity/recent and
gum://suggestions (subscribable: notifications.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resources import Resource
from pydantic import BaseModel, ConfigDict, Field

from gum_mcp.server.context import GumContext, GumState
from gum_mcp.server.notifications import SUGGESTIONS_URI
from gum_mcp.server.shaping import SuggestionOut, bounded, portrait, shape_suggestions
from gum_mcp.server.tools.reading import get_proposition, recent_activity

OPEN_LIST_LIMIT = 50


class StateResource(Resource):
    """A static resource read from the server's state (the SDK passes no context to static resources)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: GumState = Field(exclude=True)
    reader: Callable[[GumState], Awaitable[str]] = Field(exclude=True)

    async def read(self) -> str:
        return await self.reader(self.state)


class OpenSuggestions(BaseModel):
    suggestions: list[SuggestionOut]
    threshold: float
    note: str | None = None
    truncated: bool = False


async def profile(state: GumState) -> str:
    return await portrait(state.runtime)


async def proposition(ctx: GumContext, id: str) -> str:
    try:
        record = await get_proposition(ctx, int(id))
    except ValueError:
        raise ToolError(f"id: {id!r} is not a proposition id") from None
    return record.model_dump_json(indent=2)


async def activity(state: GumState) -> str:
    return (await recent_activity(state.store)).model_dump_json(indent=2)


async def open_suggestions(state: GumState) -> str:
    open_now = await state.store.aio.suggestions(status="open", limit=OPEN_LIST_LIMIT)
    result = OpenSuggestions(suggestions=await shape_suggestions(state.store, open_now),
                             threshold=state.settings.suggest_threshold)
    if not open_now:
        result = result.model_copy(update={"note": "no open suggestions"})
    return bounded(result, "suggestions").model_dump_json(indent=2)


def register(server: MCPServer, state: GumState) -> None:
    server.add_resource(StateResource(
        uri="gum://profile", name="profile", title="User profile", mime_type="text/markdown",
        description="A compact portrait of the user: the most confident and recent propositions.",
        state=state, reader=profile))
    server.resource("gum://propositions/{id}", name="proposition", mime_type="application/json",
                    description="One proposition with its history and evidence.")(proposition)
    server.add_resource(StateResource(
        uri="gum://activity/recent", name="recent-activity", mime_type="application/json",
        description="Observations from the last hour, newest first.", state=state, reader=activity))
    server.add_resource(StateResource(
        uri=SUGGESTIONS_URI, name="suggestions", title="Open suggestions", mime_type="application/json",
        description="Suggestions offered to the user and not yet answered, dismissed or done (pending or "
                    "accepted), newest first. Subscribe to hear when the list changes.",
        state=state, reader=open_suggestions))
