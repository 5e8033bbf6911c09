"""The vector index of an encrypted data dir: vectors in the encrypted vectors.sqlite3, searched in
memory (gum_mcp/index/vector_store.py). The index's own tests (test_vector_index.py, on a plaintext
vectors.sqlite3) run here again on it, unchanged."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.index.vector_index import VectorIndex, make_client, open_index, run_reindex
from gum_mcp.index.vector_store import SealedClient, SealedCollection
from gum_mcp.runtime import Runtime
from gum_mcp.store import Store
from gum_mcp.store.encrypt import describe_encryption, encryption_status, export_plaintext
from gum_mcp.store.keys import store_state
from tests import test_vector_index as plain
from tests.conftest import eventually, make_settings

FACTS = (
    "Priya is training for the Porto half marathon in March.",
    "Priya prefers the Dracula dark theme in VS Code.",
    "Jordan Lee wants the Q4 forecast draft by Thursday.",
    "Priya is vegetarian and avoids loud restaurants.",
)


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path / "data", encrypt=True)


# The index's own behaviour, on the encrypted file (the tests that read its raw bytes stay plaintext-only).
test_catch_up_applies_a_commit_the_index_missed = plain.test_catch_up_applies_a_commit_the_index_missed
test_a_forget_done_by_another_process_leaves_the_index = plain.test_a_forget_done_by_another_process_leaves_the_index
test_retired_propositions_leave_the_index_and_successors_enter = (
    plain.test_retired_propositions_leave_the_index_and_successors_enter)
test_repeated_ops_collapse_and_dead_items_are_never_embedded = (
    plain.test_repeated_ops_collapse_and_dead_items_are_never_embedded)
test_a_change_of_model_or_dimension_drops_and_rebuilds = plain.test_a_change_of_model_or_dimension_drops_and_rebuilds
test_an_idle_catch_up_writes_nothing = plain.test_an_idle_catch_up_writes_nothing
test_an_index_behind_the_compacted_log_rebuilds = plain.test_an_index_behind_the_compacted_log_rebuilds
test_rebuild_reports_progress_and_reindex_counts = plain.test_rebuild_reports_progress_and_reindex_counts
test_read_only_opens_never_write = plain.test_read_only_opens_never_write
test_a_forgotten_items_vector_leaves_every_file_while_the_index_is_open = (
    plain.test_a_forgotten_items_vector_leaves_every_file_while_the_index_is_open)


def seed(store: Store, texts=FACTS) -> list[int]:
    ids = []
    for text in texts:
        [pid] = store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(
            draft=PropositionDraft(text=text, confidence=7, decay=5)),)))
        ids.append(pid)
    return ids


def test_an_encrypted_store_gets_the_sealed_index_and_no_chroma_files(settings, store, embedder) -> None:
    ids = seed(store)
    with VectorIndex.open(settings, embedder) as index:
        assert isinstance(index.client, SealedClient) and index.location == str(settings.vectors_path)
        index.catch_up(store)
        hits = index.query("propositions", "getting ready for a running race", 2, include_embeddings=True)
        assert hits[0].id == ids[0] and hits[0].embedding.shape == (embedder.dim,)
        # exact cosine: the same order and similarities as numpy over every stored vector
        stored = index.embeddings("propositions", ids)
        query = index.embed_query("getting ready for a running race")  # the vector the search used
        cosines = {i: float(np.dot(v, query) / np.linalg.norm(v) / np.linalg.norm(query)) for i, v in stored.items()}
        expected = sorted(cosines, key=cosines.get, reverse=True)[:2]
        assert [h.id for h in hits] == expected
        assert [round(h.similarity, 5) for h in hits] == [round(cosines[i], 5) for i in expected]
        assert {h.id for h in index.query("propositions", "food", 4, where={"confidence": {"$gte": 7}})} == set(ids)
        assert {h.id for h in index.query("propositions", "food", 4, ids=ids[1:3])} == set(ids[1:3])
        vector = stored[ids[0]]
    assert not settings.chroma_dir.exists()
    raw = b"".join(p.read_bytes() for p in settings.data_dir.iterdir() if p.name.startswith("vectors.sqlite3"))
    assert vector.tobytes()[:32] not in raw and b"Porto" not in raw
    assert raw[:16] != b"SQLite format 3\x00"


def test_a_plaintext_store_gets_the_same_index_in_a_plaintext_file(tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path / "data", encrypt=False)
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        ids = seed(store)
        index.catch_up(store)
        assert isinstance(index.client, SealedClient) and index.location == str(settings.vectors_path)
        assert index.query("propositions", "getting ready for a running race", 1)[0].id == ids[0]
    assert not settings.chroma_dir.exists() and store_state(settings.vectors_path) == "plaintext"
    with settings.vectors_path.open("rb") as handle:
        assert handle.read(16) == b"SQLite format 3\x00"
    client = make_client(settings, create=False)
    try:
        assert isinstance(client, SealedClient)
        with client.read() as conn:
            assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        client.close()


def test_the_owner_answers_by_keyword_with_a_note_while_the_sealed_index_loads(
        tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "data", encrypt=True, index_wait=0.2)
    with Store.open(settings) as store:
        seed(store)
    assert run_reindex(settings) == len(FACTS)
    gate = threading.Event()
    real_load = SealedCollection.load

    def slow_load(self: SealedCollection) -> None:
        gate.wait(60)  # a big index still being read from vectors.sqlite3
        real_load(self)

    monkeypatch.setattr(SealedCollection, "load", slow_load)

    async def scenario() -> None:
        runtime = Runtime(settings, engine=False, serving=False)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                early = await runtime.search("Porto half marathon training", k=3)
                assert early.note and "keyword search only" in early.note and "loading" in early.note
                assert early.hits and "Porto" in early.hits[0].proposition.text  # BM25 answers meanwhile
                gate.set()

                async def hybrid():
                    result = await runtime.search("getting ready for a running race", k=3)
                    top = result.hits[0] if result.hits else None
                    return result if result.note is None and top and "vector" in top.signals else None

                late = await eventually(hybrid)
                assert "Porto half marathon" in late.hits[0].proposition.text
                tg.cancel_scope.cancel()
        finally:
            gate.set()
            runtime.close()

    anyio.run(scenario)


def test_a_large_sealed_collection_is_searched_through_clusters_and_stays_consistent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From IVF_MIN vectors a query scans the nearest clusters only: nearly the exact top hits, and
    upserts, updates and deletes keep every row in a cluster."""
    from gum_mcp.index import vector_store
    from gum_mcp.store.keys import DataKey

    monkeypatch.setattr(vector_store, "IVF_MIN", 400)
    rng = np.random.default_rng(7)
    topics = rng.normal(size=(40, 64)).astype(np.float32)
    vectors = (topics[rng.integers(0, 40, 2000)] + rng.normal(0, 0.4, (2000, 64))).astype(np.float32)
    client = SealedClient(tmp_path / "vectors.sqlite3", DataKey("ab" * 32, "k", "GUM_DB_KEY", "test"))
    try:
        found = client.get_or_create_collection("gum_test")
        found.upsert([str(i) for i in range(1000)], vectors[:1000], [{"n": i} for i in range(1000)])
        assert found._centroids is not None and len(found._assign) == 1000
        found.upsert([str(i) for i in range(1000, 2000)], vectors[1000:], [{"n": i} for i in range(1000, 2000)])
        assert found._ivf_size == 2000  # doubled: clustered again
        found.delete([str(i) for i in range(0, 2000, 3)])
        found.upsert(["5", "7"], vectors[:2] * 2, [{"n": -1}, {"n": -2}])  # moved rows change cluster
        alive = [i for i in range(2000) if i % 3 or i == 0][1:]
        assert len(found._assign) == found.count() == len(alive)
        unit = found._matrix
        recall = []
        for q in rng.normal(size=(30, 64)).astype(np.float32) + topics[rng.integers(0, 40, 30)]:
            exact = {found._ids[r] for r in np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10]}
            got = set(found.query([q], n_results=10)["ids"][0])
            recall.append(len(got & exact) / 10)
        assert np.mean(recall) >= 0.9
        client.close()
        client = SealedClient(tmp_path / "vectors.sqlite3", DataKey("ab" * 32, "k", "GUM_DB_KEY", "test"))
        reloaded = client.get_collection("gum_test")  # the writer loads, then clusters, on open
        assert reloaded.count() == len(alive) and reloaded._centroids is not None
        assert reloaded.get(ids=["5"], include=["embeddings"])["embeddings"][0] == pytest.approx(vectors[0] * 2,
                                                                                                  rel=1e-5)
    finally:
        client.close()


@pytest.mark.parametrize("clustered", [False, True])
def test_several_queries_in_one_call_find_what_each_finds_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clustered: bool) -> None:
    """A call with several query vectors (a batch's drafts) answers each as a call of its own would: whole
    scans share one matmul, clustered scans and id filters go query by query."""
    from gum_mcp.index import vector_store
    from gum_mcp.store.keys import DataKey

    monkeypatch.setattr(vector_store, "IVF_MIN", 400 if clustered else 10_000)
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(1200, 32)).astype(np.float32)
    client = SealedClient(tmp_path / "vectors.sqlite3", DataKey("ab" * 32, "k", "GUM_DB_KEY", "test"))
    try:
        found = client.get_or_create_collection("gum_test")
        assert found.query(rng.normal(size=(3, 32)), n_results=5)["ids"] == [[], [], []]  # empty: no hits
        found.upsert([str(i) for i in range(1200)], vectors, [{"n": i % 3} for i in range(1200)])
        assert (found._centroids is not None) == clustered
        queries = rng.normal(size=(6, 32)).astype(np.float32)
        for kwargs in ({}, {"ids": [str(i) for i in range(0, 1200, 7)]}, {"where": {"n": 1}}):
            together = found.query(queries, n_results=8, include=["distances", "embeddings"], **kwargs)
            for row, query in enumerate(queries):
                alone = found.query([query], n_results=8, include=["distances", "embeddings"], **kwargs)
                assert together["ids"][row] == alone["ids"][0], kwargs
                assert together["distances"][row] == pytest.approx(alone["distances"][0], abs=1e-5)
                np.testing.assert_allclose(together["embeddings"][row], alone["embeddings"][0])
            if not kwargs:  # the exact top hits, where every row is scanned
                exact = np.argsort(-(found._matrix @ (queries[0] / np.linalg.norm(queries[0]))))[:8]
                assert clustered or together["ids"][0] == [found._ids[r] for r in exact]
    finally:
        client.close()


def test_the_scan_gives_numpys_cosines_on_onnxruntime_and_off_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from gum_mcp.index import cosines as scan

    session = scan._onnx_session()
    assert session is not None  # onnxruntime can run it here
    ran: list[tuple[int, int]] = []  # the scans that reached onnxruntime: (rows, queries)

    class Counting:
        def run(self, feeds):
            ran.append((len(feeds["a"]), feeds["b"].shape[1]))
            return session.run(feeds)

    monkeypatch.setattr(scan, "_onnx_session", Counting)
    rng = np.random.default_rng(5)
    for n, m in ((10_000, 5), (10_000, 1), (300, 1), (0, 3)):
        rows, queries = rng.normal(size=(n, 384)).astype(np.float32), rng.normal(size=(m, 384)).astype(np.float32)
        got = scan.cosines(rows, queries)
        assert got.shape == (m, n) and got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_allclose(got, (rows @ queries.T).T, rtol=1e-4, atol=1e-4)
    assert ran == [(10_000, 5), (10_000, 1)]  # the large ones on onnxruntime; the small and the empty in numpy


def test_decrypt_to_copies_the_index_in_plaintext_and_the_copy_opens_without_a_key(tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        ids = seed(store)
        index.catch_up(store)
    out = tmp_path / "copy"
    written = export_plaintext(settings, out)
    assert {out / "gum.sqlite3", out / "vectors.sqlite3"} <= set(written)
    assert store_state(out / "gum.sqlite3") == store_state(out / "vectors.sqlite3") == "plaintext"
    copy = make_settings(out, encrypt=False)
    with Store.open(copy) as store, VectorIndex.open(copy, embedder) as index:
        report = index.catch_up(store)
        assert report.rebuilt == [] and report.upserted == 0  # the vectors came along: nothing embedded again
        assert index.query("propositions", "getting ready for a running race", 1)[0].id == ids[0]
    assert not copy.chroma_dir.exists() and not (out / "encryption.json").exists()
    assert store_state(settings.vectors_path) == "encrypted"  # the data dir itself is unchanged


def test_a_plaintext_vectors_file_beside_an_encrypted_store_is_rebuilt_by_the_owner(tmp_path: Path, embedder) -> None:
    plain = make_settings(tmp_path / "plain", encrypt=False)
    with Store.open(plain) as store, VectorIndex.open(plain, embedder) as index:
        seed(store)
        index.catch_up(store)
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store:
        ids = seed(store)
    shutil.copy(plain.vectors_path, settings.vectors_path)  # what an interrupted `gum-mcp encrypt` can leave
    assert "vectors.sqlite3 is plaintext" in describe_encryption(encryption_status(settings))
    index, reason = open_index(settings, embedder=embedder, read_only=True)  # a follower leaves it alone
    assert index is None and "plaintext" in reason and store_state(settings.vectors_path) == "plaintext"
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        report = index.catch_up(store)
        assert set(report.rebuilt) == {"propositions", "observations"}
        assert index.query("propositions", "getting ready for a running race", 1)[0].id == ids[0]
    assert store_state(settings.vectors_path) == "encrypted"
    assert "leftover" not in encryption_status(settings)
