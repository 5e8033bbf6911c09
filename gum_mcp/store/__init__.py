"""The store: SQLite is the single source of truth for a person's user model.

`Store` (store.py) is one object with synchronous (blocking) methods, grouped by idea in the modules of
this package. Async callers use `store.aio.<method>(...)`, which runs the same method in a worker
thread.

The names below load on first use, so a light module of this package (`permissions`, `db`) does not load
every other: `gum-mcp serve` answers its client's handshake before it opens the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gum_mcp.store.propositions import StaleBatch
    from gum_mcp.store.store import Store

__all__ = ["StaleBatch", "Store"]


def __getattr__(name: str) -> Any:
    if name == "Store":
        from gum_mcp.store.store import Store

        return Store
    if name == "StaleBatch":
        from gum_mcp.store.propositions import StaleBatch

        return StaleBatch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
