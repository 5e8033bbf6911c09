"""The access log: every call of a tool, resource or prompt, with the client's name and exactly the
proposition and observation ids its result carried; admin-only over MCP; `gum-mcp access-log`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from gum_mcp.domain import utcnow
from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.server.guard import FORBIDDEN
from gum_mcp.store import Store
from gum_mcp.store.access_log import AccessEntry
from gum_mcp.store.suggestions import NewSuggestion
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.test_server import seed

pytestmark = pytest.mark.anyio


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[Runtime, list[int]]]:
    runtime = Runtime(make_settings(tmp_path / "data", user_name="Priya"))
    ids = seed(runtime)
    runtime.store.save_suggestions([NewSuggestion(
        title="Block Friday morning for the Q4 budget", action="put a focus block in the calendar", benefit=8, cost=2,
        p_useful=0.8, utility=4.4, threshold=2.0, proposition_ids=(ids[0], ids[2]))])
    yield runtime, ids
    runtime.close()


# what each result shows, read the way a person reads the output (independently of the server's extractor)
def shown_propositions(props: list[dict]) -> tuple[set[int], set[int]]:
    return {p["id"] for p in props}, {e["observation_id"] for p in props for e in p["evidence"]}


def shown_record(record: dict) -> tuple[set[int], set[int]]:
    props, obs = shown_propositions([record["proposition"]])
    return props | {h["id"] for h in record["history"]} | set(record["superseded_by"]), obs


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_log_holds_exactly_the_ids_each_read_returned(seeded, mode: str) -> None:
    runtime, ids = seeded
    expected: list[tuple[str, str, set[int], set[int]]] = []
    info = Implementation(name="claude-ai", version="1")
    async with Client(build_server(runtime), mode=mode, client_info=info) as client:
        await runtime.wait_owner_ready()

        async def tool(name: str, args: dict) -> dict:
            result = await client.call_tool(name, args)
            assert not result.is_error, result.content
            return result.structured_content

        found = await tool("query_user", {"query": "budget spreadsheet due Friday", "limit": 3})
        expected.append(("tool", "query_user", *shown_propositions(found["propositions"])))
        page = await tool("list_propositions", {"limit": 10})
        expected.append(("tool", "list_propositions", *shown_propositions(page["propositions"])))
        feedback = await tool("give_feedback", {"id": ids[2], "verdict": "confirm"})
        expected.append(("tool", "give_feedback", *shown_propositions([feedback["successor"]])))
        retired = await tool("get_proposition", {"id": ids[2]})
        assert retired["superseded_by"] and retired["proposition"]["evidence"]
        expected.append(("tool", "get_proposition", *shown_record(retired)))
        current = await tool("get_proposition", {"id": feedback["successor"]["id"]})
        assert current["history"]
        expected.append(("tool", "get_proposition", *shown_record(current)))
        activity = await tool("get_recent_activity", {"minutes": 600})
        expected.append(("tool", "get_recent_activity", set(), {o["id"] for o in activity["observations"]}))
        await tool("status", {})
        expected.append(("tool", "status", set(), set()))
        preview = await tool("forget", {"query": "Porto half marathon"})  # removes nothing: shows the matches
        assert preview["status"] == "confirm" and preview["matches"]
        expected.append(("tool", "forget", {m["id"] for m in preview["matches"]}, set()))

        profile = (await client.read_resource("gum://profile")).contents[0].text
        expected.append(("resource", "gum://profile", {int(n) for n in re.findall(r"#(\d+)\)$", profile, re.M)}, set()))
        one = json.loads((await client.read_resource(f"gum://propositions/{ids[0]}")).contents[0].text)
        expected.append(("resource", f"gum://propositions/{ids[0]}", *shown_record(one)))
        recent = json.loads((await client.read_resource("gum://activity/recent")).contents[0].text)
        expected.append(("resource", "gum://activity/recent", set(), {o["id"] for o in recent["observations"]}))
        open_now = json.loads((await client.read_resource("gum://suggestions")).contents[0].text)
        grounds = {g["id"] for s in open_now["suggestions"] for g in s["grounds"]}
        assert grounds == {ids[0], ids[2]}  # a suggestion keeps the propositions it was made from
        expected.append(("resource", "gum://suggestions", grounds, set()))

        await client.get_prompt("personalize", {"task": "plan my week"})
        expected.append(("prompt", "personalize", set(), set()))  # its text names no ids
        doing = (await client.get_prompt("what_am_i_doing", {})).messages[0].content.text
        expected.append(("prompt", "what_am_i_doing", {int(n) for n in re.findall(r"#(\d+)\)$", doing, re.M)}, set()))

    log = list(reversed(runtime.store.access_log(limit=None)))
    assert [(e.kind, e.name, set(e.proposition_ids), set(e.observation_ids)) for e in log] == expected
    assert all(e.client == "claude-ai" and e.transport == "stdio" and e.outcome == "ok" for e in log)
    assert all(props or obs for kind, name, props, obs in expected if name not in ("status", "personalize"))


async def test_the_log_is_for_admins_only_and_records_refusals(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", client="cursor", scopes=["read", "write"])
    runtime = Runtime(settings)
    try:
        async with Client(build_server(runtime)) as client:
            assert "gum://access-log" not in {str(r.uri) for r in (await client.list_resources()).resources}
            with pytest.raises(MCPError, match="needs the admin scope; client 'cursor' has read, write") as refused:
                await client.read_resource("gum://access-log")
            assert refused.value.code == FORBIDDEN
            with pytest.raises(MCPError, match="needs the forget scope"):
                await client.call_tool("forget", {"source": "screen"})
            assert not (await client.call_tool("status", {})).is_error
        [log, forget, status] = [(e.kind, e.name, e.outcome) for e in reversed(runtime.store.access_log())]
        assert status == ("tool", "status", "ok") and forget == ("tool", "forget", "denied")
        assert log == ("resource", "gum://access-log", "denied")
    finally:
        runtime.close()

    admin = Runtime(make_settings(tmp_path / "data", client="gum-cli"))
    try:
        async with Client(build_server(admin)) as client:
            shown = json.loads((await client.read_resource("gum://access-log")).contents[0].text)
        assert [(e["client"], e["name"], e["outcome"]) for e in shown["entries"]] == [  # newest first
            ("cursor", "status", "ok"), ("cursor", "forget", "denied"), ("cursor", "gum://access-log", "denied")]
        [week] = [w for w in shown["weekly"] if w["client"] == "cursor"]
        assert week["calls"] == 3 and week["denied"] == 2 and week["by_name"]["tool status"] == 1
        # reading the log is logged, without taking the ids it shows for ids it returned
        [mine] = admin.store.access_log(client="gum-cli")
        assert mine.name == "gum://access-log" and mine.proposition_ids == () and mine.observation_ids == ()
    finally:
        admin.close()


# ------------------------------------------------------------------------------------ the store and the command
def entry(client: str, name: str, days_ago: float, props: tuple[int, ...] = (), obs: tuple[int, ...] = (),
          outcome: str = "ok") -> AccessEntry:
    return AccessEntry(at=utcnow() - timedelta(days=days_ago), client=client, transport="http", kind="tool",
                       name=name, outcome=outcome, proposition_ids=props, observation_ids=obs)  # type: ignore[arg-type]


def test_summary_since_and_pruning(store: Store) -> None:
    for item in (entry("cursor", "query_user", 0, (1, 2), (7,)), entry("cursor", "get_proposition", 0, (2, 3)),
                 entry("cursor", "forget", 0, outcome="denied"), entry("script", "status", 0),
                 entry("cursor", "query_user", 21, (9,))):
        store.record_access(item)
    [a, b] = [w for w in store.access_summary(since=utcnow() - timedelta(days=1))]
    assert (a.client, a.calls, a.denied, a.propositions, a.observations) == ("cursor", 3, 1, 3, 1)
    assert (b.client, b.calls) == ("script", 1)
    assert len(store.access_summary(client="cursor")) == 2  # two different weeks
    assert [e.name for e in store.access_log(client="cursor", since=utcnow() - timedelta(days=1))] == [
        "forget", "get_proposition", "query_user"]
    assert store.prune_access_log(utcnow() - timedelta(days=7)) == 1
    assert len(store.access_log(limit=None)) == 4


def test_the_retention_run_prunes_the_access_log(store: Store) -> None:
    """Kept as long as observations: the owner's periodic retention run drops older entries."""
    from gum_mcp.store.retention import RetentionPolicy

    for item in (entry("cursor", "query_user", 0, (1,)), entry("cursor", "query_user", 45, (2,))):
        store.record_access(item)
    report = store.apply_retention(RetentionPolicy.from_settings(store.settings, retention_days=30))
    assert report.access_log_deleted == 1
    assert [e.proposition_ids for e in store.access_log(limit=None)] == [(1,)]


def test_access_log_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with Store.open(make_settings(data_dir)) as store:
        store.record_access(entry("cursor", "query_user", 0, (1, 2), (7,)))
        store.record_access(entry("script", "status", 3))

    def run(*args: str) -> str:
        done = subprocess.run([PYTHON, "-m", "gum_mcp", "access-log", *args], cwd=REPO, env=gum_env(data_dir),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    lines = run().splitlines()
    assert len(lines) == 2 and "cursor" in lines[0] and "propositions 1,2  observations 7" in lines[0]
    assert "script" not in run("--since", "1d") and "cursor" not in run("--client", "script")
    weekly = json.loads(run("--summary", "--json", "--client", "cursor"))
    assert [(w["client"], w["calls"], w["propositions"], w["observations"]) for w in weekly] == [("cursor", 1, 2, 1)]
    assert "1 call(s)" in run("--summary", "--client", "cursor")
