"""The engine converges (issue 17): dedup that finds its twins, replies validated as a whole, poison isolated.

Everything talks to the loopback fake provider (scripted replies, request-body assertions); the
gather tests use the real dedup search over a real SQLite store and a real Chroma index with the
real MiniLM model, wired the way the runtime wires it (`Runtime._related`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from gum_mcp.domain import BatchResult, NewProposition, Proposition, PropositionDraft
from gum_mcp.engine.dedup import near_duplicates, same_words, words
from gum_mcp.engine.loop import BLIND_SPLIT_LEVELS, Engine, backoff_delay
from gum_mcp.engine.pipeline import PROPOSE_ITEMS_PER_OBSERVATION, decide_batch
from gum_mcp.engine.prompts import ProposedDraft, ProposeReply
from gum_mcp.index.vector_index import VectorIndex
from gum_mcp.llm.base import LLMProvider, RawReply
from gum_mcp.llm.errors import TransportFailure
from gum_mcp.llm.factory import build_provider
from gum_mcp.llm.schema import REPAIR_EXCERPT_CHARS
from gum_mcp.retrieval.dedup import MAX_K, dedup_search, dedup_search_many
from gum_mcp.runtime import Runtime
from tests.conftest import REPO
from tests.fake_provider import ANTHROPIC_PATH, OPENAI_PATH, FakeLLMServer, Fault
from tests.test_engine import USER, Brain, Clock, Harness, Request, draft

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
POISON = "POISON: this screen makes the model write nonsense"
SCREENS = [f"Editor - report-{i}.md - section {i} of the quarterly report" for i in range(16)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Harness]:
    # These tests are about replies: a context that holds the largest batch here whole (see test_engine_any_model),
    # and time for the largest replies (1.6 MB) on a loaded machine (the fakes' default timeout is 0.5 s; no test
    # here waits for a timeout).
    harness = Harness(fake_provider, tmp_path / "data", llm_context=32768, llm_timeout=30)
    yield harness
    await harness.close()


def schema_sent(body: dict[str, Any], path: str) -> dict[str, Any]:
    if path == ANTHROPIC_PATH:
        return body["tools"][0]["input_schema"]
    return body["response_format"]["json_schema"]["schema"]


def propose_bodies(fake: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if "ProposeReply" in r.text]


# ------------------------------------------------------------------------ 1. dedup that finds its twins


class Gather:
    """A runtime over a real store and a real index (MiniLM), the engine wired to its `_related`."""

    def __init__(self, fake: FakeLLMServer, data_dir: Path, embedder: Any) -> None:
        self.settings = fake.settings("openai", data_dir, user_name=USER, batch_min=1, batch_max=25, batch_max_wait=0,
                                      llm_max_retries=0, audit=False)
        self.runtime = Runtime(self.settings, engine=False, serving=False)
        self.store = self.runtime.store
        self.index = VectorIndex.open(self.settings, embedder)
        self.runtime.index, self.runtime.index_problem, self.runtime.role = self.index, None, "owner"
        self.provider = build_provider(self.settings, self.store)
        self.brain = Brain(fake)
        self.clock = Clock(NOW)
        self.engine = Engine(self.store, self.provider, self.settings, related=self.runtime._related, now=self.clock,
                             poll_interval=0.01, failure_backoff=0)

    def seed(self, *rows: tuple[str, int, int, float]) -> dict[str, int]:
        """(text, confidence, decay, days since last supported) -> ids; then the index catches up."""
        ids = {}
        for text, confidence, decay, days in rows:
            new = NewProposition(draft=PropositionDraft(text=text, reasoning="seen before", confidence=confidence,
                                                        decay=decay))
            [ids[text]] = self.store.complete_batch(BatchResult(observation_ids=(), new=(new,)),
                                                    at=NOW - timedelta(days=days))
        self.index.catch_up(self.store)
        return ids

    def current(self) -> dict[str, Proposition]:
        return {p.text or "": p for p in self.store.current_propositions(limit=1000).items}

    async def close(self) -> None:
        await self.provider.aclose()
        self.index.close()
        self.runtime.close()


@pytest.fixture
async def g(fake_provider: FakeLLMServer, tmp_path: Path, embedder: Any) -> AsyncIterator[Gather]:
    gather = Gather(fake_provider, tmp_path / "data", embedder)
    yield gather
    await gather.close()


TWIN = "Priya prefers the Dracula dark theme in VS Code"
TWIN_2 = "In VS Code Priya uses the dark Dracula colour theme"
MERGED = "Priya prefers the dark Dracula theme in VS Code"
# Fresher, more confident, about the same app: the user-facing search ranks these first and MMR then
# sends the second twin behind every one of them.
EDITOR = (
    ("Priya uses VS Code as her main editor", 9, 9, 0.5),
    ("Priya uses Vim keybindings in VS Code", 9, 9, 0.5),
    ("Priya has GitHub Copilot enabled in VS Code", 9, 8, 1.0),
    ("Priya uses the JetBrains Mono font in VS Code", 8, 9, 1.0),
    ("Priya installed the Python and Ruff extensions in VS Code", 9, 8, 0.2),
    ("Priya uses dark mode in Slack", 9, 9, 0.3),
    ("Priya uses the Solarized light theme in her terminal", 9, 9, 0.3),
    ("Priya keeps VS Code settings in her dotfiles repository", 9, 9, 0.1),
)


async def test_two_existing_paraphrases_both_reach_relate_and_are_merged(g: Gather) -> None:
    ids = g.seed((TWIN, 4, 3, 200.0), (TWIN_2, 3, 2, 150.0), *EDITOR,
                 ("Priya is training for the Porto Half Marathon", 8, 6, 2.0))
    oid = g.store.add_observation('VS Code - settings.json - "workbench.colorTheme": "Dracula"').id
    g.brain.on("propose", lambda r: {"propositions": [draft("Priya likes the Dracula theme in VS Code best", [oid])]})

    def relate(r: Request) -> dict:
        [d] = r.drafts
        twins = [p.id for p in r.propositions if p.text in (TWIN, TWIN_2)]
        return {"judgements": [{"draft": d.n, "relation": "identical", "proposition_ids": twins, "confidence": 7}]}

    def revise(r: Request) -> dict:
        [cluster] = r.clusters
        return {"propositions": [{
            "text": MERGED, "reasoning": "settings.json and earlier sightings", "confidence": 7, "decay": 8,
            "supersedes": [p.id for p in cluster.propositions], "drafts": [d.n for d in cluster.drafts],
            "observation_ids": [oid]}]}

    g.brain.on("relate", relate)
    g.brain.on("revise", revise)
    assert await g.engine.step()
    [request] = g.brain.of("relate")
    [shown] = request.drafts
    assert {ids[TWIN], ids[TWIN_2]} <= set(shown.candidates)  # the twins meet
    assert ids["Priya is training for the Porto Half Marathon"] not in shown.candidates  # not the same subject
    current = g.current()
    assert MERGED in current and TWIN not in current and TWIN_2 not in current
    detail = g.store.proposition_detail(current[MERGED].id)
    assert sorted((e.parent_id, e.cause) for e in detail.parents) == sorted(
        [(ids[TWIN], "merged"), (ids[TWIN_2], "merged")])


async def test_a_near_duplicate_is_reinforced_without_asking_and_a_distinct_fact_goes_to_relate(g: Gather) -> None:
    club_text = "Priya is a member of the Clifton Harriers running club"
    ids = g.seed((club_text, 6, 9, 40.0), ("Priya swims 2 km at Hengrove Leisure Centre", 7, 6, 3.0), *EDITOR)
    support = g.store.get_proposition(ids[club_text]).support_count
    obs = [g.store.add_observation(text).id for text in (
        "Strava - Clifton Harriers club page, member since 2024", "Swimtag - 3 km swim at Hengrove")]
    g.brain.on("propose", lambda r: {"propositions": [
        draft("Priya is member of the Clifton Harriers running-club.", [obs[0]]),  # the same claim, reworded
        draft("Priya swims 3 km at Hengrove Leisure Centre", [obs[1]]),  # another number: another fact
    ]})
    g.brain.on("relate", lambda r: {"judgements": [
        {"draft": d.n, "relation": "unrelated", "proposition_ids": [], "confidence": 6} for d in r.drafts]})
    assert await g.engine.step()
    [request] = g.brain.of("relate")
    assert [d.text for d in request.drafts] == ["Priya swims 3 km at Hengrove Leisure Centre"]
    assert ids["Priya swims 2 km at Hengrove Leisure Centre"] in request.drafts[0].candidates
    club = g.store.get_proposition(ids[club_text])  # reinforced in place: new evidence, same content
    assert club.current and club.support_count == support + 1 and g.store.evidence_ids(club.id) == [obs[0]]
    assert set(g.current()) >= {"Priya swims 2 km at Hengrove Leisure Centre",
                                "Priya swims 3 km at Hengrove Leisure Centre"}


async def test_the_dedup_search_neither_diversifies_nor_weighs(g: Gather) -> None:
    ids = g.seed((TWIN, 2, 1, 300.0), (TWIN_2, 2, 1, 300.0), *EDITOR)
    hits = dedup_search(g.store, g.index, "prefers the Dracula dark theme in VS Code", MAX_K)
    assert [h.id for h in hits[:2]] == [ids[TWIN], ids[TWIN_2]]  # old and unsure, yet first: no weights, no MMR
    assert all(h.recency == 1.0 and h.confidence == 1.0 and h.similarity is not None for h in hits)
    assert len(dedup_search(g.store, g.index, "VS Code", 50)) <= MAX_K
    keyword_only = dedup_search(g.store, None, "Dracula theme VS Code", 5)
    assert keyword_only and all(h.similarity is None for h in keyword_only)


async def test_the_dedup_search_reads_past_what_the_store_retired_before_the_index_caught_up(g: Gather) -> None:
    """Candidates are ranked before their records are read, a few at a time: the best ones retired in the
    store but still in the index are skipped and the next live ones fill the k places."""
    query = "prefers the Dracula dark theme in VS Code"
    ids = g.seed((TWIN, 2, 1, 300.0), (TWIN_2, 2, 1, 300.0), *EDITOR)
    before = [h.id for h in dedup_search(g.store, g.index, query, MAX_K)]
    assert len(before) == len(ids)  # every proposition is a candidate here (fewer than the top-n per side)
    retired = before[:6]  # more than READ_AHEAD beyond k=1: the records are read again
    g.store.complete_batch(BatchResult(observation_ids=(), retire=dict.fromkeys(retired, "revised")))
    [only] = dedup_search(g.store, g.index, query, 1)
    assert only.id not in retired and only.proposition is not None and only.proposition.current
    hits = dedup_search_many(g.store, g.index, [query, "Dracula", query], 3)
    assert len(hits[0]) == 3 and [h.id for h in hits[0]] == [h.id for h in hits[2]] and hits[0][0].id == only.id
    assert not {h.id for found in hits for h in found} & set(retired)
    g.index.catch_up(g.store)  # the index drops them: the same answer
    assert [h.id for h in dedup_search(g.store, g.index, query, 3)] == [h.id for h in hits[0]]


def test_same_words_ignores_form_but_not_content() -> None:
    assert same_words("Priya is a member of the Bristol Runners club", "priya is member of the Bristol Runners club.")
    assert same_words("Priya uses two monitors at work", "Priya uses 2 monitors at work")
    assert same_words("Priya keeps a bullet journal", "Priya keeps a bullet-journal")
    assert same_words("Priya sets her alarm for 6:30", "Priya sets her alarm for 6.30")
    assert same_words("Priya works from home on Fridays", "On Fridays Priya works from home")  # a fronted phrase
    assert not same_words("Priya runs 5 km on weekdays", "Priya runs 10 km on weekdays")
    assert not same_words("Priya uses dark mode in Slack", "Priya does not use dark mode in Slack")
    assert not same_words("Priya mentors Ravi", "Ravi mentors Priya")  # a role reversal is no rotation
    assert not same_words("Priya prefers tea", "Priya prefers green tea in the morning")
    assert not same_words("Priya is in London", "Priya is from London")
    assert words("Priya's desk is on the third floor") == ("priya", "desk", "is", "on", "3", "rd", "floor")
    # cosine alone never merges; the same words below the threshold do not either
    cands = [(1, "Priya runs 5 km on weekdays", 0.97), (2, "Priya runs 10 km on weekdays.", 0.4)]
    assert near_duplicates("Priya runs 10 km on weekdays", cands, 0.5) == []
    assert near_duplicates("Priya runs 10 km on weekdays", cands, 0.3) == [2]


def test_the_pair_set_has_both_halves_written_before_tuning() -> None:
    data = json.loads((REPO / "tests" / "fixtures" / "dedup_pairs.json").read_text())
    pairs = data["pairs"]
    for kind in ("paraphrase", "distinct"):
        of_kind = [p for p in pairs if p["kind"] == kind]
        assert len(of_kind) >= 200
        assert {p["split"] for p in of_kind} == {"tuning", "held-out"}
        assert abs(sum(p["split"] == "held-out" for p in of_kind) * 2 - len(of_kind)) <= 1
    assert len({p["id"] for p in pairs}) == len(pairs)
    assert all(p["existing"].strip() and p["draft"].strip() for p in pairs)


# ------------------------------------------------------------------- 2. replies validated as a whole


async def test_a_reply_citing_only_unknown_ids_is_invalid_not_processed(h: Harness) -> None:
    ids = h.add(*SCREENS[:10])
    h.brain.on("propose", lambda r: {"propositions": [draft("Priya hacks the planet", [9999, 8888])]})
    assert await h.engine.step()
    observations = [h.store.get_observation(i) for i in ids]
    assert {o.status for o in observations} == {"pending"}  # never a silent "processed"
    assert {o.attempts for o in observations} == {1}
    assert all("none of the observation ids cited" in (o.last_error or "") for o in observations)
    assert h.store.current_propositions().items == ()
    _, repair = propose_bodies(h.fake)[:2]  # one repair request for the first reply...
    assert "none of the observation ids cited in the reply was shown" in repair["messages"][-1]["content"]
    assert [m["role"] for m in repair["messages"]][-2:] == ["assistant", "user"]
    # ...and a bounded number of calls in all while looking for an observation at fault
    assert len(h.fake.requests) <= 2 * (1 + 2 + 4) * 2


async def test_a_repaired_reply_citing_shown_ids_is_used(h: Harness) -> None:
    ids = h.add(0, 3)
    replies = iter([{"propositions": [draft("Priya hacks the planet", [9999])]},
                    {"propositions": [draft("Priya prepares the Q4 budget in Budget-Q4.xlsx", [ids[0]])]}])
    h.brain.on("propose", lambda r: next(replies))
    assert await h.engine.step()
    assert set(h.current()) == {"Priya prepares the Q4 budget in Budget-Q4.xlsx"}
    assert h.brain.stages() == ["audit", "propose", "propose"]
    assert {h.store.get_observation(i).attempts for i in ids} == {0}


@pytest.mark.parametrize("provider_name", ["openai", "anthropic"])
async def test_reply_items_are_capped_in_proportion_to_the_batch(
    fake_provider: FakeLLMServer, tmp_path: Path, provider_name: str
) -> None:
    # room for every item, and time for a 3,000-item reply on a loaded machine (the fakes' default is 0.5 s)
    h = Harness(fake_provider, tmp_path / "data", provider_name, llm_context=65536, llm_timeout=30)
    try:
        ids = h.add(*SCREENS[:10])
        flood = {"propositions": [draft(f"Priya claim number {i}", [ids[i % 10]]) for i in range(3000)]}
        replies = iter([flood, {"propositions": [draft("Priya prepares the Q4 budget", [ids[0]])]}])
        h.brain.on("propose", lambda r: next(replies))
        assert await h.engine.step()
        path = ANTHROPIC_PATH if provider_name == "anthropic" else OPENAI_PATH
        first, repair = propose_bodies(h.fake)
        limit = PROPOSE_ITEMS_PER_OBSERVATION * 10
        assert schema_sent(first, path)["properties"]["propositions"]["maxItems"] == limit
        assert f"at most {limit} items" in json.dumps(repair)
        assert set(h.current()) == {"Priya prepares the Q4 budget"}  # not 3,000 propositions from 10 observations
        audit = next(r.body for r in h.fake.requests if "AuditReply" in r.text)
        assert schema_sent(audit, path)["properties"]["verdicts"]["maxItems"] == 20
    finally:
        await h.close()


async def test_the_pipeline_reads_no_more_items_than_the_cap(h: Harness) -> None:
    """Even a reply that skipped validation (a provider that does not enforce maxItems) is cut in code."""

    class Unchecked(LLMProvider):
        name, default_model, default_vision_model = "openai", "m", "m"

        async def _attempt(self, *args: Any, **kwargs: Any) -> RawReply:
            raise AssertionError("not used")

        async def complete(self, schema: type[BaseModel], **kwargs: Any) -> Any:  # type: ignore[override]
            assert schema.__name__ == "ProposeReply"
            return ProposeReply.model_construct(propositions=[
                ProposedDraft(text=f"Priya claim number {i}", reasoning="r", confidence=5, decay=5,
                              observation_ids=[f"o{ids[0]}"])
                for i in range(500)])

    ids = h.add(0)
    settings = h.settings.model_copy(update={"audit": False})
    outcome = await decide_batch(h.store.claim_batch(5), store=h.store, provider=Unchecked(settings, None),
                                 related=h.related, settings=settings)
    assert len(outcome.result.new) == 5  # cap(PROPOSE_ITEMS_PER_OBSERVATION, 1) = MIN_ITEMS


async def test_a_repair_request_quotes_a_bounded_excerpt(h: Harness) -> None:
    ids = h.add(0)
    huge = '{"propositions": [' + ", ".join(
        json.dumps(draft("Priya " + "x" * 200, [9999])) for _ in range(6000)) + "], broken"  # ~1.6 MB, not JSON
    replies = iter([huge, {"propositions": [draft("Priya prepares the Q4 budget", [ids[0]])]}])
    h.brain.on("propose", lambda r: next(replies))
    assert await h.engine.step()
    _, repair = propose_bodies(h.fake)
    quoted = repair["messages"][-2]
    assert quoted["role"] == "assistant" and quoted["content"].startswith(huge[:1000])
    assert len(quoted["content"]) < REPAIR_EXCERPT_CHARS + 200 and "more characters of this reply not shown" in \
        quoted["content"]
    assert len(json.dumps(repair)) < 20_000  # the request, not a 1.6 MB follow-up
    assert set(h.current()) == {"Priya prepares the Q4 budget"}


# --------------------------------------------------------------------------------- 3. poison isolation




def poisoned_propose(r: Request) -> Any:
    if any(POISON in o.content for o in r.observations):
        return {"propositions": [{"text": "x", "reasoning": "r", "confidence": 42, "decay": 5,
                                  "observation_ids": [o.id for o in r.observations]}]}  # confidence out of range
    return {"propositions": [draft(f"Priya writes {o.content.split(' - ')[1]}", [o.id]) for o in r.observations]}


async def test_one_bad_observation_is_isolated_and_the_others_go_through(h: Harness) -> None:
    ids = h.add(*SCREENS[:11], POISON, *SCREENS[11:])
    bad = ids[11]
    h.brain.on("propose", poisoned_propose)
    assert await h.engine.step()
    observations = {i: h.store.get_observation(i) for i in ids}
    assert observations[bad].status == "failed" and observations[bad].attempts == 1
    assert "stayed invalid" in (observations[bad].last_error or "")
    assert "confidence" in (observations[bad].last_error or "")  # its own reason
    good = [o for i, o in observations.items() if i != bad]
    assert {o.status for o in good} == {"processed"} and {o.attempts for o in good} == {0}
    assert len(h.current()) == len(good)
    # bisection, not one request per observation: log2(17) levels of two halves, a repair for each bad half
    assert len(h.brain.of("propose")) <= 2 + 2 * 2 * 5
    status = h.engine.status()
    assert status.consecutive_failures == 0 and status.batches_failed == 1
    assert not await h.engine.step()  # nothing left pending


async def test_a_model_that_fails_every_reply_counts_attempts_instead(h: Harness) -> None:
    ids = h.add(*SCREENS[:8])
    h.brain.on("propose", lambda r: "this is not json")
    assert await h.engine.step()
    observations = [h.store.get_observation(i) for i in ids]
    assert {o.status for o in observations} == {"pending"} and {o.attempts for o in observations} == {1}
    # the whole batch, then BLIND_SPLIT_LEVELS levels of halves, each with one repair
    assert len(h.brain.of("propose")) == 2 * (1 + sum(2 ** level for level in range(1, BLIND_SPLIT_LEVELS + 1)))
    assert h.engine.status().consecutive_failures == 1


async def test_an_outage_while_splitting_keeps_the_rest_pending_without_attempts(h: Harness) -> None:
    engine = h.make_engine(failure_backoff=10, failure_backoff_max=15)
    ids = h.add(SCREENS[0], SCREENS[1], POISON, SCREENS[2])
    calls = {"n": 0}

    def propose(r: Request) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:  # the whole batch: invalid twice
            return poisoned_propose(r)
        return Fault("500")  # then the provider goes down

    h.brain.on("propose", propose)
    assert await engine.step()
    observations = [h.store.get_observation(i) for i in ids]
    assert {o.status for o in observations} == {"pending"} and {o.attempts for o in observations} == {0}
    assert "provider unavailable" in (engine.status().last_error or "")
    assert not await engine.step()  # backing off


async def test_backoff_stays_capped_through_ten_thousand_consecutive_failures(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(LLMProvider):
        """The provider is unreachable (in process, so 10,000 tries stay fast): an outage every time."""

        name, default_model, default_vision_model = "openai", "m", "m"

        async def _attempt(self, schema: type[BaseModel], **kwargs: Any) -> RawReply:
            raise TransportFailure("connection refused", retryable=True, kind="connection")

    settings = h.settings.model_copy(update={"audit": False, "llm_max_retries": 0})
    engine = Engine(h.store, Down(settings, None), settings, related=h.related, now=h.clock,
                    failure_backoff=5.0, failure_backoff_max=300.0)  # floats, as the defaults
    [oid] = h.add(0)
    caplog.set_level(logging.WARNING, logger="gum_mcp")
    for n in range(1, 10_001):
        assert await engine.step()  # tried (no exception, at any count)
        status = engine.status()
        assert status.consecutive_failures == n
        wait = (engine._retry_at - h.clock.t).total_seconds()  # type: ignore[operator]
        expected = 300.0 if n > 10 else min(300.0, 5.0 * 2 ** (n - 1))
        assert wait == expected
        if n in (1, 500, 1025, 9_999):
            assert not await engine.step()  # waiting for the backoff, not retrying on every poll
        h.clock.advance(wait)
    assert h.store.get_observation(oid).attempts == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_backoff_delay_is_finite_and_capped_at_any_count() -> None:
    assert backoff_delay(0, 5, 300) == 0 and backoff_delay(1, 5, 300) == 5 and backoff_delay(3, 5, 300) == 20
    assert backoff_delay(7, 5, 300) == 300
    for n in (1024, 1025, 1026, 10_000, 10**9):
        assert backoff_delay(n, 5, 300) == 300
    assert backoff_delay(10**9, 0, 300) == 0

