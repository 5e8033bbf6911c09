"""What the vector index needs from the store: the change log, and the items to embed.

`index_log` is filled by triggers (schema.py) in the same transaction as every change the index
must mirror: a current proposition appears (upsert) or stops being current or loses its text
(delete); an observation with content appears (upsert), is pruned or deleted (delete), is skipped
by the privacy audit (delete: what the audit skipped is never embedded) or released (upsert). The index
keeps its own cursor (the last seq it applied) and catches up from here.

Compaction deletes entries an index has applied and records the highest seq deleted in `meta`
(`index_log_compacted`): an index whose cursor is below that mark missed entries that no longer
exist and must rebuild from the tables instead of replaying the log.

`store_identity()` is a random id kept in `meta`, so an index can tell that it was built from another
database (e.g. the SQLite file was replaced) and rebuild.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gum_mcp.store.db import Database
from gum_mcp.store.inbox import placeholders

Collection = Literal["propositions", "observations"]
COLLECTIONS: tuple[Collection, ...] = ("propositions", "observations")

_COMPACTED_KEY = "index_log_compacted"
_IDENTITY_KEY = "store_identity"
_REINDEX_KEY = "reindex_requested"


@dataclass(frozen=True)
class IndexLogEntry:
    seq: int
    collection: Collection
    item_id: int
    op: Literal["upsert", "delete"]


@dataclass(frozen=True)
class IndexItem:
    """One live item as the index stores it: text to embed (never stored in the index) and metadata."""

    collection: Collection
    id: int
    text: str
    created_at: float  # Unix seconds
    last_supported_at: float  # observations: observed_at
    confidence: int | None = None  # propositions only
    decay: int | None = None  # propositions only

    def metadata(self) -> dict[str, float | int]:
        data: dict[str, float | int] = {"created_at": self.created_at, "last_supported_at": self.last_supported_at}
        if self.confidence is not None:
            data["confidence"] = self.confidence
        if self.decay is not None:
            data["decay"] = self.decay
        return data


def _check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        raise ValueError(f"unknown collection {collection!r}")


# Live items only: current propositions with text; observations with content the audit did not skip.
_ITEM_SQL = {
    "propositions": (
        "SELECT id, text, created_at, last_supported_at, confidence, decay FROM propositions"
        " WHERE retired_at IS NULL AND text IS NOT NULL"
    ),
    "observations": (
        "SELECT id, content, created_at, observed_at, NULL, NULL FROM observations WHERE content IS NOT NULL"
        " AND status != 'skipped'"  # what the privacy audit skipped is never embedded
    ),
}


_COUNT_SQL = {
    "propositions": "SELECT count(*) FROM propositions WHERE retired_at IS NULL AND text IS NOT NULL",
    "observations": "SELECT count(*) FROM observations WHERE content IS NOT NULL AND status != 'skipped'",
}


def _item(collection: Collection, row: Sequence[object]) -> IndexItem:
    return IndexItem(
        collection=collection, id=row[0], text=row[1], created_at=row[2], last_supported_at=row[3],
        confidence=row[4], decay=row[5],
    )


class IndexLog:
    db: Database

    # -- the log
    def index_log_after(self, seq: int, *, limit: int = 5000) -> list[IndexLogEntry]:
        """Entries with a seq greater than `seq`, oldest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT seq, collection, item_id, op FROM index_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        return [IndexLogEntry(row[0], row[1], row[2], row[3]) for row in rows]

    def index_log_max_seq(self) -> int:
        """The highest seq ever assigned (compacted entries included); 0 if the log was never written."""
        with self.db.read() as conn:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'index_log'").fetchone()
            latest = conn.execute("SELECT max(seq) FROM index_log").fetchone()[0]
        return max(row[0] if row else 0, latest or 0)

    def index_log_compacted(self) -> int:
        """The highest seq compaction has deleted (0: nothing was ever compacted)."""
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_COMPACTED_KEY,)).fetchone()
        return int(row[0]) if row else 0

    def compact_index_log(self, upto_seq: int) -> int:
        """Delete the entries with seq <= upto_seq (applied by the index); return how many."""
        if upto_seq <= 0:
            return 0
        with self.db.read() as conn:  # the index calls this after every catch-up: an idle one writes nothing
            if conn.execute("SELECT 1 FROM index_log WHERE seq <= ? LIMIT 1", (upto_seq,)).fetchone() is None:
                return 0
        with self.db.write() as conn:
            deleted = conn.execute("DELETE FROM index_log WHERE seq <= ?", (upto_seq,)).rowcount
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)",
                (_COMPACTED_KEY, str(upto_seq)),
            )
        return deleted

    def store_identity(self) -> str:
        """A random id for this database, created on first use."""
        with self.db.read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (_IDENTITY_KEY,)).fetchone()
        if row:
            return row[0]
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (_IDENTITY_KEY, uuid.uuid4().hex))
            return conn.execute("SELECT value FROM meta WHERE key = ?", (_IDENTITY_KEY,)).fetchone()[0]

    # -- items to embed
    def index_items(self, collection: Collection, ids: Sequence[int]) -> dict[int, IndexItem]:
        """The live items among `ids` (ids that are gone or not current are simply absent)."""
        _check_collection(collection)
        found: dict[int, IndexItem] = {}
        ids = list(ids)
        with self.db.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(f"{_ITEM_SQL[collection]} AND id IN ({placeholders(chunk)})", chunk)
                for row in rows:
                    found[row[0]] = _item(collection, row)
        return found

    def index_items_page(self, collection: Collection, *, after_id: int = 0, limit: int = 500) -> list[IndexItem]:
        """Live items with id > after_id, by id: page through them to rebuild an index."""
        _check_collection(collection)
        with self.db.read() as conn:
            rows = conn.execute(f"{_ITEM_SQL[collection]} AND id > ? ORDER BY id LIMIT ?", (after_id, limit))
            return [_item(collection, row) for row in rows]

    def count_index_items(self, collection: Collection) -> int:
        _check_collection(collection)
        with self.db.read() as conn:
            return conn.execute(_COUNT_SQL[collection]).fetchone()[0]

    # -- a rebuild asked for by a process that does not own the index
    def request_reindex(self) -> None:
        """Ask the process that owns the vector index to rebuild it from the tables."""
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_REINDEX_KEY, "1"))

    def take_reindex_request(self) -> bool:
        """True once per request: the owner calls this before each catch-up (a read when none is asked)."""
        with self.db.read() as conn:
            if conn.execute("SELECT 1 FROM meta WHERE key = ?", (_REINDEX_KEY,)).fetchone() is None:
                return False
        with self.db.write() as conn:
            return conn.execute("DELETE FROM meta WHERE key = ?", (_REINDEX_KEY,)).rowcount > 0
