"""Bounded growth: retention runs by itself, and each kind of data that grows has a bound that holds
when it is filled past it (observations and their evidence, LLM calls, suggestions, log files)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from mcp import Client

from gum_mcp.domain import (
    BatchResult,
    LLMCall,
    NewObservation,
    NewProposition,
    PropositionDraft,
    Reinforcement,
    utcnow,
)
from gum_mcp.runtime import Runtime, apply_retention
from gum_mcp.server import build_server, log_to_file
from gum_mcp.store import Store
from gum_mcp.store.suggestions import NewSuggestion
from tests.conftest import eventually, make_settings

T0 = utcnow().replace(microsecond=0)


@pytest.fixture
def logs() -> Iterator[None]:
    """Remove the file handlers a test added to the gum_mcp logger."""
    root = logging.getLogger("gum_mcp")
    before, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            handler.close()
            root.removeHandler(handler)
    root.setLevel(level)


def observe(store: Store, days_ago: float, text: str = "Excel - Budget-Q4.xlsx, sheet Forecast") -> int:
    [obs] = store.add_observations([NewObservation(content=f"{text} ({days_ago} days ago)", kind="screen",
                                                   source="screen", observed_at=T0 - timedelta(days=days_ago))])
    return obs.id


def propose(store: Store, evidence: list[int], text: str = "Priya prepares the Q4 budget") -> int:
    [pid] = store.complete_batch(BatchResult(observation_ids=tuple(evidence), new=(NewProposition(
        draft=PropositionDraft(text=text, confidence=7, decay=7), evidence=tuple(evidence)),)), at=T0)
    return pid


def reinforce(store: Store, pid: int, evidence: list[int]) -> None:
    store.complete_batch(BatchResult(observation_ids=tuple(evidence),
                                     reinforce=(Reinforcement(proposition_id=pid, evidence=tuple(evidence)),)), at=T0)


def count(store: Store, sql: str, *args: object) -> int:
    with store.db.read() as conn:
        return conn.execute(sql, args).fetchone()[0]


# ------------------------------------------------------------------------------------ runs by itself
@pytest.mark.anyio
async def test_the_owner_applies_retention_at_start_and_status_shows_it(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path / "data", user_name="Priya"))
    store = runtime.store
    old = observe(store, 45)
    propose(store, [old])
    fresh = observe(store, 0.1)
    propose(store, [fresh], "Priya runs on Sundays")
    store.record_llm_call(LLMCall(stage="propose", provider="openai", model="m", input_tokens=5, at=T0 - timedelta(
        days=90)))
    try:
        async with Client(build_server(runtime), mode="legacy") as client:
            await client.call_tool("status", {})  # the first request lets the engine (and retention) start
            report = await eventually(store.last_retention)
            assert report.text_pruned == 1 and report.llm_calls_deleted == 1
            status = (await client.call_tool("status", {})).structured_content
            (runtime.settings.data_dir / ".env").write_text("GUM_RETENTION_DAYS=7\n")  # as the page writes it
            changed = (await client.call_tool("status", {})).structured_content["retention"]
        retention = status["retention"]
        assert retention["last_run_at"] and retention["removed"]["text_pruned"] == 1
        assert retention["observation_text_days"] == 30 and retention["interval_seconds"] == 3600
        assert changed["observation_text_days"] == 7  # what retention applies from now on, not the start value
        assert store.get_observation(old).content is None and store.get_observation(fresh).content
    finally:
        runtime.close()


# ------------------------------------------------------------------------------------ observations, evidence
def test_old_observations_go_but_current_beliefs_keep_their_newest_evidence(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", evidence_keep=5)
    with Store.open(settings) as store:
        # a belief supported once a day from 200 to 31 days ago (all of it older than GUM_RETENTION_DAYS)
        first = observe(store, 200, "budget work, 200 days ago")
        pid = propose(store, [first])
        for days_ago in range(199, 30, -1):
            reinforce(store, pid, [observe(store, days_ago, f"budget work, {days_ago} days ago")])
        lately = propose(store, [observe(store, 10, "a run"), observe(store, 5, "another run")], "Priya runs")
        unrelated = [observe(store, 100 + n, f"a chat, {n}") for n in range(50)]  # no belief rests on these
        for oid in unrelated:
            store.complete_batch(BatchResult(observation_ids=(oid,)), at=T0)
        skipped = observe(store, 60, "a private chat")
        store.complete_batch(BatchResult(observation_ids=(skipped,), skipped={skipped: "private"}), at=T0)
        retired = propose(store, [first], "Priya prepared a budget once")  # revised: its successor carries `first`
        store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(
            draft=PropositionDraft(text="Priya prepares budgets", confidence=8, decay=8), supersedes=(retired,),
            cause="revised"),)), at=T0)
        with store.db.read() as conn:
            before = {tuple(row) for row in conn.execute(
                "SELECT e.proposition_id, e.observation_id FROM evidence e"
                " JOIN propositions p ON p.id = e.proposition_id WHERE p.retired_at IS NULL")}
        assert len(store.evidence_ids(pid)) == 170

        report = apply_retention(store, now=T0)

        assert report.text_pruned == 170 + 50 + 1
        kept = store.evidence_ids(pid)
        newest = sorted(oid for oid in store.evidence_ids(pid) if oid != first)
        assert len(kept) == 6 and first in kept  # its 5 newest (GUM_EVIDENCE_KEEP), and one another belief needs
        assert all(store.get_observation(oid).observed_at >= T0 - timedelta(days=36) for oid in newest)
        assert len(store.evidence_ids(lately)) == 2 and store.get_observation(store.evidence_ids(lately)[0]).content
        assert count(store, f"SELECT count(*) FROM observations WHERE id IN ({','.join(map(str, unrelated))})") == 0
        assert count(store, "SELECT count(*) FROM observations WHERE id = ?", skipped) == 0
        assert report.observations_deleted == 170 - 6 + 50 + 1 and report.evidence_links_deleted == 170 - 6
        # no current belief lost its link to an observation that still exists
        with store.db.read() as conn:
            existing = {row[0] for row in conn.execute("SELECT id FROM observations")}
            after = {tuple(row) for row in conn.execute("SELECT proposition_id, observation_id FROM evidence")}
        assert {(p, o) for p, o in before if o in existing} <= after
        again = apply_retention(store, now=T0)
        assert again.observations_deleted == 0 and again.text_pruned == 0  # stable: nothing more to remove

        # forget still finds what the belief rests on: forgetting its evidence scrubs it
        store.forget_observations(kept)
        assert store.get_proposition(pid).text is None


def test_evidence_keep_zero_keeps_every_link_of_current_beliefs(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data", evidence_keep=0)) as store:
        evidence = [observe(store, 40 + n) for n in range(10)]
        pid = propose(store, evidence)
        report = apply_retention(store, now=T0)
        assert report.text_pruned == 10 and report.observations_deleted == 0
        assert store.evidence_ids(pid) == sorted(evidence)


# ------------------------------------------------------------------------------------ LLM calls
def test_llm_calls_are_pruned_and_daily_totals_stay_400_days(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data", llm_calls_days=30)) as store:
        for day in range(500):  # three calls a day for 500 days: past both bounds
            for n in range(3):
                store.record_llm_call(LLMCall(stage="propose", provider="openai", model=f"m{n % 2}",
                                              input_tokens=100, output_tokens=10, outcome="ok" if n else "retry",
                                              at=T0 - timedelta(days=day, hours=1)))
        assert count(store, "SELECT count(*) FROM llm_calls") == 1500

        report = apply_retention(store, now=T0)

        assert count(store, "SELECT count(*) FROM llm_calls") == 3 * 30
        assert report.llm_calls_deleted == 1500 - 90
        usage = store.usage_by_day()
        days = sorted({u.day for u in usage})
        assert len(days) in (400, 401) and days[-1] == (T0 - timedelta(hours=1)).date()
        one_day = [u for u in usage if u.day == days[100]]
        assert {u.model: (u.calls, u.failures, u.input_tokens) for u in one_day} == {"m0": (2, 1, 200),
                                                                                   "m1": (1, 0, 100)}
        assert store.tokens_used_since(T0 - timedelta(days=1)) == 3 * 110  # today's calls are all still there


def test_usage_is_kept_when_calls_are_kept_forever(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data", llm_calls_days=0)) as store:
        store.record_llm_call(LLMCall(stage="audit", provider="openai", model="m", at=T0 - timedelta(days=365)))
        assert apply_retention(store, now=T0).llm_calls_deleted == 0
        assert count(store, "SELECT count(*) FROM llm_calls") == 1 and len(store.usage_by_day()) == 1


# ------------------------------------------------------------------------------------ suggestions
def test_closed_suggestions_expire_and_are_deleted(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data", suggestion_days=20)) as store:
        pid = propose(store, [observe(store, 1)])
        ids = {}
        for days_ago in (1, 5, 10, 25, 40, 60):  # offered then, never answered
            [saved] = store.save_suggestions([NewSuggestion(
                title=f"Suggestion number {days_ago} about topic {chr(97 + days_ago % 26) * 4}",
                action=f"do thing {days_ago} {'x' * days_ago}", benefit=8, cost=2, p_useful=0.7, utility=3.6,
                threshold=2, proposition_ids=(pid,))], now=T0 - timedelta(days=days_ago)).saved
            ids[days_ago] = saved.id
        store.respond_to_suggestion(ids[40], "dismissed", now=T0 - timedelta(days=15))  # answered recently
        store.respond_to_suggestion(ids[60], "done", now=T0 - timedelta(days=50))
        assert {s.status for s in store.suggestions(status="all", now=T0)} == {"pending", "expired", "dismissed",
                                                                                "done"}

        report = apply_retention(store, now=T0)

        left = {s.id: s.status for s in store.suggestions(status="all", now=T0)}
        # open ones stay; closed ones whose last step is older than 20 days go
        assert left == {ids[1]: "pending", ids[5]: "pending", ids[10]: "expired", ids[40]: "dismissed"}
        assert report.suggestions_deleted == 2


# ------------------------------------------------------------------------------------ logs
def test_log_files_rotate_by_size_and_count(tmp_path: Path, logs: None) -> None:
    settings = make_settings(tmp_path / "data", log_max_bytes=10_000, log_backups=2)
    log_to_file(settings)
    log_to_file(settings)  # a second process writing the same file
    handlers = [h for h in logging.getLogger("gum_mcp").handlers if isinstance(h, logging.FileHandler)][-2:]
    log = logging.getLogger("gum_mcp.test")
    for n in range(2000):  # about 200 KB of log lines, from both "processes"
        record = log.makeRecord("gum_mcp.test", logging.INFO, __file__, 1, "line %05d %s", (n, "x" * 60), None)
        handlers[n % 2].handle(record)
    files = sorted(settings.log_dir.glob("gum-mcp.log*"))
    assert [f.name for f in files] == ["gum-mcp.log", "gum-mcp.log.1", "gum-mcp.log.2"]
    assert all(f.stat().st_size <= 10_000 + 200 for f in files)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert "line 01999" in (settings.log_dir / "gum-mcp.log").read_text()  # the newest lines are in the live file
