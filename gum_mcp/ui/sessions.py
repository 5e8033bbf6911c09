"""Who may use the page: one-time login links, session cookies, CSRF tokens, pending forget previews.

Everything lives in this process's memory, so stopping `gum-mcp ui` ends every session and voids
every link. A login link works once (the first attempt removes it, whatever comes next) and only for
LOGIN_TTL seconds; a session lasts SESSION_TTL seconds (12 hours). Secrets are looked up by their
SHA-256 (no timing signal from a dict lookup on the secret itself) and CSRF tokens are compared in
constant time. A forget by description keeps what its preview showed here, under a single-use token
of the session that asked, for PREVIEW_TTL seconds (the same rule as the MCP tool's confirmation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

LOGIN_TTL = 600.0
SESSION_TTL = 12 * 3600.0
PREVIEW_TTL = 300.0
MAX_PREVIEWS = 16  # per session; the oldest is dropped beyond this
COOKIE = "gum_session"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class PendingPreview:
    query: str
    versions: dict[int, str]
    with_evidence: bool
    expires: float


@dataclass
class Session:
    csrf: str
    expires: float
    flash: list[str] = field(default_factory=list)
    previews: dict[str, PendingPreview] = field(default_factory=dict)

    def csrf_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf.encode(), (value or "").encode())

    def say(self, message: str) -> None:
        """A message for the next page this session sees (after a change made without htmx)."""
        self.flash.append(message)

    def take_flash(self) -> list[str]:
        messages, self.flash = self.flash, []
        return messages


class Sessions:
    """The login links and sessions of one `gum-mcp ui` process. `clock`: monotonic seconds (tests move it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._links: dict[str, float] = {}  # digest -> expiry
        self._sessions: dict[str, Session] = {}  # digest -> session

    # -- login links
    def issue_link(self) -> str:
        """A new one-time login secret (goes in the link `gum-mcp ui` opens)."""
        secret = secrets.token_urlsafe(32)
        self._links[_digest(secret)] = self.clock() + LOGIN_TTL
        return secret

    def redeem_link(self, secret: str) -> str | None:
        """A new session's cookie value for a valid, unused link; None otherwise. The link is spent either way."""
        expires = self._links.pop(_digest(secret), None) if secret else None
        if expires is None or expires < self.clock():
            return None
        cookie = secrets.token_urlsafe(32)
        self._expire()
        self._sessions[_digest(cookie)] = Session(csrf=secrets.token_urlsafe(32), expires=self.clock() + SESSION_TTL)
        return cookie

    # -- sessions
    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        found = self._sessions.get(_digest(cookie))
        if found is None:
            return None
        if found.expires < self.clock():
            self._sessions.pop(_digest(cookie), None)
            return None
        return found

    def end(self, cookie: str | None) -> None:
        if cookie:
            self._sessions.pop(_digest(cookie), None)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]
        for key in [k for k, e in self._links.items() if e < now]:
            del self._links[key]

    # -- forget by description: what a preview showed
    def hold_preview(self, session: Session, query: str, versions: dict[int, str], with_evidence: bool) -> str:
        now = self.clock()
        for key in [k for k, p in session.previews.items() if p.expires < now]:
            del session.previews[key]
        while len(session.previews) >= MAX_PREVIEWS:
            del session.previews[next(iter(session.previews))]
        token = secrets.token_urlsafe(24)
        session.previews[_digest(token)] = PendingPreview(query=query, versions=dict(versions),
                                                          with_evidence=with_evidence, expires=now + PREVIEW_TTL)
        return token

    def take_preview(self, session: Session, token: str | None) -> PendingPreview | None:
        """The preview a token names, once; None when unknown, used or expired."""
        found = session.previews.pop(_digest(token), None) if token else None
        if found is None or found.expires < self.clock():
            return None
        return found
