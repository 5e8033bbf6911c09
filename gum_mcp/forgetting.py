"""Forgetting across every place that keeps a person's data: the store (observations,
propositions, suggestions, through its own transaction and triggers), kept and pending screenshots,
and the file observer's cached copies. The vector index learns of removals from `index_log`.

Entry points (the CLI, the MCP server, the runtime) open the store through `open_store`, so a
forget done anywhere also removes the screenshots of the forgotten observations.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gum_mcp.config import Settings
from gum_mcp.domain import ForgetReport, utcnow
from gum_mcp.observers import forget_file_cache, forget_screenshots, screenshots_forget_hook
from gum_mcp.store import Store


def open_store(settings: Settings) -> Store:
    """The store, with the hooks that carry a forget beyond SQLite."""
    store = Store.open(settings)
    store.after_forget_hooks.append(screenshots_forget_hook(settings))
    return store


def forget_range(store: Store, since: datetime | None, until: datetime | None) -> ForgetReport:
    """Observations in [since, until), and screenshots captured then, pending ones included (they
    would otherwise become observations of that time later)."""
    report = store.forget_range(since, until)  # validates the range first
    forget_screenshots(store.settings, since, until)
    return report


def forget_everything(store: Store) -> ForgetReport:
    report = store.forget_everything()
    forget_screenshots(store.settings)
    forget_file_cache(store.settings)
    return report


def prune(store: Store, retention_days: int, *, now: datetime | None = None) -> int:
    """Retention: observation text and kept screenshots older than `retention_days` (0 = keep)."""
    if retention_days <= 0:
        return 0
    count = store.prune(retention_days, now=now)
    forget_screenshots(store.settings, until=(now or utcnow()) - timedelta(days=retention_days), pending=False)
    return count
