"""Forgetting removes text from the files: the database, its WAL and the FTS indexes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gum_mcp.domain import BatchResult, InvalidInput, NewObservation, NewProposition, PropositionDraft
from gum_mcp.store import Store
from tests.conftest import make_settings
from tests.sqlcipher_pages import raw_file_bytes, readable_bytes

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


#: Words these tests store: an encrypted store never shows one of them in its files' bytes.
WORDS = (b"quokkaclinic", b"zebrafinch", b"wombatreport", b"ossuarytrip", b"pelicanfund", b"narwhalbank",
         b"capybaraloan", b"Priya")


@pytest.fixture(params=["plaintext", "encrypted"])
def settings(request: pytest.FixtureRequest, tmp_path: Path):
    """Every test here runs on a plaintext store and on an encrypted one: encryption must not hide a
    forget that fails (raw_bytes decrypts every page of an encrypted store, free pages included)."""
    return make_settings(tmp_path / "data", encrypt=request.param == "encrypted")


@pytest.fixture(autouse=True)
def _no_plaintext_when_encrypted(settings):
    yield
    if settings.encrypt:
        raw = raw_file_bytes(settings.data_dir)
        assert [word for word in WORDS if word in raw] == []


def raw_bytes(data_dir: Path) -> bytes:
    """What the store's files hold: their bytes when plaintext; every page decrypted, free pages
    included, when encrypted (tests/sqlcipher_pages.py)."""
    return readable_bytes(data_dir)


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


def test_a_proposition_that_keeps_other_evidence_is_scrubbed_and_queued_to_be_re_derived(store: Store) -> None:
    a = add(store, "calendar: run club Tuesday at the kookaburra track")
    b = add(store, "strava: 10k run logged")
    pid = propose(store, "Priya runs with the kookaburra club every Tuesday", (a, b))
    assert b"kookaburra" in raw_bytes(store.settings.data_dir)
    report = store.forget_observations([a])
    assert report.proposition_ids == (pid,) and report.rederive_ids == (pid,)
    assert report.requeued_observation_ids == (b,)
    prop = store.get_proposition(pid)
    assert prop.text is None and prop.reasoning is None and prop.retired_cause == "forgotten"  # not served
    assert store.current_propositions().items == ()
    assert store.search_propositions_text("Tuesday run club") == []
    assert store.get_observation(b).status == "pending"  # the engine re-derives it from what is left
    with store.db.read() as conn:
        assert [tuple(r) for r in conn.execute("SELECT observation_id, proposition_id FROM rederive")] == [(b, pid)]
    assert b"kookaburra" not in raw_bytes(store.settings.data_dir)


def test_a_proposition_whose_remaining_evidence_was_pruned_is_retired(store: Store) -> None:
    a = add(store, "calendar: run club Tuesday at the kookaburra track", minutes=5 * 24 * 60 - 60)
    b = add(store, "strava: 10k run logged")
    pid = propose(store, "Priya runs with the kookaburra club every Tuesday", (a, b))
    assert store.prune(1, now=T0 + timedelta(days=5)) == 1  # b's content is gone, a's is kept
    report = store.forget_observations([a])
    assert report.proposition_ids == (pid,) and report.rederive_ids == () and report.requeued_observation_ids == ()
    assert store.get_proposition(pid).retired_cause == "forgotten"
    assert store.pending_count() == 0


def test_every_version_that_rested_on_forgotten_evidence_is_scrubbed(store: Store) -> None:
    a = add(store, "first sighting of wombatreport")
    old = propose(store, "Priya reads the wombatreport", (a,))
    b = add(store, "second sighting", minutes=5)
    new = propose(store, "Priya reads the wombatreport weekly", (b,), supersedes=(old,))
    report = store.forget_observations([a])
    # the new version carried a forward as evidence: it may restate it, so it is re-derived from b
    assert report.proposition_ids == (old, new) and report.rederive_ids == (new,)
    assert store.get_proposition(old).text is None and store.get_proposition(new).text is None
    assert b"wombatreport" not in raw_bytes(store.settings.data_dir)


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
