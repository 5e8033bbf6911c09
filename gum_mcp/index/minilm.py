"""all-MiniLM-L6-v2 without torch: the same vectors as sentence-transformers.

BERT (6 layers, hidden 384, 12 heads, FFN 1536), mean pooling over the attention mask, then L2
normalisation, exactly as the sentence-transformers pipeline in the model's modules.json. Inputs are
truncated to `max_seq_length` word pieces from sentence_bert_config.json (256, [CLS] and [SEP]
included). Tokenisation is the HF `tokenizers` library reading the model's tokenizer.json.

Weights come from model.safetensors through the small reader below (8-byte little-endian header
length, JSON header, raw little-endian tensors); no safetensors/torch/transformers import.

Backends: the encoder layers run on onnxruntime (`onnx_encoder.py`: one graph, fused kernels) in float32 (the
same vectors as numpy, cosine 0.9999998; 1.7x numpy for one query, 1.4x in bulk) or int8; the numpy
implementation below is the reference and the fallback where onnxruntime cannot run (`backend="numpy"`).
Tokenising, the embedding layer and mean pooling are numpy in both. `embed_query` may run on a second encoder in
another precision (`query_precision`: int8 queries beside float32 texts, see embeddings.MiniLMEmbedder).
On onnxruntime a pass holds only its texts' real tokens, one text after another; attention alone lays them
out padded (`_forward_unpadded`), so padding costs nothing in the matrix products (a batch's 5 drafts of
8-18 tokens: 67 rows instead of 90, about 10% less time). numpy runs the padded layout.

numpy speed: float32 throughout; Q, K and V are one fused matmul; the 1/sqrt(head dim) attention scale is
folded into the query weights and the token-type row into the position table; texts are sorted by
length and cut into forward passes of at most `token_budget` tokens, so padding stays small and the
activations stay in cache; the feed-forward layer and the exact (erf) GELU run in row blocks; work is
done in place where numpy allows.

Cores: a call of several passes runs them on `workers` threads (the caller plus a small pool). numpy
runs OpenBLAS with one thread (gum_mcp/__init__.py: small matmuls lose more to thread hand-offs than
they gain), so one pass per core; onnxruntime runs each pass on one core too (ONNX_PASS_THREADS). A call's
texts are shared among the workers in passes of about equal size (`_batches`), so no core idles while
another finishes the call. A search query's pass, when queries have their own precision (int8 by default),
has two cores (QUERY_PASS_THREADS).

Thread-safe: the weights and the tokenizer are read-only after loading and every call works on its own
arrays. A gate admits at most `workers` passes at once across all calls, one-pass calls (queries)
first, so a query waits for at most one running pass of a bulk job.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import json
import logging
import math
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gum_mcp.index.onnx_encoder import PRECISIONS, OnnxEncoder, Unsupported

# -- safetensors

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file (or uses a dtype this reader does not know)."""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read every tensor of a safetensors file as a read-only numpy array (memory-mapped, zero copy).

    BF16 tensors are widened to float32 (numpy has no bfloat16).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > _MAX_HEADER:
            raise SafetensorsError(f"{path}: header of {header_len} bytes is implausible")
        raw_header = handle.read(header_len)
    if len(raw_header) != header_len:
        raise SafetensorsError(f"{path}: truncated header")
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{path}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    size = path.stat().st_size
    if size > 8 + header_len:
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    else:  # no tensor data at all (mmap cannot map an empty range)
        data = np.zeros(0, dtype=np.uint8)
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = info["dtype"], [int(n) for n in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: bad header entry for {name!r}") from None
        count = math.prod(shape)
        if dtype_name == "BF16":
            itemsize = 2
        elif dtype_name in _DTYPES:
            itemsize = _DTYPES[dtype_name].itemsize
        else:
            raise SafetensorsError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name}")
        if not (0 <= begin <= end <= data.size) or end - begin != count * itemsize:
            raise SafetensorsError(f"{path}: tensor {name!r} has bad data offsets {begin}..{end}")
        chunk = data[begin:end]
        if dtype_name == "BF16":
            widened = chunk.view("<u2").astype(np.uint32) << 16
            array = widened.view(np.float32).reshape(shape)
        else:
            array = chunk.view(_DTYPES[dtype_name]).reshape(shape)
        tensors[name] = array
    return tensors


# -- the model

#: "onnx": the encoder layers on onnxruntime (numpy when onnxruntime cannot run them, float32 only); "numpy":
#: the reference implementation below, float32 only.
BACKENDS = ("onnx", "numpy")
#: Threads per forward pass of `embed` on onnxruntime. One pass on two cores takes 0.55-0.7x the time of a pass
#: on one, but a call's passes run one per core side by side (`_batches` shares them out), which does more:
#: in float32, 64 propositions took 366 against 509 ms, 64 short sentences 177 against 205 ms and the engine's
#: 5 drafts 34.5 against 36.9 ms (two passes); a single text alone takes longer (14.5 against 11.7 ms). int8
#: passes lose even more to the hand-offs (bulk -20% on two threads).
ONNX_PASS_THREADS = 1
#: Tokens per forward pass in int8: onnxruntime's fixed cost per run is paid over more tokens. (float32 is
#: fastest at the numpy budget: its larger activations stay in cache.)
INT8_TOKEN_BUDGET = 1024
#: Threads for a query's pass (`embed_query`): a query is one short pass, and with two cores an int8 one
#: takes 1.6 ms against 2.0 ms on one (bench/embeddings.py prints it); float32 on two takes 3.6 ms.
QUERY_PASS_THREADS = 2
#: The fewest tokens `_batches` cuts a pass down to when it shares a call's texts among the workers: below
#: that, another pass costs more in fixed overhead than the second core gives back.
MIN_PASS_TOKENS = 48
log = logging.getLogger("gum_mcp.index")


class MiniLM:
    """A loaded all-MiniLM-L6-v2 (or any BERT sentence-transformer with mean pooling)."""

    #: Upper bound of tokens (batch * padded length) per forward pass, and of texts per pass.
    token_budget = 256
    max_batch = 64
    #: Rows per block of the feed-forward layer, and per block of the GELU inside it.
    ffn_rows = 128
    gelu_rows = 64

    def __init__(self, model_dir: Path, precision: str = "float32", backend: str = "onnx",
                 query_precision: str | None = None) -> None:
        for value in (precision, query_precision or precision):
            if value not in PRECISIONS:
                raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {value!r}")
        if backend not in BACKENDS or (backend == "numpy" and precision != "float32"):
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (numpy in float32 only), not {backend!r}")
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        pooling_path = model_dir / "1_Pooling" / "config.json"
        if pooling_path.exists():
            pooling = json.loads(pooling_path.read_text(encoding="utf-8"))
            if not pooling.get("pooling_mode_mean_tokens", False):
                raise ValueError(f"{model_dir}: only mean pooling is implemented")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{model_dir}: hidden_act {config.get('hidden_act')!r} is not implemented")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{model_dir}: only absolute position embeddings are implemented")

        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.head_dim = self.hidden // self.heads
        self.layers_count = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.dim = self.hidden
        self.max_seq_length = min(int(st_config.get("max_seq_length", 512)),
                                  int(config["max_position_embeddings"]))

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships truncation 128 and fixed padding 128; sentence-transformers uses
        # max_seq_length and pads per batch. We pad ourselves.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.pad_id = int(config.get("pad_token_id", 0))
        self.max_chars = 200 * self.max_seq_length

        tensors = read_safetensors(model_dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

        def get(name: str) -> np.ndarray:
            try:
                return np.array(tensors[prefix + name], dtype=np.float32, copy=True)
            except KeyError:
                raise ValueError(f"{model_dir}: model.safetensors has no tensor {prefix + name}") from None

        self.word = get("embeddings.word_embeddings.weight")
        # token_type_ids are all 0 for single sentences: fold that row into the position table.
        self.position = get("embeddings.position_embeddings.weight") + get("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        scale = np.float32(1.0 / math.sqrt(self.head_dim))  # 1/8: exact in float32
        self.layers = []
        for i in range(self.layers_count):
            p = f"encoder.layer.{i}."
            # Linear layers are stored (out, in); keep (in, out) contiguous for x @ W.
            qkv_w = np.concatenate([get(p + "attention.self.query.weight") * scale,
                                    get(p + "attention.self.key.weight"),
                                    get(p + "attention.self.value.weight")], axis=0)
            qkv_b = np.concatenate([get(p + "attention.self.query.bias") * scale,
                                    get(p + "attention.self.key.bias"),
                                    get(p + "attention.self.value.bias")])
            self.layers.append((
                np.ascontiguousarray(qkv_w.T), qkv_b,
                np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
                get(p + "attention.output.dense.bias"),
                (get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias")),
                np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
                get(p + "intermediate.dense.bias"),
                np.ascontiguousarray(get(p + "output.dense.weight").T),
                get(p + "output.dense.bias"),
                (get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
            ))
        tensors.clear()  # drop the memory map; everything above is a private copy
        self.precision = precision
        #: The encoder layers on onnxruntime, or None: numpy (`backend`).
        self._encoder: OnnxEncoder | None = None
        cpus = usable_cpus()
        if backend == "onnx":
            try:
                self._encoder = OnnxEncoder(self.layers, self.hidden, self.heads, self.eps, precision,
                                            threads=min(ONNX_PASS_THREADS, cpus))
            except Unsupported as exc:
                if precision != "float32":
                    raise
                log.warning("onnxruntime cannot run the encoder (%s); embedding with numpy, about half as fast", exc)
        #: The encoder of `embed_query` when queries use another precision than texts (None: `_encoder`).
        self._query_encoder: OnnxEncoder | None = None
        if self._encoder is not None and query_precision not in (None, precision):
            try:
                self._query_encoder = OnnxEncoder(self.layers, self.hidden, self.heads, self.eps, query_precision,
                                                  threads=min(QUERY_PASS_THREADS, cpus))
            except Unsupported as exc:
                log.warning("%s queries are unavailable (%s); queries are embedded in %s", query_precision, exc,
                            precision)
        #: What `embed_query` computes in.
        self.query_precision = query_precision if self._query_encoder is not None else precision
        if self._encoder is not None:
            self.layers = []  # onnxruntime holds its own copy of the weights
            if precision == "int8":
                self.token_budget = INT8_TOKEN_BUDGET
        # passes at once: numpy runs one per core (single-threaded BLAS), onnxruntime one per ONNX_PASS_THREADS
        self.workers = (default_workers() if self._encoder is None
                        else max(1, min(cpus // ONNX_PASS_THREADS, 8)))
        self._gate = _Gate(self.workers)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def backend(self) -> str:
        """What runs the encoder layers: "onnx", or "numpy" (asked for, or onnxruntime could not run them)."""
        return "numpy" if self._encoder is None else "onnx"

    def _helpers(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(1, self.workers - 1),
                                                thread_name_prefix="gum-minilm")
            return self._pool

    # -- public

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids with [CLS]/[SEP], truncated to max_seq_length.

        Texts are cut to `max_chars` characters first (tokenising costs ~0.5 us per character, and
        only the first max_seq_length word pieces count); that changes nothing unless the first
        max_seq_length word pieces are spread over more than that many characters.
        """
        limit = self.max_chars
        clipped = [text if len(text) <= limit else text[:limit] for text in texts]
        return [encoding.ids for encoding in self.tokenizer.encode_batch(clipped, add_special_tokens=True)]

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised: a search query's vector, in `query_precision` (the texts it is
        compared with are embedded by `embed`, in `precision`). One pass, ahead of bulk passes at the gate."""
        ids = self.token_ids([text])
        with self._gate.slot(0):
            return self._forward(ids, self._query_encoder)[0]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        batches = self._batches(ids)
        # A call that fits one pass (a query, a few drafts) goes before the passes of bulk calls waiting for a slot.
        priority = 0 if sum(map(len, ids)) <= self.token_budget and len(ids) <= self.max_batch else 1
        pending = iter(batches)
        take = threading.Lock()

        def work() -> None:
            while True:
                with take:
                    batch = next(pending, None)
                if batch is None:
                    return
                with self._gate.slot(priority):
                    vectors = self._forward([ids[i] for i in batch])
                out[batch] = vectors

        helpers = [self._helpers().submit(work) for _ in range(min(self.workers, len(batches)) - 1)]
        try:
            work()  # the calling thread works too
        finally:
            for helper in helpers:
                helper.result()
        return out

    # -- internals

    def _batches(self, ids: list[list[int]]) -> list[list[int]]:
        """Group text indices by length (shortest first) so each batch pads little, in passes of at most
        `token_budget` tokens and `max_batch` texts. With several workers, the passes come in a multiple of
        `workers` of about equal size, so every core works to the end of the call: int8's passes are long
        (1024 tokens), and 64 short texts, one pass, ran on one core while the other idled
        (bench/embeddings.py --short). Passes are not cut below MIN_PASS_TOKENS."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        total = sum(len(x) for x in ids)
        passes = max(-(-total // self.token_budget), -(-len(ids) // self.max_batch))
        if self.workers > 1:
            passes = -(-passes // self.workers) * self.workers
            passes = max(1, min(passes, total // MIN_PASS_TOKENS))
        batches: list[list[int]] = []
        current: list[int] = []
        held, left = 0, total  # tokens in `current`; tokens not yet in a finished pass
        for index in order:
            length = len(ids[index])  # sorted: the longest of the batch so far
            # the rest is shared among the passes still planned; this text goes to the next pass if most of it
            # lies past the current pass's share (a pass cut early by the budget leaves more for the others)
            past_share = held >= MIN_PASS_TOKENS and (held + length / 2) * passes > left
            if current and (past_share or (len(current) + 1) * length > self.token_budget
                            or len(current) >= self.max_batch):
                batches.append(current)
                left -= held
                passes = max(1, passes - 1)
                current, held = [], 0
            current.append(index)
            held += length
        if current:
            batches.append(current)
        return batches

    def _forward(self, batch_ids: list[list[int]], encoder: OnnxEncoder | None = None) -> np.ndarray:
        """One pass over these texts' ids, on `encoder` (default: the model's own, or numpy: padded to the
        longest of them)."""
        encoder = encoder or self._encoder
        b = len(batch_ids)
        t = max(len(x) for x in batch_ids)
        lengths = np.fromiter((len(x) for x in batch_ids), dtype=np.int64, count=b)
        if encoder is not None:
            return self._forward_unpadded(batch_ids, lengths, t, encoder)
        ids = np.full((b, t), self.pad_id, dtype=np.int64)
        for row, seq in enumerate(batch_ids):
            ids[row, : len(seq)] = seq
        mask = np.arange(t)[None, :] < lengths[:, None]  # (b, t)
        padded = not bool(mask.all())

        h, nh, hd = self.hidden, self.heads, self.head_dim
        x = self.word[ids.reshape(-1)]  # (b*t, h), a fresh array
        x.reshape(b, t, h)[...] += self.position[:t]
        _layer_norm(x, *self.emb_ln, self.eps)
        # Additive attention bias for padded keys: (b, 1, 1, t).
        bias = _attention_bias(mask) if padded else None

        for qkv_w, qkv_b, o_w, o_b, ln1, i_w, i_b, f_w, f_b, ln2 in self.layers:
            qkv = x @ qkv_w
            qkv += qkv_b
            # (b, t, 3, nh, hd) -> (3, b, nh, t, hd)
            qkv = qkv.reshape(b, t, 3, nh, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)  # (b, nh, t, t); q is pre-scaled
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = scores @ v  # (b, nh, t, hd)
            context = context.transpose(0, 2, 1, 3).reshape(b * t, h)
            attn = context @ o_w
            attn += o_b
            attn += x
            _layer_norm(attn, *ln1, self.eps)
            x = attn
            # The 4x wider intermediate is made and used in row blocks that stay in cache.
            ffn = np.empty_like(x)
            for start in range(0, x.shape[0], self.ffn_rows):
                inner = x[start : start + self.ffn_rows] @ i_w
                inner += i_b
                _gelu(inner, self.gelu_rows)
                np.matmul(inner, f_w, out=ffn[start : start + self.ffn_rows])
            ffn += f_b
            ffn += x
            _layer_norm(ffn, *ln2, self.eps)
            x = ffn

        return _pool(x.reshape(b, t, h), mask, lengths, padded)

    def _forward_unpadded(self, batch_ids: list[list[int]], lengths: np.ndarray, t: int, encoder: OnnxEncoder
                          ) -> np.ndarray:
        """`_forward` on onnxruntime: the texts' tokens one after another, without padding, so no work is
        spent on padding outside attention (`onnx_encoder.encoder_graph`)."""
        b = len(batch_ids)
        tokens = int(lengths.sum())
        starts = np.cumsum(lengths) - lengths  # each text's first row
        positions = np.arange(tokens) - np.repeat(starts, lengths)
        x = self.word[np.fromiter(itertools.chain.from_iterable(batch_ids), dtype=np.int64, count=tokens)]
        x += self.position[positions]
        _layer_norm(x, *self.emb_ln, self.eps)
        slots = np.arange(t)
        pad = (starts[:, None] + np.minimum(slots[None, :], lengths[:, None] - 1)).reshape(-1)
        unpad = np.repeat(np.arange(b) * t, lengths) + positions
        x = encoder(x, pad, unpad, _attention_bias(slots[None, :] < lengths[:, None]), b, t)
        pooled = np.add.reduceat(x, starts, axis=0) / lengths.astype(np.float32)[:, None]
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled


def _attention_bias(mask: np.ndarray) -> np.ndarray:
    """(b, 1, 1, t) float32: 0 where a text has a token, -1e30 past its end (keys there get no attention)."""
    return np.where(mask, np.float32(0.0), np.float32(-1e30)).astype(np.float32)[:, None, None, :]


def _pool(x: np.ndarray, mask: np.ndarray, lengths: np.ndarray, padded: bool) -> np.ndarray:
    """Mean over each text's tokens (b, t, h) -> (b, h), L2-normalised."""
    pooled = np.einsum("bth,bt->bh", x, mask.astype(np.float32)) if padded else x.sum(axis=1)
    pooled /= np.maximum(lengths, 1).astype(np.float32)[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    pooled /= np.maximum(norms, np.float32(1e-12))
    return pooled


def default_workers() -> int:
    """How many forward passes may run at once: usable CPUs / BLAS threads per matmul.

    numpy's OpenBLAS reads OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) when it loads and otherwise uses
    a thread per core. gum_mcp sets OPENBLAS_NUM_THREADS=1 (see gum_mcp/__init__.py), so on 2 cores
    two passes run side by side, one per core; with BLAS on every core, passes take turns instead.
    """
    cpus = usable_cpus()
    per_pass = openblas_threads()
    if per_pass is None:
        blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or ""
        per_pass = int(blas) if blas.isdigit() and int(blas) > 0 else cpus
    return max(1, min(cpus // per_pass, 8))


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_OPENBLAS_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")


def openblas_threads() -> int | None:
    """The thread count of the OpenBLAS numpy really loaded (Linux), or None if it cannot be asked.

    The environment alone can mislead: numpy may have been imported before OPENBLAS_NUM_THREADS was set.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in _OPENBLAS_GETTERS:
            getter = getattr(library, symbol, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                threads = int(getter())
                return threads if threads > 0 else None
    return None


class _Gate:
    """At most `capacity` forward passes at once, granted by (priority, arrival): first come first
    served, except that one-pass calls (queries) go before the queued passes of bulk calls. A query
    then waits for at most one running pass, never for a whole bulk job."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._waiting: list[tuple[int, int]] = []
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def slot(self, priority: int) -> Iterator[None]:
        with self._cond:
            entry = (priority, next(self._tickets))
            heapq.heappush(self._waiting, entry)
            while self._waiting[0] != entry or self._active >= self.capacity:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._active += 1
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> None:
    """In place, over the last axis."""
    mean = x.mean(axis=-1, keepdims=True)
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= np.float32(1.0 / x.shape[-1])
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= weight
    x += bias


# erf by Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 (below float32 resolution of GELU's output).
# With u = |x|/sqrt(2), t = 1/(1 + p*u) and poly(t) = t*(a1 + t*(a2 + ... + t*a5)):
#   1 - erf(u) = poly(t) * exp(-u^2),  and  gelu(x) = max(x, 0) - 0.5 * |x| * poly(t) * exp(-x^2/2)
# (one formula for both signs, no masks). The 0.5 is folded into the coefficients.
_A1, _A2, _A3, _A4, _A5 = (np.float32(0.5 * c) for c in
                           (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
_P = np.float32(0.3275911 / math.sqrt(2.0))
_MINUS_HALF = np.float32(-0.5)


def _gelu(x: np.ndarray, rows: int = 64) -> None:
    """Exact (erf) GELU in place: x * 0.5 * (1 + erf(x / sqrt(2))), `rows` rows at a time (cache)."""
    if x.shape[0] > rows:
        for start in range(0, x.shape[0], rows):
            _gelu(x[start : start + rows], rows)
        return
    a = np.abs(x)
    t = a * _P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    e = a * a
    e *= _MINUS_HALF
    np.exp(e, out=e)
    poly = t * _A5
    poly += _A4
    poly *= t
    poly += _A3
    poly *= t
    poly += _A2
    poly *= t
    poly += _A1
    poly *= t
    poly *= e
    poly *= a
    np.maximum(x, np.float32(0.0), out=x)
    x -= poly
