"""SIGKILL the engine at every step of a batch; the restart completes the work.

The engine runs in a real subprocess against the fake provider, which runs in this (the test)
process: the child finds it through OPENAI_BASE_URL. `GUM_TEST_CRASH_POINT` names where the child
kills itself with SIGKILL.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft
from gum_mcp.engine.pipeline import ENGINE_CRASH_POINTS
from gum_mcp.store import Store
from gum_mcp.store.db import BATCH_CRASH_POINTS, CRASH_ENV
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_engine import Brain, Request, draft

pytestmark = pytest.mark.timeout(120)

# The child: run the engine until the inbox is empty, then exit.
ENGINE_WORKER = textwrap.dedent(
    """
    import anyio
    from gum_mcp.config import load_settings
    from gum_mcp.engine.loop import Engine
    from gum_mcp.llm.factory import build_provider
    from gum_mcp.store import Store

    async def main():
        settings = load_settings()
        store = Store.open(settings)
        provider = build_provider(settings, store)

        async def related(text, k):
            return list(store.current_propositions(limit=k).items)

        engine = Engine(store, provider, related=related, poll_interval=0.01, failure_backoff=0)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run)
                while store.pending_count():
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        await provider.aclose()
        status = engine.status()
        print("done", status.batches_done, status.batches_failed, status.last_error)

    anyio.run(main)
    """
)

SEED = "Priya registered for the Porto Half Marathon on March 22"
TRAINING = "Priya follows a 12-week plan for the Porto Half Marathon"
REVISED = "Priya is training for the Porto Half Marathon on March 22 with a 12-week plan"
LOADER = "Priya maintains the S3 loader in northwind/etl-pipeline"

OBSERVATIONS = [
    "Strava - activity 'Morning Run' 8.2 km, Porto Half training plan week 6 of 12.",
    "GitHub - pull request #412 'Add retry to S3 loader' in northwind/etl-pipeline.",
    "WhatsApp Web - chat with Sam: 'should we add two days in Porto?'",
    "The user asked for a 12-week half marathon plan that fits three runs a week.",
]


def script(brain: Brain) -> None:
    """Every batch goes through all four stages: audit skips one, relate finds one similar."""

    def ids(request: Request, *needles: str) -> list[int]:
        return [o.id for o in request.observations if any(n in o.content for n in needles)]

    brain.on("audit", lambda r: {"verdicts": [
        {"observation_id": o.id, "decision": "skip" if "WhatsApp" in o.content else "allow", "reason": "private"}
        for o in r.observations]})
    brain.on("propose", lambda r: {"propositions": [
        draft(TRAINING, ids(r, "Strava", "half marathon plan")), draft(LOADER, ids(r, "S3 loader"))]})
    brain.on("relate", lambda r: {"judgements": [
        {"draft": d.n, "relation": "similar" if d.text == TRAINING else "unrelated",
         "proposition_ids": [p.id for p in r.propositions if p.text == SEED] if d.text == TRAINING else [],
         "confidence": 7}
        for d in r.drafts]})
    brain.on("revise", lambda r: {"propositions": [
        {"text": REVISED, "reasoning": "registration and training", "confidence": 8, "decay": 6,
         "supersedes": [p.id for p in c.propositions], "drafts": [d.n for d in c.drafts], "observation_ids": []}
        for c in r.clusters]})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        script(Brain(server))
        yield server


def seed(data_dir: Path) -> None:
    with Store.open(make_settings(data_dir)) as store:
        [first] = store.add_observations([NewObservation(content="Chrome - Porto Half Marathon registration")])
        store.complete_batch(BatchResult(observation_ids=(first.id,), new=(
            NewProposition(draft=PropositionDraft(text=SEED, reasoning="r", confidence=7, decay=6),
                           evidence=(first.id,)),
        )), at=datetime(2026, 11, 16, tzinfo=UTC))
        store.add_observations([NewObservation(content=c, kind="screen", source="screen") for c in OBSERVATIONS])


def engine_env(data_dir: Path, fake: FakeLLMServer, crash: str | None) -> dict[str, str]:
    extra = {
        "GUM_LLM_PROVIDER": "openai",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "GUM_USER_NAME": "Priya",
        "GUM_LLM_TIMEOUT": "5",
        "GUM_LLM_MAX_RETRIES": "0",
        "GUM_BATCH_MIN": "1",
        "GUM_BATCH_MAX_WAIT": "0",
    }
    if crash:
        extra[CRASH_ENV] = crash
    return gum_env(data_dir, **extra)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_engines(jobs: list[tuple[Path, str | None]], fake: FakeLLMServer, parallel: int = 4) -> list[Run]:
    """Run one engine child per (data dir, crash point), a few at a time (each child spends most of
    its life importing the SDKs)."""
    runs: list[Run | None] = [None] * len(jobs)
    for start in range(0, len(jobs), parallel):
        procs = [
            (i, subprocess.Popen([PYTHON, "-c", ENGINE_WORKER], env=engine_env(data_dir, fake, crash), cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for i, (data_dir, crash) in enumerate(jobs[start : start + parallel], start=start)
        ]
        for i, proc in procs:
            out, err = proc.communicate(timeout=90)
            runs[i] = Run(proc.returncode, out, err)
    return [run for run in runs if run is not None]


def run_engine(data_dir: Path, fake: FakeLLMServer, crash: str | None) -> Run:
    [run] = run_engines([(data_dir, crash)], fake)
    return run


def check_integrity(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.execute("INSERT INTO observations_fts (observations_fts) VALUES ('integrity-check')")
        conn.execute("INSERT INTO propositions_fts (propositions_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_every_crash_point_is_passed_in_a_normal_batch(tmp_path: Path, fake: FakeLLMServer) -> None:
    data_dir = tmp_path / "data"
    seed(data_dir)
    done = run_engine(data_dir, fake, None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == ["done", "1", "0"]
    assert [r.body["response_format"]["json_schema"]["name"] for r in fake.requests] == [
        "AuditReply", "ProposeReply", "RelateReply", "ReviseReply"]


POINTS = ENGINE_CRASH_POINTS + BATCH_CRASH_POINTS


@dataclass
class CrashCase:
    data_dir: Path
    crashed: Run | None = None
    after_crash: dict = field(default_factory=dict)
    restarted: Run | None = None
    integrity_errors: list[str] = field(default_factory=list)


def snapshot(data_dir: Path) -> dict:
    with Store.open(make_settings(data_dir)) as store:
        stats = store.stats()
        return {
            "observations": stats.observations,
            "attempts": {o.attempts for o in store.observations(status="pending")},
            "current": [p.text for p in store.current_propositions().items],
            "retired": stats.propositions_retired,
            "evidence_links": stats.evidence_links,
        }


@pytest.fixture(scope="module")
def crash_cases(tmp_path_factory: pytest.TempPathFactory, fake: FakeLLMServer) -> dict[str, CrashCase]:
    """For every crash point: seed, run an engine child that SIGKILLs itself there, look at the
    database, then run a clean child over the same data dir. Children run a few at a time."""
    cases = {point: CrashCase(tmp_path_factory.mktemp("crash") / "data") for point in POINTS}
    for case in cases.values():
        seed(case.data_dir)
    crashed = run_engines([(case.data_dir, point) for point, case in cases.items()], fake)
    for case, run in zip(cases.values(), crashed, strict=True):
        case.crashed = run
        try:
            check_integrity(case.data_dir / "gum.sqlite3")
        except Exception as exc:
            case.integrity_errors.append(f"after the crash: {exc!r}")
        case.after_crash = snapshot(case.data_dir)
    restarted = run_engines([(case.data_dir, None) for case in cases.values()], fake)
    for case, run in zip(cases.values(), restarted, strict=True):
        case.restarted = run
        try:
            check_integrity(case.data_dir / "gum.sqlite3")
        except Exception as exc:
            case.integrity_errors.append(f"after the restart: {exc!r}")
    return cases


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_every_step_loses_nothing_and_the_restart_completes(
    crash_cases: dict[str, CrashCase], point: str
) -> None:
    case = crash_cases[point]
    assert case.crashed is not None and case.restarted is not None
    assert case.crashed.returncode == -signal.SIGKILL, case.crashed.stdout + case.crashed.stderr
    assert case.integrity_errors == []

    state = case.after_crash
    if point == "batch:after_commit":
        assert state["observations"] == {"pending": 0, "processed": 4, "skipped": 1, "failed": 0}
    else:  # nothing of the batch was applied, and no attempt was counted
        assert state["observations"] == {"pending": 4, "processed": 1, "skipped": 0, "failed": 0}
        assert state["attempts"] == {0}
        assert state["current"] == [SEED]
        assert state["retired"] == 0 and state["evidence_links"] == 1

    assert case.restarted.returncode == 0, case.restarted.stderr
    with Store.open(make_settings(case.data_dir)) as store:
        stats = store.stats()
        assert stats.observations == {"pending": 0, "processed": 4, "skipped": 1, "failed": 0}
        current = {p.text: p for p in store.current_propositions().items}
        assert set(current) == {REVISED, LOADER}  # once each: the batch was applied exactly once
        assert stats.propositions_current == 2 and stats.propositions_retired == 1
        detail = store.proposition_detail(current[REVISED].id)
        assert [(e.cause, store.get_proposition(e.parent_id).text) for e in detail.parents] == [("revised", SEED)]
        assert len(store.evidence_ids(current[REVISED].id)) == 3  # the seed's, Strava, the plan
        [skipped] = store.observations(status="skipped")
        assert skipped.content == OBSERVATIONS[2] and skipped.last_error == "audit: private"
