"""Each query vector's dot product with every stored vector: the scan of the in-memory vector index.

gum_mcp runs numpy's OpenBLAS with one thread (gum_mcp/__init__.py), and OpenBLAS is slow at a tall matrix
times a few vectors: 5.4 ms for 10,000 x 384 by a batch's 5 drafts, 1.8 ms for one query (AMD Zen 3, 2
cores). onnxruntime, which chromadb already installs, runs the same product on its own two threads (MLAS) in
2.0 ms and 0.9 ms. So a large scan goes to a one-node onnxruntime session (`MatMul`, the same float32 sums up
to rounding), and a small one, or any where onnxruntime cannot run, stays in numpy.

Thread-safe: the session is made once per process and onnxruntime's `run` may be called from any thread.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from gum_mcp.index.onnx_graph import FLOAT, Session, model, node, value_info

log = logging.getLogger("gum_mcp.index")

#: From this many rows x queries a scan runs on onnxruntime (below, numpy's fixed cost is the smaller).
ONNX_MIN_PRODUCTS = 2048
THREADS = 2

_lock = threading.Lock()
_session: Session | None = None
_failed = False


def cosines(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(len(queries), len(rows)) float32: every query's dot product with every row (cosines when both are
    unit vectors). `rows` is (n, dim), `queries` (m, dim)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    if not len(rows) or not len(queries):  # an empty collection (whose matrix may have no columns either)
        return np.zeros((len(queries), len(rows)), dtype=np.float32)
    if len(rows) * len(queries) >= ONNX_MIN_PRODUCTS:
        session = _onnx_session()
        if session is not None:
            product = session.run({"a": rows, "b": np.ascontiguousarray(queries.T)})  # (n, m)
            return np.ascontiguousarray(product.T)
    return np.ascontiguousarray((rows @ queries.T).T)


def _onnx_session() -> Session | None:
    """The one-node session (made on first use), or None where onnxruntime cannot run it."""
    global _session, _failed
    with _lock:
        if _session is None and not _failed:
            try:
                from gum_mcp.index.minilm import usable_cpus

                proto = model("cosines", [node("MatMul", ["a", "b"], ["y"])], [],
                              [value_info("a", FLOAT, ["n", "d"]), value_info("b", FLOAT, ["d", "m"])],
                              [value_info("y", FLOAT, ["n", "m"])])
                _session = Session(proto, max(1, min(THREADS, usable_cpus())))
            except Exception as exc:  # no onnxruntime, or one that cannot run it: numpy does the scan
                log.info("vector scans run in numpy (%s: %s)", type(exc).__name__, exc)
                _failed = True
        return _session
