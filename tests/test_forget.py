"""Forgetting removes text from the files: the database, its WAL and the FTS indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gum_mcp.domain import BatchResult, InvalidInput, NewObservation, NewProposition, PropositionDraft
from gum_mcp.store import Store

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def raw_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.iterdir()) if p.name.startswith("gum.sqlite3"))


def add(store: Store, content: str, *, source: str = "screen", minutes: int = 0) -> int:
    [obs] = store.add_observations(
        [NewObservation(content=content, source=source, kind="screen", observed_at=T0 + timedelta(minutes=minutes))]
    )
    return obs.id


def propose(store: Store, text: str, evidence: tuple[int, ...], supersedes: tuple[int, ...] = ()) -> int:
    [pid] = store.complete_batch(BatchResult(
        observation_ids=evidence,
        new=(NewProposition(draft=PropositionDraft(text=text, reasoning=f"seen: {text}", confidence=6, decay=5),
                            evidence=evidence, supersedes=supersedes, cause="revised" if supersedes else "proposed"),),
    ))
    return pid


def test_forgetting_an_observation_removes_its_words_from_every_file(store: Store) -> None:
    keep = add(store, "Priya edits the zebrafinch roster")
    gone = add(store, "Priya visits quokkaclinic dot com about a diagnosis")
    pid = propose(store, "Priya has an appointment at quokkaclinic", (gone,))
    kept = propose(store, "Priya maintains the zebrafinch roster", (keep,))
    assert b"quokkaclinic" in raw_bytes(store.settings.data_dir)

    report = store.forget_observations([gone])

    assert report.observations_deleted == 1 and report.proposition_ids == (pid,)
    assert b"quokkaclinic" not in raw_bytes(store.settings.data_dir)
    assert b"zebrafinch" in raw_bytes(store.settings.data_dir)
    forgotten = store.get_proposition(pid)
    assert forgotten.text is None and forgotten.reasoning is None and forgotten.retired_cause == "forgotten"
    assert [p.id for p in store.current_propositions().items] == [kept]
    with store.db.read() as conn:  # the FTS indexes agree
        assert conn.execute("SELECT count(*) FROM observations_fts WHERE observations_fts MATCH 'quokkaclinic'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM propositions_fts WHERE propositions_fts MATCH 'quokkaclinic'"
                            ).fetchone()[0] == 0


def test_a_proposition_with_other_evidence_survives(store: Store) -> None:
    a = add(store, "calendar: run club Tuesday")
    b = add(store, "strava: 10k run logged")
    pid = propose(store, "Priya runs regularly", (a, b))
    store.forget_observations([a])
    prop = store.get_proposition(pid)
    assert prop.current and prop.text == "Priya runs regularly"
    assert store.evidence_ids(pid) == [b]


def test_retired_versions_resting_only_on_forgotten_evidence_are_scrubbed(store: Store) -> None:
    a = add(store, "first sighting of wombatreport")
    old = propose(store, "Priya reads the wombatreport", (a,))
    b = add(store, "second sighting", minutes=5)
    new = propose(store, "Priya reads the wombatreport weekly", (b,), supersedes=(old,))
    report = store.forget_observations([a])
    assert report.proposition_ids == (old,)
    assert store.get_proposition(old).text is None
    assert store.get_proposition(new).text == "Priya reads the wombatreport weekly"


def test_forget_proposition_scrubs_its_whole_lineage_and_optionally_its_evidence(store: Store) -> None:
    a = add(store, "ossuarytrip planning page")
    old = propose(store, "Priya plans an ossuarytrip", (a,))
    b = add(store, "ossuarytrip booking", minutes=1)
    new = propose(store, "Priya booked an ossuarytrip for March", (b,), supersedes=(old,))
    other = propose(store, "Priya likes travel", (add(store, "travel blog", minutes=2),))

    report = store.forget_proposition(new)
    assert set(report.proposition_ids) == {old, new} and report.observations_deleted == 0
    assert store.get_observation(a).content == "ossuarytrip planning page"
    assert store.get_proposition(other).current

    report = store.forget_proposition(old, delete_evidence=True)
    assert set(report.observation_ids) == {a, b}
    assert b"ossuarytrip" not in raw_bytes(store.settings.data_dir)


def test_forget_by_time_range_and_by_source(store: Store) -> None:
    early = add(store, "early", minutes=0)
    mid = add(store, "middle", minutes=30)
    late = add(store, "late", minutes=90)
    agent = add(store, "told the assistant about pelicanfund", source="claude-desktop", minutes=95)
    report = store.forget_range(T0 + timedelta(minutes=10), T0 + timedelta(minutes=60))
    assert report.observation_ids == (mid,)
    report = store.forget_source("claude-desktop")
    assert report.observation_ids == (agent,)
    assert b"pelicanfund" not in raw_bytes(store.settings.data_dir)
    assert {o.id for o in store.observations(limit=10)} == {early, late}
    with pytest.raises(InvalidInput):
        store.forget_range(None, None)
    with pytest.raises(InvalidInput):
        store.forget_range(T0 + timedelta(hours=1), T0)


def test_forget_everything(store: Store) -> None:
    a = add(store, "anything about narwhalbank")
    propose(store, "Priya banks at narwhalbank", (a,))
    report = store.forget_everything()
    assert report.observations_deleted == 1 and report.propositions_forgotten == 1
    assert b"narwhalbank" not in raw_bytes(store.settings.data_dir)
    assert store.stats().propositions_current == 0


def test_forget_reaches_hooks_and_is_logged_for_the_index(store: Store) -> None:
    seen = []
    store.after_forget_hooks.append(seen.append)
    a = add(store, "x")
    pid = propose(store, "claim", (a,))
    store.forget_observations([a])
    assert seen and seen[0].proposition_ids == (pid,)
    with store.db.read() as conn:
        log = conn.execute("SELECT collection, item_id, op FROM index_log ORDER BY seq").fetchall()
    assert [tuple(r) for r in log][-2:] == [("observations", a, "delete"), ("propositions", pid, "delete")]


def test_pruned_content_leaves_the_file(store: Store) -> None:
    a = add(store, "old narrative about capybaraloan")
    store.complete_batch(BatchResult(observation_ids=(a,)))
    assert store.prune(1, now=T0 + timedelta(days=5)) == 1
    assert b"capybaraloan" not in raw_bytes(store.settings.data_dir)
