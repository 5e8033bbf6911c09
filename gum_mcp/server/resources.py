"""The MCP resources: gum://profile, gum://propositions/{id}, gum://activity/recent and
gum://suggestions (subscribable: notifications.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources import Resource
from pydantic import BaseModel, ConfigDict, Field

from gum_mcp.domain import NotFound, shown
from gum_mcp.server import disclosure
from gum_mcp.server.context import GumContext, GumState, gum
from gum_mcp.server.notifications import SUGGESTIONS_URI
from gum_mcp.server.shaping import SuggestionOut, bounded, portrait, shape_suggestions
from gum_mcp.server.tools.base import MAX_ID
from gum_mcp.server.tools.reading import proposition_record, recent_activity

log = logging.getLogger("gum_mcp.server")

OPEN_LIST_LIMIT = 50


class StateResource(Resource):
    """A static resource read from the server's state (the SDK passes no context to static resources)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: GumState = Field(exclude=True)
    reader: Callable[[GumState], Awaitable[str]] = Field(exclude=True)

    async def read(self) -> str:
        try:
            return await self.reader(self.state)
        except Exception as exc:  # one line to the client, the traceback to the log file only
            raise unexpected(str(self.uri), exc) from None


class OpenSuggestions(BaseModel):
    suggestions: list[SuggestionOut]
    threshold: float
    note: str | None = None
    truncated: bool = False
    withheld: int = Field(0, description=disclosure.WITHHELD)


async def profile(state: GumState) -> str:
    return await portrait(state.runtime)


async def proposition(ctx: GumContext, id: str) -> str:
    uri = f"gum://propositions/{id}"
    if not (id.isascii() and id.isdigit() and len(id) <= 19 and 1 <= int(id) <= MAX_ID):
        raise ResourceNotFoundError(f"{uri}: {shown(id)} is not a proposition id (a whole number from 1)")
    try:
        record = await proposition_record(gum(ctx).store, int(id))
    except NotFound as exc:
        raise ResourceNotFoundError(f"{uri}: {exc.args[0] if exc.args else exc}") from None
    except Exception as exc:
        raise unexpected(uri, exc) from None
    return record.model_dump_json()


def unexpected(uri: str, exc: Exception) -> ResourceError:
    """A failure we did not foresee: one line on stderr and to the client, the traceback in the log file."""
    log.warning("reading %s failed: %s (traceback in the gum-mcp log)", uri, type(exc).__name__)
    log.info("reading %s failed", uri, exc_info=exc)
    return ResourceError(f"reading {uri} failed: {type(exc).__name__} (details in the gum-mcp log)")


async def activity(state: GumState) -> str:
    return (await recent_activity(state.store)).model_dump_json()


async def open_suggestions(state: GumState) -> str:
    open_now = await state.store.aio.suggestions(status="open", limit=OPEN_LIST_LIMIT)
    result = OpenSuggestions(suggestions=await shape_suggestions(state.store, open_now),
                             threshold=state.settings.suggest_threshold)
    result = result.model_copy(update={"note": disclosure.note(None if open_now else "no open suggestions"),
                                       "withheld": disclosure.withheld()})
    return bounded(result, "suggestions").model_dump_json()


def register(server: MCPServer, state: GumState) -> None:
    server.add_resource(StateResource(
        uri="gum://profile", name="profile", title="User profile", mime_type="text/markdown",
        description="A compact portrait of the user: the most confident and recent propositions.",
        state=state, reader=profile))
    server.resource("gum://propositions/{id}", name="proposition", title="One proposition",
                    mime_type="application/json",
                    description="One proposition with its history and evidence.")(proposition)
    server.add_resource(StateResource(
        uri="gum://activity/recent", name="recent-activity", title="Recent activity", mime_type="application/json",
        description="Observations from the last hour, newest first.", state=state, reader=activity))
    server.add_resource(StateResource(
        uri=SUGGESTIONS_URI, name="suggestions", title="Open suggestions", mime_type="application/json",
        description="Suggestions offered to the user and not yet answered, dismissed or done (pending or "
                    "accepted), newest first. Subscribe to hear when the list changes.",
        state=state, reader=open_suggestions))
