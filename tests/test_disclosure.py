"""Who may see what, through the real MCP client: a client allowed only `work` never sees a `health`
proposition, nor the observations behind it, through any read path.

The cases are derived at run time: the test lists what the server offers (`list_tools`, `list_resources`,
resource templates, `list_prompts`) and fails on any name without an expectation in `EXPECTATIONS`, so a
new read path cannot skip the disclosure policy. For each name, a client allowed only `work` ("coder")
calls it; nothing it receives may name a withheld proposition or observation (by id, the access log's
extractor) or quote them (by their words). Names whose results show what is known are also called by a
client allowed every class ("owner"), which must see the withheld items there: proof that the path would
show them without the policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, Reinforcement, utcnow
from gum_mcp.runtime import Runtime
from gum_mcp.server import access, build_server
from gum_mcp.store import Store
from gum_mcp.store.suggestions import NewSuggestion
from tests.conftest import make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_http_gate import http_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

POLICY = """
[default]
allow = ["work", "personal", "location", "other"]

[clients.coder]
allow = ["work"]

[clients.owner]
allow = ["all"]
"""

#: words only the withheld items hold (health, an untagged proposition, a pending observation)
SECRETS = ("cardiology", "echocardiogram", "heartbeat", "porto", "marathon", "pharmacy", "refill")


@dataclass
class Seeded:
    runtime: Runtime
    fake: FakeLLMServer
    work: list[int]  # current work propositions
    work_retired: int  # merged into a health proposition: its successor is withheld
    health: int
    merged: int  # work + health merged: health wins
    untagged: int
    hidden_observations: set[int]
    work_observation: int
    health_suggestion: int
    work_suggestion: int
    hidden_propositions: set[int] = field(default_factory=set)


def _observe(store: Store, content: str, minutes_ago: int) -> int:
    [obs] = store.add_observations([NewObservation(content=content, kind="screen", source="screen",
                                                   observed_at=utcnow() - timedelta(minutes=minutes_ago))])
    return obs.id


def _propose(store: Store, obs: list[int], text: str, sensitivity: str | None, *, supersedes: tuple[int, ...] = (),
             reinforce: tuple[int, ...] = ()) -> int:
    [pid] = store.complete_batch(BatchResult(
        observation_ids=tuple(obs),
        new=(NewProposition(draft=PropositionDraft(text=text, reasoning=f"seen: {text[:30]}", confidence=8, decay=7),
                            evidence=tuple(obs), supersedes=supersedes, cause="merged" if supersedes else "proposed",
                            sensitivity=sensitivity),),
        reinforce=tuple(Reinforcement(proposition_id=p, evidence=tuple(obs)) for p in reinforce)))
    return pid


def seed(store: Store) -> dict[str, Any]:
    pr = _observe(store, "GitHub - pull request #412 'Add retry to S3 loader' in northwind/etl-pipeline", 5)
    loader = _observe(store, "VS Code - northwind/etl-pipeline/loader.py: retry with backoff", 6)
    chart = _observe(store, "MyChart - cardiology follow-up booked; echocardiogram results are in", 7)
    calendar = _observe(store, "Calendar - Thursday: northwind standup 9:30, cardiology 14:00", 8)
    race = _observe(store, "Chrome - Porto Half Marathon training plan, week 6", 9)
    old = _observe(store, "Jira - NW-88 loader timeouts assigned to Priya", 10)
    reviews = _propose(store, [pr], "Priya reviews pull requests for the northwind ETL pipeline", "work")
    loader_p = _propose(store, [loader], "Priya maintains the S3 loader of northwind/etl-pipeline", "work")
    health = _propose(store, [chart], "Priya has a cardiology follow-up about an irregular heartbeat", "health")
    standup = _propose(store, [calendar], "Priya attends the northwind standup on Thursdays", "work",
                       reinforce=(health,))  # the calendar also supports the health one: it carries both
    untagged = _propose(store, [race], "Priya trains for the Porto Half Marathon", None)
    timeouts = _propose(store, [old], "Priya fixes loader timeouts in NW-88", "work")
    doctor = _propose(store, [], "Priya sees a cardiology doctor about the heartbeat", "health")
    merged = _propose(store, [], "Priya fixes loader timeouts between cardiology visits", "work",
                      supersedes=(timeouts, doctor))  # the store keeps the most sensitive: health
    pending = _observe(store, "Pharmacy - cardiology prescription refill ready", 1)  # never processed
    saved = store.save_suggestions([
        NewSuggestion(title="Book the cardiology follow-up", action="find a slot", benefit=8, cost=2, p_useful=0.8,
                      utility=4.4, threshold=2.0, proposition_ids=(health,), observation_ids=(chart,)),
        NewSuggestion(title="Review PR 412 before standup", action="summarise the diff", benefit=8, cost=2,
                      p_useful=0.8, utility=4.4, threshold=2.0, proposition_ids=(reviews,), observation_ids=(pr,)),
    ])
    health_suggestion, work_suggestion = (s.id for s in saved.saved)
    return dict(work=[reviews, loader_p, standup], work_retired=timeouts, health=health, merged=merged,
                untagged=untagged, work_observation=pr,
                # `old` is evidence of the merged (health) proposition too, through lineage
                hidden_observations={chart, calendar, race, old, pending},
                health_suggestion=health_suggestion, work_suggestion=work_suggestion,
                hidden_propositions={health, doctor, merged, untagged})


# ------------------------------------------------------------------------------------ the fake LLM
def llm_reply(body: Any, path: str) -> Any:
    """suggest: one suggestion resting on every proposition shown, quoting them; rerank: every candidate."""
    name = body["response_format"]["json_schema"]["name"]
    text = " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
    if name == "SuggestReply":
        shown = [int(i) for i in re.findall(r'<proposition id="(\d+)"', text)]
        quoted = " / ".join(re.findall(r'<proposition id="\d+"[^>]*>([^<]*)', text))
        return {"suggestions": [{"proposition_ids": shown, "rationale": f"because: {quoted}",
                                 "title": f"Act on: {quoted[:80]}", "action": f"help with: {quoted}",
                                 "benefit": 10, "cost": 1}]} if shown else {"suggestions": []}
    if name == "RerankReply":
        return {"reasoning": "all of them", "ids": [int(i) for i in re.findall(r'<candidate id="(\d+)"', text)]}
    if name == "DecideReply":  # ask, quoting every proposition shown
        shown = re.findall(r'<proposition id="(p\d+)"[^>]*>([^<]*)', text)
        quoted = " / ".join(t for _, t in shown)
        return {"reasoning": f"seen: {quoted}"[:1200], "outcome": "ask", "option": "",
                "proposition_ids": [i for i, _ in shown][:10], "confidence": 5, "question": f"which? {quoted}"[:300]}
    raise AssertionError(f"unexpected LLM request {name}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def seeded(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Seeded]:
    data_dir = tmp_path / "data"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    settings = fake_provider.settings("openai", data_dir, user_name="Priya", embedding="none", index_wait=0,
                                      policy_file=policy, encrypt=False)
    fake_provider.default = llm_reply
    runtime = Runtime(settings, engine=False)  # no engine: the pending observation stays pending
    made = seed(runtime.store)
    yield Seeded(runtime=runtime, fake=fake_provider, **made)
    runtime.close()


# ------------------------------------------------------------------------------------ what a client receives
@dataclass
class Received:
    payloads: list[Any] = field(default_factory=list)
    propositions: set[int] = field(default_factory=set)
    observations: set[int] = field(default_factory=set)

    def add(self, payload: Any, ids: access.Ids) -> Any:
        self.payloads.append(payload)
        self.propositions |= ids.propositions
        self.observations |= ids.observations
        return payload

    def text(self) -> str:
        return json.dumps(self.payloads, default=str).lower()


async def tool(client: Client, got: Received, name: str, args: dict[str, Any], *, ok: bool = True) -> Any:
    result = await client.call_tool(name, args)
    if ok:
        assert not result.is_error, (name, args, result.content)
    if result.is_error:
        return got.add(result.content[0].text, access.Ids())
    structured = result.structured_content
    return got.add(structured, access.ids_in(structured))


async def resource(client: Client, got: Received, uri: str) -> Any:
    try:
        contents = (await client.read_resource(uri)).contents
    except MCPError as exc:
        return got.add(exc.message, access.Ids())
    items = [{"mimeType": c.mime_type, "text": c.text} for c in contents]
    return got.add(items, access.resource_ids(uri, {"contents": items}))


async def prompt(client: Client, got: Received, name: str, args: dict[str, Any]) -> Any:
    messages = [{"content": {"text": m.content.text}} for m in (await client.get_prompt(name, args)).messages]
    return got.add(messages, access.prompt_ids({"messages": messages}))


Run = Callable[[Client, Received, Seeded, bool], Awaitable[None]]  # (client, received, seeded, as the coder)


@dataclass(frozen=True)
class Expectation:
    run: Run
    reveals: bool  # the owner's results show withheld items through it


# ------------------------------------------------------------------------------------ one per name
async def query_user(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    # (the client's own words come back in results: no withheld word in them)
    for args in ({"query": "irregular follow-up", "limit": 20},
                 {"query": "", "limit": 20},
                 {"query": "follow-up and the northwind pipeline", "limit": 20, "depth": "deep"}):
        found = await tool(client, got, "query_user", args)
        if coder:
            assert found["withheld"] >= 1 and "withheld" in found["note"]
    if coder:  # what it may see, it sees
        found = await tool(client, got, "query_user", {"query": "northwind pull requests", "limit": 5})
        assert s.work[0] in {p["id"] for p in found["propositions"]}


async def list_propositions(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    page = await tool(client, got, "list_propositions", {"limit": 100})
    if coder:
        assert {p["id"] for p in page["propositions"]} == set(s.work)
        assert page["withheld"] == 4  # health, merged, untagged, and the standup's calendar (it supports health)
        evidence = {e["observation_id"] for p in page["propositions"] for e in p["evidence"]}
        assert s.work_observation in evidence and not evidence & s.hidden_observations


async def get_proposition(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    for pid in [*s.work, s.work_retired, *s.hidden_propositions]:
        record = await tool(client, got, "get_proposition", {"id": pid}, ok=not coder)
        if coder and pid in s.hidden_propositions:
            assert record.endswith(f"no proposition with id {pid}")  # invisible: like an id that does not exist
    if coder:
        retired = await tool(client, got, "get_proposition", {"id": s.work_retired})
        assert retired["superseded_by"] == [] and retired["withheld"] >= 1  # its successor is health


async def get_recent_activity(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    activity = await tool(client, got, "get_recent_activity", {"minutes": 600, "limit": 100})
    if coder:
        assert s.work_observation in {o["id"] for o in activity["observations"]}
        assert activity["withheld"] == len(s.hidden_observations)


async def record_observation(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await tool(client, got, "record_observation", {"content": "Priya prefers tabs to spaces", "source": "test"})


async def record_edit(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await tool(client, got, "record_edit", {"before": "Hi all, the loader is fixed.", "after": "Loader fixed.",
                                            "context": "status note"})


async def decide_or_ask(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    found = await tool(client, got, "decide_or_ask", {"question": "Which slot for the follow-up visit?",
                                                      "options": ["morning", "afternoon"]})
    if coder:
        assert found["outcome"] == "ask"


async def give_feedback(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    if not coder:
        return
    refused = await tool(client, got, "give_feedback", {"id": s.health, "verdict": "reject"}, ok=False)
    assert refused.endswith(f"no proposition with id {s.health}")
    assert s.runtime.store.get_proposition(s.health).current  # nothing happened to it
    confirmed = await tool(client, got, "give_feedback", {"id": s.work[1], "verdict": "confirm"})
    assert confirmed["successor"]["confidence"] == 10
    s.work[1] = confirmed["successor"]["id"]


async def forget(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    preview = await tool(client, got, "forget", {"query": "irregular doctor timeouts loader", "max_matches": 50})
    if coder:
        assert preview["withheld"] >= 1 and preview["status"] == "nothing"
        refused = await tool(client, got, "forget", {"proposition_id": s.health}, ok=False)
        assert refused.endswith(f"no proposition with id {s.health}")
        assert s.runtime.store.get_proposition(s.health).text is not None


async def status(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    found = await tool(client, got, "status", {})
    if coder:
        assert found["disclosure"]["client"] == "coder" and found["disclosure"]["allowed"] == ["work"]
        assert found["disclosure"]["withheld_propositions"] == 3 and "classes" not in found["disclosure"]


async def suggest_actions(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    before = len(s.fake.requests)
    await tool(client, got, "suggest_actions", {"context": "the loader retries", "limit": 3})
    sent = json.dumps([r.body for r in s.fake.requests[before:]]).lower()
    if coder:  # what the model was shown for this client: nothing it may not see
        assert sent and not [w for w in SECRETS if w in sent]
        assert "cardiology follow-up" not in sent  # nor the earlier suggestion resting on health


async def respond_to_suggestion(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    if not coder:
        return
    refused = await tool(client, got, "respond_to_suggestion", {"id": s.health_suggestion, "verdict": "dismissed"},
                         ok=False)
    assert refused.endswith(f"no suggestion with id {s.health_suggestion} (it may have been forgotten)")
    answered = await tool(client, got, "respond_to_suggestion", {"id": s.work_suggestion, "verdict": "accepted"})
    assert answered["suggestion"]["status"] == "accepted"


async def pause_observing(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await tool(client, got, "pause_observing", {"minutes": 1})


async def resume_observing(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await tool(client, got, "resume_observing", {})


async def profile(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    [item] = await resource(client, got, "gum://profile")
    if coder:
        assert "northwind" in item["text"] and "withheld" in item["text"]


async def proposition_resource(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    for pid in [*s.work, *s.hidden_propositions]:
        found = await resource(client, got, f"gum://propositions/{pid}")
        if coder and pid in s.hidden_propositions:
            assert f"no proposition with id {pid}" in found


async def activity_resource(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await resource(client, got, "gum://activity/recent")


async def suggestions_resource(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    [item] = await resource(client, got, "gum://suggestions")
    if coder:
        assert s.work_suggestion in {x["id"] for x in json.loads(item["text"])["suggestions"]}


async def access_log(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    [item] = await resource(client, got, "gum://access-log")
    entries = json.loads(item["text"])["entries"]  # ids only (the extractor reads none here): count them
    got.propositions |= {p for e in entries for p in e["proposition_ids"]}
    got.observations |= {o for e in entries for o in e["observation_ids"]}
    if coder:  # the ids the owner's reads returned are in the log, but not shown to the coder
        assert any(e["client"] == "owner" for e in entries) and got.propositions


async def personalize(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    await prompt(client, got, "personalize", {"task": "plan my week around the follow-up and PR 412"})


async def what_am_i_doing(client: Client, got: Received, s: Seeded, coder: bool) -> None:
    [message] = await prompt(client, got, "what_am_i_doing", {})
    if coder:
        assert "northwind" in message["content"]["text"]


EXPECTATIONS: dict[tuple[str, str], Expectation] = {
    ("tool", "query_user"): Expectation(query_user, reveals=True),
    ("tool", "list_propositions"): Expectation(list_propositions, reveals=True),
    ("tool", "get_proposition"): Expectation(get_proposition, reveals=True),
    ("tool", "get_recent_activity"): Expectation(get_recent_activity, reveals=True),
    ("tool", "record_observation"): Expectation(record_observation, reveals=False),
    ("tool", "record_edit"): Expectation(record_edit, reveals=False),
    ("tool", "decide_or_ask"): Expectation(decide_or_ask, reveals=True),
    ("tool", "give_feedback"): Expectation(give_feedback, reveals=False),
    ("tool", "forget"): Expectation(forget, reveals=True),
    ("tool", "status"): Expectation(status, reveals=False),
    ("tool", "suggest_actions"): Expectation(suggest_actions, reveals=True),
    ("tool", "respond_to_suggestion"): Expectation(respond_to_suggestion, reveals=False),
    ("tool", "pause_observing"): Expectation(pause_observing, reveals=False),
    ("tool", "resume_observing"): Expectation(resume_observing, reveals=False),
    ("resource", "gum://profile"): Expectation(profile, reveals=True),
    ("resource", "gum://propositions/{id}"): Expectation(proposition_resource, reveals=True),
    ("resource", "gum://activity/recent"): Expectation(activity_resource, reveals=True),
    ("resource", "gum://suggestions"): Expectation(suggestions_resource, reveals=True),
    ("resource", "gum://access-log"): Expectation(access_log, reveals=True),
    ("prompt", "personalize"): Expectation(personalize, reveals=True),
    ("prompt", "what_am_i_doing"): Expectation(what_am_i_doing, reveals=True),
}


async def offered(client: Client) -> list[tuple[str, str]]:
    names = [("tool", t.name) for t in (await client.list_tools()).tools]
    names += [("resource", str(r.uri)) for r in (await client.list_resources()).resources]
    names += [("resource", t.uri_template) for t in (await client.list_resource_templates()).resource_templates]
    names += [("prompt", p.name) for p in (await client.list_prompts()).prompts]
    return names


def leaks(got: Received, s: Seeded) -> list[str]:
    found = [f"proposition {p}" for p in sorted(got.propositions & s.hidden_propositions)]
    found += [f"observation {o}" for o in sorted(got.observations & s.hidden_observations)]
    text = got.text()
    return found + [f"the word {w!r}" for w in SECRETS if w in text]


def connect(s: Seeded, name: str, mode: str) -> Client:
    return Client(build_server(s.runtime), mode=mode, client_info=Implementation(name=name, version="1"))


# ------------------------------------------------------------------------------------ the derived test
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_work_only_client_sees_nothing_withheld_through_any_read_path(seeded: Seeded, mode: str) -> None:
    s = seeded
    async with connect(s, "owner", mode) as owner:
        await s.runtime.wait_owner_ready()
        names = await offered(owner)
        missing = [f"{kind} {name}" for kind, name in names if (kind, name) not in EXPECTATIONS]
        assert not missing, f"no disclosure expectation for {missing}: add them to EXPECTATIONS"
        assert {kind for kind, _ in names} == {"tool", "resource", "prompt"}
        await tool(owner, Received(), "list_propositions", {"limit": 100})  # so the access log names hidden ids
    problems: dict[str, list[str]] = {}
    async with connect(s, "coder", mode) as coder:
        for kind, name in names:
            got = Received()
            await EXPECTATIONS[kind, name].run(coder, got, s, True)
            if found := leaks(got, s):
                problems[f"{kind} {name}"] = found
    assert not problems, f"the work-only client saw withheld items: {problems}"
    not_revealed = []
    async with connect(s, "owner", mode) as owner:
        for kind, name in names:
            if EXPECTATIONS[kind, name].reveals:
                got = Received()
                await EXPECTATIONS[kind, name].run(owner, got, s, False)
                if not leaks(got, s):
                    not_revealed.append(f"{kind} {name}")
    assert not not_revealed, f"these paths showed the owner nothing withheld, so they prove nothing: {not_revealed}"


async def test_a_name_without_an_expectation_fails_the_derivation(seeded: Seeded) -> None:
    server = build_server(seeded.runtime)

    async def peek() -> str:
        return "everything"

    server.add_tool(peek, name="peek")
    async with Client(server) as client:
        names = await offered(client)
    assert ("tool", "peek") in names and ("tool", "peek") not in EXPECTATIONS


async def test_the_stdio_name_comes_from_gum_client_first(seeded: Seeded, tmp_path: Path) -> None:
    """GUM_CLIENT names a stdio client whatever it calls itself (clients.py): the policy follows that name."""
    runtime = Runtime(seeded.runtime.settings.model_copy(update={"client": "coder"}), engine=False)
    try:
        async with Client(build_server(runtime), client_info=Implementation(name="owner", version="1")) as client:
            page = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
        assert not {p["id"] for p in page["propositions"]} & seeded.hidden_propositions and page["withheld"] == 4
    finally:
        runtime.close()


async def test_a_policy_edit_applies_from_the_next_request(seeded: Seeded) -> None:
    s = seeded
    policy = s.runtime.settings.policy_path
    async with connect(s, "coder", "legacy") as client:
        before = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
        policy.write_text(POLICY.replace('allow = ["work"]', 'allow = ["work", "health"]'))
        after = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
        policy.write_text("[clients.coder]\nallow = ['work', 'helth']\n")  # a typo: nothing is shown to anyone
        broken = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
        status = (await client.call_tool("status", {})).structured_content
    assert s.health not in {p["id"] for p in before["propositions"]}
    assert {s.health, s.merged} <= {p["id"] for p in after["propositions"]}
    assert s.untagged not in {p["id"] for p in after["propositions"]}  # untagged: still withheld
    assert broken["propositions"] == [] and broken["withheld"] == 6  # every current proposition
    assert "helth" in status["disclosure"]["problem"]


async def test_the_default_withholds_the_sensitive_classes_from_unknown_clients(seeded: Seeded) -> None:
    s = seeded
    async with connect(s, "someone-new", "legacy") as client:
        page = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
    assert {p["id"] for p in page["propositions"]} == set(s.work)  # work is allowed; health and untagged are not


@pytest.mark.timeout(120)
async def test_over_http_the_token_names_the_client(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with Store.open(make_settings(data_dir, policy_file=policy)) as store:
        made = seed(store)
        token = store.add_token("coder", "read")
    with http_server(data_dir, GUM_EMBEDDING="none", GUM_INDEX_WAIT="0", GUM_POLICY_FILE=str(policy)) as target:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(target, http_client=http)) as client,
        ):
            page = (await client.call_tool("list_propositions", {"limit": 100})).structured_content
            found = (await client.call_tool("query_user", {"query": "cardiology heartbeat", "limit": 20})
                     ).structured_content
    assert {p["id"] for p in page["propositions"]} == set(made["work"]) and page["withheld"] == 4
    assert not {p["id"] for p in found["propositions"]} & made["hidden_propositions"]
    assert found["withheld"] >= 1 and "cardiology" not in json.dumps(found["propositions"]).lower()
