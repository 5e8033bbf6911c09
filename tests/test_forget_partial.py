"""A partial forget: a proposition that lost part of its evidence is not served, the engine re-derives it
from the evidence left (never seeing what was forgotten), and lineage records the cause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gum_mcp.config import Settings
from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.store.forget_guard import REDERIVED_NOTE
from tests.fake_provider import FakeLLMServer
from tests.test_engine import Harness, draft

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PLAIN = {"encrypt": False} if "encrypt" in Settings.model_fields else {}
CLINIC = "Chrome - kookaburraclinic.com: appointment booked about a diagnosis, Tuesday 8am"
RUN = "Strava - 10k run logged Tuesday morning, before the appointment"
BOTH = "Priya books kookaburraclinic visits right after her Tuesday runs"
RUNS = "Priya runs 10k on Tuesday mornings"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(fake_provider, tmp_path / "data", **PLAIN)
    yield harness
    await harness.close()


async def test_the_engine_re_derives_a_partly_forgotten_proposition_from_what_is_left(h: Harness) -> None:
    clinic, run = h.add(CLINIC, RUN)
    [both] = h.store.complete_batch(BatchResult(observation_ids=(clinic, run), new=(NewProposition(
        draft=PropositionDraft(text=BOTH, reasoning=f"seen: {CLINIC}", confidence=6, decay=5),
        evidence=(clinic, run)),)))
    h.brain.on("propose", lambda r: {"propositions": [
        draft(RUNS if "Strava" in o.content else "Priya visits a clinic", [o.id]) for o in r.observations]})

    report = h.store.forget_observations([clinic])
    assert BOTH not in h.current()  # not served from the moment of the forget
    assert report.rederive_ids == (both,) and report.requeued_observation_ids == (run,)

    assert await h.engine.step()
    assert h.store.pending_count() == 0
    current = h.current()
    assert set(current) == {RUNS}
    detail = h.store.proposition_detail(current[RUNS].id)
    assert [(e.parent_id, e.cause, e.note) for e in detail.parents] == [(both, "forgotten", REDERIVED_NOTE)]
    assert h.store.evidence_ids(current[RUNS].id) == [run]
    forgotten = h.store.get_proposition(both)
    assert forgotten.text is None and forgotten.retired_cause == "forgotten"
    assert h.store.successors(both) == [current[RUNS].id]
    with h.store.db.read() as conn:
        assert conn.execute("SELECT count(*) FROM rederive").fetchone()[0] == 0
    # the provider never saw the forgotten observation or the scrubbed claim again
    assert h.brain.of("propose") and all("kookaburra" not in text for text in h.user_texts())
    assert b"kookaburra" not in b"".join(p.read_bytes() for p in h.settings.data_dir.rglob("*") if p.is_file())
