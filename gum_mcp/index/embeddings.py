"""Embeddings behind one small interface, and its adapter to Chroma.

- `Embedder`: `name` (e.g. "minilm:all-MiniLM-L6-v2"), `dim` and `embed(texts) -> (n, dim)` float32,
  L2-normalised rows. `embed` blocks (numpy or HTTP): async callers run it in a worker thread.
- `MiniLMEmbedder`: all-MiniLM-L6-v2 run locally by `minilm.py` (the default; fully offline), in float32 (the
  default) or int8 (GUM_EMBEDDING_PRECISION), on onnxruntime (`onnx_encoder.py`); single texts cached.
- `OpenAIEmbedder`: the OpenAI embeddings API (or a compatible server at OPENAI_BASE_URL); only built
  when GUM_EMBEDDING=openai.
- `make_embedder(settings)`: the configured embedder, or None and a one-line reason (callers then fall
  back to BM25-only retrieval and show the reason in status).
- `ChromaEmbeddingFunction(embedder)`: a chromadb 1.5 `EmbeddingFunction`. Its persisted config is
  `signature(embedder)` = {"embedder": name, "dim": dim}; Chroma stores it with the collection, so the
  index can compare a collection's signature with the current embedder's and rebuild on any change
  (`needs_reindex`). Chroma rebuilds the function from that config without loading anything and
  without the network; it never falls back to its own default (ONNX, downloaded) model.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from gum_mcp.config import Settings
from gum_mcp.index.minilm import MiniLM
from gum_mcp.index.models import (
    MINILM_NAME,
    OPENAI_DEFAULT_MODEL,
    OPENAI_DIMS,
    find_minilm,
    model_status,
)
from gum_mcp.index.onnx_encoder import Unsupported


class EmbeddingError(RuntimeError):
    """Embedding failed (model unusable, provider error, or a collection built by another model)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors. Implementations are thread-safe."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised; (0, dim) for an empty list. Blocking."""
        ...


def query_vector(embedder: Embedder, text: str) -> np.ndarray:
    """(dim,) float32: `text` embedded as a search query, by the embedder's `embed_query` where it has one
    (MiniLM: in GUM_QUERY_PRECISION), else as a text."""
    embed_query = getattr(embedder, "embed_query", None)
    return embed_query(text) if embed_query is not None else embedder.embed([text])[0]


def signature(embedder: Embedder) -> dict[str, Any]:
    """What identifies an embedder's vector space; store it with an index, compare on open."""
    return {"embedder": embedder.name, "dim": int(embedder.dim)}


def needs_reindex(stored: Mapping[str, Any] | None, embedder: Embedder) -> bool:
    """True when vectors made under `stored` (a `signature`, or None if unknown) do not fit `embedder`."""
    if not stored:
        return True
    return stored.get("embedder") != embedder.name or stored.get("dim") != int(embedder.dim)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, np.float32(1e-12))
    return vectors


# -- local MiniLM

_minilm_cache: dict[tuple[Path, str], MiniLM] = {}
_minilm_lock = threading.Lock()
log = logging.getLogger("gum_mcp.index")

#: Single texts and queries whose vectors are kept, per embedder: an agent asking again, the engine asking
#: again about the same batch (a retry, a split), cost nothing the second time.
QUERY_CACHE = 512


def _load_minilm(model_dir: Path, precision: str = "float32", query_precision: str | None = None) -> MiniLM:
    """One MiniLM per model directory and pair of precisions per process (about 90 MB of weights). An int8
    model that onnxruntime cannot run here falls back to float32, with a warning."""
    key = Path(model_dir).resolve()
    wanted = (key, precision, query_precision or precision)
    with _minilm_lock:
        model = _minilm_cache.get(wanted)
        if model is None:
            try:
                model = MiniLM(key, precision, query_precision=query_precision)
            except Unsupported as exc:
                log.warning("int8 embeddings are unavailable (%s); using float32", exc)
                fallback = (key, "float32", "float32")
                model = _minilm_cache.get(fallback) or MiniLM(key)
                _minilm_cache[fallback] = model
            _minilm_cache[wanted] = model
        return model


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, 384 dimensions, computed locally (onnxruntime, in float32 or int8). Loads the
    weights on creation.

    Both precisions share one name, so one vector space: the int8 vectors are within cosine 0.99 of the float32
    ones (tests/test_embeddings_speed.py), an index built in one is searched with the other, and changing
    GUM_EMBEDDING_PRECISION rebuilds nothing.

    Search queries (`embed_query`) have their own precision, `query_precision` (GUM_QUERY_PRECISION, int8 by
    default): a query is one short pass whose time is mostly reading the weights, which int8 makes about 2x
    faster, while the stored texts stay float32. On the held-out retrieval set this moves no metric by more
    than 0.005 (bench/retrieval_quality.py); int8 texts as well would move hit@5 by 0.009.
    """

    def __init__(self, model_dir: Path, precision: str = "float32", query_precision: str | None = None) -> None:
        self.model = _load_minilm(model_dir, precision, query_precision)
        self.model_dir = Path(model_dir)
        self.name = f"minilm:{MINILM_NAME}"
        self.dim = self.model.dim
        self.precision = self.model.precision
        self.query_precision = self.model.query_precision
        self._queries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a str")
        if len(texts) != 1:
            return self.model.embed(texts)
        return self._cached("text", texts[0], lambda: self.model.embed(texts)[0])[None, :]

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32: a search query's vector, in `query_precision`."""
        return self._cached("query", text, lambda: self.model.embed_query(text))

    def _cached(self, kind: str, text: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A single text's vector, kept among the last QUERY_CACHE: "text" (embed) and "query" (embed_query) are
        one entry when both precisions are the same."""
        key = (kind if self.query_precision != self.precision else "text", text)
        with self._queries_lock:
            known = self._queries.get(key)
            if known is not None:
                self._queries.move_to_end(key)
                return known.copy()
        vector = compute()
        with self._queries_lock:
            self._queries[key] = vector.copy()
            if len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return vector

    def __repr__(self) -> str:
        return (f"MiniLMEmbedder({str(self.model_dir)!r}, {self.precision!r}, "
                f"query_precision={self.query_precision!r})")


# -- OpenAI


class OpenAIEmbedder:
    """The OpenAI embeddings API (`embeddings.create`), or a compatible server at `base_url`."""

    #: Inputs per request (the API allows 2048) and characters kept per input (the model's limit is
    #: 8191 tokens; 6000 characters stay below it for any script).
    batch_size = 256
    max_chars = 6000

    def __init__(self, *, api_key: str, model: str = OPENAI_DEFAULT_MODEL, base_url: str | None = None,
                 dim: int | None = None, timeout: float = 60.0, max_retries: int = 4) -> None:
        import openai

        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout,
                                     max_retries=max_retries)
        self.model = model
        self.name = f"openai:{model}"
        known = dim or OPENAI_DIMS.get(model)
        # An unknown model (e.g. on a compatible server) tells its size with one request.
        self.dim = known if known is not None else int(self._request(["dimension probe"]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not a str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._request(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        vectors = np.concatenate(parts)
        if vectors.shape[1] != self.dim:
            raise EmbeddingError(f"{self.name} returned {vectors.shape[1]} dimensions, expected {self.dim}")
        return vectors

    def _request(self, texts: list[str]) -> np.ndarray:
        import openai

        # The API rejects empty strings; a lone space embeds "nothing" well enough.
        inputs = [text[: self.max_chars] if text.strip() else " " for text in texts]
        try:
            response = self._client.embeddings.create(input=inputs, model=self.model, encoding_format="float")
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"{self.name}: {type(exc).__name__}: {str(exc)[:300]}") from exc
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(inputs):
            raise EmbeddingError(f"{self.name} returned {len(rows)} vectors for {len(inputs)} texts")
        return _normalise(np.array([row.embedding for row in rows], dtype=np.float32))

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r})"


# -- the configured one


def make_embedder(settings: Settings) -> tuple[Embedder | None, str | None]:
    """The embedder the settings ask for, or (None, a one-line reason to show the user). Blocking.

    MiniLM loads its weights here (about 0.1 s, once per process); an OpenAI model of unknown size
    costs one request.
    """
    status = model_status(settings)
    if settings.embedding == "none":
        return None, "disabled"
    if not status.available:
        return None, status.describe()
    if settings.embedding == "openai":
        assert settings.openai_api_key  # model_status checked it
        try:
            embedder: Embedder = OpenAIEmbedder(
                api_key=settings.openai_api_key,
                model=settings.embedding_model or OPENAI_DEFAULT_MODEL,
                base_url=settings.openai_base_url,
                timeout=settings.llm_timeout,
                max_retries=settings.llm_max_retries,
            )
        except EmbeddingError as exc:
            return None, f"{status.name} is unavailable: {exc}"
        return embedder, None
    model_dir = find_minilm(settings.models_dir)
    if model_dir is None:  # removed between the two checks
        return None, f"{status.name} is not installed; run `gum-mcp models install`"
    try:
        return MiniLMEmbedder(model_dir, settings.embedding_precision, settings.query_precision), None
    except Exception as exc:  # a damaged file: say so rather than crash the server
        return None, (f"{status.name} cannot be loaded from {model_dir} ({type(exc).__name__}: {exc}); "
                      "delete that directory and run `gum-mcp models install`")


# -- Chroma

# Embedders in use in this process, by name, so a function Chroma rebuilds from a stored config
# finds the live embedder instead of loading another copy.
_live: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_live_lock = threading.Lock()


@register_embedding_function
class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """A chromadb `EmbeddingFunction` over an `Embedder`. Pass it to every get/create of a collection.

    Persisted config: `signature(embedder)`. Chroma calls `build_from_config` when it reads a stored
    collection (and on every create, to test `is_legacy`); that builds a *deferred* function that loads
    nothing until called, then uses the live embedder of the same name in this process, or the one the
    current settings make, and refuses if its name or dimension differs from the stored one.
    """

    def __init__(self, embedder: Embedder | None = None, *, config: Mapping[str, Any] | None = None) -> None:
        if embedder is None and config is None:
            raise ValueError("ChromaEmbeddingFunction needs an embedder (or a stored config)")
        self._embedder = embedder
        self._config: dict[str, Any] = dict(config) if config is not None else signature(embedder)  # type: ignore[arg-type]
        self._lock = threading.Lock()
        if embedder is not None:
            with _live_lock, contextlib.suppress(TypeError):  # not weak-referenceable: nothing to share
                _live[embedder.name] = embedder

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self.embedder.embed(list(input))
        return list(vectors)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._resolve()
        return self._embedder

    def _resolve(self) -> Embedder:
        wanted = self._config.get("embedder")
        with _live_lock:
            embedder = _live.get(wanted) if isinstance(wanted, str) else None
        if embedder is None:
            from gum_mcp.config import load_settings

            embedder, reason = make_embedder(load_settings())
            if embedder is None:
                raise EmbeddingError(f"the collection was embedded with {wanted}, which is unavailable: {reason}")
        if needs_reindex(self._config, embedder):
            raise EmbeddingError(f"the collection was embedded with {wanted} ({self._config.get('dim')} dims) "
                                 f"but the current model is {embedder.name} ({embedder.dim} dims); reindex")
        return embedder

    @staticmethod
    def name() -> str:
        return "gum_mcp"

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        ChromaEmbeddingFunction.validate_config(config)
        return ChromaEmbeddingFunction(config=config)

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("embedder"), str) or not isinstance(config.get("dim"), int):
            raise ValueError(f"gum_mcp embedding config needs 'embedder' (str) and 'dim' (int), got {config}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if old_config.get("embedder") != new_config.get("embedder") or old_config.get("dim") != new_config.get("dim"):
            raise ValueError("changing the embedding model of a collection mixes vector spaces; reindex instead")

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChromaEmbeddingFunction) and other._config == self._config

    def __hash__(self) -> int:
        return hash((self._config.get("embedder"), self._config.get("dim")))

    def __repr__(self) -> str:
        return f"ChromaEmbeddingFunction({self._config})"


def stored_signature(configuration_json: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The `signature` a Chroma collection was created with (from `collection.configuration_json`)."""
    ef = (configuration_json or {}).get("embedding_function") or {}
    if ef.get("type") != "known" or ef.get("name") != ChromaEmbeddingFunction.name():
        return None
    config = ef.get("config") or {}
    return {"embedder": config.get("embedder"), "dim": config.get("dim")}

