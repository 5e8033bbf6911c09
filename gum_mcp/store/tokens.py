"""Named bearer tokens for `serve --http`: one per client, each with its scopes, stored hashed.

A token is `gum_` and 43 random URL-safe characters, shown once when it is made (`add`, `rotate`);
the table keeps only its sha256. `authenticate_token` compares the hash of what a request carries
with every stored hash in constant time and reads the table on every call, so adding, revoking or
rotating a token takes effect on the next request of a running server.

The scopes are the vocabulary of gum_mcp/server/scopes.py, which says what each needs:
read (the user model), write (telling and verdicts), forget, admin (pausing, the access log).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from gum_mcp.domain import InvalidInput, NotFound, from_ts, to_ts, utcnow
from gum_mcp.store.db import Database

log = logging.getLogger("gum_mcp.store")

#: every scope, in the order they are shown
SCOPES: tuple[str, ...] = ("read", "write", "forget", "admin")
#: the name the single token of earlier versions (`<data dir>/token`) takes on upgrade, with every scope
LEGACY_NAME = "default"
TOKEN_PREFIX = "gum_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: last_used_at is written at most this often per token, so a busy client does not write on every request
TOUCH_EVERY = timedelta(minutes=1)


class TokenInfo(BaseModel):
    """A token as `token list` shows it: never the secret."""

    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    rotated_at: datetime | None = None
    last_used_at: datetime | None = None


def parse_scopes(value: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes from `read,write` (or a list of names); `all` is every scope. In SCOPES order, no duplicates."""
    parts = [p.strip().lower() for p in (value.split(",") if isinstance(value, str) else value) if p.strip()]
    if "all" in parts:
        return SCOPES
    unknown = sorted(set(parts) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"scope: unknown {', '.join(map(repr, unknown))}; the scopes are {', '.join(SCOPES)} "
                           "(or all)")
    if not parts:
        raise InvalidInput(f"scope: name at least one of {', '.join(SCOPES)} (or all)")
    return tuple(s for s in SCOPES if s in parts)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise InvalidInput(f"token name: {name!r} is not allowed; use 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return name


def _info(row: object) -> TokenInfo:
    return TokenInfo(name=row["name"], scopes=tuple(s for s in row["scopes"].split(",") if s),  # type: ignore[index]
                     created_at=from_ts(row["created_at"]), rotated_at=from_ts(row["rotated_at"]),  # type: ignore[index]
                     last_used_at=from_ts(row["last_used_at"]))  # type: ignore[index]


class Tokens:
    db: Database

    def add_token(self, name: str, scopes: str | Iterable[str]) -> str:
        """Make a token; returns the secret (shown once). InvalidInput if the name is taken."""
        check_name(name)
        granted = parse_scopes(scopes)
        secret = new_secret()
        with self.db.write() as conn:
            if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"token name: {name!r} exists; `gum-mcp token rotate {name}` replaces its "
                                   f"secret, `gum-mcp token revoke {name}` removes it")
            conn.execute("INSERT INTO tokens (name, hash, scopes, created_at) VALUES (?, ?, ?, ?)",
                         (name, token_hash(secret), ",".join(granted), to_ts(utcnow())))
        return secret

    def rotate_token(self, name: str) -> str:
        """A new secret for `name` (same scopes); the old one stops working. Returns the new secret."""
        secret = new_secret()
        with self.db.write() as conn:
            changed = conn.execute("UPDATE tokens SET hash = ?, rotated_at = ? WHERE name = ?",
                                   (token_hash(secret), to_ts(utcnow()), name)).rowcount
        if not changed:
            raise NotFound(f"no token named {name!r} (`gum-mcp token list`)")
        return secret

    def revoke_token(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount:
                raise NotFound(f"no token named {name!r} (`gum-mcp token list`)")

    def tokens(self) -> list[TokenInfo]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM tokens ORDER BY name").fetchall()
        return [_info(row) for row in rows]

    def authenticate_token(self, secret: str) -> TokenInfo | None:
        """The token whose secret this is, or None. Every stored hash is compared, in constant time."""
        if not secret:
            return None
        digest = token_hash(secret).encode()
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM tokens").fetchall()
        match = None
        for row in rows:
            if hmac.compare_digest(digest, row["hash"].encode()):
                match = row
        if match is None:
            return None
        info = _info(match)
        now = utcnow()
        if info.last_used_at is None or now - info.last_used_at >= TOUCH_EVERY:
            with self.db.write() as conn:
                conn.execute("UPDATE tokens SET last_used_at = ? WHERE name = ? AND hash = ?",
                             (to_ts(now), info.name, match["hash"]))
        return info

    def adopt_legacy_token(self, path: Path) -> bool:
        """Upgrade from the single plaintext token file of earlier versions: its token becomes the token
        `default` with every scope, and the file is removed. True if there was one to adopt."""
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return False
        if secret:
            with self.db.write() as conn:
                if conn.execute("SELECT 1 FROM tokens WHERE name = ?", (LEGACY_NAME,)).fetchone():
                    log.warning("%s: a token named %r exists already; the file's token is not adopted", path,
                                LEGACY_NAME)
                else:
                    conn.execute("INSERT INTO tokens (name, hash, scopes, created_at) VALUES (?, ?, ?, ?)",
                                 (LEGACY_NAME, token_hash(secret), ",".join(SCOPES), to_ts(utcnow())))
                    log.info("the token in %s is now the token %r (every scope), stored hashed", path, LEGACY_NAME)
        path.unlink(missing_ok=True)
        return bool(secret)
