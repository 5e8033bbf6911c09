"""Whether gum-mcp watches the user's screen and files: pause_observing and resume_observing."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import anyio
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import local_time, utcnow
from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.tools.base import ADDITIVE, tool_errors


class Observing(BaseModel):
    paused_until: str | None = Field(description="ISO-8601, 'indefinitely', or null when observing")
    message: str


@tool_errors
async def pause_observing(
    ctx: GumContext,
    minutes: Annotated[int | None, Field(ge=1, le=10080, description="how long, in minutes (default 60, max "
                                                                     "7 days); null pauses until resumed")] = 60,
) -> Observing:
    """Stop watching the user's screen and files, for a while or until resume_observing: use it when the
    user asks you to stop watching (e.g. "stop watching for an hour"). Nothing is captured meanwhile;
    what the user tells you through record_observation still counts."""
    from gum_mcp.observers import pause_observing as pause

    until = None if minutes is None else utcnow() + timedelta(minutes=minutes)
    await anyio.to_thread.run_sync(pause, gum(ctx).settings, until)
    shown = "until resumed" if until is None else f"until {local_time(until, '%Y-%m-%d %H:%M')}"
    return Observing(paused_until=until.isoformat() if until else "indefinitely",
                     message=f"observing paused {shown}")


@tool_errors
async def resume_observing(ctx: GumContext) -> Observing:
    """Start watching the user's screen and files again after pause_observing."""
    from gum_mcp.observers import resume_observing as resume

    was = await anyio.to_thread.run_sync(resume, gum(ctx).settings)
    return Observing(paused_until=None, message="observing resumed" if was else "observing was not paused")


def register(server: MCPServer) -> None:
    server.add_tool(pause_observing, title="Pause observing", annotations=ADDITIVE)
    server.add_tool(resume_observing, title="Resume observing", annotations=ADDITIVE)
