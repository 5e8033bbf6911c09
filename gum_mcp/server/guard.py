"""The guard: server middleware every MCP request passes, so scopes and the access log hold for every
tool, resource and prompt without a line in any of them.

For each request it finds the caller (clients.py: a token's client over HTTP, the configured or
self-named client over stdio), then:
- tools/call, resources/read, prompts/get, resources/subscribe and subscriptions/listen: refuse,
  with a JSON-RPC error (FORBIDDEN) naming the missing scope, anything the scope map (scopes.py)
  does not grant the caller; nothing of the handler runs;
- lists (tools, resources, resource templates, prompts): leave out what the caller may not use,
  so its model is not offered it (a name the map lacks stays listed, and is refused when called);
- every call of a tool, resource or prompt, refused or not, goes to the access log with the ids of
  the propositions and observations its result carried (access.py);
- every call of a tool, resource or prompt runs with the caller's disclosure current (disclosure.py: the
  classes of knowledge its policy allows, which the read paths filter by), and a result that still carries
  a proposition or observation the policy withholds is answered with an error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from gum_mcp.domain import utcnow
from gum_mcp.server import disclosure, scopes
from gum_mcp.server.access import Ids, prompt_ids, resource_ids, tool_ids
from gum_mcp.server.clients import Caller, caller_of
from gum_mcp.server.context import GumState
from gum_mcp.store.access_log import AccessEntry, Outcome

log = logging.getLogger("gum_mcp.server")

#: the JSON-RPC error code of a refused request (implementation-defined server error range)
FORBIDDEN = -32003

#: list method -> (result key, kind, the key naming an item)
LISTS: Mapping[str, tuple[str, scopes.Kind, str]] = {
    "tools/list": ("tools", "tool", "name"),
    "resources/list": ("resources", "resource", "uri"),
    "resources/templates/list": ("resourceTemplates", "resource", "uriTemplate"),
    "prompts/list": ("prompts", "prompt", "name"),
}
#: calls that go to the access log -> their kind
LOGGED: Mapping[str, scopes.Kind] = {"tools/call": "tool", "resources/read": "resource", "prompts/get": "prompt"}

CallNext = Callable[[Any], Awaitable[Any]]


def targets(method: str, params: Mapping[str, Any] | None) -> list[tuple[scopes.Kind, str]] | None:
    """What a request touches, as (kind, name) pairs; None for a request the guard does not check."""
    params = params or {}
    if method in ("tools/call", "prompts/get"):
        return [("tool" if method == "tools/call" else "prompt", _text(params.get("name"), "name"))]
    if method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        return [("resource", _text(params.get("uri"), "uri"))]
    if method == "subscriptions/listen":
        wanted = (params.get("notifications") or {}).get("resourceSubscriptions") or []
        return [("resource", _text(uri, "resourceSubscriptions")) for uri in wanted]
    return None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MCPError(code=INVALID_PARAMS, message=f"{what}: expected a string")
    return value


class Guard:
    """Server middleware: scopes and the access log (see the module docstring). `server` (set once the
    server exists) tells a name nobody registered, which goes on to the SDK's own "unknown" error,
    from a registered one the scope map lacks, which is refused."""

    def __init__(self, server: MCPServer | None = None) -> None:
        self.server = server

    async def registered(self, kind: scopes.Kind, name: str) -> bool:
        server = self.server
        if server is None:
            return True
        if kind == "tool":
            return any(t.name == name for t in await server.list_tools())
        if kind == "prompt":
            return any(p.name == name for p in await server.list_prompts())
        return any(str(r.uri) == name for r in await server.list_resources()) or any(
            scopes.template(t.uri_template).fullmatch(name) for t in await server.list_resource_templates())

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        method = ctx.method
        listed = LISTS.get(method)
        touched = None if listed else targets(method, ctx.params)
        if listed is None and touched is None:
            return await call_next(ctx)
        state = ctx.lifespan_context
        if not isinstance(state, GumState):
            raise MCPError(code=FORBIDDEN, message="permission denied: no gum-mcp state for this request")
        caller = caller_of(ctx, state.settings)
        if listed is not None:
            return visible(await call_next(ctx), caller, *listed)
        assert touched is not None
        kind = LOGGED.get(method)
        for what, name in touched:
            refusal = scopes.refusal(what, name, caller.name, caller.scopes)
            if refusal is not None and scopes.required(what, name) is None and not await self.registered(what, name):
                refusal = None  # nothing by that name: the SDK says so
            if refusal is not None:
                if kind is not None:
                    await record(state, caller, kind, name, "denied", Ids())
                log.info("refused %s %r to client %r (scopes %s)", what, name, caller.name, sorted(caller.scopes))
                raise MCPError(code=FORBIDDEN, message=refusal, data={
                    "client": caller.name, "needs": sorted(scopes.required(what, name) or ()),
                    "has": sorted(caller.scopes)})
        if kind is None:
            return await call_next(ctx)
        name = touched[0][1]
        try:
            with disclosure.applied(disclosure.of(caller, state)) as disclosed:  # who may see what (disclosure.py)
                result = await call_next(ctx)
        except Exception:
            await record(state, caller, kind, name, "error", Ids())
            raise
        ids = Ids()
        outcome: Outcome = "ok"
        if isinstance(result, Mapping):
            if kind == "tool":
                ids = tool_ids(result)
                outcome = "error" if result.get("isError") else "ok"
            elif kind == "resource":
                ids = resource_ids(name, result)
            else:
                ids = prompt_ids(result)
        leaks = await disclosure.leaked(state.store, disclosed, ids.propositions, ids.observations)
        if leaks:  # a read path skipped the disclosure filters: fail closed
            log.error("%s %r carried %s, which client %r's disclosure policy withholds; answered with an error",
                      kind, name, ", ".join(leaks[:20]), caller.name)
            await record(state, caller, kind, name, "error", Ids())
            raise MCPError(code=INTERNAL_ERROR, message=f"{kind} {name!r} failed: its result held items this "
                                                        "client's disclosure policy withholds (details in the "
                                                        "gum-mcp log)")
        await record(state, caller, kind, name, outcome, ids)
        return result


def visible(result: Any, caller: Caller, key: str, kind: scopes.Kind, field: str) -> Any:
    """A list result without the items the caller may not use."""
    if not isinstance(result, Mapping) or not isinstance(result.get(key), list):
        return result

    def shown(item: Any) -> bool:
        name = item.get(field) if isinstance(item, Mapping) else None
        return not isinstance(name, str) or scopes.required(kind, name) is None or \
            scopes.refusal(kind, name, caller.name, caller.scopes) is None

    return {**result, key: [item for item in result[key] if shown(item)]}


async def record(state: GumState, caller: Caller, kind: scopes.Kind, name: str, outcome: Outcome, ids: Ids) -> None:
    """One access-log row. A failure to write it is logged, never turned into the caller's error."""
    entry = AccessEntry(at=utcnow(), client=caller.name, transport=caller.transport, kind=kind, name=name[:500],
                        outcome=outcome, proposition_ids=tuple(sorted(ids.propositions)),
                        observation_ids=tuple(sorted(ids.observations)))
    try:
        await state.store.aio.record_access(entry)
    except Exception:
        log.exception("could not write the access log for %s %r", kind, name)
