"""Confirmation tokens for forget by description: the second of its two steps.

A preview issues a token that covers exactly the propositions it showed, at the versions it saw. The
token is:
- unguessable (`secrets.token_urlsafe`) and compared in constant time (`hmac.compare_digest`);
- single-use: the first attempt to redeem it removes it, whatever the outcome;
- tied to the client: the HTTP session when there is one, else the connection (handshake era: one
  per client for its whole life), else (2026-07-28 era, where every request is a connection of its
  own) over HTTP the bearer token the gate authenticated (a client's declared name proves nothing
  there: any holder of another token could declare it), over stdio the client's declared name and
  version (one process serves one client);
- short-lived: TOKEN_TTL seconds.
Pending confirmations live in this serving process's memory only (`confirmations(owner)`), so a
restart forgets them and the caller previews again. Whether the covered propositions changed is
checked by the store in the forget's own transaction (`Store.forget_propositions(expect=...)`).
"""

from __future__ import annotations

import hmac
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp_types.version import is_version_at_least

from gum_mcp.domain import InvalidInput
from gum_mcp.server.clients import http_caller
from gum_mcp.server.sdk_adapter import connection_of

TOKEN_TTL = 300.0  # seconds
MAX_PENDING = 256  # the oldest pending confirmation is dropped beyond this
_PER_REQUEST_ERA = "2026-07-28"


@dataclass(frozen=True)
class PendingForget:
    client: str
    query: str
    versions: dict[int, str]
    with_evidence: bool
    expires: float
    secret: str


class Confirmations:
    """The pending confirmations of one serving process. `clock` is monotonic seconds (tests move it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pending: dict[str, PendingForget] = {}

    def issue(self, client: str, query: str, versions: dict[int, str], with_evidence: bool) -> str:
        now = self.clock()
        for handle in [h for h, p in self._pending.items() if p.expires < now]:
            del self._pending[handle]
        while len(self._pending) >= MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        handle, secret = secrets.token_urlsafe(8), secrets.token_urlsafe(32)
        self._pending[handle] = PendingForget(client=client, query=query, versions=dict(versions),
                                              with_evidence=with_evidence, expires=now + TOKEN_TTL, secret=secret)
        return f"{handle}.{secret}"

    def redeem(self, client: str, token: str) -> PendingForget:
        """The confirmation `token` stands for, removed; InvalidInput if it is unknown, used, another
        client's or expired."""
        handle, _, secret = token.strip().partition(".")
        entry = self._pending.pop(handle, None)
        if entry is None or not hmac.compare_digest(entry.secret.encode(), secret.encode()):
            raise InvalidInput("confirm_token: not a token this server issued, or already used (a token works "
                               "once); nothing was removed: preview again with forget(query=...)")
        if not hmac.compare_digest(entry.client.encode(), client.encode()):
            raise InvalidInput("confirm_token: it was issued to another client; nothing was removed: preview "
                               "again with forget(query=...)")
        if self.clock() > entry.expires:
            raise InvalidInput(f"confirm_token: expired (a token lasts {TOKEN_TTL / 60:.0f} minutes); nothing was "
                               "removed: preview again with forget(query=...)")
        return entry


_by_owner: weakref.WeakKeyDictionary[Any, Confirmations] = weakref.WeakKeyDictionary()
_connection_ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def confirmations(owner: Any) -> Confirmations:
    """The pending confirmations kept for `owner` (a serving process's Runtime)."""
    found = _by_owner.get(owner)
    if found is None:
        found = _by_owner[owner] = Confirmations()
    return found


def client_key(ctx: Any) -> str:
    """Who is asking, as far as the transport can tell (see the module doc)."""
    connection = connection_of(ctx.request_context)
    session_id = getattr(connection, "session_id", None)
    if session_id:
        return f"session:{session_id}"
    version = ctx.protocol_version
    if version is None or not is_version_at_least(version, _PER_REQUEST_ERA):
        try:
            key = _connection_ids.get(connection)
            if key is None:
                key = _connection_ids[connection] = secrets.token_hex(8)
            return f"connection:{key}"
        except TypeError:  # not weak-referenceable: fall back to the client's name
            pass
    caller = http_caller(ctx.request_context)
    if caller is not None:  # HTTP: the token the gate vouched for
        return f"token:{caller.name}"
    params = getattr(ctx.session, "client_params", None)
    info = getattr(params, "client_info", None)
    if info is None:
        return "client:anonymous"
    return f"client:{getattr(info, 'name', '')}/{getattr(info, 'version', '')}"


def supports_elicitation(ctx: Any) -> bool:
    """The client declared form elicitation (a bare `elicitation: {}` counts, as in the SDK)."""
    capabilities = ctx.client_capabilities
    elicitation = getattr(capabilities, "elicitation", None) if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)
