"""Standing instructions as a kind of their own (issue 27): stored, carried through lineage, never decaying,
never inferred from behaviour alone, forgotten like any proposition."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft, utcnow
from gum_mcp.engine.instructions import kind_for, states_rule, strongest
from gum_mcp.retrieval.hits import Candidate
from gum_mcp.retrieval.weights import weigh
from gum_mcp.store import Store
from tests.conftest import make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_engine import Harness, draft

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_rule_must_be_stated() -> None:
    assert states_rule("Mara wrote: \"From now on, only book hotels with free cancellation.\"")
    assert states_rule("Kwame asked me to never choose express shipping")
    assert not states_rule("Lufthansa booking page - Mara selects seat 23C (aisle)")
    assert not states_rule("[edit report] agent wrote a draft ... + 'always'")
    assert kind_for("instruction", ["Mara selects an aisle seat"]) == "preference"
    assert kind_for("instruction", ["x", "Always book me an aisle seat"]) == "instruction"
    assert kind_for("nonsense", []) == "belief"
    assert strongest(["belief", "instruction", "preference"]) == "instruction" and strongest([]) == "belief"


def add(store: Store, text: str, kind: str, decay: int = 3, applies_to: str | None = "booking flights") -> int:
    [obs] = store.add_observations([NewObservation(content=f"Mara said: always {text}")])
    [pid] = store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
        draft=PropositionDraft(text=text, confidence=9, decay=decay), evidence=(obs.id,), kind=kind,
        applies_to=applies_to),)))
    return pid


def test_instructions_are_stored_never_decay_and_keep_their_kind_through_lineage(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data")) as store:
        pid = add(store, "Mara wants an aisle seat on flights", "instruction", decay=2)
        belief = add(store, "Mara flies to Lisbon often", "belief", applies_to=None)
        stored = store.get_proposition(pid)
        assert (stored.kind, stored.decay, stored.applies_to) == ("instruction", 10, "booking flights")
        assert [p.id for p in store.current_propositions(kind="instruction").items] == [pid]
        assert [p.id for p in store.current_propositions(kind="belief").items] == [belief]
        with pytest.raises(Exception, match="kind"):
            store.current_propositions(kind="rule")
        # a correction supersedes it: still an instruction, for the same situation
        successor = store.give_feedback(pid, "correct", correction="Mara wants an aisle seat on long flights")
        assert (successor.kind, successor.decay, successor.applies_to) == ("instruction", 10, "booking flights")
        # content: the kind and the situation never change in place
        with store.db.write() as conn, pytest.raises(Exception, match="immutable"):
            conn.execute("UPDATE propositions SET kind = 'belief' WHERE id = ?", (successor.id,))
        # forgotten: the situation goes with the text
        store.forget_propositions([successor.id])
        gone = store.get_proposition(successor.id)
        assert gone.text is None and gone.applies_to is None and not gone.current


def test_retrieval_gives_instructions_no_recency_weight() -> None:
    from gum_mcp.domain import Proposition

    old = utcnow() - timedelta(days=3000)
    weights = {}
    for kind in ("instruction", "belief"):
        item = Proposition(id=1, text="x", reasoning="", confidence=9, decay=10, created_at=old,
                           last_supported_at=old, support_count=1, kind=kind)
        cand = Candidate(kind="proposition", id=1, item=item)
        weigh(cand, utcnow())
        weights[kind] = cand.recency
    assert weights["instruction"] == 1.0 and weights["belief"] < 0.5


async def test_the_engine_records_stated_instructions_and_never_infers_one_from_behaviour(
        fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    h = Harness(fake_provider, tmp_path / "data")
    try:
        stated, seen = h.add("Chat - Mara wrote: \"Always book me an aisle seat on flights.\"",
                             "KLM seat map - Mara picks 31C, an aisle seat")

        def propose(request):
            out = []
            for o in request.observations:
                item = draft("Mara wants an aisle seat on flights" if o.id == stated else
                             "Mara picks aisle seats on KLM flights", [o.id], confidence=8)
                out.append({**item, "kind": "instruction", "applies_to": "booking flights"})
            return {"propositions": out}

        h.brain.on("propose", propose)
        await h.engine.step()
        kinds = {p.text: (p.kind, p.decay, p.applies_to) for p in h.current().values()}
        assert kinds == {"Mara wants an aisle seat on flights": ("instruction", 10, "booking flights"),
                         "Mara picks aisle seats on KLM flights": ("preference", 6, "booking flights")}
        system = h.brain.of("propose")[0].system
        assert "never from behaviour alone" in system and "applies_to" in system
        assert seen
    finally:
        await h.close()
