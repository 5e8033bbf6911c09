"""Who is asking: the client a request came from, with its name and scopes.

- Over HTTP the gate (gate.py) authenticates the bearer token and puts the `Caller` it stands for in
  the request's ASGI scope under `SCOPE_KEY`: the token's name and scopes.
- Over stdio one process serves one client: its name is `GUM_CLIENT` from its config entry (which
  `gum-mcp install <client>` writes), else the name the client gave at initialisation; it has every
  scope unless `GUM_SCOPES` narrows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gum_mcp.config import Settings
from gum_mcp.store.tokens import SCOPES

#: where the gate leaves the authenticated caller in an HTTP request's ASGI scope
SCOPE_KEY = "gum_mcp.caller"
UNNAMED = "stdio"


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]
    transport: str  # "stdio" or "http"


NOBODY = Caller(name="unauthenticated", scopes=frozenset(), transport="http")


def clean_name(value: object) -> str | None:
    """A client's self-reported name fit for the log: printable, at most 64 characters."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:64]
    return text or None


def http_caller(ctx: Any) -> Caller | None:
    """Over HTTP, the caller the gate vouched for (NOBODY if none); None when `ctx` (a ServerRequestContext)
    is not an HTTP request."""
    request = getattr(ctx, "request", None)
    if request is None:
        return None
    caller = (getattr(request, "scope", None) or {}).get(SCOPE_KEY)
    return caller if isinstance(caller, Caller) else NOBODY


def caller_of(ctx: Any, settings: Settings) -> Caller:
    """The caller of the request `ctx` (a ServerRequestContext) on a server with these settings."""
    caller = http_caller(ctx)
    if caller is not None:
        return caller
    params = getattr(ctx.session, "client_params", None)
    info = getattr(params, "client_info", None)
    name = settings.client or clean_name(getattr(info, "name", None)) or UNNAMED
    scopes = frozenset(SCOPES) if settings.scopes is None else frozenset(settings.scopes)
    return Caller(name=name, scopes=scopes, transport="stdio")
