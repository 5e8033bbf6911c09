"""`Store`: one object over the store's SQLite database, with the methods of this package's modules (see
`gum_mcp.store`), opened by `Store.open(settings)`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from gum_mcp.config import Settings
from gum_mcp.store import reredact
from gum_mcp.store.access_log import AccessLog
from gum_mcp.store.accounting import Accounting
from gum_mcp.store.db import Database
from gum_mcp.store.export import Export
from gum_mcp.store.feedback import FeedbackLog
from gum_mcp.store.forget import AfterForgetHook, ForgetHook, Forgetting
from gum_mcp.store.inbox import Inbox
from gum_mcp.store.index_log import IndexLog
from gum_mcp.store.llm_state import LLMState
from gum_mcp.store.pending_deletes import Deleter
from gum_mcp.store.propositions import Propositions, StaleBatch
from gum_mcp.store.redaction import Redactor
from gum_mcp.store.retention import Retention
from gum_mcp.store.search import Search
from gum_mcp.store.sensitivity import Sensitivities
from gum_mcp.store.suggestions import Suggestions
from gum_mcp.store.tokens import Tokens

__all__ = ["StaleBatch", "Store"]


class Store(Inbox, Propositions, FeedbackLog, Forgetting, Accounting, Export, Search, IndexLog, Suggestions,
            Retention, Tokens, AccessLog, LLMState, Sensitivities):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redactor = Redactor(settings.redact_patterns, contacts=settings.redact_contacts)
        self.max_observation_chars = settings.max_observation_chars
        self.forget_hooks: list[ForgetHook] = []
        self.after_forget_hooks: list[AfterForgetHook] = []
        self.deleters: dict[str, Deleter] = {}  # pending-delete kind -> who does it (gum_mcp.forgetting)
        self.db = Database(settings.db_path, durability=settings.durability, settings=settings)
        self.aio = _Async(self)
        reredact.is_current(self.db, self.redactor)  # a new, empty store is redacted with this redactor

    @classmethod
    def open(cls, settings: Settings) -> Store:
        return cls(settings)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Async:
    """`store.aio.name(...)` awaits `store.name(...)` in a worker thread."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        call.__name__ = name
        return call
