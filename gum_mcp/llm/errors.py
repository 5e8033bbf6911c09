"""What an LLM call can fail with: the `LLMError` family callers see, and `TransportFailure`, one failed
attempt as a provider implementation classifies it for the retry loop. Plus the short, single-line
form of error messages we keep (in accounting and messages)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# The most characters of a provider's error message that we keep (in accounting and messages).
_MAX_ERROR_CHARS = 500


class LLMError(Exception):
    """Inference did not produce a validated result. Callers leave the work pending.

    `str(error)` names the provider, model and failure; `detail` is the failure alone.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class LLMUnavailable(LLMError):
    """The provider could not be reached or refused the request (retries exhausted, or not retryable)."""

    def __init__(
        self, message: str, *, detail: str | None = None, status: int | None = None, retryable: bool = True,
        kind: str = "error",
    ) -> None:
        super().__init__(message, detail=detail)
        self.status = status
        self.retryable = retryable
        self.kind = kind  # "timeout", "connection", "http" or "error", as the last attempt failed


class LLMInvalidReply(LLMError):
    """The model's reply was not valid JSON for the schema, even after one repair attempt."""


class LLMNotConfigured(LLMError):
    """No provider credentials or base URL; the message names the variable to set."""


class LLMBudgetExceeded(LLMError):
    """The daily token budget is spent; inference is paused until `paused_until` (UTC)."""

    def __init__(self, message: str, *, used: int, budget: int, paused_until: datetime) -> None:
        super().__init__(message)
        self.used = used
        self.budget = budget
        self.paused_until = paused_until


@dataclass
class TransportFailure(Exception):
    """One failed attempt, classified by the provider implementation."""

    message: str
    retryable: bool
    kind: str = "error"  # for logs: "timeout", "connection", "HTTP 429", ...
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked us to wait
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""  # the error body as text (to recognise a refused request shape); never logged
    fallback: bool = False  # the provider asks again at once with another request shape (not a retry)


def short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def describe(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused`, or just the type when there is no message."""
    text = short(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
