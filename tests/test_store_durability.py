"""Crash safety, concurrent writers and permissions: real processes, real files."""

from __future__ import annotations

import signal
import sqlite3
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from gum_mcp.domain import NewObservation
from gum_mcp.store import Store
from gum_mcp.store.db import BATCH_CRASH_POINTS, CRASH_ENV
from tests.conftest import PYTHON, REPO, gum_env, make_settings

# A child process that completes one batch: two new propositions, one revision, one reinforcement.
BATCH_WORKER = textwrap.dedent(
    """
    from gum_mcp.config import load_settings
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, Reinforcement
    from gum_mcp.store import Store

    store = Store.open(load_settings())
    batch = store.claim_batch(50)
    ids = tuple(o.id for o in batch)
    current = [p.id for p in store.current_propositions().items]
    new = [
        NewProposition(draft=PropositionDraft(text=f"claim {i}", reasoning="r", confidence=6, decay=5),
                       evidence=(oid,))
        for i, oid in enumerate(ids[:2])
    ]
    new.append(NewProposition(draft=PropositionDraft(text="revised", reasoning="r", confidence=7, decay=5),
                              evidence=(ids[2],), supersedes=(current[0],), cause="revised"))
    store.complete_batch(BatchResult(
        observation_ids=ids, new=tuple(new), skipped={ids[3]: "audit"},
        reinforce=(Reinforcement(proposition_id=current[1], evidence=(ids[4],)),),
    ))
    print("done")
    """
)


def _seed(data_dir: Path) -> None:
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft

    with Store.open(make_settings(data_dir)) as store:
        seed = store.add_observations([NewObservation(content=f"seed {i}") for i in range(2)])
        store.complete_batch(BatchResult(
            observation_ids=tuple(o.id for o in seed),
            new=tuple(NewProposition(draft=PropositionDraft(text=f"existing {o.id}", reasoning="r", confidence=5,
                                                            decay=5), evidence=(o.id,)) for o in seed),
        ))
        store.add_observations([NewObservation(content=f"new observation {i}") for i in range(6)])


def _run_worker(data_dir: Path, crash: str | None) -> subprocess.CompletedProcess:
    extra = {CRASH_ENV: crash} if crash else {}
    return subprocess.run([PYTHON, "-c", BATCH_WORKER], env=gum_env(data_dir, **extra), cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("point", BATCH_CRASH_POINTS)
def test_sigkill_at_every_batch_commit_point_leaves_the_database_whole(tmp_path: Path, point: str) -> None:
    data_dir = tmp_path / "data"
    _seed(data_dir)
    crashed = _run_worker(data_dir, point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    conn = sqlite3.connect(data_dir / "gum.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.execute("INSERT INTO observations_fts (observations_fts) VALUES ('integrity-check')")
    conn.execute("INSERT INTO propositions_fts (propositions_fts) VALUES ('integrity-check')")
    conn.close()

    with Store.open(make_settings(data_dir)) as store:
        stats = store.stats()
        if point == "batch:after_commit":
            assert stats.observations["pending"] == 0
            assert stats.propositions_current == 4 and stats.propositions_retired == 1
            return
        # nothing of the batch was applied: it is all still pending, no half-written propositions
        assert stats.observations["pending"] == 6
        assert stats.propositions_current == 2 and stats.propositions_retired == 0
        assert stats.evidence_links == 2

    restarted = _run_worker(data_dir, None)
    assert restarted.returncode == 0, restarted.stderr
    with Store.open(make_settings(data_dir)) as store:
        stats = store.stats()
        assert stats.observations == {"pending": 0, "processed": 7, "skipped": 1, "failed": 0}
        assert stats.propositions_current == 4 and stats.propositions_retired == 1


WRITER = textwrap.dedent(
    """
    import sys
    from gum_mcp.config import load_settings
    from gum_mcp.domain import NewObservation
    from gum_mcp.store import Store

    name, count = sys.argv[1], int(sys.argv[2])
    store = Store.open(load_settings())
    for i in range(count):
        if i % 2:
            store.add_observation(f"{name} single {i}", source=name)
        else:
            store.add_observations([NewObservation(content=f"{name} batch {i}.{j}", source=name) for j in range(5)])
    print("ok")
    """
)


def test_two_processes_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    Store.open(make_settings(data_dir)).close()
    count = 200
    procs = [
        subprocess.Popen([PYTHON, "-c", WRITER, name, str(count)], env=gum_env(data_dir), cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("alpha", "beta")
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Store.open(make_settings(data_dir)) as store:
        expected_each = (count // 2) * 5 + count // 2
        for name in ("alpha", "beta"):
            assert len(store.observations(source=name, limit=10_000)) == expected_each
        ids = [o.id for o in store.observations(limit=10_000)]
        assert len(ids) == len(set(ids)) == 2 * expected_each


def test_data_dir_is_private_and_files_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    with Store.open(make_settings(data_dir)) as store:
        store.add_observation("something private")
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        files = [p for p in data_dir.iterdir() if p.name.startswith("gum.sqlite3")]
        assert {p.name for p in files} >= {"gum.sqlite3", "gum.sqlite3-wal"}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_durability_full_is_applied(tmp_path: Path) -> None:
    with Store.open(make_settings(tmp_path / "data", durability="full")) as store, store.db.read() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Store.open(make_settings(tmp_path / "data2")) as store, store.db.read() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
