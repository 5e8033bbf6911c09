"""The vector index against a real SQLite store, its real vectors.sqlite3 (plaintext here; encrypted in
test_encryption_index.py) and the real MiniLM model; a data dir an older version left with chroma/; and
a real Chroma server (GUM_CHROMA_URL)."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft, utcnow
from gum_mcp.index.embeddings import ChromaEmbeddingFunction
from gum_mcp.index.vector_index import (
    COLLECTION_NAMES,
    CURSOR_KEY,
    IndexUnavailable,
    VectorIndex,
    open_index,
    run_reindex,
)
from gum_mcp.retrieval import search
from gum_mcp.store import Store
from gum_mcp.store.db import connect_with
from gum_mcp.store.keys import find_key, store_state
from tests.conftest import REPO, gum_env, make_settings, wait_until
from tests.sqlcipher_pages import every_file_bytes


class HashingEmbedder:
    """A real (if crude) local embedder: hashed bag of words. Stands in for 'another model'."""

    def __init__(self, dim: int, name: str | None = None) -> None:
        self.dim = dim
        self.name = name or f"hashing:{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            out[row] /= max(float(np.linalg.norm(out[row])), 1e-12)
        return out


def add(store: Store, *texts: str, confidence: int = 7, decay: int = 5, at=None) -> list[int]:
    new = tuple(NewProposition(draft=PropositionDraft(text=t, confidence=confidence, decay=decay)) for t in texts)
    return store.complete_batch(BatchResult(observation_ids=(), new=new), at=at)


def chroma_ids(index: VectorIndex, collection: str) -> set[int]:
    found = index._collection(collection).get(include=[])
    return {int(i) for i in found["ids"]}


def index_files(settings) -> list[Path]:
    """vectors.sqlite3 and its -wal and -shm files."""
    return sorted(settings.data_dir.glob(settings.vectors_path.name + "*"))


TEXTS = (
    "Priya is training for the Porto Half Marathon on March 22.",
    "Priya prefers the Dracula dark theme in VS Code.",
    "Priya is vegetarian and orders the harvest grain bowl without feta.",
    "Sam and Priya are planning ten days in Lisbon in March.",
)


def test_catch_up_indexes_ids_vectors_and_metadata_but_never_text(settings, store, embedder):
    ids = add(store, *TEXTS, confidence=8, decay=6)
    secret = "Quetzalcoatlus"
    obs = store.add_observation(f"Screen shows a {secret} poster on the wall")
    with VectorIndex.open(settings, embedder) as index:
        report = index.catch_up(store)
        assert set(report.rebuilt) == {"propositions", "observations"}
        assert chroma_ids(index, "propositions") == set(ids)
        assert chroma_ids(index, "observations") == {obs.id}
        got = index._collection("propositions").get(ids=[str(ids[0])], include=["metadatas", "documents",
                                                                                 "embeddings"])
        meta = got["metadatas"][0]
        assert meta["confidence"] == 8 and meta["decay"] == 6
        assert isinstance(meta["created_at"], float) and isinstance(meta["last_supported_at"], float)
        assert got["documents"] == [None]
        assert np.allclose(got["embeddings"][0], embedder.embed([TEXTS[0]])[0], atol=1e-5)
        for collection in ("propositions", "observations"):
            col = index._collection(collection)
            assert col.metadata["gum_embedder"] == embedder.name and col.metadata["gum_dim"] == embedder.dim
            assert col.metadata[CURSOR_KEY] == store.index_log_max_seq()
            # Chroma is handed our embedding function, never its default (downloaded ONNX) one.
            assert isinstance(col._embedding_function, ChromaEmbeddingFunction)
        assert index.client.get_settings().anonymized_telemetry is False
        # What the index applied is compacted out of the log.
        assert store.index_log_after(0) == []
        assert store.index_log_compacted() == store.index_log_max_seq()
    # No text in the index's files: the store is the only place it lives.
    assert not settings.chroma_dir.exists()
    vector_files = index_files(settings)
    assert settings.vectors_path in vector_files
    for path in vector_files:
        data = path.read_bytes()
        assert secret.encode() not in data and b"Dracula" not in data, path
        assert path.stat().st_mode & 0o777 == 0o600, path


def test_catch_up_applies_a_commit_the_index_missed(settings, store, embedder):
    first = add(store, *TEXTS[:2])
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
    # Committed while no index was listening (a crash between commit and indexing).
    later = add(store, *TEXTS[2:])
    with VectorIndex.open(settings, embedder) as index:
        assert chroma_ids(index, "propositions") == set(first)
        report = index.catch_up(store)
        assert report.rebuilt == [] and report.upserted == 2
        assert chroma_ids(index, "propositions") == set(first + later)
        assert index.catch_up(store).changed is False  # idempotent


def test_a_forget_done_by_another_process_leaves_the_index(settings, store, embedder):
    ids = add(store, *TEXTS)
    obs = store.add_observation("Strava shows a morning run of 8.2 km")
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        assert ids[1] in chroma_ids(index, "propositions") and obs.id in chroma_ids(index, "observations")
    script = (
        "import sys; from gum_mcp.config import load_settings; from gum_mcp.store import Store\n"
        "with Store.open(load_settings()) as s:\n"
        f"    s.forget_proposition({ids[1]}); s.forget_observations([{obs.id}])\n"
    )
    subprocess.run([sys.executable, "-c", script], env=gum_env(settings.data_dir), cwd=REPO, check=True,
                   timeout=120)
    with VectorIndex.open(settings, embedder) as index:
        report = index.catch_up(store)
        assert report.deleted == 2 and report.upserted == 0
        assert chroma_ids(index, "propositions") == set(ids) - {ids[1]}
        assert chroma_ids(index, "observations") == set()


def test_retired_propositions_leave_the_index_and_successors_enter(settings, store, embedder):
    old, other = add(store, TEXTS[0], TEXTS[1])
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        revised = NewProposition(
            draft=PropositionDraft(text="Priya is training for the Porto Half Marathon and a spring 10k.",
                                   confidence=8, decay=6),
            supersedes=(old,), cause="revised",
        )
        [new] = store.complete_batch(BatchResult(observation_ids=(), new=(revised,), retire={other: "feedback"}))
        report = index.catch_up(store)
        assert chroma_ids(index, "propositions") == {new}
        assert report.deleted == 2 and report.upserted == 1


def test_repeated_ops_collapse_and_dead_items_are_never_embedded(settings, store, embedder):
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        [a, b] = add(store, TEXTS[0], TEXTS[1])
        obs = store.add_observation("a passing screen")
        store.complete_batch(BatchResult(observation_ids=(), retire={a: "feedback"}))
        store.forget_observations([obs.id])
        entries = store.index_log_after(index.cursor("propositions"))
        assert len(entries) == 5  # a: upsert, delete; b: upsert; obs: upsert, delete
        report = index.catch_up(store)
        assert report.upserted == 1  # only b was embedded
        assert chroma_ids(index, "propositions") == {b} and chroma_ids(index, "observations") == set()


def test_a_change_of_model_or_dimension_drops_and_rebuilds(settings, store, embedder):
    ids = add(store, *TEXTS)
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
    for other in (HashingEmbedder(64), HashingEmbedder(embedder.dim, name="hashing:same-dim")):
        with VectorIndex.open(settings, other) as index:
            assert not index.available("propositions")  # dropped on open: never a mixed index
            report = index.catch_up(store)
            assert set(report.rebuilt) == {"propositions", "observations"}
            col = index._collection("propositions")
            assert col.metadata["gum_embedder"] == other.name and col.metadata["gum_dim"] == other.dim
            assert chroma_ids(index, "propositions") == set(ids)
            [hit] = index.query("propositions", "Dracula dark theme VS Code", 1)
            assert hit.id == ids[1]
    # A read-only opener on a mismatched index refuses to use it rather than mixing spaces.
    index, _ = open_index(settings, embedder=embedder, read_only=True)
    assert index is not None
    with index:
        assert not index.available("propositions") and "hashing:same-dim" in index.problem("propositions")


def test_rebuild_after_deleting_the_index_file_gives_the_same_results(settings, store, embedder):
    add(store, *TEXTS)
    add(store, "Priya runs three mornings a week before work.", "Jordan wants the Q4 forecast by Thursday.")
    now = utcnow()
    queries = ("what race is she training for", "her diet", "trip with Sam", "deadline from Jordan")
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        before = [[(h.id, round(h.score, 5)) for h in search(store, index, q, 3, now=now)] for q in queries]
    for path in index_files(settings):
        path.unlink()
    with VectorIndex.open(settings, embedder) as index:
        assert index.cursor("propositions") < 0
        report = index.catch_up(store)
        assert set(report.rebuilt) == {"propositions", "observations"}
        after = [[(h.id, round(h.score, 5)) for h in search(store, index, q, 3, now=now)] for q in queries]
    assert after == before


def test_an_idle_catch_up_writes_nothing(settings, store, embedder):
    # The owner catches up every second: with nothing new it must not write to SQLite at all.
    add(store, *TEXTS[:2])
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        with store.db.read() as conn:
            before = conn.total_changes
        for _ in range(3):
            assert not index.catch_up(store).changed
        with store.db.read() as conn:
            assert conn.total_changes == before


def test_an_index_behind_the_compacted_log_rebuilds(settings, store, embedder):
    ids = add(store, *TEXTS[:2])
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
    # Another consumer compacted entries this index never saw (e.g. it was restored from a backup).
    more = add(store, *TEXTS[2:])
    store.compact_index_log(store.index_log_max_seq())
    with VectorIndex.open(settings, embedder) as index:
        report = index.catch_up(store)
        assert "propositions" in report.rebuilt
        assert chroma_ids(index, "propositions") == set(ids + more)


def test_an_index_built_from_another_database_rebuilds(tmp_path, embedder):
    one, two = make_settings(tmp_path / "one"), make_settings(tmp_path / "two")
    with Store.open(one) as store, VectorIndex.open(one, embedder) as index:
        add(store, *TEXTS)
        index.catch_up(store)
    two.data_dir.mkdir(mode=0o700)
    for path in index_files(one):
        shutil.copy(path, two.data_dir / path.name)
    with Store.open(two) as store, VectorIndex.open(two, embedder) as index:
        [only] = add(store, "Kavya is visiting Toronto over the winter break.")
        report = index.catch_up(store)
        assert set(report.rebuilt) == {"propositions", "observations"}
        assert chroma_ids(index, "propositions") == {only}


def test_rebuild_reports_progress_and_reindex_counts(settings, store, embedder):
    ids = add(store, *TEXTS)
    store.add_observation("Slack DM from Mei: lunch at Green Bowl?")
    seen: list[tuple[str, int, int]] = []
    assert run_reindex(settings, lambda c, done, total: seen.append((c, done, total))) == len(ids) + 1
    assert ("propositions", len(ids), len(ids)) in seen and ("observations", 1, 1) in seen
    assert seen[0] == ("propositions", 0, len(ids))


def test_read_only_opens_never_write(settings, store, embedder):
    index, reason = open_index(settings, embedder=embedder, read_only=True)
    assert index is None and "no vector index" in reason
    assert index_files(settings) == []
    with VectorIndex.open(settings, embedder) as writer:
        add(store, TEXTS[0])
        writer.catch_up(store)
    index, reason = open_index(settings, embedder=embedder, read_only=True)
    assert index is not None and reason is None
    with index:
        assert index.available("propositions")
        with pytest.raises(IndexUnavailable):
            index.catch_up(store)


def stored_vector(settings, collection: str, item_id: int) -> bytes:
    """The bytes of a vector as the index stored them, read from vectors.sqlite3 on a connection of its own."""
    conn = connect_with(settings.vectors_path, find_key(settings))
    try:
        [(blob,)] = conn.execute("SELECT embedding FROM vectors WHERE collection = ? AND id = ?",
                                 (COLLECTION_NAMES[collection], str(item_id))).fetchall()
    finally:
        conn.close()
    return bytes(blob)


def pieces(vector: bytes) -> list[bytes]:
    """The whole vector and runs of 12 floats from its start, middle and end: a partial copy is caught too."""
    middle = len(vector) // 2
    return [vector, vector[:48], vector[middle : middle + 48], vector[-48:]]


def test_a_forgotten_items_vector_leaves_every_file_while_the_index_is_open(settings, store, embedder):
    ids = add(store, *TEXTS)
    obs = store.add_observation("Strava shows a morning run of 8.2 km along the Douro")
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        gone = pieces(stored_vector(settings, "propositions", ids[0])) + pieces(
            stored_vector(settings, "observations", obs.id))
        kept = stored_vector(settings, "propositions", ids[1])
        blob = every_file_bytes(settings.data_dir)
        assert all(piece in blob for piece in gone)  # the scan below sees vectors where they are
        store.forget_proposition(ids[0])
        store.forget_observations([obs.id])
        assert index.catch_up(store).deleted == 2
        # the index is still open (its WAL is not folded back by a close): the vectors are gone all the same
        blob = every_file_bytes(settings.data_dir)
        assert [n for n, piece in enumerate(gone) if piece in blob] == []
        assert kept in blob
        assert {h.id for h in index.query("propositions", TEXTS[0], 4)} == set(ids) - {ids[0]}


def test_forget_on_the_command_line_with_no_server_takes_the_vectors_out_at_once(settings, store, embedder):
    ids = add(store, *TEXTS)
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
    gone = pieces(stored_vector(settings, "propositions", ids[0]))
    kept = stored_vector(settings, "propositions", ids[1])
    assert all(piece in every_file_bytes(settings.data_dir) for piece in gone)
    forgot = subprocess.run([sys.executable, "-m", "gum_mcp", "forget", "--proposition", str(ids[0])], cwd=REPO,
                            env=gum_env(settings.data_dir), capture_output=True, text=True, timeout=120)
    assert forgot.returncode == 0, forgot.stderr
    blob = every_file_bytes(settings.data_dir)  # no server ran, and none has started since
    assert [n for n, piece in enumerate(gone) if piece in blob] == []
    assert kept in blob


def test_a_search_while_the_vectors_are_being_built_says_it_is_keyword_only(settings, store, embedder):
    """After an upgrade from chroma/, or on a data dir whose index was never built, the first catch-up builds
    the collections; until then an answer without the vector side says so instead of looking complete."""
    [race] = add(store, "Priya is training for the Porto half marathon")
    with VectorIndex.open(settings, embedder) as index:
        notes: list[str] = []
        assert search(store, index, "running race in Portugal", 5, notes=notes) == []
        assert notes == ["keyword search only for propositions: gum_propositions is being built"]
        index.catch_up(store)
        notes = []
        assert [h.id for h in search(store, index, "running race in Portugal", 5, notes=notes)] == [race]
        assert notes == []


def legacy_chroma_index(settings, store: Store, embedder) -> None:
    """What a version before vectors.sqlite3 left in a plaintext data dir: the index in Chroma's own files."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(settings.chroma_dir),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    with VectorIndex(client, embedder, location=str(settings.chroma_dir)) as index:
        index.catch_up(store)
    chromadb.api.client.SharedSystemClient.clear_system_cache()


def test_an_old_chroma_folder_is_deleted_by_the_owner_and_the_index_rebuilt(settings, store, embedder, caplog):
    ids = add(store, *TEXTS)
    legacy_chroma_index(settings, store, embedder)
    assert (settings.chroma_dir / "chroma.sqlite3").exists() and not settings.vectors_path.exists()
    # A follower (read-only) neither deletes it nor uses it: no index yet (keyword search meanwhile).
    index, reason = open_index(settings, embedder=embedder, read_only=True)
    assert index is None and "no vector index" in reason
    assert (settings.chroma_dir / "chroma.sqlite3").exists() and index_files(settings) == []

    with caplog.at_level(logging.INFO, logger="gum_mcp.index"):
        index, reason = open_index(settings, embedder=embedder)  # the owner
    assert index is not None, reason
    with index:
        assert not settings.chroma_dir.exists()
        moved = [r for r in caplog.records if "moved" in r.getMessage()]
        assert len(moved) == 1 and moved[0].levelno == logging.INFO
        assert "vectors.sqlite3" in moved[0].getMessage() and "rebuilt" in moved[0].getMessage()
        report = index.catch_up(store)
        assert set(report.rebuilt) == {"propositions", "observations"} and report.upserted == len(ids)
        [hit] = search(store, index, "what does she eat", 1)
        assert hit.id == ids[2] and "vector" in hit.signals
    assert store_state(settings.vectors_path) == "plaintext" and not settings.chroma_dir.exists()
    follower, reason = open_index(settings, embedder=embedder, read_only=True)
    assert follower is not None, reason
    with follower:
        assert follower.query("propositions", "what does she eat", 1)[0].id == ids[2]


def test_no_embedder_means_no_index_and_a_reason(tmp_path):
    settings = make_settings(tmp_path / "data", embedding="none")
    index, reason = open_index(settings)
    assert index is None and "disabled" in reason
    with pytest.raises(IndexUnavailable):
        run_reindex(settings)


def test_query_filters_and_ids(settings, store, embedder):
    old = add(store, *TEXTS[:2], confidence=3, at=utcnow() - timedelta(days=40))
    new = add(store, *TEXTS[2:], confidence=9)
    with VectorIndex.open(settings, embedder) as index:
        index.catch_up(store)
        hits = index.query("propositions", "food and diet", 4, include_embeddings=True)
        assert hits[0].id == new[0] and hits[0].embedding.shape == (embedder.dim,)
        assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
        assert {h.id for h in index.query("propositions", "food", 4, where={"confidence": {"$gte": 5}})} == set(new)
        assert {h.id for h in index.query("propositions", "food", 4, ids=old)} == set(old)
        assert index.query("propositions", "food", 4, ids=[]) == []
        vectors = index.embeddings("propositions", [*old, 999_999])
        assert set(vectors) == set(old)
    assert COLLECTION_NAMES["propositions"] == "gum_propositions"
    assert settings.vectors_path.exists() and not settings.chroma_dir.exists()


@pytest.fixture
def chroma_server(tmp_path):
    """A real Chroma server (`chroma run`) on a free local port: the GUM_CHROMA_URL stand-in."""
    import socket
    import urllib.request

    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as response:
                return response.status == 200
        except OSError:
            assert proc.poll() is None, "chroma run exited"
            return False

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)

    try:
        wait_until(up, timeout=60)
        yield url, stop
    finally:
        stop()


def test_a_chroma_server_via_gum_chroma_url(tmp_path, chroma_server, embedder, caplog):
    url, stop = chroma_server
    settings = make_settings(tmp_path / "data", chroma_url=url)
    with Store.open(settings) as store:
        ids = add(store, *TEXTS)
        index, reason = open_index(settings, embedder=embedder)
        assert index is not None, reason
        with index:
            assert index.client.get_settings().chroma_api_impl == "chromadb.api.fastapi.FastAPI"  # HTTP
            index.catch_up(store)
            [hit] = index.query("propositions", "what does she eat", 1)
            assert hit.id == ids[2]
            store.forget_proposition(ids[2])
            index.catch_up(store)
            assert chroma_ids(index, "propositions") == set(ids) - {ids[2]}
            assert search(store, index, "Dracula", 1)[0].signals == ("bm25", "vector")
            # The server goes away: searches still answer, from BM25, and say why in the log.
            stop()
            hits = search(store, index, "Dracula theme", 1)
            assert hits[0].id == ids[1] and hits[0].signals == ("bm25",)
            assert any("vector search failed" in r.getMessage() for r in caplog.records)
    assert not settings.chroma_dir.exists() and index_files(settings) == []  # nothing written locally
