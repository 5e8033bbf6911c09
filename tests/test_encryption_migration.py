"""`gum-mcp encrypt` and `gum-mcp key rotate` under SIGKILL at every crash point: the store is always
whole (old or new), and running the command again finishes the job. Real processes, real files."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.index.vector_index import VectorIndex
from gum_mcp.observers.files import FileCache
from gum_mcp.observers.frames import FrameStore
from gum_mcp.store import Store
from gum_mcp.store.crypto import MAGIC, Sealer
from gum_mcp.store.db import CRASH_ENV
from gum_mcp.store.encrypt import ENCRYPT_CRASH_POINTS, ROTATE_CRASH_POINTS
from gum_mcp.store.keys import file_sealer, find_key, read_marker, store_state
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.test_vector_index import legacy_chroma_index, stored_vector

pytestmark = pytest.mark.timeout(240)

WORDS = (b"quokkaclinic", b"zebrafinch", b"Priya")
IMAGE = b"\x89PNG zebrafinch on screen"
FILE = b"Priya: quokkaclinic notes\n"
CLAIM = "Priya sees a doctor at quokkaclinic"


def seed(data_dir: Path, *, encrypt: bool, embedder=None, legacy: bool = False) -> int:
    """A store with one proposition and its observation, a screenshot and a cached file; with `embedder` its
    vector index too: vectors.sqlite3, or with `legacy` the chroma/ folder a version before it left."""
    settings = make_settings(data_dir, encrypt=encrypt)
    with Store.open(settings) as store:
        obs = store.add_observation("Priya books quokkaclinic for Tuesday", kind="screen")
        [pid] = store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
            draft=PropositionDraft(text=CLAIM, reasoning="zebrafinch calendar", confidence=7, decay=4),
            evidence=(obs.id,)),)))
        if embedder is not None and legacy:
            legacy_chroma_index(settings, store, embedder)
        elif embedder is not None:
            with VectorIndex.open(settings, embedder) as index:
                index.catch_up(store)
    FrameStore(settings).save(datetime.now(UTC), [IMAGE], "png", app="XTerm", title="Priya's zebrafinch",
                              window_source="test", monitors=[])
    FileCache(settings.files_cache_dir, file_sealer(settings)).put("/home/p/notes.md", FILE)
    return pid


def run(data_dir: Path, *argv: str, crash: str | None = None) -> subprocess.CompletedProcess:
    extra = {CRASH_ENV: crash} if crash else {}
    return subprocess.run([PYTHON, "-m", "gum_mcp", *argv], cwd=REPO, env=gum_env(data_dir, **extra),
                          capture_output=True, text=True, timeout=180)


def assert_whole(data_dir: Path, pid: int) -> None:
    """Everything reads back, whatever state the data dir is in."""
    settings = make_settings(data_dir)
    with Store.open(settings) as store:
        assert store.get_proposition(pid).text == CLAIM
        assert store.observations(limit=5)[0].content == "Priya books quokkaclinic for Tuesday"
        assert store.search_propositions_text("quokkaclinic", limit=5)[0][0] == pid
        with store.db.read() as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    [frame] = FrameStore(settings).pending()
    assert frame.read_images() == [IMAGE] and frame.title == "Priya's zebrafinch"
    assert FileCache(settings.files_cache_dir, file_sealer(settings)).get("/home/p/notes.md") == FILE


def assert_no_plaintext(data_dir: Path, *needles: bytes) -> None:
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [w for w in (*WORDS, *needles) if w and w in data], path
            assert b"SQLite format 3" not in data[:16], path


@pytest.mark.parametrize("point", ENCRYPT_CRASH_POINTS)
def test_encrypt_killed_at_every_step_leaves_a_whole_store_and_finishes_when_run_again(
        tmp_path: Path, point: str, embedder) -> None:
    data_dir = tmp_path / "data"
    legacy = point == "encrypt:chroma"  # the step that moves an older version's chroma/ folder
    pid = seed(data_dir, encrypt=False, embedder=embedder, legacy=legacy)
    assert store_state(data_dir / "gum.sqlite3") == "plaintext"
    if legacy:
        assert (data_dir / "chroma").exists() and not (data_dir / "vectors.sqlite3").exists()
        vector = b""
    else:
        assert store_state(data_dir / "vectors.sqlite3") == "plaintext" and not (data_dir / "chroma").exists()
        vector = stored_vector(make_settings(data_dir), "propositions", pid)

    crashed = run(data_dir, "encrypt", crash=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    before_swap = point in ("encrypt:key", "encrypt:copied")
    assert store_state(data_dir / "gum.sqlite3") == ("plaintext" if before_swap else "encrypted")
    assert_whole(data_dir, pid)

    finished = run(data_dir, "encrypt")
    assert finished.returncode == 0, finished.stderr
    assert "is encrypted" in finished.stdout or "already encrypted" in finished.stdout
    assert store_state(data_dir / "gum.sqlite3") == "encrypted"
    assert not (data_dir / "chroma").exists() and store_state(data_dir / "vectors.sqlite3") == "encrypted"
    assert not list(data_dir.glob("*.rekeying*"))
    assert_whole(data_dir, pid)
    assert_no_plaintext(data_dir, vector[:48], vector[-48:])
    settings = make_settings(data_dir)
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        report = index.catch_up(store)
        assert report.rebuilt == [] and report.upserted == 0  # the vectors moved over: nothing re-embedded
        assert index.query("propositions", "medical appointment", 1)[0].id == pid


def test_encrypt_refuses_while_another_process_holds_the_data_dir(tmp_path: Path) -> None:
    from tests.test_encryption import HOLDER

    data_dir = tmp_path / "data"
    pid = seed(data_dir, encrypt=False)
    holder = subprocess.Popen([PYTHON, "-c", HOLDER], cwd=REPO, env=gum_env(data_dir), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open", holder.stderr.read()
        refused = run(data_dir, "encrypt")
        assert refused.returncode == 2 and "another gum-mcp process has" in refused.stderr
    finally:
        holder.communicate("", timeout=60)
    assert store_state(data_dir / "gum.sqlite3") == "plaintext"
    assert_whole(data_dir, pid)


@pytest.mark.parametrize("point", ROTATE_CRASH_POINTS)
def test_key_rotate_killed_at_every_step_leaves_a_whole_store_and_finishes_when_run_again(
        tmp_path: Path, point: str) -> None:
    import keyring

    data_dir = tmp_path / "data"
    pid = seed(data_dir, encrypt=True)
    old = find_key(make_settings(data_dir))
    assert old is not None

    crashed = run(data_dir, "key", "rotate", crash=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert read_marker(data_dir)["rotating_from"]["key_id"] == old.key_id
    assert_whole(data_dir, pid)  # readable under either key meanwhile

    finished = run(data_dir, "key", "rotate")
    assert finished.returncode == 0, finished.stderr
    new = find_key(make_settings(data_dir))
    assert new is not None and new.key_id != old.key_id and new.previous is None
    assert "rotating_from" not in read_marker(data_dir)
    assert keyring.get_password("gum-mcp", old.key_id) is None
    assert_whole(data_dir, pid)
    assert_no_plaintext(data_dir)
    sealer = Sealer([new.secret])
    for path in [*(data_dir / "screens").rglob("*"), *(data_dir / "files-cache").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert data.startswith(MAGIC) and sealer.sealed_with_current(data), path
