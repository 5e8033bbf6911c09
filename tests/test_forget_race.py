"""A forget wins every race with the engine.

Like tests/test_engine_crash.py, the engine runs in a real subprocess against the fake provider, which
runs in this process. Here the fake's handler for one LLM stage first forgets an observation of the
batch from this process (another connection to the same data dir), then replies, so the forget lands
between the LLM calls of the batch, as a person's forget would. The replies draw propositions from the
forgotten text: committing them would keep it with its evidence stripped, out of reach of any later
forget. Afterwards no proposition drawn from it may exist, and its words are in no file of the data dir.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from gum_mcp.config import Settings
from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_engine import STAGES, Brain, Request, draft
from tests.test_engine_crash import ENGINE_WORKER, engine_env

pytestmark = pytest.mark.timeout(180)

PLAIN = {"encrypt": False} if "encrypt" in Settings.model_fields else {}
SECRET = "quokkaclinic"
SEED = "Priya registered for the Porto Half Marathon on March 22"
TRAINING = "Priya follows a 12-week plan for the Porto Half Marathon"
TRAINING_SECRET = "Priya trains for the Porto Half Marathon and sees quokkaclinic about a diagnosis"
APPOINTMENT = "Priya has an appointment at quokkaclinic about a diagnosis"
LOADER = "Priya maintains the S3 loader in northwind/etl-pipeline"
REVISED = "Priya is training for the Porto Half Marathon on March 22 with a 12-week plan"
OBSERVATIONS = [
    "Strava - activity 'Morning Run' 8.2 km, Porto Half training plan week 6 of 12.",
    "GitHub - pull request #412 'Add retry to S3 loader' in northwind/etl-pipeline.",
    "Chrome - quokkaclinic.com: Priya's appointment about a diagnosis, right after the Porto run.",
]


def seed(data_dir: Path) -> None:
    with Store.open(make_settings(data_dir, **PLAIN)) as store:
        [first] = store.add_observations([NewObservation(content="Chrome - Porto Half Marathon registration")])
        store.complete_batch(BatchResult(observation_ids=(first.id,), new=(NewProposition(
            draft=PropositionDraft(text=SEED, reasoning="r", confidence=7, decay=6), evidence=(first.id,)),)))
        store.add_observations([NewObservation(content=c, kind="screen", source="screen") for c in OBSERVATIONS])


def script(brain: Brain, data_dir: Path, forget_at: str) -> threading.Event:
    """Replies that draw on the secret observation whenever they are shown it; the first request of
    `forget_at` forgets it first."""
    forgot = threading.Event()

    def forget_first(stage: str, request: Request) -> None:
        if stage == forget_at and not forgot.is_set():
            forgot.set()
            with Store.open(make_settings(data_dir, **PLAIN)) as store:
                [secret] = [o for o in store.observations(limit=10) if SECRET in (o.content or "")]
                store.forget_observations([secret.id])

    def ids(request: Request, *needles: str) -> list[int]:
        return [o.id for o in request.observations if any(n in o.content for n in needles)]

    def audit(r: Request) -> dict:
        forget_first("audit", r)
        return {"verdicts": [{"observation_id": o.id, "decision": "allow", "reason": "ok"} for o in r.observations]}

    def propose(r: Request) -> dict:
        forget_first("propose", r)
        secret, training, loader = ids(r, SECRET), ids(r, "Strava"), ids(r, "S3 loader")
        drafts = [draft(LOADER, loader)]
        if secret:
            drafts += [draft(TRAINING_SECRET, training + secret), draft(APPOINTMENT, secret + loader)]
        else:
            drafts.append(draft(TRAINING, training))
        return {"propositions": drafts}

    def relate(r: Request) -> dict:
        forget_first("relate", r)
        seed_ids = [p.id for p in r.propositions if p.text == SEED]
        return {"judgements": [
            {"draft": d.n, "relation": "similar" if "Porto" in d.text else "unrelated",
             "proposition_ids": seed_ids if "Porto" in d.text else [], "confidence": 7} for d in r.drafts]}

    def revise(r: Request) -> dict:
        forget_first("revise", r)
        out = []
        for c in r.clusters:
            leaked = any(SECRET in d.text for d in c.drafts)
            out.append({"text": REVISED + (" and sees quokkaclinic" if leaked else ""), "reasoning": "plan",
                        "confidence": 8, "decay": 6, "supersedes": [p.id for p in c.propositions],
                        "drafts": [d.n for d in c.drafts], "observation_ids": []})
        return {"propositions": out}

    for stage, handler in (("audit", audit), ("propose", propose), ("relate", relate), ("revise", revise)):
        brain.on(stage, handler)
    return forgot


@pytest.mark.parametrize("forget_at", list(STAGES))
def test_a_forget_between_the_llm_calls_of_a_batch_wins(tmp_path: Path, forget_at: str) -> None:
    data_dir = tmp_path / "data"
    seed(data_dir)
    with FakeLLMServer() as fake:
        forgot = script(Brain(fake), data_dir, forget_at)
        env = engine_env(data_dir, fake, None)
        env.update({"GUM_ENCRYPT": "0"} if PLAIN else {})
        child = subprocess.run([PYTHON, "-c", ENGINE_WORKER], env=env, cwd=REPO, capture_output=True, text=True,
                               timeout=150)
    assert child.returncode == 0, child.stderr
    assert forgot.is_set()
    done, batches_done, batches_failed = child.stdout.split()[:3]
    assert done == "done" and int(batches_done) >= 1 and batches_failed == "0"

    with Store.open(make_settings(data_dir, **PLAIN)) as store:
        with store.db.read() as conn:
            leaked = conn.execute(
                "SELECT count(*) FROM propositions WHERE text LIKE ? OR reasoning LIKE ?", (f"%{SECRET}%",) * 2
            ).fetchone()[0]
            notes = conn.execute("SELECT count(*) FROM lineage WHERE note LIKE ?", (f"%{SECRET}%",)).fetchone()[0]
        assert leaked == 0 and notes == 0
        current = sorted(p.text or "" for p in store.current_propositions().items)
        assert current == sorted([LOADER, REVISED])  # decided again, without it, once
        remaining = store.observations(limit=10)
        assert all(SECRET not in (o.content or "") for o in remaining)
        assert {o.status for o in remaining} == {"processed"} and {o.attempts for o in remaining} == {0}
    blob = b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()).lower()
    assert SECRET.encode() not in blob
    assert b"northwind" in blob  # the rest of the batch is there
