"""The local vector index: kept in `vectors.sqlite3` in the data directory, searched in memory.
SQLCipher with the store's key when the store is encrypted, plain SQLite when it is not; the same
connection factory and pragmas either way (`secure_delete` on, and the WAL truncated after a delete,
so a forgotten item's vector leaves the file).

Why not Chroma's own files (a PersistentClient in chroma/, as before): they hold every vector
unencrypted, embeddings can be inverted into approximate text, and hnswlib writes its level-0 file
(data_level0.bin) with uninitialised heap bytes, which can hold fragments of any text the process
had in memory, forgotten text included. Why not an in-memory Chroma loaded at start: adding 100,000
vectors to it (its HNSW graph) took 116 s on the 2-core reference machine, far over the 30 s goal
for the first hybrid answer; reading them from vectors.sqlite3 and clustering them takes a few
seconds. So `make_client` returns a `SealedClient` for every local data directory. It offers the
part of Chroma's client and collection API that `VectorIndex` uses (get/create/delete a collection;
count, get, query, upsert, update, delete, modify), so the index's catch-up, rebuild and cursor
logic and everything above it run unchanged:

- every write goes to vectors.sqlite3 first (collections and their metadata, one row a vector:
  id, float32 bytes, metadata JSON), then to memory;
- a collection's vectors are loaded into one numpy matrix the first time it is used (the owner
  process does this at start, while searches answer by keyword with a note);
- a query is a cosine search over that matrix (of unit rows), restricted to the `ids` or `where` it
  is given; distances are 1 - cosine, as Chroma's cosine space gives them. Up to IVF_MIN vectors it is
  exact; from there a coarse index (spherical k-means, 2*sqrt(n) clusters, computed at load and again
  when the collection doubles or halves) limits the scan to the nearest clusters, about a twentieth
  of the rows: recall@10 0.98 against exact at 100,000, a few milliseconds a query (bench/retrieval.py).

vectors.sqlite3 follows the store: plaintext beside a plaintext store, encrypted beside an encrypted
one (`gum-mcp encrypt` re-writes it, `key rotate` re-keys it). A chroma/ folder left by an older
version is deleted by the owner on open (the index is derived: catch-up rebuilds it), or, in an
encrypted data directory, moved into vectors.sqlite3 by `gum-mcp encrypt` (`seal_chroma`).

`GUM_CHROMA_URL` (a Chroma server) is the person's own server, outside the data directory; it is
used as before and is out of this module's scope.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gum_mcp.config import Settings
from gum_mcp.index.cosines import cosines
from gum_mcp.store.db import (
    BUSY_TIMEOUT_MS,
    connect_with,
    crash_point,
    ensure_private_dir,
    ensure_private_file,
    truncate_wal,
)
from gum_mcp.store.keys import DataKey, find_key, store_state, wants_encryption

log = logging.getLogger("gum_mcp.index")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, metadata TEXT NOT NULL,"
    " configuration TEXT NOT NULL)",
    # a rowid table: rows of 1.5 KB and more would leave a WITHOUT ROWID b-tree's pages half empty
    "CREATE TABLE IF NOT EXISTS vectors (collection TEXT NOT NULL, id TEXT NOT NULL, embedding BLOB NOT NULL,"
    " metadata TEXT NOT NULL, UNIQUE (collection, id))",
)
LOAD_PAGE = 5000
#: From this many vectors a collection gets a coarse index (IVF: spherical k-means, 2*sqrt(n) clusters):
#: a query scans the rows of the clusters nearest to it, about a twentieth of the collection, instead of
#: every row. Measured at 100,000: recall@10 0.98 against exact search, 5x to 10x faster. Below, exact.
IVF_MIN = 20_000
IVF_PROBE_FRACTION = 20  # probe ceil(clusters / this) clusters
IVF_MIN_PROBE = 8


class Unavailable(RuntimeError):
    """No vectors file yet (read-only open), or it does not open."""


def sealed_client(settings: Settings, *, create: bool) -> SealedClient:
    """The client of the local index, vectors.sqlite3 (encrypted when the store is, plaintext when it is
    not; a Chroma server, GUM_CHROMA_URL, is vector_index.make_client's). The owner (`create`) deletes what
    an older version or an interrupted migration left (both derived: catch-up rebuilds them): chroma/ beside a plaintext
    store, a vectors file that is plaintext beside an encrypted store or the other way round. Raises
    Unavailable when read-only and there is nothing (fit) yet."""
    key = find_key(settings)
    if key is None and store_state(settings.db_path) == "new" and wants_encryption(settings):
        raise Unavailable("the store is not created yet: open it first")
    path = settings.vectors_path
    if key is not None and settings.chroma_dir.exists():
        log.warning("%s still holds plaintext vectors from before encryption: run `gum-mcp encrypt` to finish",
                    settings.chroma_dir)
    elif create and settings.chroma_dir.exists():
        _remove_old_chroma(settings)
    state = store_state(path)
    if state != "new" and (state == "encrypted") != (key is not None):
        store = "encrypted" if key is not None else "plaintext"
        if not create:
            raise Unavailable(f"{path} is {state} but the store is {store}: the owning process rebuilds it")
        log.warning("%s is %s but the store is %s: deleting it; the index is rebuilt from the store",
                    path, state, store)
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
    return SealedClient(path, key, create=create)


def _remove_old_chroma(settings: Settings) -> None:
    """An older version kept a plaintext data directory's index in Chroma's files, whose HNSW file can hold
    fragments of any text the process had in memory (forgotten text included): delete the folder."""
    try:
        shutil.rmtree(settings.chroma_dir)
    except OSError as exc:
        log.warning("could not delete %s, the old vector index (%s): delete it by hand; it may hold fragments "
                    "of old text", settings.chroma_dir, exc)
        return
    log.info("the vector index moved from %s to %s: deleted the old folder; the index is rebuilt from the store",
             settings.chroma_dir, settings.vectors_path.name)


class SealedClient:
    """Chroma's client API, as far as VectorIndex uses it, over vectors.sqlite3 (`key` None: plaintext)."""

    def __init__(self, path: Path, key: DataKey | None, *, create: bool = True) -> None:
        self.path = path
        self.location = str(path)
        self.eager = create  # the writer (the owning process) loads collections when it opens them
        if not create and not path.exists():
            raise Unavailable(f"no vector index at {path} yet")
        ensure_private_dir(path.parent)
        ensure_private_file(path)
        self._conn = connect_with(path, key)
        self.lock = threading.RLock()
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", f"busy_timeout = {BUSY_TIMEOUT_MS}",
                       "secure_delete = ON", "temp_store = MEMORY"):
            self._conn.execute(f"PRAGMA {pragma}")
        if create:
            with self.write() as conn:
                for statement in SCHEMA:
                    conn.execute(statement)
        self._collections: dict[str, SealedCollection] = {}

    def purge_freed(self, *, attempts: int = 3) -> bool:
        """After deletes: fold the WAL back into the file and truncate it, so no earlier copy of a page
        (a deleted vector) stays in the WAL; secure_delete has zeroed the freed rows and pages. Returns
        False when another process kept the WAL busy (beyond the busy timeout) every time."""
        if truncate_wal(self._conn, attempts, self.lock):
            return True
        log.warning("%s: WAL checkpoint stayed busy; deleted vectors may remain in its WAL until later", self.path)
        return False

    # -- transactions
    def write(self) -> _Transaction:
        return _Transaction(self, "BEGIN IMMEDIATE")

    def read(self) -> _Transaction:
        return _Transaction(self, "BEGIN")

    # -- Chroma's client API
    def get_settings(self) -> Any:
        from chromadb.config import Settings as ChromaSettings

        return ChromaSettings(anonymized_telemetry=False)

    def get_collection(self, name: str, embedding_function: Any = None) -> SealedCollection:
        from chromadb.errors import NotFoundError

        with self.lock:
            found = self._collections.get(name)
            if found is None:
                try:
                    with self.read() as conn:
                        row = conn.execute("SELECT metadata, configuration FROM collections WHERE name = ?",
                                           (name,)).fetchone()
                except Exception as exc:  # no table yet (read-only open of a file never written)
                    raise NotFoundError(f"Collection [{name}] does not exist") from exc
                if row is None:
                    raise NotFoundError(f"Collection [{name}] does not exist")
                found = SealedCollection(self, name, json.loads(row[0]), json.loads(row[1]))
                self._collections[name] = found
            found.check_function(embedding_function)
            if self.eager:
                found.load()
            return found

    def get_or_create_collection(self, name: str, embedding_function: Any = None,
                                 metadata: Mapping[str, Any] | None = None,
                                 configuration: Mapping[str, Any] | None = None) -> SealedCollection:
        from chromadb.errors import NotFoundError

        with self.lock:
            try:
                return self.get_collection(name, embedding_function)
            except NotFoundError:
                pass
            config: dict[str, Any] = dict(configuration or {})
            if embedding_function is not None:
                config["embedding_function"] = {"type": "known", "name": embedding_function.name(),
                                                "config": embedding_function.get_config()}
            meta = dict(metadata or {})
            with self.write() as conn:
                conn.execute("INSERT INTO collections (name, metadata, configuration) VALUES (?, ?, ?)",
                             (name, json.dumps(meta), json.dumps(config)))
            found = SealedCollection(self, name, meta, config, loaded=True)
            found._embedding_function = embedding_function
            self._collections[name] = found
            return found

    def delete_collection(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        with self.lock, self.write() as conn:
            gone = conn.execute("DELETE FROM collections WHERE name = ?", (name,)).rowcount
            conn.execute("DELETE FROM vectors WHERE collection = ?", (name,))
            self._collections.pop(name, None)
        if not gone:
            raise NotFoundError(f"Collection [{name}] does not exist")

    def close(self) -> None:
        with self.lock:
            self._collections.clear()
            self._conn.close()


class _Transaction:
    def __init__(self, client: SealedClient, begin: str) -> None:
        self.client = client
        self.begin = begin

    def __enter__(self) -> Any:
        self.client.lock.acquire()
        self.client._conn.execute(self.begin)
        return self.client._conn

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        try:
            self.client._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.client.lock.release()


class SealedCollection:
    """One collection: rows in vectors.sqlite3, a matrix in memory."""

    def __init__(self, client: SealedClient, name: str, metadata: dict[str, Any], configuration: dict[str, Any],
                 *, loaded: bool = False) -> None:
        self._client = client
        self.name = name
        self._metadata = metadata
        self.configuration_json = configuration
        self._embedding_function: Any = None
        self._loaded = loaded
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._norms = np.zeros(0, dtype=np.float32)
        self._metas: list[dict[str, Any]] = []
        self._centroids: np.ndarray | None = None  # the coarse index, for IVF_MIN rows and more
        self._assign: np.ndarray | None = None  # row -> its cluster
        self._ivf_size = 0  # rows when the clusters were last computed

    # -- what VectorIndex reads
    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def check_function(self, function: Any) -> None:
        """Like Chroma: a collection made with another embedding function is an error (ValueError)."""
        if function is None:
            return
        stored = (self.configuration_json or {}).get("embedding_function") or {}
        given = (function.name(), function.get_config())
        if stored.get("name") and (stored.get("name"), stored.get("config")) != given:
            raise ValueError(f"embedding function conflict: stored {stored.get('name')} {stored.get('config')}, "
                             f"given {function.name()} {function.get_config()}")
        self._embedding_function = function

    def count(self) -> int:
        if self._loaded:
            return len(self._ids)
        with self._client.read() as conn:
            return int(conn.execute("SELECT count(*) FROM vectors WHERE collection = ?", (self.name,)).fetchone()[0])

    def modify(self, metadata: Mapping[str, Any] | None = None, **_ignored: Any) -> None:
        if metadata is None:
            return
        meta = dict(metadata)
        with self._client.write() as conn:
            conn.execute("UPDATE collections SET metadata = ? WHERE name = ?", (json.dumps(meta), self.name))
        self._metadata = meta

    # -- loading
    def load(self) -> None:
        """Read every vector of this collection into memory (once)."""
        with self._client.lock:
            if self._loaded:
                return
            ids: list[str] = []
            metas: list[Any] = []  # JSON text, parsed when first asked for (queries need none)
            matrix = np.zeros((0, 0), dtype=np.float32)
            with self._client.read() as conn:  # one snapshot; the count comes from the (collection, id) index
                total = conn.execute("SELECT count(*) FROM vectors WHERE collection = ?", (self.name,)).fetchone()[0]
                cursor = conn.execute("SELECT id, embedding, metadata FROM vectors WHERE collection = ?", (self.name,))
                while rows := cursor.fetchmany(LOAD_PAGE):
                    if not ids:
                        matrix = np.empty((total, len(rows[0][1]) // 4), dtype=np.float32)
                    start = len(ids)
                    matrix[start : start + len(rows)] = np.frombuffer(b"".join(row[1] for row in rows),
                                                                      dtype=np.float32).reshape(len(rows), -1)
                    ids.extend(row[0] for row in rows)
                    metas.extend(row[2] for row in rows)
            self._set(ids, matrix[: len(ids)] if ids else matrix, metas)
            self._loaded = True

    def _set(self, ids: list[str], matrix: np.ndarray, metas: list[Any], norms: np.ndarray | None = None,
             assign: np.ndarray | None = None) -> None:
        """Rows kept as unit vectors (a query is then one matrix-vector product) and their norms (to give
        the stored embeddings back). `norms` given: `matrix` is unit already; `assign`: rows' clusters."""
        self._ids = ids
        self._row = {item_id: n for n, item_id in enumerate(ids)}
        if norms is None:
            norms = _norms(matrix)
            if len(matrix):
                matrix /= np.maximum(norms, 1e-12)[:, None]
        self._matrix = matrix
        self._norms = norms
        self._metas = metas
        self._assign = assign
        self._coarse_index()

    def _coarse_index(self) -> None:
        """Compute the clusters when the collection reaches IVF_MIN rows, and again when it has doubled
        or halved since; in between, rows join their nearest cluster as they come."""
        n = len(self._ids)
        if n < IVF_MIN:
            self._centroids, self._assign, self._ivf_size = None, None, 0
            return
        stale = self._assign is None or len(self._assign) != n or not self._ivf_size / 2 < n < 2 * self._ivf_size
        if self._centroids is None or stale:
            self._centroids, self._assign = _clusters(self._matrix)
            self._ivf_size = n

    def _nearest_cluster(self, unit_rows: np.ndarray) -> np.ndarray:
        assert self._centroids is not None
        return np.argmax(unit_rows @ self._centroids.T, axis=1).astype(np.int32)

    def _embeddings(self, rows: Any) -> np.ndarray:
        """The stored (not unit) embeddings of these rows."""
        if not len(rows):
            return np.zeros((0, self._dim()), np.float32)
        return self._matrix[rows] * self._norms[rows][:, None]

    def _meta(self, row: int) -> dict[str, Any]:
        meta = self._metas[row]
        if isinstance(meta, str):
            meta = self._metas[row] = json.loads(meta)
        return meta

    # -- writing
    def upsert(self, ids: Sequence[str], embeddings: Any = None, metadatas: Sequence[Mapping[str, Any]] | None = None,
               **_ignored: Any) -> None:
        self.load()
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError("upsert needs one embedding per id")
        if len(self._ids) and vectors.shape[1] != self._matrix.shape[1]:
            raise ValueError(f"embedding dimension {vectors.shape[1]} does not match the collection's "
                             f"{self._matrix.shape[1]}")
        metas = [dict(m) for m in metadatas] if metadatas is not None else [{} for _ in ids]
        with self._client.write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (collection, id, embedding, metadata) VALUES (?, ?, ?, ?)",
                [(self.name, item_id, vectors[n].tobytes(), json.dumps(metas[n])) for n, item_id in enumerate(ids)],
            )
        with self._client.lock:
            new_ids, new_rows, new_metas = [], [], []
            if not len(self._ids):
                self._matrix = np.zeros((0, vectors.shape[1]), dtype=np.float32)
            for n, item_id in enumerate(ids):
                row = self._row.get(item_id)
                if row is None:
                    new_ids.append(item_id)
                    new_rows.append(vectors[n])
                    new_metas.append(metas[n])
                else:
                    norm = float(np.linalg.norm(vectors[n]))
                    self._matrix[row] = vectors[n] / max(norm, 1e-12)
                    self._norms[row] = norm
                    self._metas[row] = metas[n]
                    if self._assign is not None:
                        self._assign[row] = self._nearest_cluster(self._matrix[row : row + 1])[0]
            if new_ids:
                base = len(self._ids)
                added = np.stack(new_rows)
                norms = _norms(added)
                unit = added / np.maximum(norms, 1e-12)[:, None]
                self._matrix = np.concatenate([self._matrix, unit])
                self._norms = np.concatenate([self._norms, norms])
                self._ids.extend(new_ids)
                self._metas.extend(new_metas)
                for offset, item_id in enumerate(new_ids):
                    self._row[item_id] = base + offset
                if self._assign is not None:
                    self._assign = np.concatenate([self._assign, self._nearest_cluster(unit)])
                self._coarse_index()

    add = upsert

    def update(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any]] | None = None, embeddings: Any = None,
               **_ignored: Any) -> None:
        self.load()
        present = [(n, item_id) for n, item_id in enumerate(ids) if item_id in self._row]
        if embeddings is not None:
            vectors = np.asarray(embeddings, dtype=np.float32)
            self.upsert([ids[n] for n, _ in present], vectors[[n for n, _ in present]],
                        [{**self._meta(self._row[i]), **(metadatas[n] if metadatas else {})} for n, i in present])
            return
        if metadatas is None or not present:
            return
        merged = {item_id: {**self._meta(self._row[item_id]), **metadatas[n]} for n, item_id in present}
        with self._client.write() as conn:
            conn.executemany("UPDATE vectors SET metadata = ? WHERE collection = ? AND id = ?",
                             [(json.dumps(meta), self.name, item_id) for item_id, meta in merged.items()])
        with self._client.lock:
            for item_id, meta in merged.items():
                self._metas[self._row[item_id]] = meta

    def delete(self, ids: Sequence[str] | None = None, **_ignored: Any) -> None:
        if not ids:
            return
        self.load()
        with self._client.write() as conn:
            conn.executemany("DELETE FROM vectors WHERE collection = ? AND id = ?", [(self.name, i) for i in ids])
        with self._client.lock:
            gone = {self._row[i] for i in ids if i in self._row}
            if not gone:
                return
            mask = np.ones(len(self._ids), dtype=bool)
            mask[list(gone)] = False
            keep = np.flatnonzero(mask)
            self._set([self._ids[n] for n in keep], self._matrix[keep] if len(keep) else
                      np.zeros((0, self._matrix.shape[1]), np.float32), [self._metas[n] for n in keep],
                      norms=self._norms[keep] if len(keep) else np.zeros(0, np.float32),
                      assign=None if self._assign is None else self._assign[keep])

    # -- reading
    def get(self, ids: Sequence[str] | None = None, include: Iterable[str] = ("metadatas",), **_ignored: Any,
            ) -> dict[str, Any]:
        self.load()
        include = set(include)
        with self._client.lock:
            rows = [self._row[i] for i in ids if i in self._row] if ids is not None else list(range(len(self._ids)))
            result: dict[str, Any] = {"ids": [self._ids[r] for r in rows]}
            if "embeddings" in include:
                result["embeddings"] = self._embeddings(rows)
            if "metadatas" in include:
                result["metadatas"] = [dict(self._meta(r)) for r in rows]
            if "documents" in include:  # never any text here
                result["documents"] = [None] * len(rows)
        return result

    def query(self, query_embeddings: Any, n_results: int = 10, where: Mapping[str, Any] | None = None,
              ids: Sequence[str] | None = None, include: Iterable[str] = ("distances",), **_ignored: Any,
              ) -> dict[str, Any]:
        self.load()
        include = set(include)
        queries = np.atleast_2d(np.asarray(query_embeddings, dtype=np.float32))  # one row per query
        out: dict[str, list] = {"ids": [], "distances": [], "embeddings": [], "metadatas": [], "documents": []}
        with self._client.lock:
            if ids is not None:
                rows = np.fromiter((self._row[i] for i in ids if i in self._row), dtype=np.int64)
            else:
                rows = None
            if where:
                candidates = range(len(self._ids)) if rows is None else rows.tolist()
                rows = np.fromiter((r for r in candidates if _matches(self._meta(r), where)), dtype=np.int64)
            units = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
            scans = [rows if rows is not None else self._probe(unit, int(n_results)) for unit in units]
            # the queries that scan every row do it in one matmul: one pass over the vectors for all of them
            whole = [n for n, scan in enumerate(scans) if scan is None]
            whole_sims = dict(zip(whole, cosines(self._matrix, units[whole]), strict=True)) if whole else {}
            for n, scan in enumerate(scans):
                # rows are unit: the cosines
                sims = whole_sims[n] if scan is None else cosines(self._matrix[scan], units[n : n + 1])[0]
                if not len(sims):
                    found, distances = [], []
                else:
                    k = min(int(n_results), len(sims))
                    top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
                    top = top[np.argsort(-sims[top], kind="stable")]
                    found = [int(t) if scan is None else int(scan[t]) for t in top]
                    distances = [float(1.0 - sims[t]) for t in top]
                out["ids"].append([self._ids[r] for r in found])
                out["distances"].append(distances)
                if "embeddings" in include:
                    out["embeddings"].append(self._embeddings(found))
                if "metadatas" in include:
                    out["metadatas"].append([dict(self._meta(r)) for r in found])
                out["documents"].append([None] * len(found))
        return {key: value for key, value in out.items() if key == "ids" or key in include}

    def _probe(self, unit: np.ndarray, k: int) -> np.ndarray | None:
        """The rows of the clusters nearest to `unit`, or None (scan every row: a small collection, or too
        few rows in those clusters for k results)."""
        if self._centroids is None or self._assign is None:
            return None
        count = len(self._centroids)
        probes = min(count, max(IVF_MIN_PROBE, -(-count // IVF_PROBE_FRACTION)))
        nearest = np.argpartition(-(self._centroids @ unit), probes - 1)[:probes] if probes < count else None
        if nearest is None:
            return None
        chosen = np.zeros(count, dtype=bool)
        chosen[nearest] = True
        rows = np.flatnonzero(chosen[self._assign])
        return rows if len(rows) >= 4 * k else None

    def _dim(self) -> int:
        return int(self._matrix.shape[1]) if self._matrix.ndim == 2 else 0


def _clusters(unit_rows: np.ndarray, *, iterations: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means over a sample of the rows (2*sqrt(n) clusters), then every row's cluster."""
    rng = np.random.default_rng(seed)
    n = len(unit_rows)
    count = max(1, int(2 * np.sqrt(n)))
    sample = unit_rows[np.sort(rng.choice(n, min(n, 48 * count), replace=False))]
    centroids = sample[rng.choice(len(sample), count, replace=False)].copy()
    for _ in range(iterations):
        nearest = np.argmax(sample @ centroids.T, axis=1)
        order = np.argsort(nearest, kind="stable")
        sizes = np.bincount(nearest, minlength=count)
        used = sizes > 0
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])[used]
        sums = np.add.reduceat(sample[order], starts, axis=0)
        centroids[used] = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    assign = np.empty(n, dtype=np.int32)
    for start in range(0, n, 16_384):
        assign[start : start + 16_384] = np.argmax(unit_rows[start : start + 16_384] @ centroids.T, axis=1)
    return centroids, assign


def _norms(matrix: np.ndarray) -> np.ndarray:
    if not len(matrix):
        return np.zeros(0, np.float32)
    return np.sqrt(np.einsum("ij,ij->i", matrix, matrix)).astype(np.float32)


_OPS = {
    "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b, "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b, "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b, "$nin": lambda a, b: a not in b,
}


def _matches(meta: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Chroma's metadata filter: {"key": value}, {"key": {"$op": value}}, {"$and": [...]}, {"$or": [...]}."""
    for key, condition in where.items():
        if key == "$and":
            if not all(_matches(meta, part) for part in condition):
                return False
        elif key == "$or":
            if not any(_matches(meta, part) for part in condition):
                return False
        elif isinstance(condition, Mapping):
            if not all(_OPS[op](meta.get(key), value) for op, value in condition.items()):
                return False
        elif meta.get(key) != condition:
            return False
    return True


def copy_from_chroma(chroma_dir: Path, target: SealedClient, *, page: int = 5000) -> int:
    """Copy every collection of a plaintext Chroma directory into `target` (used by `gum-mcp encrypt`,
    so encrypting a store does not mean embedding everything again). Returns how many vectors."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(chroma_dir), settings=ChromaSettings(anonymized_telemetry=False))
    copied = 0
    try:
        for listed in client.list_collections():
            name = listed if isinstance(listed, str) else listed.name
            source = client.get_collection(name)
            meta = dict(source.metadata or {})
            config = dict(source.configuration_json or {})
            with target.write() as conn:
                conn.execute("DELETE FROM vectors WHERE collection = ?", (name,))
                conn.execute("INSERT OR REPLACE INTO collections (name, metadata, configuration) VALUES (?, ?, ?)",
                             (name, json.dumps(meta), json.dumps(config, default=str)))
            offset = 0
            while True:
                got = source.get(include=["embeddings", "metadatas"], limit=page, offset=offset)
                if not got["ids"]:
                    break
                embeddings = np.asarray(got["embeddings"], dtype=np.float32)
                with target.write() as conn:
                    conn.executemany(
                        "INSERT OR REPLACE INTO vectors (collection, id, embedding, metadata) VALUES (?, ?, ?, ?)",
                        [(name, item_id, embeddings[n].tobytes(), json.dumps(dict(got["metadatas"][n] or {})))
                         for n, item_id in enumerate(got["ids"])],
                    )
                copied += len(got["ids"])
                offset += len(got["ids"])
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()
    return copied


def seal_chroma(settings: Settings, progress: Any = None) -> int:
    """`gum-mcp encrypt`, last step, where an older version left its index in chroma/: copy those
    plaintext vectors into the encrypted vectors.sqlite3, then delete chroma/. Run again after a crash,
    it starts the copy over. Returns how many vectors were copied (0 when there is no chroma/ folder)."""
    if not settings.chroma_dir.exists() or settings.chroma_url:
        return 0
    key = find_key(settings)
    if key is None:
        raise Unavailable("the store is not encrypted: run `gum-mcp encrypt` first")
    if progress is not None:
        progress(f"moving the vector index from {settings.chroma_dir.name}/ into {settings.vectors_path.name} ...")
    copied = 0
    if (settings.chroma_dir / "chroma.sqlite3").exists():
        for stale in (settings.vectors_path, Path(f"{settings.vectors_path}-wal"),
                      Path(f"{settings.vectors_path}-shm")):
            stale.unlink(missing_ok=True)
        client = SealedClient(settings.vectors_path, key, create=True)
        try:
            copied = copy_from_chroma(settings.chroma_dir, client)
        finally:
            client.close()
    crash_point("encrypt:chroma")
    shutil.rmtree(settings.chroma_dir)
    return copied
