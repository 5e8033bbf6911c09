"""`gum-mcp query`: open the store and the index for these settings, search, close (`run_query`)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from gum_mcp.domain import parse_when
from gum_mcp.retrieval.hits import Hit, Over
from gum_mcp.retrieval.hybrid import search, warn_bm25_only

if TYPE_CHECKING:
    from gum_mcp.config import Settings


def _when(value: datetime | str | None, name: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_when(value, name=name)


def run_query(
    settings: Settings,
    text: str | None,
    k: int = 5,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    min_confidence: int | None = None,
    over: Over = "propositions",
    *,
    catch_up: bool = False,
) -> list[Hit]:
    """`gum-mcp query`: search the user model from a terminal. since/until may be datetimes or text
    (ISO-8601 or an age like 3d). The index is opened read-only unless `catch_up` (only the process
    that owns the data directory may write it); SQLite filters whatever the index has not caught up."""
    from gum_mcp.index.vector_index import open_index
    from gum_mcp.store import Store

    since_at, until_at = _when(since, "since"), _when(until, "until")
    with Store.open(settings) as store:
        index, reason = open_index(settings, read_only=not catch_up)
        try:
            if index is not None and catch_up:
                index.catch_up(store)
            if index is None:
                warn_bm25_only(reason or "no vector index")
            return search(store, index, text, k, since_at, until_at, min_confidence, over)
        finally:
            if index is not None:
                index.close()
