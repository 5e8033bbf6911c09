"""The privacy audit fails closed, and what it skips is held back everywhere.

- A missing verdict holds the observation (pending, one attempt counted) to be audited again; after
  GUM_MAX_ATTEMPTS it is skipped with the reason. An empty verdict list passes nothing; verdicts for ids
  the prompt never showed count for nothing.
- A skipped observation is never embedded and never served raw to a client (get_recent_activity,
  what_am_i_doing, gum://activity/recent); its content is deleted after GUM_SKIPPED_RETENTION_DAYS and a
  content-free row (time, source, app, reason) stays.
- `gum-mcp audit` lists the skips with their reasons; `--release ID` gives one back to the engine, which
  uses it without asking the audit again.

The fake provider answers through `AuditBrain`, which reads the ids the prompts show (as shown: `o12`)
and lets each test script the audit's verdicts.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from gum_mcp.cli import main
from gum_mcp.domain import BatchResult, NewObservation, utcnow
from gum_mcp.index.vector_index import VectorIndex
from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.store import Store, skipped
from tests.conftest import REPO, make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_engine import Harness as EngineHarness

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

OBS_RE = re.compile(r'<observation id="([^"]+)"[^>]*>(.*?)</observation>', re.S)
DRAFT_RE = re.compile(r'<draft (?:id|n)="([^"]+)"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _number(shown: str) -> int:
    return int(shown.lstrip("op"))


class AuditBrain:
    """The fake provider's default reply. `audit(shown)` gets {observation id: content} as the prompt
    showed them and returns the verdict list (ids as shown); propose writes one claim per observation."""

    def __init__(self, fake: FakeLLMServer) -> None:
        self.calls: list[tuple[str, dict[int, str]]] = []
        self.audit: Callable[[dict[str, str]], list[dict[str, Any]]] = lambda shown: [
            {"observation_id": oid, "reason": "ordinary work", "decision": "allow"} for oid in shown]
        #: the claim (text, reasoning) proposed for an observation's content
        self.claim: Callable[[str], tuple[str, str]] = lambda content: (f"Priya: {content[:80]}", "seen on screen")
        fake.default = self

    def __call__(self, body: Any, path: str) -> Any:
        schema = body["response_format"]["json_schema"]["name"]
        text = next(m["content"] for m in body["messages"] if m["role"] == "user")
        shown = {m[1]: html.unescape(m[2]) for m in OBS_RE.finditer(text)}
        self.calls.append((schema, {_number(k): v for k, v in shown.items()}))
        if schema == "AuditReply":
            return {"verdicts": self.audit(shown)}
        if schema == "ProposeReply":
            return {"propositions": [
                {"observation_ids": [oid], "reasoning": self.claim(content)[1], "text": self.claim(content)[0],
                 "confidence": 6, "decay": 5} for oid, content in shown.items()]}
        if schema == "RelateReply":
            return {"judgements": [{"draft": d, "reason": "new", "relation": "unrelated", "proposition_ids": [],
                                    "confidence": 5} for d in DRAFT_RE.findall(text)]}
        return {"propositions": []}

    def shown_to(self, schema: str) -> list[int]:
        return [oid for name, shown in self.calls if name == schema for oid in shown]


class Harness(EngineHarness):
    """The engine tests' harness with the audit's brain, no related propositions and the real clock."""

    def __init__(self, fake: FakeLLMServer, data_dir: Path, **overrides: Any) -> None:
        super().__init__(fake, data_dir, encrypt=False, **overrides)
        self.brain = AuditBrain(fake)

        async def related(text: str, k: int) -> list:
            return []

        self.engine = self.make_engine(related=related, now=utcnow)

    def add(self, *contents: str) -> list[int]:
        return [o.id for o in self.store.add_observations(
            [NewObservation(content=c, kind="screen", source="screen", app="Signal" if "chat" in c else "Excel")
             for c in contents])]


@pytest.fixture
async def h(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(fake_provider, tmp_path / "data")
    yield harness
    await harness.close()


BUDGET = "Excel - Budget-Q4.xlsx, sheet Forecast"
TRIP = "Booking.com - Lisbon, 3 nights in March"
CHAT = "Signal chat with Sam about his diagnosis"


async def test_a_missing_verdict_holds_the_observation_and_audits_it_again(h: Harness) -> None:
    budget, trip = h.add(BUDGET, TRIP)
    h.brain.audit = lambda shown: [{"observation_id": oid, "reason": "work", "decision": "allow"}
                                   for oid, content in shown.items() if "Budget" in content]
    assert await h.engine.step()
    assert h.brain.shown_to("ProposeReply") == [budget]  # never allowed by default
    held = h.store.get_observation(trip)
    assert held.status == "pending" and held.attempts == 1 and held.last_error == skipped.NO_VERDICT
    assert h.store.get_observation(budget).status == "processed"
    assert skipped.counts(h.store.db)["held"] == 1

    assert await h.engine.step()  # audited again (nothing new is allowed), then once more: skipped
    assert await h.engine.step()
    assert h.brain.shown_to("AuditReply").count(trip) == 3
    gone = h.store.get_observation(trip)
    assert gone.status == "skipped" and gone.last_error == "audit: no verdict after 3 attempts"
    assert trip not in h.brain.shown_to("ProposeReply")
    assert not await h.engine.step()  # nothing pending


async def test_an_empty_verdict_list_passes_nothing(h: Harness) -> None:
    ids = h.add(BUDGET, TRIP, CHAT)
    h.brain.audit = lambda shown: []
    assert await h.engine.step()
    assert h.brain.shown_to("ProposeReply") == []
    assert [h.store.get_observation(i).status for i in ids] == ["pending"] * 3
    assert h.store.stats().propositions_current == 0


async def test_verdicts_for_ids_never_shown_count_for_nothing(h: Harness) -> None:
    budget, trip = h.add(BUDGET, TRIP)
    h.brain.audit = lambda shown: [
        *({"observation_id": oid, "reason": "work", "decision": "allow"} for oid, c in shown.items() if "Budget" in c),
        {"observation_id": "o99999", "reason": "made up", "decision": "allow"},
        {"observation_id": f"p{_number(next(iter(shown)))}", "reason": "wrong kind", "decision": "allow"},
    ]
    assert await h.engine.step()
    assert h.brain.shown_to("ProposeReply") == [budget]
    assert h.store.get_observation(trip).status == "pending"


async def test_a_reply_of_unknown_ids_only_allows_nothing(h: Harness) -> None:
    [trip] = h.add(TRIP)
    h.brain.audit = lambda shown: [{"observation_id": "o424242", "reason": "made up", "decision": "allow"}]
    for _ in range(3):
        await h.engine.step()
    assert h.brain.shown_to("ProposeReply") == []
    assert h.store.get_observation(trip).status in ("pending", "failed", "skipped")
    assert h.store.stats().propositions_current == 0


async def test_skip_wins_over_allow_for_the_same_observation(h: Harness) -> None:
    [chat] = h.add(CHAT)
    h.brain.audit = lambda shown: [{"observation_id": oid, "reason": r, "decision": d} for oid in shown
                                   for r, d in (("private chat", "skip"), ("fine", "allow"))]
    assert await h.engine.step()
    assert h.store.get_observation(chat).status == "skipped"
    assert h.brain.shown_to("ProposeReply") == []


async def test_audit_off_uses_everything(fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    h = Harness(fake_provider, tmp_path / "data", audit=False)
    try:
        [chat] = h.add(CHAT)
        assert await h.engine.step()
        assert h.brain.shown_to("AuditReply") == [] and h.brain.shown_to("ProposeReply") == [chat]
    finally:
        await h.close()


# ---------------------------------------------------------------- held back everywhere, then deleted


def skip(store: Store, observation_id: int, reason: str = "audit: a private chat") -> None:
    store.complete_batch(BatchResult(observation_ids=(observation_id,), skipped={observation_id: reason}))


def test_skipped_observations_are_never_embedded(settings, store, embedder) -> None:
    [budget, chat] = [store.add_observation(c).id for c in (BUDGET, CHAT)]
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)  # pending ones may be searched (they are served as recent activity too)
        skip(store, chat)
        store.complete_batch(BatchResult(observation_ids=(budget,)))
        index.catch_up(store)
        assert set(map(int, index._collection("observations").get(include=[])["ids"])) == {budget}
        index.rebuild(store)
        assert set(map(int, index._collection("observations").get(include=[])["ids"])) == {budget}
        assert store.count_index_items("observations") == 1


async def test_skipped_observations_are_never_served_raw(settings) -> None:
    runtime = Runtime(settings, engine=False)
    store = runtime.store
    budget = store.add_observation(BUDGET, kind="screen", source="screen").id
    chat = store.add_observation(CHAT, kind="screen", source="screen").id
    skip(store, chat)
    try:
        async with Client(build_server(runtime), mode="legacy") as client:
            activity = (await client.call_tool("get_recent_activity", {"minutes": 60})).structured_content
            assert [o["id"] for o in activity["observations"]] == [budget]
            doing = (await client.get_prompt("what_am_i_doing", {})).messages[0].content.text
            recent = (await client.read_resource("gum://activity/recent")).contents[0].text
            for text in (json.dumps(activity), doing, recent):
                assert "Budget-Q4" in text and "diagnosis" not in text
    finally:
        runtime.close()


def test_skipped_content_is_deleted_after_the_retention_but_the_row_stays(settings, store) -> None:
    [chat] = [o.id for o in store.add_observations([NewObservation(content=CHAT, kind="screen", source="screen",
                                                                   app="Signal")])]
    skip(store, chat)
    assert skipped.purge_content(store.db, retention=timedelta(days=1)) == 0  # still reviewable
    assert [o.content for o in skipped.list_skipped(store.db)] == [CHAT]
    assert skipped.purge_content(store.db, retention=timedelta(days=1), now=utcnow() + timedelta(days=2)) == 1
    [row] = skipped.list_skipped(store.db)
    assert (row.id, row.content, row.source, row.app, row.reason) == (chat, None, "screen", "Signal",
                                                                      "audit: a private chat")
    assert store.stats().observations["skipped"] == 1  # counts stay true
    assert store.search_observations_text("diagnosis") == []
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert b"diagnosis" not in path.read_bytes(), path
    with pytest.raises(Exception, match="nothing left to release"):
        skipped.release(store.db, chat)


# --------------------------------------------------------------------------------- gum-mcp audit


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, _err = capsys.readouterr()
    return code, out


async def test_gum_mcp_audit_lists_skips_and_releases_one_for_the_engine(
    fake_provider: FakeLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    h = Harness(fake_provider, data)
    try:
        [trip] = h.add(TRIP)
        h.brain.audit = lambda shown: [{"observation_id": oid, "reason": "invented: a private trip",
                                        "decision": "skip"} for oid in shown]
        assert await h.engine.step()
        assert h.store.get_observation(trip).status == "skipped"

        code, out = run_cli(capsys, "--data-dir", str(data), "audit", "--list")
        assert code == 0 and "1 skipped, 1 still reviewable" in out
        assert f"[{trip}]" in out and "audit: invented: a private trip" in out and "Lisbon" in out
        code, out = run_cli(capsys, "--data-dir", str(data), "audit", "--json")
        assert json.loads(out)["observations"][0]["id"] == trip

        code, out = run_cli(capsys, "--data-dir", str(data), "audit", "--release", str(trip))
        assert code == 0 and f"released observation {trip}" in out
        assert h.store.get_observation(trip).status == "pending"
        code, _ = run_cli(capsys, "--data-dir", str(data), "audit", "--release", str(trip))
        assert code == 2  # not skipped any more

        audited = len(h.brain.shown_to("AuditReply"))
        assert await h.engine.step()
        assert len(h.brain.shown_to("AuditReply")) == audited  # released: used without asking again
        assert h.brain.shown_to("ProposeReply") == [trip]
        assert h.store.get_observation(trip).status == "processed"
    finally:
        await h.close()


def test_status_shows_the_audit_and_the_redaction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    with Store.open(make_settings(data)) as store:
        skip(store, store.add_observation(CHAT).id)
    code, out = run_cli(capsys, "--data-dir", str(data), "status")
    assert code == 0
    assert "privacy audit on; 1 skipped (1 reviewable: gum-mcp audit)" in out
    assert "redaction     up to date" in out


def test_readme_says_a_weak_model_skips_at_random_and_how_to_turn_the_audit_off() -> None:
    readme = (REPO / "README.md").read_text()
    assert "GUM_AUDIT=false" in readme and "gum-mcp audit" in readme and "at random" in readme
    assert "GUM_SKIPPED_RETENTION_DAYS" in readme and "GUM_REDACT_CONTACTS" in readme
