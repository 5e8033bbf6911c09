"""The MCP server in-process through a real mcp.Client, in both protocol eras."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from mcp import Client

from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, utcnow
from gum_mcp.runtime import Runtime
from gum_mcp.server import MAX_OUTPUT_BYTES, build_server
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
FACTS = [
    ("Excel - Budget-Q4.xlsx, sheet 'Forecast'; mail from Jordan: numbers due Friday",
     "Priya is preparing the Q4 budget in Excel for Jordan, due Friday", 8, 3),
    ("Chrome - Porto Half Marathon registration confirmation, race date March 22",
     "Priya registered for the Porto Half Marathon on March 22", 9, 6),
    ("The user said they never want meetings scheduled before 10am.",
     "Priya does not want meetings before 10am", 9, 9),
    ("GitHub - pull request #412 'Add retry to S3 loader' in northwind/etl-pipeline",
     "Priya reviews pull requests for the northwind ETL pipeline", 7, 6),
]


def seed(runtime: Runtime) -> list[int]:
    store = runtime.store
    ids = []
    for i, (content, text, confidence, decay) in enumerate(FACTS):
        [obs] = store.add_observations([NewObservation(
            content=content, kind="screen", source="screen", observed_at=utcnow() - timedelta(hours=i))])
        ids += store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
            draft=PropositionDraft(text=text, reasoning=f"seen: {content[:40]}", confidence=confidence, decay=decay),
            evidence=(obs.id,)),)))
    return ids


@pytest.fixture
async def gum(tmp_path: Path) -> AsyncIterator[tuple[Runtime, list[int]]]:
    runtime = Runtime(make_settings(tmp_path / "data", user_name="Priya"))
    ids = seed(runtime)
    yield runtime, ids
    runtime.close()


def data(result) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


@pytest.mark.parametrize("mode", MODES)
async def test_every_tool_resource_and_prompt(gum, mode: str) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode=mode) as client:
        await runtime.wait_owner_ready()
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"query_user", "list_propositions", "get_proposition", "get_recent_activity",
                              "record_observation", "give_feedback", "forget", "status", "suggest_actions",
                              "respond_to_suggestion", "pause_observing", "resume_observing", "record_edit",
                              "decide_or_ask"}
        assert tools["query_user"].annotations.read_only_hint is True
        assert tools["forget"].annotations.destructive_hint is True
        assert all(t.output_schema for t in tools.values())

        found = data(await client.call_tool("query_user", {"query": "when is the spreadsheet for my manager due"}))
        top = found["propositions"][0]
        assert top["id"] == ids[0] and top["confidence"] == 8 and top["evidence"][0]["snippet"].startswith("Excel")
        assert "vector" in top["matched"] and top["score"] > 0 and top["age"].endswith(("s", "m", "h"))

        page = data(await client.call_tool("list_propositions", {"limit": 2, "order": "confidence"}))
        assert [p["confidence"] for p in page["propositions"]] == [9, 9] and page["next_cursor"]
        rest = data(await client.call_tool("list_propositions", {"limit": 10, "cursor": page["next_cursor"],
                                                                 "order": "confidence"}))
        assert len(rest["propositions"]) == 2

        record = data(await client.call_tool("get_proposition", {"id": ids[1]}))
        assert record["current"] and "Porto" in record["proposition"]["text"]

        activity = data(await client.call_tool("get_recent_activity", {"minutes": 600}))
        assert len(activity["observations"]) == 4

        added = data(await client.call_tool("record_observation", {"content": "Priya prefers tea to coffee",
                                                                   "source": "test-agent"}))
        assert added["status"] == "pending"
        assert runtime.store.get_observation(added["id"]).source == "test-agent"

        fb = data(await client.call_tool("give_feedback", {"id": ids[2], "verdict": "confirm"}))
        assert fb["successor"]["confidence"] == 10
        retired = data(await client.call_tool("get_proposition", {"id": ids[2]}))
        assert not retired["current"] and retired["superseded_by"] == [fb["successor"]["id"]]

        gone = data(await client.call_tool("forget", {"proposition_id": ids[3], "with_evidence": True}))
        assert gone["proposition_ids"] == [ids[3]] and gone["observations_deleted"] == 1

        status = data(await client.call_tool("status", {}))
        assert status["role"] == "owner" and status["propositions_current"] == 3
        assert status["llm"]["problem"] and "OPENAI_API_KEY" in status["llm"]["problem"]

        profile = (await client.read_resource("gum://profile")).contents[0].text
        assert "Porto Half Marathon" in profile and profile.startswith("# What gum-mcp believes about Priya")
        one = json.loads((await client.read_resource(f"gum://propositions/{ids[0]}")).contents[0].text)
        assert one["proposition"]["id"] == ids[0]
        recent = json.loads((await client.read_resource("gum://activity/recent")).contents[0].text)
        assert recent["observations"][0]["content"] == "Priya prefers tea to coffee"

        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert prompts == {"personalize", "what_am_i_doing"}
        message = (await client.get_prompt("personalize", {"task": "plan my running week"})).messages[0]
        assert "plan my running week" in message.content.text and "Porto" in message.content.text
        doing = (await client.get_prompt("what_am_i_doing", {})).messages[0].content.text
        assert "tea to coffee" in doing


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("query_user", {"limit": 0}, "limit"),
        ("query_user", {"limit": "many"}, "limit"),
        ("query_user", {"since": "last tuesday"}, "since: 'last tuesday' is not a time"),
        ("query_user", {"min_confidence": 11}, "min_confidence"),
        ("list_propositions", {"order": "random"}, "order"),
        ("list_propositions", {"cursor": "garbage"}, "cursor: not a cursor"),
        ("get_proposition", {"id": 424242}, "no proposition with id 424242"),
        ("get_proposition", {"id": "one"}, "id"),
        ("get_recent_activity", {"minutes": -5}, "minutes"),
        ("record_observation", {"content": ""}, "content"),
        ("record_observation", {"content": "x" * 20_001}, "GUM_MAX_OBSERVATION_CHARS"),
        ("give_feedback", {"id": 1, "verdict": "love"}, "verdict"),
        ("give_feedback", {"id": 1, "verdict": "correct"}, "correction: required"),
        ("give_feedback", {"id": 99999, "verdict": "confirm"}, "no proposition with id 99999"),
        ("forget", {}, "exactly one of"),
        ("forget", {"since": "yesterday-ish"}, "since"),
        ("forget", {"proposition_id": 1, "source": "screen"}, "exactly one of"),
    ],
)
async def test_bad_input_is_a_clear_tool_error(gum, tool: str, args: dict, expected: str) -> None:
    runtime, _ids = gum
    async with Client(build_server(runtime), mode="legacy") as client:
        result = await client.call_tool(tool, args)
        assert result.is_error
        text = result.content[0].text
        assert expected in text and "Traceback" not in text
        assert runtime.store.stats().propositions_current == len(FACTS)


async def test_feedback_on_a_retired_id_names_its_successor(gum) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode="2026-07-28") as client:
        first = data(await client.call_tool("give_feedback", {"id": ids[0], "verdict": "correct",
                                                              "correction": "Priya's Q4 budget is due Thursday"}))
        again = await client.call_tool("give_feedback", {"id": ids[0], "verdict": "confirm"})
        assert again.is_error and f"current successors are {first['successor']['id']}" in again.content[0].text


async def test_output_is_bounded_and_says_so(gum) -> None:
    runtime, _ids = gum
    runtime.store.add_observations([NewObservation(content=f"long observation {i} " + "lorem ipsum " * 150)
                                    for i in range(60)])
    async with Client(build_server(runtime), mode="legacy") as client:
        result = data(await client.call_tool("get_recent_activity", {"minutes": 60, "limit": 100}))
        assert result["truncated"] and "16 KiB" in result["note"]
        assert 0 < len(result["observations"]) < 60
        raw = await client.call_tool("get_recent_activity", {"minutes": 60, "limit": 100})
        assert len(json.dumps(raw.structured_content).encode()) <= MAX_OUTPUT_BYTES
        assert sum(len(c.text.encode()) for c in raw.content) <= MAX_OUTPUT_BYTES


async def test_forget_by_query_removes_the_match(gum) -> None:
    runtime, ids = gum
    async with Client(build_server(runtime), mode="legacy") as client:
        await runtime.wait_owner_ready()
        nothing = data(await client.call_tool("forget", {"query": "favourite pizza toppings", "max_matches": 3}))
        assert nothing["proposition_ids"] == [] and "nothing matched" in nothing["message"]
        preview = data(await client.call_tool("forget", {"query": "half marathon race", "max_matches": 3}))
        assert [m["id"] for m in preview["matches"]] == [ids[1]] and runtime.store.get_proposition(ids[1]).current
        gone = data(await client.call_tool("forget", {"confirm_token": preview["confirm_token"]}))
        assert gone["proposition_ids"] == [ids[1]]
        left = data(await client.call_tool("query_user", {"query": "Porto half marathon"}))
        assert all("Porto" not in (p["text"] or "") for p in left["propositions"])
