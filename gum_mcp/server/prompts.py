"""The MCP prompts: personalize (a task with what is known about the user) and what_am_i_doing."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer, UserMessage

from gum_mcp.server.context import GumContext, gum
from gum_mcp.server.shaping import portrait
from gum_mcp.server.tools.reading import get_recent_activity


async def personalize(ctx: GumContext, task: str) -> list[UserMessage]:
    state = gum(ctx)
    result = await state.runtime.search(task, k=8)
    lines = [f"- {h.proposition.text} (confidence {h.proposition.confidence}/10)"
             for h in result.hits if h.proposition is not None]
    context = "\n".join(lines) or "- nothing relevant is known yet"
    return [UserMessage(f"{task}\n\nWhat is known about {state.settings.user_name} that may matter here "
                        f"(inferred from their computer use; weigh by confidence):\n{context}")]


async def what_am_i_doing(ctx: GumContext) -> list[UserMessage]:
    state = gum(ctx)
    activity = await get_recent_activity(ctx, minutes=60, limit=30)
    recent = "\n".join(f"- {o.observed_at:%H:%M} [{o.kind}] {(o.content or '')[:300]}"
                       for o in activity.observations) or "- (no observations in the last hour)"
    return [UserMessage(f"Summarise what {state.settings.user_name} is doing right now and what they seem to be "
                        f"focused on, from these recent observations:\n{recent}\n\nWhat is known about them:\n"
                        f"{await portrait(state.runtime, limit=10)}")]


def register(server: MCPServer) -> None:
    server.prompt(title="Personalise a task",
                  description="The task with what gum-mcp knows about the user.")(personalize)
    server.prompt(title="What am I doing?",
                  description="Summarise the user's current activity and focus.")(what_am_i_doing)
