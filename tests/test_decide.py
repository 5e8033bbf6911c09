"""decide_or_ask and standing instructions (issue 27): the rule, the model's one call, and the tools through a
real MCP client, the engine running against the loopback fake provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import Implementation

from gum_mcp.domain import BatchResult, InvalidInput, NewObservation, NewProposition, Proposition, PropositionDraft
from gum_mcp.engine import decide
from gum_mcp.engine.edits import EDIT_MARK
from gum_mcp.llm.factory import build_provider
from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.store import Store
from tests.conftest import eventually, make_settings
from tests.fake_provider import FakeLLMServer, schema_name
from tests.test_engine import parse_request

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

AISLE = "Mara asked me to always reserve an aisle seat whenever I book a flight for her."
AISLE_TEXT = "Mara wants an aisle seat whenever a flight is booked for her."
SEAT = {"question": "Which seat should I select on Mara's flight to Lisbon?", "context": "booking a flight for Mara",
        "options": ["aisle seat", "window seat", "middle seat"]}
BULLETS = "Mara prefers short bullet points in emails to Jordan"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def brain(body: Any, path: str) -> Any:
    """The fake model: a stated rule becomes an instruction, an edit report a low-confidence preference."""
    request = parse_request(body, path)
    if request.schema == "AuditReply":
        return {"verdicts": [{"observation_id": f"o{o.id}", "reason": "fine", "decision": "allow"}
                             for o in request.observations]}
    if request.schema == "ProposeReply":
        drafts = []
        for o in request.observations:
            if "aisle seat" in o.content:
                drafts.append({"observation_ids": [f"o{o.id}"], "reasoning": "the agent reports her request",
                               "text": AISLE_TEXT, "confidence": 9, "decay": 9, "sensitivity": "personal",
                               "kind": "instruction", "applies_to": "booking flights"})
            elif o.content.startswith(EDIT_MARK):
                drafts.append({"observation_ids": [f"o{o.id}"], "reasoning": "she turned paragraphs into bullets",
                               "text": BULLETS, "confidence": 3, "decay": 8, "sensitivity": "work",
                               "kind": "preference", "applies_to": "emails to Jordan"})
        return {"propositions": drafts}
    if request.schema == "RelateReply":
        return {"judgements": [{"draft": f"d{d.n}", "reasoning": "new", "relation": "unrelated",
                                "proposition_ids": [], "confidence": 5} for d in request.drafts]}
    return {"propositions": []}


async def engine_runtime(fake: FakeLLMServer, data_dir: Path, **overrides: Any) -> Runtime:
    overrides = {"user_name": "Mara", "embedding": "none", "index_wait": 0, "encrypt": False, "batch_min": 1,
                 "batch_max_wait": 0, "llm_max_retries": 0, **overrides}
    fake.default = brain
    return Runtime(fake.settings("openai", data_dir, **overrides))


def client(runtime: Runtime, name: str, mode: str = "legacy") -> Client:
    return Client(build_server(runtime), mode=mode, client_info=Implementation(name=name, version="1"))


def data(result: Any) -> dict:
    assert not result.is_error, result.content
    return result.structured_content


def seed(store: Store, *items: tuple[str, str, str | None, int, int, str]) -> list[int]:
    """Propositions (text, kind, applies_to, confidence, support, sensitivity), each with its own evidence."""
    ids = []
    for text, kind, applies_to, confidence, support, sensitivity in items:
        obs = store.add_observations([NewObservation(content=f"seen: {text} ({n})") for n in range(support)])
        ids += store.complete_batch(BatchResult(observation_ids=tuple(o.id for o in obs), new=(NewProposition(
            draft=PropositionDraft(text=text, reasoning="seen", confidence=confidence, decay=8),
            evidence=tuple(o.id for o in obs), kind=kind, applies_to=applies_to, sensitivity=sensitivity),)))
    return ids


# ------------------------------------------------------------------------------------------ the rule
def prop(pid: int, text: str, kind: str = "preference", applies_to: str | None = "booking flights",
         confidence: int = 8, support: int = 1) -> Proposition:
    from gum_mcp.domain import utcnow

    now = utcnow()
    return Proposition(id=pid, text=text, reasoning="", confidence=confidence, decay=8, created_at=now,
                       last_supported_at=now, support_count=support, kind=kind, applies_to=applies_to)


def test_the_rule_decides_on_an_instruction_or_a_strong_preference_and_asks_otherwise() -> None:
    q, ctx, options = SEAT["question"], SEAT["context"], SEAT["options"]
    instruction = prop(1, AISLE_TEXT, "instruction", confidence=9)
    outcome, _ = decide.rule(q, options, ctx, [instruction])
    assert (outcome.outcome, outcome.option, outcome.rests_on, outcome.by) == ("decide", "aisle seat", [1],
                                                                                "instruction")
    # another situation: the train is not a flight
    train, _ = decide.rule("Which seat on Mara's train to Leeds?", ["aisle seat", "window seat"], "booking a train",
                           [instruction])
    assert train.outcome == "ask" and train.question and "window seat" in train.question
    # a stated rule beats an inferred preference; two instructions that disagree ask
    window = prop(2, "Mara chooses window seats on flights", confidence=9, support=5)
    assert decide.rule(q, options, ctx, [window, instruction])[0].option == "aisle seat"
    contested, flag = decide.rule(q, options, ctx, [instruction, prop(3, "Mara wants a window seat on flights",
                                                                      "instruction")])
    assert contested.outcome == "ask" and flag and "disagree" in contested.why
    # preferences: a weak one asks, a strong or a reinforced one decides, disagreeing ones ask
    assert decide.rule(q, options, ctx, [prop(4, "Mara chooses aisle seats", confidence=4)])[0].outcome == "ask"
    assert decide.rule(q, options, ctx, [prop(4, "Mara chooses aisle seats", confidence=7)])[0].option == "aisle seat"
    assert decide.rule(q, options, ctx, [prop(4, "Mara chooses aisle seats", confidence=4, support=3)])[0].outcome \
        == "decide"
    assert decide.rule(q, options, ctx, [prop(4, "Mara chooses aisle seats"), window])[0].outcome == "ask"
    # a negated option is excluded; excluding all but one picks it
    assert decide.picks("Mara does not want meetings on Fridays", ["Friday at 10:00", "Thursday at 14:00"]) == 1
    assert decide.picks("Tomas wants tests run with pytest -x rather than tox", ["pytest -x", "tox"]) == 0
    assert decide.picks("Mara never books red-eye flights", ["red-eye", "morning", "evening"]) is None
    # nothing known
    assert decide.rule(q, options, ctx, [])[0].why == "nothing known applies to this choice"


@pytest.mark.parametrize(("options", "message"), [
    ([], "at least two"), (["aisle"], "at least two"), ([1, 2], "must be a string"), (["a", None], "must be a string"),
    ("aisle, window", "list of strings"), (["x", "X"], "the same option twice"), (["a", " "], "empty"),
])
def test_bad_options_are_refused_clearly(options: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decide.check_choice("Which seat?", options)


async def test_the_model_decides_only_with_shown_ids_a_given_option_and_enough_confidence(
        fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    settings = fake_provider.settings("openai", tmp_path / "data", llm_max_retries=0, encrypt=False)
    known = [prop(7, "Mara usually picks seats near the front of the plane", confidence=6, applies_to="flights")]
    replies = [
        {"reasoning": "she likes the front", "outcome": "decide", "option": "aisle seat", "proposition_ids": ["p7"],
         "confidence": 5, "question": ""},  # not confident enough
        {"reasoning": "made up", "outcome": "decide", "option": "aisle seat", "proposition_ids": ["p99"],
         "confidence": 9, "question": ""},  # rests on nothing shown
        {"reasoning": "front and aisle", "outcome": "decide", "option": "aisle seat", "proposition_ids": ["p7"],
         "confidence": 8, "question": ""},
        {"reasoning": "unclear", "outcome": "ask", "option": "", "proposition_ids": [], "confidence": 2,
         "question": "Aisle or window for Lisbon?"},
    ]
    for reply in replies:
        fake_provider.reply(reply)
    with Store.open(settings) as store:
        async with build_provider(settings, store) as provider:
            got = [await decide.decide(SEAT["question"], SEAT["options"], SEAT["context"], known, provider=provider)
                   for _ in replies]
    assert [(o.outcome, o.by) for o in got] == [("ask", "none"), ("ask", "none"), ("decide", "model"), ("ask", "none")]
    assert got[2].rests_on == [7] and got[3].question == "Aisle or window for Lisbon?"
    body = fake_provider.bodies()[0]
    assert schema_name(body, "/v1/chat/completions") == "DecideReply" and body["max_completion_tokens" if
                                                                              "max_completion_tokens" in body else
                                                                              "max_tokens"] <= decide.REPLY_TOKENS
    # a contested choice is never handed to the model
    before = len(fake_provider.requests)
    await decide.decide(SEAT["question"], SEAT["options"], SEAT["context"],
                        [prop(1, AISLE_TEXT, "instruction"), prop(2, "Mara wants a window seat", "instruction")],
                        provider=None)
    assert len(fake_provider.requests) == before


# ------------------------------------------------------------------------------------------ through MCP
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_instruction_recorded_by_one_client_is_applied_in_another(
        fake_provider: FakeLLMServer, tmp_path: Path, mode: str) -> None:
    runtime = await engine_runtime(fake_provider, tmp_path / "data")
    try:
        # one client at a time: each in-process connection runs the server's lifespan (and its engine)
        async with client(runtime, "travel-agent", mode) as travel:
            await runtime.wait_owner_ready()
            data(await travel.call_tool("record_observation", {"content": AISLE, "source": "travel-agent"}))
            data(await travel.call_tool("record_observation", {"content": "Mara read a news article about trains"}))

            def learnt() -> list[Proposition]:
                return list(runtime.store.current_propositions(kind="instruction").items)

            [instruction] = await eventually(learnt)
            assert instruction.decay == 10 and instruction.applies_to == "booking flights"
        async with client(runtime, "calendar-agent", mode) as other:
            found = data(await other.call_tool("query_user", {"query": "book a flight to Lisbon for Mara"}))
            first = found["propositions"][0]
            assert (first["id"], first["kind"], first["applies_to"]) == (instruction.id, "instruction",
                                                                          "booking flights")
            listed = data(await other.call_tool("list_propositions", {"kind": "instruction"}))
            assert [p["id"] for p in listed["propositions"]] == [instruction.id]
            assert data(await other.call_tool("list_propositions", {"kind": "belief"}))["propositions"] == []
            decided = data(await other.call_tool("decide_or_ask", SEAT))
            assert (decided["outcome"], decided["option"], decided["decided_by"]) == ("decide", "aisle seat",
                                                                                      "instruction")
            assert [p["id"] for p in decided["rests_on"]] == [instruction.id]
            assert decided["rests_on"][0]["kind"] == "instruction" and decided["confidence"] == 9
            train = data(await other.call_tool("decide_or_ask", {
                "question": "Which seat on Mara's train to Leeds?", "options": ["aisle seat", "window seat"],
                "context": "booking a train ticket"}))
            assert train["outcome"] == "ask" and train["question"] and train["option"] is None
    finally:
        runtime.close()


async def test_decide_or_ask_asks_when_nothing_is_known_and_when_preferences_conflict(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path / "data", user_name="Mara", embedding="none", index_wait=0), engine=False)
    try:
        async with client(runtime, "agent") as agent:
            nothing = data(await agent.call_tool("decide_or_ask", SEAT))
            assert nothing["outcome"] == "ask" and nothing["decided_by"] == "none" and nothing["question"]
            assert nothing["rests_on"] == [] and "nothing known" in nothing["why"]
            seed(runtime.store,
                 ("Mara chooses aisle seats on flights", "preference", "booking flights", 8, 3, "personal"),
                 ("Mara chooses window seats on long flights", "preference", "booking flights", 8, 3, "personal"))
            conflict = data(await agent.call_tool("decide_or_ask", SEAT))
            assert conflict["outcome"] == "ask" and "disagree" in conflict["why"]
            assert len(conflict["applicable_ids"]) == 2
            for args, message in (({"question": "Which seat?", "options": []}, "at least two"),
                                  ({"question": "Which seat?", "options": [1, 2]}, "must be a string"),
                                  ({"question": "Which seat?"}, "options")):
                refused = await agent.call_tool("decide_or_ask", args)
                assert refused.is_error and message in refused.content[0].text
                assert "Traceback" not in refused.content[0].text
    finally:
        runtime.close()


@pytest.mark.parametrize("scopes", [None, ["read"]])
async def test_ask_user_asks_the_person_through_the_client_and_records_the_answer(tmp_path: Path,
                                                                                 scopes: list[str] | None) -> None:
    """With ask_user and a client that can show a form, gum-mcp asks the person when it would advise asking;
    their answer decides, and is recorded (a standing rule when they say so) unless the client may not write."""
    from mcp_types import ElicitResult

    runtime = Runtime(make_settings(tmp_path / "data", user_name="Mara", embedding="none", index_wait=0,
                                    scopes=scopes), engine=False)
    asked: list[Any] = []
    answers = iter([ElicitResult(action="decline"),
                    ElicitResult(action="accept", content={"choice": "aisle seat", "always": True})])

    async def person(_context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        return next(answers)

    try:
        async with Client(build_server(runtime), mode="legacy", elicitation_callback=person,
                          client_info=Implementation(name="agent", version="1")) as agent:
            declined = data(await agent.call_tool("decide_or_ask", {**SEAT, "ask_user": True}))
            assert declined["outcome"] == "ask" and declined["decided_by"] == "none" and declined["recorded"] is None
            chosen = data(await agent.call_tool("decide_or_ask", {**SEAT, "ask_user": True}))
            assert chosen["outcome"] == "decide" and chosen["option"] == "aisle seat"
            assert chosen["decided_by"] == "user" and chosen["confidence"] == 10
            without = data(await agent.call_tool("decide_or_ask", SEAT))  # ask_user not set: nobody is asked
            assert without["outcome"] == "ask" and len(asked) == 2
        schema = asked[0].requested_schema
        assert schema["properties"]["choice"]["enum"] == SEAT["options"] and "Which seat" in asked[0].message
        if scopes is None:
            recorded = runtime.store.get_observation(chosen["recorded"])
            assert recorded.source == "decide_or_ask" and "always choose 'aisle seat'" in recorded.content
        else:  # a read-only client: the answer decides, nothing is stored
            assert chosen["recorded"] is None and "not recorded" in chosen["why"]
            assert sum(runtime.store.stats().observations.values()) == 0
    finally:
        runtime.close()


POLICY = """
[default]
allow = ["work"]

[clients.owner]
allow = ["all"]
"""


async def test_the_disclosure_policy_applies_to_the_three_tools(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    runtime = Runtime(make_settings(tmp_path / "data", user_name="Mara", embedding="none", index_wait=0,
                                    policy_file=policy), engine=False)
    try:
        [hidden, shown] = seed(
            runtime.store, (AISLE_TEXT, "instruction", "booking flights", 9, 1, "personal"),
            ("Mara wants emails to Jordan written as short bullet points", "instruction", "emails to Jordan", 9, 1,
             "work"))
        email = {"question": "Should the email to Jordan be bullet points or paragraphs?",
                 "options": ["short bullet points", "long paragraphs"], "context": "drafting an email to Jordan"}
        async with client(runtime, "coder") as coder, client(runtime, "owner") as owner:
            withheld = data(await coder.call_tool("decide_or_ask", SEAT))
            assert withheld["outcome"] == "ask" and withheld["withheld"] == 1 and withheld["applicable_ids"] == []
            assert "withheld" in withheld["note"] and "aisle" not in withheld["why"]
            allowed = data(await coder.call_tool("decide_or_ask", email))
            assert allowed["option"] == "short bullet points" and [p["id"] for p in allowed["rests_on"]] == [shown]
            assert data(await owner.call_tool("decide_or_ask", SEAT))["option"] == "aisle seat"

            found = data(await coder.call_tool("query_user", {"query": "book a flight to Lisbon"}))
            assert hidden not in [p["id"] for p in found["propositions"]] and found["withheld"] >= 1
            assert [p["id"] for p in data(await owner.call_tool("query_user", {"query": "book a flight to Lisbon"}))[
                "propositions"]][:1] == [hidden]
            listed = data(await coder.call_tool("list_propositions", {"kind": "instruction"}))
            assert [p["id"] for p in listed["propositions"]] == [shown]

            edit = data(await coder.call_tool("record_edit", {
                "before": "Hi Jordan, the migration is done and the reports run on the new cluster.",
                "after": "Hi Jordan,\n- migration done\n- reports on the new cluster", "context": "email to Jordan",
                "source": "coder"}))
            assert set(edit) >= {"id", "status", "changes"} and "propositions" not in edit and "rests_on" not in edit
    finally:
        runtime.close()
