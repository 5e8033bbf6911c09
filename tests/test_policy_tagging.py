"""Sensitivity classes from the engine and from the tagging job, against the loopback fake provider.

- propose and revise give each proposition a class; a revision that merges classes keeps the most sensitive;
- the tagging job (gum_mcp/engine/tagging.py) tags what is untagged: many propositions per call, resumable,
  lineage first, accounted, within the daily budget, paused without a provider or while nobody is restricted;
- the owner process runs it (runtime.py).
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.engine.tagging import STAGE, Tagger
from gum_mcp.llm.factory import build_provider
from gum_mcp.runtime import Runtime
from gum_mcp.store import Store
from tests.conftest import eventually
from tests.fake_provider import FakeLLMServer
from tests.test_engine import BUDGET, RACE, Harness, draft
from tests.test_engine import anyio_backend as anyio_backend  # a fixture: asyncio only

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

TAGGED = re.compile(r'<proposition id="p(\d+)">(.*?)</proposition>', re.S)


def classify(text: str) -> str:
    text = text.lower()
    return "health" if "cardio" in text or "physio" in text else "finance" if "budget" in text else "work"


class Tags:
    """The fake's replies to the tagging step: a class per proposition shown (by keyword), recorded."""

    def __init__(self, fake: FakeLLMServer, answer: Callable[[list[tuple[int, str]]], Any] | None = None) -> None:
        self.calls: list[list[int]] = []
        self.answer = answer or (lambda shown: {"tags": [{"id": f"p{pid}", "sensitivity": classify(text)}
                                                          for pid, text in shown]})
        fake.default = self

    def __call__(self, body: Any, path: str) -> Any:
        assert body["response_format"]["json_schema"]["name"] == "TagReply"
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        shown = [(int(m[1]), html.unescape(m[2])) for m in TAGGED.finditer(text)]
        self.calls.append([pid for pid, _ in shown])
        return self.answer(shown)


@pytest.fixture
async def store(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Store]:
    settings = fake_provider.settings("openai", tmp_path / "data", user_name="Priya", llm_max_retries=0)
    with Store.open(settings) as opened:
        yield opened


def add(store: Store, text: str, sensitivity: str | None = None, supersedes: tuple[int, ...] = ()) -> int:
    [pid] = store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(
        draft=PropositionDraft(text=text, confidence=6, decay=6), supersedes=supersedes,
        cause="merged" if supersedes else "proposed", sensitivity=sensitivity),)))
    return pid


def tagger(store: Store, *, provider: Any = "build", **kwargs: Any) -> Tagger:
    made = build_provider(store.settings, store) if provider == "build" else provider
    return Tagger(store, lambda: made, store.settings, poll_interval=0.01, failure_backoff=0, **kwargs)


# ------------------------------------------------------------------------------------------ the job
async def test_existing_propositions_are_tagged_in_batches_with_their_lineage(fake_provider, store: Store) -> None:
    tags = Tags(fake_provider)
    ids = [add(store, f"Priya reviews pull request {n} of the loader") for n in range(45)]
    cardio = add(store, "Priya has a cardiology check-up")
    # a merge made before classes existed: its text says nothing about health, its parent does
    merged = add(store, "Priya leaves the loader standup early on Tuesdays", supersedes=(cardio, ids[-1]))
    job = tagger(store, batch_size=20)
    while await job.step():
        pass
    assert store.untagged_count() == 0 and job.status().state == "idle" and job.status().tagged == 47
    assert [len(call) for call in tags.calls] == [20, 20, 7]  # many per call, oldest first
    classes = store.proposition_classes([*ids, cardio, merged])
    assert classes[cardio] == "health" and classes[ids[0]] == "work"
    assert classes[merged] == "health"  # the model said work; its lineage says health
    calls = [c for c in store.llm_calls() if c.stage == STAGE]
    assert len(calls) == 3 and all(c.outcome == "ok" and c.input_tokens > 0 for c in calls)  # accounted
    await job.provider().aclose()


async def test_the_job_resumes_where_it_stopped_and_never_overwrites(fake_provider, store: Store) -> None:
    tags = Tags(fake_provider)
    ids = [add(store, f"Priya prepares budget sheet {n}") for n in range(6)]
    first = tagger(store, batch_size=4)
    assert await first.step()  # then the process stops
    store.tag_propositions({ids[5]: "other"})  # (tagged meanwhile: stays as it is)
    second = tagger(store, batch_size=4)  # a new process
    while await second.step():
        pass
    assert tags.calls == [ids[:4], ids[4:5]]
    assert store.proposition_classes(ids) == {**dict.fromkeys(ids[:5], "finance"), ids[5]: "other"}
    for job in (first, second):
        await job.provider().aclose()


async def test_ids_the_reply_invents_are_ignored(fake_provider, store: Store) -> None:
    ids = [add(store, "Priya maintains the loader"), add(store, "Priya tunes the loader")]
    Tags(fake_provider, lambda shown: {"tags": [{"id": "p999", "sensitivity": "health"},
                                                 {"id": f"o{ids[1]}", "sensitivity": "health"},
                                                 {"id": f"p{ids[0]}", "sensitivity": "work"}]})
    job = tagger(store)
    assert await job.step()
    assert store.proposition_classes(ids) == {ids[0]: "work", ids[1]: None}  # left out: still untagged
    assert await job.step() and ids[1] in job.set_aside  # left out again: set aside, still withheld
    assert not await job.step()
    assert store.proposition_classes([999]) == {}
    await job.provider().aclose()


async def test_a_spent_budget_pauses_the_job_without_a_call(fake_provider, tmp_path: Path) -> None:
    tags = Tags(fake_provider)
    settings = fake_provider.settings("openai", tmp_path / "data", daily_token_budget=10, llm_max_retries=0)
    with Store.open(settings) as store:
        for n in range(3):
            add(store, f"Priya reviews pull request {n}")
        job = tagger(store, batch_size=1)
        assert await job.step()  # 18 tokens: the budget of 10 is spent after this call
        assert not await job.step()
        status = job.status()
        assert status.state == "paused" and "budget" in (status.paused_reason or "")
        assert status.paused_until is not None and status.untagged == 2
        assert len(tags.calls) == 1 and {c.outcome for c in store.llm_calls() if c.stage == STAGE} == {"ok", "budget"}
        await job.provider().aclose()


async def test_no_provider_or_no_restricted_client_means_no_call(fake_provider, store: Store) -> None:
    tags = Tags(fake_provider)
    add(store, "Priya reviews pull requests")
    without = tagger(store, provider=None)
    assert not await without.step() and without.status().paused_reason == "no LLM provider is configured"
    unneeded = tagger(store, needed=lambda: False)
    assert not await unneeded.step() and unneeded.status().state == "not needed"
    assert tags.calls == [] and store.untagged_count() == 1
    await unneeded.provider().aclose()


async def test_the_owner_runs_the_job(fake_provider, tmp_path: Path) -> None:
    Tags(fake_provider)
    settings = fake_provider.settings("openai", tmp_path / "data", embedding="none", index_wait=0,
                                      policy_file=tmp_path / "policy.toml")  # none: the default restricts
    runtime = Runtime(settings, serving=False)
    add(runtime.store, "Priya has a cardiology check-up")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.wait_owner_ready()
        await eventually(lambda: runtime.store.untagged_count() == 0)
        assert runtime.status()["tagging"]["tagged"] == 1
        tg.cancel_scope.cancel()
    runtime.close()


# ------------------------------------------------------------------------------------------ the engine
async def test_propose_and_revise_give_classes_and_a_merge_keeps_the_most_sensitive(
        fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    h = Harness(fake_provider, tmp_path / "data")
    try:
        first = h.add(0, 3)
        h.brain.on("propose", lambda r: {"propositions": [
            {**draft(BUDGET, [r.observations[0].id]), "sensitivity": "finance"},
            {**draft(RACE, [r.observations[1].id]), "sensitivity": "personal"}]})
        assert await h.engine.step()
        current = h.current()
        assert current[BUDGET].sensitivity == "finance" and current[RACE].sensitivity == "personal"
        assert '"sensitivity"' in h.fake.requests[-1].text  # the reply schema asks for it

        h.add("Excel - Budget-Q4.xlsx and the Porto Half Marathon registration, side by side")
        merged_text = "Priya plans the Q4 budget around the Porto Half Marathon"
        h.brain.on("propose", lambda r: {"propositions": [
            {**draft(merged_text, [r.observations[0].id]), "sensitivity": "personal"}]})
        h.brain.on("relate", lambda r: {"judgements": [
            {"draft": 1, "relation": "similar", "proposition_ids": [p.id for p in r.propositions], "confidence": 6}]})
        h.brain.on("revise", lambda r: {"propositions": [{
            "supersedes": [p.id for p in r.clusters[0].propositions], "drafts": [1], "observation_ids": [],
            "reasoning": "one plan", "text": merged_text, "confidence": 7, "decay": 6, "sensitivity": "work"}]})
        assert await h.engine.step()
        assert h.brain.stages()[-2:] == ["relate", "revise"]
        current = h.current()
        assert set(current) == {merged_text} and current[merged_text].sensitivity == "finance"
        assert first  # (the observations the first batch used)
    finally:
        await h.close()
