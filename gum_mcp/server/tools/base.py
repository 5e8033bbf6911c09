"""What every tool shares: the annotation presets, turning errors into tool errors, and time arguments."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from gum_mcp.domain import InvalidInput, NotFound, parse_when

log = logging.getLogger("gum_mcp.server")

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
ADDITIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
IDEMPOTENT = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)

P = ParamSpec("P")
R = TypeVar("R")

#: The largest id SQLite can hold (a signed 64-bit integer): larger ones are refused as arguments.
MAX_ID = 2**63 - 1


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn our typed errors into tool errors with their message; a number too large for SQLite into a
    clear one; anything else into a short error: one line on stderr, the traceback in the log file
    (never to the client)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (InvalidInput, NotFound, ToolError) as exc:
            raise ToolError(str(exc.args[0]) if exc.args else str(exc)) from None
        except OverflowError:
            raise ToolError(f"{fn.__name__}: a number is out of range (ids and counts must be below 2^63)") from None
        except Exception as exc:
            log.warning("tool %s failed: %s (traceback in the gum-mcp log)", fn.__name__, type(exc).__name__)
            log.info("tool %s failed", fn.__name__, exc_info=True)
            raise ToolError(f"{fn.__name__} failed: {type(exc).__name__} (details in the gum-mcp log)") from None

    return wrapper


def parse_time(value: str | None, name: str) -> datetime | None:
    """An optional time argument: ISO-8601 or an age like 90m, 2h, 3d; blank = none."""
    if value is None or not value.strip():
        return None
    return parse_when(value, name=name)
