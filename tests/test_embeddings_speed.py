"""The faster paths, for correctness (their speed lives in bench/embeddings.py and bench/retrieval.py): MiniLM on
onnxruntime against numpy, int8 against float32, int8 queries against float32 texts, batch invariance, the query
cache, the batched dedup search, and BM25's split of common words at scale."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.index.embeddings import MiniLMEmbedder, make_embedder
from gum_mcp.index.models import find_minilm
from gum_mcp.retrieval.dedup import dedup_search, dedup_search_many
from gum_mcp.store import Store
from gum_mcp.store import search as store_search
from tests.conftest import make_settings

SENTENCES = [
    "Priya is preparing the Q4 budget in Excel for Jordan; due Friday.",
    "Sam prefers dark mode in VS Code and usually codes late at night.",
    "Mei is learning Rust by porting a small CLI tool from Python.",
    "The user has a recurring 1:1 with Alex on Tuesdays at 10am.",
    "Tomás reads papers on retrieval-augmented generation during the morning commute.",
    "Aisha is planning a trip to Lisbon in October and compares flight prices on Kayak.",
    "keeps notes",
    "A much longer sentence about the person's habits: they tend to postpone email replies until Friday "
    "afternoon, listen to lo-fi playlists while writing code, and track running workouts with Strava.",
]


@pytest.fixture(scope="module")
def models_dir():
    settings = make_settings(__import__("pathlib").Path("/nonexistent-data-dir"))
    path = find_minilm(settings.models_dir)
    if path is None:
        pytest.skip("MiniLM is not installed")
    return path


def test_int8_is_within_cosine_099_of_float32(models_dir) -> None:
    exact = MiniLMEmbedder(models_dir, "float32")
    fast = MiniLMEmbedder(models_dir, "int8")
    assert fast.precision == "int8" and fast.name == exact.name  # one vector space: no reindex on a switch
    a, b = exact.embed(SENTENCES), fast.embed(SENTENCES)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cosines = (a * b).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_int8_integer_products_are_exact_on_this_cpu(models_dir) -> None:
    """The int8 encoder's weights get as many levels as this CPU's integer matmul adds without overflow: on
    AVX2-only x86 a full-range pair (2 x 255 x 127) saturates a 16-bit sum and corrupts the vector."""
    from gum_mcp.index.minilm import MiniLM
    from gum_mcp.index.onnx_encoder import FULL_WEIGHT_LEVELS, SAFE_WEIGHT_LEVELS, integer_matmul, weight_levels

    levels = weight_levels()
    assert levels in (FULL_WEIGHT_LEVELS, SAFE_WEIGHT_LEVELS)
    rng = np.random.default_rng(7)
    weights = rng.integers(-levels, levels + 1, size=(384, 64)).astype(np.int8)
    weights[:, :8] = levels  # worst cases: whole columns at the extremes
    weights[:, 8:16] = -levels
    activations = rng.integers(0, 256, size=(24, 384)).astype(np.uint8)
    activations[:4] = [[255], [0], [128], [1]]
    exact = (activations.astype(np.int64) - 128) @ weights.astype(np.int64)
    np.testing.assert_array_equal(integer_matmul(weights, activations), exact)
    assert MiniLM(models_dir, "int8")._encoder.levels == levels


def test_float32_on_onnxruntime_gives_numpys_vectors(models_dir) -> None:
    from gum_mcp.index.minilm import MiniLM

    onnx, reference = MiniLM(models_dir), MiniLM(models_dir, backend="numpy")
    assert (onnx.backend, reference.backend) == ("onnx", "numpy")
    texts = [*SENTENCES, " ".join(SENTENCES * 8)]  # the last one is truncated to 256 word pieces
    np.testing.assert_allclose(onnx.embed(texts), reference.embed(texts), atol=1e-5)
    with pytest.raises(ValueError):
        MiniLM(models_dir, "int8", backend="numpy")


def test_without_onnxruntime_float32_falls_back_to_numpy_and_int8_to_float32(models_dir) -> None:
    """An install where onnxruntime cannot be imported (a broken wheel, an unsupported platform) still embeds:
    float32 with the numpy reference (one warning), int8 as float32 (one warning), the same vectors."""
    from gum_mcp.index.minilm import MiniLM

    script = (
        "import sys, json, logging\n"
        "sys.modules['onnxruntime'] = None  # import onnxruntime now raises ImportError\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "from pathlib import Path\n"
        "from gum_mcp.index.embeddings import MiniLMEmbedder\n"
        f"exact = MiniLMEmbedder(Path({str(models_dir)!r}))\n"
        f"fast = MiniLMEmbedder(Path({str(models_dir)!r}), 'int8')\n"
        f"mixed = MiniLMEmbedder(Path({str(models_dir)!r}), 'float32', 'int8')\n"
        f"texts = {SENTENCES[:3]!r}\n"
        "print(json.dumps([exact.model.backend, fast.precision, mixed.query_precision, exact.embed(texts).tolist(),\n"
        "                  fast.embed(texts).tolist(), [mixed.embed_query(t).tolist() for t in texts]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    backend, precision, query_precision, exact, fast, queries = json.loads(done.stdout.strip().splitlines()[-1])
    assert backend == "numpy" and precision == "float32" and query_precision == "float32"
    reference = MiniLM(models_dir, backend="numpy").embed(SENTENCES[:3])
    for vectors in (exact, fast, queries):
        np.testing.assert_allclose(np.array(vectors, np.float32), reference, atol=1e-5)
    assert "embedding with numpy" in done.stderr and "int8 embeddings are unavailable" in done.stderr


def record_passes(model) -> list[int]:
    """The rows (tokens) of every pass `model` runs on onnxruntime from now on, in order."""
    encoder, rows = model._encoder, []

    def recording(x, *rest):
        rows.append(x.shape[0])
        return encoder(x, *rest)

    model._encoder = recording
    return rows


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_pass_on_onnxruntime_computes_no_padding(models_dir, precision: str) -> None:
    """Texts of mixed lengths share a pass, yet the encoder gets their real tokens only (attention alone lays
    them out padded), and the vectors are those of each text alone."""
    from gum_mcp.index.minilm import MiniLM

    model = MiniLM(models_dir, precision)
    rows = record_passes(model)
    texts = ["keeps notes", *SENTENCES[:4], SENTENCES[-1]]
    together = model.embed(texts)
    lengths = [len(ids) for ids in model.token_ids(texts)]
    assert len(rows) < len(texts) and sum(rows) == sum(lengths) and max(lengths) > 3 * min(lengths)
    alone = np.stack([model.embed([text])[0] for text in texts])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_a_call_of_short_texts_keeps_every_worker_busy(models_dir) -> None:
    """int8 passes are single-threaded and long (1024 tokens): 64 short texts fitted one pass, so one core did
    the whole call while the other idled. They are now shared among the workers in passes of about equal size."""
    from gum_mcp.index.minilm import MIN_PASS_TOKENS, MiniLM

    model = MiniLM(models_dir, "int8")
    if model.workers < 2:
        pytest.skip("one usable CPU: one worker")
    rows = record_passes(model)
    texts = [f"{name} {habit}." for name in ("Mei", "Sam", "Alex", "Priya") for habit in (
        "prefers dark mode", "is on a call", "reads the news", "writes Rust", "skips lunch", "uses Obsidian",
        "trains for a race", "drafts the budget", "learns Spanish", "reviews code", "plans a trip", "likes tea",
        "runs at dawn", "takes notes", "codes late", "avoids meetings")]
    vectors = model.embed(texts)
    assert len(texts) == 64 and sum(rows) <= model.token_budget  # it would fit one pass
    longest = max(map(len, model.token_ids(texts)))
    assert len(rows) == min(model.workers, sum(rows) // MIN_PASS_TOKENS) and max(rows) - min(rows) <= 2 * longest
    alone = np.stack([model.embed([text])[0] for text in texts[::9]])
    np.testing.assert_allclose(vectors[::9], alone, atol=2e-5)


def test_int8_does_not_depend_on_the_batch(models_dir) -> None:
    fast = MiniLMEmbedder(models_dir, "int8")
    together = fast.embed(SENTENCES)
    alone = np.stack([fast.model.embed([text])[0] for text in SENTENCES])  # the model itself: no cache
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_single_texts_and_queries_are_cached(models_dir) -> None:
    embedder = MiniLMEmbedder(models_dir, "float32", "int8")
    first = embedder.embed(["what does she eat"])
    again = embedder.embed(["what does she eat"])
    np.testing.assert_array_equal(first, again)
    again[0, 0] = 42.0  # a caller writing into its result does not change the cache
    np.testing.assert_array_equal(embedder.embed(["what does she eat"]), first)
    query = embedder.embed_query("what does she eat")
    assert not np.array_equal(query, first[0])  # the query's own (int8) vector, not the text's
    query[0] = 42.0
    np.testing.assert_array_equal(embedder.embed_query("what does she eat"), embedder.model.embed_query(
        "what does she eat"))
    assert len(embedder._queries) == 2


def test_queries_in_int8_texts_in_float32(models_dir, tmp_path) -> None:
    """GUM_QUERY_PRECISION (int8 by default) changes the vectors of search queries only: the texts stored and
    compared against stay float32, exactly as with float32 queries."""
    from gum_mcp.index.vector_index import VectorIndex

    mixed = MiniLMEmbedder(models_dir, "float32", "int8")
    exact = MiniLMEmbedder(models_dir, "float32", "float32")
    assert (mixed.precision, mixed.query_precision, exact.query_precision) == ("float32", "int8", "float32")
    assert mixed.name == exact.name
    np.testing.assert_allclose(mixed.embed(SENTENCES), exact.embed(SENTENCES), atol=1e-6)
    texts = exact.embed(SENTENCES)
    queries = np.stack([mixed.embed_query(t) for t in SENTENCES])
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    cosines = (queries * texts).sum(axis=1)
    assert cosines.min() >= 0.99 and not np.allclose(queries, texts, atol=1e-4), cosines  # int8 really ran
    np.testing.assert_allclose(np.stack([exact.embed_query(t) for t in SENTENCES]), texts, atol=1e-5)
    # the default settings ask for it, and a search's query is embedded that way
    settings = make_settings(tmp_path / "data")
    embedder, _ = make_embedder(settings)
    assert isinstance(embedder, MiniLMEmbedder) and embedder.query_precision == "int8"
    with VectorIndex.open(settings, embedder) as index:
        np.testing.assert_allclose(index.embed_query(SENTENCES[0]), mixed.embed_query(SENTENCES[0]), atol=1e-6)


def test_batched_dedup_search_equals_one_by_one(tmp_path, embedder) -> None:
    from gum_mcp.index.vector_index import VectorIndex

    settings = make_settings(tmp_path / "data")
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        store.complete_batch(BatchResult(observation_ids=(), new=tuple(
            NewProposition(draft=PropositionDraft(text=t, confidence=7, decay=5)) for t in SENTENCES)))
        index.catch_up(store)
        drafts = ["is preparing a budget spreadsheet", "learns Rust", "", "trip to Lisbon", "dark theme"]
        many = dedup_search_many(store, index, drafts, 5)
        assert len(many) == len(drafts) and many[2] == []
        for draft, hits in zip(drafts, many, strict=True):
            single = dedup_search(store, index, draft, 5)
            assert [h.id for h in hits] == [h.id for h in single], draft
            for a, b in zip(hits, single, strict=True):
                assert a.similarity == pytest.approx(b.similarity, abs=1e-5)
        # without an index: keyword candidates only, still one list per draft
        assert [[h.id for h in hits] for hits in dedup_search_many(store, None, drafts, 5)] == \
            [[h.id for h in dedup_search(store, None, d, 5)] for d in drafts]


def test_bm25_splits_common_words_off_at_scale(tmp_path, monkeypatch) -> None:
    """Past SCORED_ROWS matching rows, rows holding only the query's common words are left out unless fewer
    than `limit` rows hold a rarer word; the scores returned are those of the whole query."""
    monkeypatch.setattr(store_search, "SCORED_ROWS", 20)
    settings = make_settings(tmp_path / "data")
    texts = [f"Priya works on project {n} today" for n in range(60)]  # "project", "today": common
    texts += ["Priya booked a kayak tour for the project offsite today", "Priya rents a kayak"]
    with Store.open(settings) as store:
        ids = store.complete_batch(BatchResult(observation_ids=(), new=tuple(
            NewProposition(draft=PropositionDraft(text=t, confidence=7, decay=5)) for t in texts)))
        kayak_tour, kayak = ids[-2], ids[-1]
        store_search._FREQUENCIES.clear()
        whole = dict(store.search_propositions_text("kayak project today", limit=2))
        assert set(whole) == {kayak_tour, kayak}  # the only rows with the rare word
        # the same scores as the unsplit query gives them
        monkeypatch.setattr(store_search, "SCORED_ROWS", 10_000)
        exact = dict(store.search_propositions_text("kayak project today", limit=100))
        assert whole == pytest.approx({i: exact[i] for i in whole})
        # fewer rows with a rare word than asked: the common words' rows fill the list, as before
        monkeypatch.setattr(store_search, "SCORED_ROWS", 20)
        filled = store.search_propositions_text("kayak project today", limit=10)
        assert {i for i, _ in filled[:2]} == {kayak_tour, kayak} and len(filled) == 10
        assert [i for i, _ in filled] == [i for i, _ in sorted(exact.items(), key=lambda kv: -kv[1])][:10]
