"""Scopes on every tool, resource and prompt, derived at run time from what the server lists.

The cases are not written down here: each test asks the server (through a real MCP client, over
HTTP and over stdio) for its tools, resources, resource templates and prompts, and fails on any name
the scope map (gum_mcp/server/scopes.py) has no expectation for, so a new tool cannot slip through
unscoped. Then, for clients holding every scope but one and clients holding exactly what a name
needs, each name must be listed and callable exactly when its scopes are held, and refused with
FORBIDDEN otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server, scopes
from gum_mcp.server.guard import FORBIDDEN
from gum_mcp.store import Store
from gum_mcp.store.tokens import SCOPES
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.test_http_gate import http_server

pytestmark = pytest.mark.anyio

#: fast servers: keyword search only, no wait for a vector index
QUICK = {"GUM_EMBEDDING": "none", "GUM_INDEX_WAIT": "0"}
ALL = frozenset(SCOPES)

Offer = tuple[str, str, Any]  # kind, name as listed, the arguments to call it with


# ------------------------------------------------------------------------------------ what is offered
async def offered(client: Client) -> list[Offer]:
    """Everything the server lists to this client, with arguments good enough to get past the guard."""
    items: list[Offer] = [("tool", t.name, {}) for t in (await client.list_tools()).tools]
    items += [("resource", str(r.uri), None) for r in (await client.list_resources()).resources]
    items += [("resource", t.uri_template, None) for t in (await client.list_resource_templates()).resource_templates]
    items += [("prompt", p.name, {a.name: "x" for a in p.arguments or [] if a.required})
              for p in (await client.list_prompts()).prompts]
    return items


def expectations(items: list[Offer]) -> dict[tuple[str, str], frozenset[str]]:
    """The scopes each offered name needs; fails on any name the scope map lacks."""
    unknown = [f"{kind} {name}" for kind, name, _ in items if scopes.required(kind, name) is None]  # type: ignore[arg-type]
    assert not unknown, f"no scope expectation for {unknown}: add them to gum_mcp/server/scopes.py"
    return {(kind, name): scopes.required(kind, name) for kind, name, _ in items}  # type: ignore[arg-type, misc]


async def attempt(client: Client, kind: str, name: str, args: Any) -> bool:
    """Call it; False when the guard refused it, True for any other outcome (a result or another error)."""
    try:
        if kind == "tool":
            await client.call_tool(name, args)
        elif kind == "resource":
            await client.read_resource(name.replace("{id}", "1"))
        else:
            await client.get_prompt(name, args)
    except MCPError as exc:
        if exc.code == FORBIDDEN:
            assert "permission denied" in exc.message and "scope" in exc.message, exc.message
            return False
    return True


async def check(client: Client, everything: list[Offer], granted: frozenset[str]) -> None:
    """`client` holds `granted`: it lists and may call exactly what those scopes cover."""
    needs = expectations(everything)
    listed = {(kind, name) for kind, name, _ in await offered(client)}
    wrong_list = [key for key, needed in needs.items() if (key in listed) != (needed <= granted)]
    assert not wrong_list, f"listed wrongly for scopes {sorted(granted)}: {wrong_list}"
    wrong_call = [(kind, name) for kind, name, args in everything
                  if await attempt(client, kind, name, args) != (needs[kind, name] <= granted)]
    assert not wrong_call, f"enforced wrongly for scopes {sorted(granted)}: {wrong_call}"


def scope_sets(everything: list[Offer]) -> list[frozenset[str]]:
    """Every scope but one, and exactly what each name needs."""
    return sorted({ALL - {s} for s in SCOPES} | set(expectations(everything).values()), key=sorted)


# ------------------------------------------------------------------------------------ the map itself
def test_the_map_says_what_the_issue_decided() -> None:
    decided = {("tool", "query_user"): {"read"}, ("tool", "status"): {"read"},
               ("tool", "record_observation"): {"write"}, ("tool", "give_feedback"): {"read", "write"},
               ("tool", "respond_to_suggestion"): {"read", "write"}, ("tool", "suggest_actions"): {"read", "write"},
               ("tool", "forget"): {"read", "forget"}, ("tool", "pause_observing"): {"admin"},
               ("tool", "resume_observing"): {"admin"}, ("resource", "gum://access-log"): {"admin"},
               ("resource", "gum://propositions/42"): {"read"}, ("prompt", "personalize"): {"read"}}
    assert {key: set(scopes.required(*key) or ()) for key in decided} == decided  # type: ignore[arg-type]
    assert all(needed and needed <= ALL for table in scopes.MAPS.values() for needed in table.values())
    assert scopes.required("tool", "not_a_tool") is None and scopes.required("resource", "gum://propositions/") is None


# ------------------------------------------------------------------------------------ over HTTP
@asynccontextmanager
async def connected(target: str, token: str, mode: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(target, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.fixture
def http(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    data_dir = tmp_path / "data"
    with Store.open(make_settings(data_dir)) as store, http_server(data_dir, **QUICK) as target:
        yield target, store


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_every_listed_name_is_scoped_over_http(http, mode: str) -> None:
    target, store = http
    async with connected(target, store.add_token("everything", "all"), mode) as client:
        everything = await offered(client)
        assert {kind for kind, _, _ in everything} == {"tool", "resource", "prompt"}
        await check(client, everything, ALL)
    for number, granted in enumerate(scope_sets(everything)):
        token = store.add_token(f"client-{number}", granted)  # added while the server runs
        async with connected(target, token, mode) as client:
            await check(client, everything, granted)


# ------------------------------------------------------------------------------------ over stdio
def stdio(data_dir: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=gum_env(data_dir, **QUICK, **env),
                                 cwd=REPO)


@pytest.mark.timeout(180)
async def test_stdio_clients_have_every_scope_unless_their_entry_narrows_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with Client(stdio(data_dir, GUM_CLIENT="claude-desktop"), mode="legacy") as client:
        everything = await offered(client)
        await check(client, everything, ALL)
    info = Implementation(name="my-agent", version="1.0")
    async with Client(stdio(data_dir, GUM_SCOPES="read"), mode="2026-07-28", client_info=info) as client:
        await check(client, everything, frozenset({"read"}))
    async with Client(stdio(data_dir, GUM_SCOPES="write,forget"), mode="legacy") as client:
        await check(client, everything, frozenset({"write", "forget"}))
    with Store.open(make_settings(data_dir)) as store:
        log = store.access_log(limit=None)
    assert {e.client for e in log} == {"claude-desktop", "my-agent", "mcp"}  # mcp: the SDK client's own name
    assert {e.transport for e in log} == {"stdio"}
    assert {e.outcome for e in log if e.client == "my-agent" and e.name == "record_observation"} == {"denied"}


# ------------------------------------------------------------------------------------ a name the map lacks
async def test_a_tool_missing_from_the_map_is_refused_and_fails_the_derivation(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path / "data", embedding="none"))
    try:
        server = build_server(runtime)

        async def audit() -> str:
            return "everything"

        server.add_tool(audit, name="audit")
        async with Client(server) as client:
            everything = await offered(client)
            assert ("tool", "audit", {}) in everything  # listed, so the derivation sees it...
            with pytest.raises(AssertionError, match=r"no scope expectation for .*tool audit"):
                expectations(everything)
            with pytest.raises(MCPError, match="has no scope in gum-mcp's scope map") as refused:
                await client.call_tool("audit", {})  # ...and nobody may call it, whatever their scopes
            assert refused.value.code == FORBIDDEN
            unknown = await client.call_tool("no_such_tool", {})  # a name nobody registered: the SDK's answer
            assert unknown.is_error and "Unknown tool" in unknown.content[0].text
    finally:
        runtime.close()
