"""Many clients, one model: two real `gum-mcp serve` processes on one data directory."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import PYTHON, REPO, eventually, gum_env
from tests.test_engine import Brain, draft

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

SEAT = "Priya prefers window seats on long flights"


async def status(client: Client) -> dict:
    result = await client.call_tool("status", {})
    assert not result.is_error, result.content
    return result.structured_content


async def query(client: Client, text: str) -> dict:
    result = await client.call_tool("query_user", {"query": text})
    assert not result.is_error, result.content
    return result.structured_content


async def test_two_servers_one_engine_shared_model_and_takeover(tmp_path: Path, fake_provider) -> None:
    brain = Brain(fake_provider)
    brain.on("propose", lambda r: {"propositions": [draft(SEAT, [o.id for o in r.observations], decay=9)]})
    env = gum_env(tmp_path / "data", GUM_LLM_PROVIDER="openai", OPENAI_BASE_URL=fake_provider.openai_base_url,
                  GUM_BATCH_MIN="1", GUM_BATCH_MAX_WAIT="0", GUM_LLM_TIMEOUT="10")
    params = StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=env, cwd=REPO)

    async with anyio.create_task_group() as tg:
        a, stop_a = await tg.start(hold, params, "legacy")
        b, stop_b = await tg.start(hold, params, "2026-07-28")
        # exactly one of them owns the data dir; the other names it
        status_a, status_b = await eventually(lambda: _roles(a, b))
        if status_a["role"] == "owner":
            owner, follower, stop_owner, follower_status = a, b, stop_a, status_b
        else:
            owner, follower, stop_owner, follower_status = b, a, stop_b, status_a
        assert follower_status["engine_owner"]["pid"] != follower_status["pid"]

        # an observation recorded through the follower is processed by the owner's engine ...
        added = await follower.call_tool("record_observation", {"content": "Priya asked for a window seat again "
                                                                            "on the Lisbon flight"})
        assert not added.is_error
        await eventually(lambda: _finds(owner, "airplane seating preference"))
        # ... and the follower sees it too, vector search included (served by the owner)
        await eventually(lambda: _finds(follower, "airplane seating preference"))
        assert len(brain.of("propose")) == 1  # one engine: the batch was processed once

        # the owner exits: the follower takes over and still finds it by meaning
        stop_owner.set()
        survivor = await eventually(lambda: _is_owner(follower), timeout=60)
        assert survivor["pid"] == follower_status["pid"]
        hit = await eventually(lambda: _finds(follower, "airplane seating preference"), timeout=60)
        assert hit["text"] == SEAT
        stop_a.set()
        stop_b.set()


async def hold(params: StdioServerParameters, mode: str, *, task_status=anyio.TASK_STATUS_IGNORED) -> None:
    """Keep one client session (one server process) open until the event it hands out is set."""
    stop = anyio.Event()
    async with Client(params, mode=mode) as client:
        task_status.started((client, stop))
        await stop.wait()


async def _roles(a: Client, b: Client) -> tuple[dict, dict] | None:
    first, second = await status(a), await status(b)
    if {first["role"], second["role"]} == {"owner", "follower"}:
        return first, second
    return None


async def _finds(client: Client, text: str) -> dict | None:
    found = await query(client, text)
    for prop in found["propositions"]:
        if prop["text"] == SEAT and "vector" in (prop["matched"] or []):
            return prop
    return None


async def _is_owner(client: Client) -> dict | None:
    current = await status(client)
    return current if current["role"] == "owner" else None
