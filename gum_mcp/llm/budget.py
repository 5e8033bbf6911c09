"""Accounting and the daily token budget: where calls are recorded, and how many tokens today used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import anyio
import anyio.to_thread

from gum_mcp.config import Settings
from gum_mcp.domain import LLMCall, utcnow


@runtime_checkable
class Accounting(Protocol):
    """Where LLM calls are recorded: the store. Both methods block (sqlite); we call them in a thread."""

    def record_llm_call(self, call: LLMCall) -> None: ...

    def tokens_used_since(self, since: datetime) -> int: ...


@dataclass(frozen=True)
class BudgetState:
    """The daily token budget as status shows it. `budget` 0 means no budget."""

    used: int
    budget: int
    paused_until: datetime | None

    @property
    def paused(self) -> bool:
        return self.paused_until is not None


def start_of_day(now: datetime | None = None) -> datetime:
    now = (now or utcnow()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _budget_from(used: int, budget: int, now: datetime | None) -> BudgetState:
    if budget <= 0 or used < budget:
        return BudgetState(used=used, budget=budget, paused_until=None)
    return BudgetState(used=used, budget=budget, paused_until=start_of_day(now) + timedelta(days=1))


def read_budget_state(settings: Settings, accounting: Accounting, now: datetime | None = None) -> BudgetState:
    """The budget state, blocking (for sync callers such as the CLI)."""
    used = int(accounting.tokens_used_since(start_of_day(now)))
    return _budget_from(used, settings.daily_token_budget, now)


async def budget_state(settings: Settings, accounting: Accounting, now: datetime | None = None) -> BudgetState:
    """The budget state: tokens used today (UTC), the budget, and until when inference is paused."""
    used = await anyio.to_thread.run_sync(accounting.tokens_used_since, start_of_day(now))
    return _budget_from(int(used), settings.daily_token_budget, now)
