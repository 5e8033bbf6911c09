"""Transport retries: which failures are retryable, how long to wait, and SDK exceptions mapped to
`TransportFailure`.

Transport failures (HTTP 408/409/429/5xx, timeouts, connection errors) are retried with exponential
backoff and full jitter (`uniform(0, min(llm_backoff_max, llm_backoff_base * 2**n))`), or after the
server's `Retry-After` / `retry-after-ms` (seconds or an HTTP date), capped at `llm_backoff_max`.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gum_mcp.config import Settings
from gum_mcp.domain import utcnow
from gum_mcp.llm.errors import TransportFailure, describe, short


def parse_retry_after(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), or None."""
    if not headers:
        return None
    lower = {key.lower(): value for key, value in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def backoff_delay(attempt: int, settings: Settings, retry_after: float | None = None) -> float:
    """How long to wait before retry number `attempt + 1` (attempt counts from 0)."""
    cap = settings.llm_backoff_max
    if retry_after is not None:
        return min(retry_after, cap)
    ceiling = min(cap, settings.llm_backoff_base * (2**attempt))
    return random.uniform(0.0, ceiling)


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def sdk_failure(exc: Exception, sdk: Any, timeout: float) -> TransportFailure:
    """Map an `openai` or `anthropic` SDK exception (both SDKs share these class names) to a
    TransportFailure: timeouts, connection errors and 408/409/429/5xx are retryable."""
    if isinstance(exc, sdk.APITimeoutError):
        return TransportFailure(f"timed out after {timeout:g}s", retryable=True, kind="timeout")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__
        return TransportFailure(f"connection failed ({describe(cause) if cause else exc})", retryable=True,
                                kind="connection")
    if isinstance(exc, sdk.APIStatusError):
        headers = dict(exc.response.headers)
        return TransportFailure(
            f"HTTP {exc.status_code}: {short(_status_message(exc))}",
            retryable=is_retryable_status(exc.status_code),
            kind="http",
            status=exc.status_code,
            retry_after=parse_retry_after(headers),
            headers=headers,
            body=_body_text(exc),
        )
    return TransportFailure(f"{type(exc).__name__}: {short(str(exc))}", retryable=False)


def _status_message(exc: Any) -> str:
    """The provider's own error message from an API status error's body. A validation error in the FastAPI
    form (`{"detail": [{"loc": [...], "msg": ...}]}`, llama-cpp-python and others) is told by where and
    what, never by its `input`, which may quote the prompt."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return _INPUT.sub(r"\1…", str(error["message"]))
        if isinstance(error, str):
            return error
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail:
            return "; ".join(_detail_line(item) for item in detail[:5])
    message = exc.message if isinstance(exc.message, str) else json.dumps(body)
    return message if "'input'" not in message and '"input"' not in message else f"HTTP {exc.status_code}"


#: The `input` of a validation error quoted in a message (llama-cpp-python's 500s): it may be the prompt.
_INPUT = re.compile(r"""(['"]input['"]:\s*)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\{[^}]*\}|[^,}]*)""")


def _detail_line(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)[:200]
    where = ".".join(str(part) for part in item.get("loc") or ())
    return f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", ""))


def _body_text(exc: Any) -> str:
    body = exc.body
    try:
        return body if isinstance(body, str) else json.dumps(body)
    except (TypeError, ValueError):
        return str(body)


#: What names a refused request shape in an HTTP 500 (some servers answer a request they cannot parse so).
_SHAPE_WORDS = re.compile(r"response_format|json_schema|json_object|\btools?\b|tool_choice", re.IGNORECASE)


def is_refusal(failure: TransportFailure) -> bool:
    """Whether the server refused the request's shape (its structured-output method) rather than failing:
    HTTP 400 or 422, or a 500 whose body names response_format, json_schema, json_object or tools."""
    if failure.status in (400, 422):
        return True
    return failure.status == 500 and bool(_SHAPE_WORDS.search(f"{failure.message} {failure.body}"))


def failure_kind(failure: TransportFailure) -> str:
    return f"HTTP {failure.status}" if failure.status else failure.kind
