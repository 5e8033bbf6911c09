"""The MCP tools, one module per kind of work; each module's `register(server)` adds its tools.

- reading.py: what is believed and what the user is doing (read-only)
- telling.py: new information about the user
- correcting.py: the user's verdicts, and forgetting
- observing.py: pausing and resuming the observers
- status.py: how gum-mcp itself is doing
- suggestions.py: proactive suggestions and the user's reactions to them
- deciding.py: learning from the user's edits, and deciding or asking at a choice point
- base.py: what they share (annotation presets, tool_errors, time arguments)

A tool is a module-level async function taking `ctx: GumContext` and typed arguments (pydantic
`Field`s become the input schema), returning a pydantic model (the output schema), wrapped in
`@tool_errors`, and listed in its module's `register`.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from gum_mcp.server.tools import correcting, deciding, observing, reading, status, suggestions, telling

#: registration order is the order clients list the tools in
MODULES = (reading, telling, correcting, observing, status, suggestions, deciding)


def register(server: MCPServer) -> None:
    for module in MODULES:
        module.register(server)
