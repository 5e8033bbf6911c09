"""The vector index: collections derived from SQLite, caught up from `index_log`.

- Client: `SealedClient` over `<data dir>/vectors.sqlite3` (vector_store.py: SQLite, encrypted with
  the store's key when the store is, searched in memory), or Chroma's `HttpClient` when GUM_CHROMA_URL
  names a Chroma server; telemetry off. Both speak the same collection API. Every collection is opened
  with our `ChromaEmbeddingFunction`, and we always pass embeddings ourselves, so Chroma never loads
  its default (downloaded ONNX) model or calls out.
- Collections: `gum_propositions` (current propositions) and `gum_observations` (observations with
  content). Each record is an id, an embedding and metadata (created_at, last_supported_at - observed_at
  for observations - confidence, decay; numbers). Never the text: SQLite is the truth. last_supported_at
  is as of indexing (reinforcement does not touch the log); retrieval reads live values from SQLite.
  After a catch-up that deleted records the client purges its freed space (`purge_freed`: the local
  file's WAL truncated), so a forgotten item's vector leaves the files.
- Collection metadata: `gum_cursor` (the last index_log seq applied to this collection; -1 while a
  rebuild is under way), `gum_embedder` and `gum_dim` (the vector space; the embedding function's
  stored config says the same), `gum_store` (the identity of the database it was built from).
  The cursor lives with the collection, so deleting the index file restarts from zero.
- `catch_up(store)`: rebuilds a collection that is new, half-built, from another database, or whose
  cursor is below what the log has compacted; otherwise replays the log after its cursor, collapsing
  repeated ops per item (the item's state in SQLite decides: live -> upsert, else delete), embedding
  only items the collection lacks, in batches. Then compacts the log up to the lowest cursor.
- A change of embedding model or dimension drops the collection on open; the next catch_up rebuilds
  it. Never a mixed index.

Everything here blocks (SQLite, numpy, HTTP): async callers run it in a worker thread. One process
writes the index (the one that owns the data directory); others may open it read-only to query.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from gum_mcp.config import Settings
from gum_mcp.index.embeddings import (
    ChromaEmbeddingFunction,
    Embedder,
    make_embedder,
    needs_reindex,
    query_vector,
    signature,
    stored_signature,
)
from gum_mcp.store.index_log import COLLECTIONS, Collection, IndexItem

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection as ChromaCollection

    from gum_mcp.store import Store

log = logging.getLogger("gum_mcp.index")

COLLECTION_NAMES: dict[Collection, str] = {"propositions": "gum_propositions", "observations": "gum_observations"}


def collection_names(namespace: str = "") -> dict[Collection, str]:
    """The collections' names: `COLLECTION_NAMES` in a local index; on a Chroma server, which may hold the
    indexes of several data directories, `gum_<namespace>_propositions` etc. (see `server_namespace`)."""
    if not namespace:
        return dict(COLLECTION_NAMES)
    return {c: f"gum_{namespace}_{c}" for c in COLLECTIONS}


def server_namespace(settings: Settings) -> str:
    """The part of the collection names on a Chroma server that belongs to this data directory: the first 16
    hex digits of its store's identity (a random id made with the database), so two data directories never
    share a collection on one server, and a data directory finds its own wherever it is mounted."""
    from gum_mcp.store import Store

    with Store.open(settings) as store:
        return store.store_identity()[:16]
CURSOR_KEY = "gum_cursor"
BUILDING = -1  # cursor of a collection whose rebuild has not finished
EMBED_BATCH = 64  # texts per embed() call
WRITE_BATCH = 1000  # records per Chroma write (Chroma's limit is about 5000)
LOG_PAGE = 5000  # index_log entries read at a time
MAX_EMBED_CHARS = 4000  # MiniLM reads 256 word pieces; longer text only costs tokenising

#: progress(collection, done, total)
Progress = Callable[[str, int, int], None]


class IndexUnavailable(RuntimeError):
    """The index cannot be used for this (read-only, collection missing, wrong model)."""


@dataclass(frozen=True)
class VectorHit:
    id: int
    similarity: float  # cosine similarity, -1..1
    embedding: np.ndarray | None = None


@dataclass
class CatchUpReport:
    upserted: int = 0  # records embedded and written
    refreshed: int = 0  # records already present whose metadata was rewritten
    deleted: int = 0
    rebuilt: list[str] = field(default_factory=list)  # collections rebuilt from the tables
    cursor: dict[str, int] = field(default_factory=dict)
    compacted: int = 0  # index_log entries deleted
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.upserted or self.deleted or self.rebuilt)


def make_client(settings: Settings, *, create: bool = True) -> ClientAPI:
    """The client the settings ask for: Chroma's HttpClient for GUM_CHROMA_URL (telemetry off), else the
    local `SealedClient` (vectors.sqlite3). Raises IndexUnavailable if `create` is False and there is no
    local index yet."""
    if settings.chroma_url:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        url = urlparse(settings.chroma_url)
        ssl = url.scheme == "https"
        port = url.port or (443 if ssl else 8000)
        headers = {"Authorization": f"Bearer {settings.chroma_token}"} if settings.chroma_token else None
        return chromadb.HttpClient(host=url.hostname or "localhost", port=port, ssl=ssl, headers=headers,
                                   settings=ChromaSettings(anonymized_telemetry=False))
    from gum_mcp.index.vector_store import Unavailable, sealed_client

    try:
        return sealed_client(settings, create=create)  # type: ignore[return-value]
    except Unavailable as exc:
        raise IndexUnavailable(str(exc)) from None


class VectorIndex:
    """The collections for propositions and observations (local or on a Chroma server), kept in step
    with a Store."""

    def __init__(self, client: ClientAPI, embedder: Embedder, *, read_only: bool = False,
                 location: str = "", namespace: str = "") -> None:
        self.client = client
        self.embedder = embedder
        #: Collection names: `COLLECTION_NAMES`, or on a shared Chroma server `collection_names(namespace)`.
        self.names = collection_names(namespace)
        self.read_only = read_only
        self.location = location
        self._function = ChromaEmbeddingFunction(embedder)
        self._lock = threading.RLock()  # one catch-up / rebuild at a time
        self._collections: dict[Collection, ChromaCollection | None] = {}
        self._problems: dict[Collection, str] = {}
        for collection in COLLECTIONS:
            self._collections[collection] = self._open_collection(collection)

    @classmethod
    def open(cls, settings: Settings, embedder: Embedder, *, read_only: bool = False) -> VectorIndex:
        """Open (and unless read_only, create) the index the settings name. Cheap: nothing is embedded
        here; call `catch_up` to bring it in step with the store."""
        namespace = server_namespace(settings) if settings.chroma_url else ""
        client = make_client(settings, create=not read_only)
        location = getattr(client, "location", None) or settings.chroma_url or str(settings.vectors_path)
        try:
            return cls(client, embedder, read_only=read_only, location=location, namespace=namespace)
        except BaseException:
            _close_client(client)
            raise

    def close(self) -> None:
        _close_client(self.client)

    def purge_freed(self) -> None:
        """After deletes: the client's freed space purged (the local file's WAL truncated; its freed
        pages are zeroed already), so deleted vectors leave the files. A Chroma server's storage is its own."""
        purge = getattr(self.client, "purge_freed", None)
        if callable(purge):
            purge()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections
    def _base_metadata(self) -> dict[str, Any]:
        return {"gum_embedder": self.embedder.name, "gum_dim": int(self.embedder.dim)}

    def _open_collection(self, collection: Collection) -> ChromaCollection | None:
        from chromadb.errors import NotFoundError

        name = self.names[collection]
        try:
            found = self.client.get_collection(name, embedding_function=self._function)
        except NotFoundError:
            found = None
        except ValueError as exc:  # made with another embedding function
            found = None
            problem = f"{name} was made with another embedding function ({exc})"
            if self.read_only:
                self._problems[collection] = problem
                return None
            log.warning("%s: dropping it and rebuilding", problem)
            self.client.delete_collection(name)
        if found is not None:
            mismatch = self._mismatch(found)
            if mismatch is None:
                return found
            if self.read_only:
                self._problems[collection] = f"{name}: {mismatch}; run `gum-mcp reindex`"
                return None
            log.warning("%s: %s; dropping it, the next catch-up rebuilds it", name, mismatch)
            self.client.delete_collection(name)
        if self.read_only:
            self._problems[collection] = f"{name} does not exist yet"
            return None
        return self._create(collection, identity="")

    def _mismatch(self, found: ChromaCollection) -> str | None:
        """Why vectors in `found` do not fit the current embedder, or None."""
        meta = found.metadata or {}
        stored = stored_signature(found.configuration_json) or (
            {"embedder": meta.get("gum_embedder"), "dim": meta.get("gum_dim")} if meta.get("gum_embedder") else None
        )
        if needs_reindex(stored, self.embedder) or needs_reindex(
            {"embedder": meta.get("gum_embedder"), "dim": meta.get("gum_dim")}, self.embedder
        ):
            was = stored or {}
            return (f"embedded with {was.get('embedder')} ({was.get('dim')} dims) but the model is now "
                    f"{self.embedder.name} ({self.embedder.dim} dims)")
        return None

    def _create(self, collection: Collection, *, identity: str) -> ChromaCollection:
        name = self.names[collection]
        metadata = {**self._base_metadata(), CURSOR_KEY: BUILDING, "gum_store": identity}
        return self.client.get_or_create_collection(
            name, embedding_function=self._function, metadata=metadata,
            configuration={"hnsw": {"space": "cosine"}},
        )

    def _collection(self, collection: Collection) -> ChromaCollection:
        found = self._collections.get(collection)
        if found is None:
            raise IndexUnavailable(self._problems.get(collection) or f"no {collection} collection")
        return found

    def available(self, collection: Collection) -> bool:
        """True when `collection` can answer queries (it exists in this vector space and is built)."""
        found = self._collections.get(collection)
        return found is not None and self.cursor(collection) >= 0

    def problem(self, collection: Collection) -> str | None:
        if self.available(collection):
            return None
        if self._collections.get(collection) is not None:
            return f"{self.names[collection]} is being built"
        return self._problems.get(collection) or f"no {collection} collection"

    def cursor(self, collection: Collection) -> int:
        found = self._collections.get(collection)
        if found is None:
            return BUILDING
        value = (found.metadata or {}).get(CURSOR_KEY, BUILDING)
        return int(value) if isinstance(value, int | float) else BUILDING

    def count(self, collection: Collection) -> int:
        found = self._collections.get(collection)
        return found.count() if found is not None else 0

    def status(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "embedder": self.embedder.name,
            "dim": self.embedder.dim,
            "read_only": self.read_only,
            "collections": {
                c: {"count": self.count(c), "cursor": self.cursor(c), "problem": self.problem(c)} for c in COLLECTIONS
            },
        }

    def _set_cursor(self, collection: Collection, cursor: int, identity: str) -> None:
        found = self._collection(collection)
        found.modify(metadata={**self._base_metadata(), CURSOR_KEY: int(cursor), "gum_store": identity})

    # -- writing
    def _writable(self) -> None:
        if self.read_only:
            raise IndexUnavailable("the vector index was opened read-only")

    def catch_up(self, store: Store, *, progress: Progress | None = None) -> CatchUpReport:
        """Apply everything the store did that this index lacks; rebuild collections that cannot catch up."""
        from chromadb.errors import NotFoundError

        try:
            return self._catch_up(store, progress)
        except NotFoundError:  # a Chroma server that lost our collections (restarted without its data)
            log.warning("the vector index's collections are gone from %s; building them again", self.location)
            with self._lock:
                for collection in COLLECTIONS:
                    self._collections[collection] = self._open_collection(collection)
            return self._catch_up(store, progress)

    def _catch_up(self, store: Store, progress: Progress | None) -> CatchUpReport:
        self._writable()
        started = time.perf_counter()
        report = CatchUpReport()
        with self._lock:
            identity = store.store_identity()
            max_seq = store.index_log_max_seq()
            compacted = store.index_log_compacted()
            for collection in COLLECTIONS:
                found = self._collections.get(collection)
                meta = (found.metadata or {}) if found is not None else {}
                cursor = self.cursor(collection)
                reason = None
                if found is None:
                    reason = "missing"
                elif cursor < 0:
                    reason = "new or half-built"
                elif meta.get("gum_store") != identity:
                    reason = "built from another database"
                elif cursor < compacted:
                    reason = f"behind the compacted log ({cursor} < {compacted})"
                elif cursor > max_seq:
                    reason = f"ahead of the log ({cursor} > {max_seq})"
                if reason is not None:
                    log.info("rebuilding %s: %s", self.names[collection], reason)
                    report.upserted += self._rebuild(store, collection, identity, progress)
                    report.rebuilt.append(collection)
            cursors = {c: self.cursor(c) for c in COLLECTIONS}
            position = min(cursors.values())
            while True:
                entries = store.index_log_after(position, limit=LOG_PAGE)
                if not entries:
                    break
                last: dict[Collection, dict[int, str]] = {c: {} for c in COLLECTIONS}
                for entry in entries:
                    if entry.seq > cursors[entry.collection]:
                        last[entry.collection][entry.item_id] = entry.op  # the latest op wins
                position = entries[-1].seq
                for collection in COLLECTIONS:
                    if last[collection]:
                        upserted, refreshed, deleted = self._apply(store, collection, last[collection], progress)
                        report.upserted += upserted
                        report.refreshed += refreshed
                        report.deleted += deleted
                    if position > cursors[collection]:
                        self._set_cursor(collection, position, identity)
                        cursors[collection] = position
            report.cursor = dict(cursors)
            report.compacted = store.compact_index_log(min(cursors.values()))
            if report.deleted or report.rebuilt:
                self.purge_freed()
        report.seconds = time.perf_counter() - started
        if report.changed:
            log.info("index caught up: %d embedded, %d deleted, rebuilt %s in %.1f s",
                     report.upserted, report.deleted, report.rebuilt or "nothing", report.seconds)
        return report

    def _apply(self, store: Store, collection: Collection, ops: Mapping[int, str],
               progress: Progress | None) -> tuple[int, int, int]:
        found = self._collection(collection)
        # SQLite decides: an item that is live now is upserted, whatever the log said on the way.
        items = store.index_items(collection, [item_id for item_id, op in ops.items() if op == "upsert"])
        gone = [item_id for item_id in ops if item_id not in items]
        present: set[int] = set()
        for chunk in _chunks(sorted(items), WRITE_BATCH):
            present.update(int(i) for i in found.get(ids=[str(i) for i in chunk], include=[])["ids"])
        missing = [items[i] for i in sorted(items) if i not in present]
        self._embed_and_write(found, missing, collection, progress)
        refresh = [items[i] for i in sorted(present)]
        for chunk in _chunks(refresh, WRITE_BATCH):
            found.update(ids=[str(item.id) for item in chunk], metadatas=[item.metadata() for item in chunk])
        for chunk in _chunks(gone, WRITE_BATCH):
            found.delete(ids=[str(i) for i in chunk])
        return len(missing), len(refresh), len(gone)

    def _embed_and_write(self, found: ChromaCollection, items: list[IndexItem], collection: str,
                         progress: Progress | None, *, done: int = 0, total: int | None = None) -> int:
        total = len(items) if total is None else total
        for chunk in _chunks(items, EMBED_BATCH):
            vectors = self.embedder.embed([item.text[:MAX_EMBED_CHARS] for item in chunk])
            found.upsert(
                ids=[str(item.id) for item in chunk],
                embeddings=vectors,
                metadatas=[item.metadata() for item in chunk],
            )
            done += len(chunk)
            if progress is not None:
                progress(collection, done, total)
        return done

    def rebuild(self, store: Store, *, progress: Progress | None = None,
                collections: Iterable[Collection] = COLLECTIONS) -> int:
        """Drop and rebuild collections from SQLite; return how many records were written."""
        self._writable()
        with self._lock:
            identity = store.store_identity()
            written = sum(self._rebuild(store, collection, identity, progress) for collection in collections)
            store.compact_index_log(min(self.cursor(c) for c in COLLECTIONS))
            self.purge_freed()
        return written

    def _rebuild(self, store: Store, collection: Collection, identity: str, progress: Progress | None) -> int:
        name = self.names[collection]
        if self._collections.get(collection) is not None:
            from chromadb.errors import NotFoundError

            with contextlib.suppress(NotFoundError):
                self.client.delete_collection(name)
        self._collections[collection] = None
        found = self._create(collection, identity=identity)
        self._collections[collection] = found
        self._problems.pop(collection, None)
        # Entries logged from here on are replayed by catch_up; replaying one we already wrote is harmless.
        start_seq = store.index_log_max_seq()
        total = store.count_index_items(collection)
        done, after = 0, 0
        if progress is not None:
            progress(collection, 0, total)
        while True:
            page = store.index_items_page(collection, after_id=after, limit=512)
            if not page:
                break
            done = self._embed_and_write(found, page, collection, progress, done=done, total=max(total, done))
            after = page[-1].id
        self._set_cursor(collection, start_seq, identity)
        return done

    # -- reading
    def embed_query(self, text: str) -> np.ndarray:
        return query_vector(self.embedder, text)

    def query(
        self,
        collection: Collection,
        query: str | np.ndarray,
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ids: Iterable[int] | None = None,
        include_embeddings: bool = False,
    ) -> list[VectorHit]:
        """The k nearest records to `query` (a text, embedded here, or a vector), nearest first.

        `where` is a Chroma metadata filter (slow on big collections: prefer `ids`); `ids` restricts the
        search to those records.
        """
        vector = self.embed_query(query) if isinstance(query, str) else query
        return self.query_many(collection, [vector], k, where=where, ids=ids, include_embeddings=include_embeddings)[0]

    def query_many(
        self,
        collection: Collection,
        vectors: Sequence[np.ndarray],
        k: int = 10,
        *,
        where: Mapping[str, Any] | None = None,
        ids: Iterable[int] | None = None,
        include_embeddings: bool = False,
    ) -> list[list[VectorHit]]:
        """`query` for several vectors in one call (one pass over the collection for all of them), the
        hits of each in order."""
        found = self._collection(collection)
        id_list = None if ids is None else [str(i) for i in ids]
        if not len(vectors) or k < 1 or (id_list is not None and not id_list):
            return [[] for _ in vectors]
        include = ["distances", "embeddings"] if include_embeddings else ["distances"]
        from chromadb.errors import NotFoundError

        try:
            result = found.query(
                query_embeddings=[np.asarray(v, dtype=np.float32) for v in vectors], n_results=k,
                where=dict(where) if where else None, ids=id_list, include=include,  # type: ignore[arg-type]
            )
        except NotFoundError:  # dropped by a rebuild meanwhile
            return [[] for _ in vectors]
        hits: list[list[VectorHit]] = []
        for row, hit_ids in enumerate(result["ids"]):
            distances = (result.get("distances") or [])[row]
            embeddings = (result.get("embeddings") or [])[row] if include_embeddings else None
            hits.append([
                VectorHit(
                    id=int(hit_id),
                    similarity=1.0 - float(distance),
                    embedding=None if embeddings is None else np.asarray(embeddings[n], dtype=np.float32),
                )
                for n, (hit_id, distance) in enumerate(zip(hit_ids, distances, strict=True))
            ])
        return hits

    def embeddings(self, collection: Collection, ids: Iterable[int]) -> dict[int, np.ndarray]:
        """The stored embeddings of those ids that are in the collection."""
        found = self._collection(collection)
        wanted = [str(i) for i in ids]
        vectors: dict[int, np.ndarray] = {}
        from chromadb.errors import NotFoundError

        for chunk in _chunks(wanted, WRITE_BATCH):
            try:
                result = found.get(ids=chunk, include=["embeddings"])  # type: ignore[list-item]
            except NotFoundError:  # dropped by a rebuild meanwhile
                return {}
            embeddings = result.get("embeddings")
            if embeddings is None:
                continue
            for item_id, vector in zip(result["ids"], embeddings, strict=True):
                vectors[int(item_id)] = np.asarray(vector, dtype=np.float32)
        return vectors


def _chunks(values: list, size: int) -> list[list]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _close_client(client: Any) -> None:
    close = getattr(client, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # closing must not hide the real error
            log.debug("closing the Chroma client failed", exc_info=True)


def open_index(
    settings: Settings, *, embedder: Embedder | None = None, read_only: bool = False
) -> tuple[VectorIndex | None, str | None]:
    """The vector index for these settings, or (None, a one-line reason: retrieval is then BM25 only).

    `embedder` defaults to `make_embedder(settings)`. Never raises for a missing model or index.
    """
    if embedder is None:
        embedder, reason = make_embedder(settings)
        if embedder is None:
            return None, f"no embedding model: {reason}"
    try:
        return VectorIndex.open(settings, embedder, read_only=read_only), None
    except IndexUnavailable as exc:
        return None, str(exc)
    except Exception as exc:  # Chroma down (HttpClient), damaged files: BM25 still works
        log.warning("vector index unavailable: %s: %s", type(exc).__name__, exc)
        return None, f"vector index unavailable ({type(exc).__name__}: {str(exc)[:200]})"


def run_reindex(settings: Settings, progress: Progress | None = None) -> int:
    """`gum-mcp reindex`: rebuild the whole index from SQLite; return how many records were written.

    Raises IndexUnavailable (with the reason) when there is no embedding model. Only the process that
    owns the data directory should run this (the caller checks the lock).
    """
    from gum_mcp.store import Store

    embedder, reason = make_embedder(settings)
    if embedder is None:
        raise IndexUnavailable(f"cannot reindex without an embedding model: {reason}")
    with Store.open(settings) as store, VectorIndex.open(settings, embedder) as index:
        return index.rebuild(store, progress=progress)


__all__ = [
    "COLLECTION_NAMES",
    "CatchUpReport",
    "IndexUnavailable",
    "Progress",
    "VectorHit",
    "VectorIndex",
    "make_client",
    "open_index",
    "run_reindex",
    "signature",
]
