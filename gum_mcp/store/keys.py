"""One key per data directory: where it is kept, how every process finds it, how it is made.

Where the secret comes from, first match wins:

1. `GUM_DB_KEY` (the secret itself) or `GUM_DB_KEY_FILE` (a file holding it), for people who keep
   secrets themselves. Never from the data directory's own `.env`, never from a file inside it.
2. The OS keychain through `keyring` (macOS Keychain, Windows Credential Locker, Secret Service on
   Linux): service `gum-mcp`, account = the data directory's key id.
3. A key file `<config dir>/keys/<key id>.key` (0600, in a 0700 folder; `~/.config/gum-mcp` on
   Linux), never inside the data directory: where no keychain is available (a headless server, CI).
   Choosing it logs one warning when the key is made.

`<data dir>/encryption.json` names the key id and holds a verifier (`crypto.check_value`), not the
key. So every process that opens the data directory finds the same key, a moved data directory
still finds it, and a wrong key is named as such. On first start of a new data directory (unless
`GUM_ENCRYPT=0`) a random 256-bit secret is made, kept, then named in `encryption.json`, then the
database is created with it; two processes starting at once agree on one key (the database's
creation lock, in db.py). Whether a store is encrypted is read from the database file itself, so a
missing key is an error, never a new empty database.

A rotation (`store.encrypt.rotate_key`) keeps the previous key named in `encryption.json` as
`rotating_from` until every file is re-encrypted; meanwhile readers accept either key.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gum_mcp.config import APP_NAME, ConfigError, Settings, parse_env_file
from gum_mcp.store.crypto import PLAIN, PlainSealer, Sealer, check_value, sqlcipher_key
from gum_mcp.store.private_files import write_private

log = logging.getLogger("gum_mcp.store")

SERVICE = APP_NAME  # the keychain's service name
MARKER_NAME = "encryption.json"
MIN_SECRET_CHARS = 32
SQLITE_HEADER = b"SQLite format 3\x00"

Source = Literal["GUM_DB_KEY", "GUM_DB_KEY_FILE", "keychain", "key file"]
State = Literal["new", "plaintext", "encrypted"]


class KeyProblem(ConfigError):
    """The store's key is missing, wrong, or cannot be kept. One line, fit for a user."""


class StoreBusy(ConfigError):
    """Another process has the data directory open (for a command that needs it alone)."""


@dataclass(frozen=True)
class DataKey:
    secret: str = field(repr=False)
    key_id: str
    source: Source
    where: str  # for people: where the secret is kept
    previous: DataKey | None = None  # the key an interrupted rotation is moving from

    @property
    def sqlcipher(self) -> str:
        return sqlcipher_key(self.secret)

    @property
    def check(self) -> str:
        return check_value(self.secret)

    @property
    def managed(self) -> bool:
        """Kept by gum-mcp (keychain or key file), so gum-mcp may replace it."""
        return self.source in ("keychain", "key file")

    def sealer(self) -> Sealer:
        return Sealer([self.secret] + ([self.previous.secret] if self.previous else []))

    def describe(self) -> str:
        return f"{self.where} (key id {self.key_id})"


# -- the store's state, from its files


def store_state(db_path: Path) -> State:
    """`new` (no database yet, or an empty file), `plaintext` or `encrypted`: read from the file's
    first bytes (a plaintext SQLite file starts with its magic; SQLCipher's with a random salt)."""
    try:
        with open(db_path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return "new"
    if not head:
        return "new"
    return "plaintext" if head == SQLITE_HEADER else "encrypted"


def marker_path(data_dir: Path) -> Path:
    return data_dir / MARKER_NAME


def read_marker(data_dir: Path) -> dict[str, Any] | None:
    path = marker_path(data_dir)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise KeyProblem(f"{path} is unreadable ({exc}); set GUM_DB_KEY to the recovery copy of the key") from None
    if not isinstance(data, dict) or not isinstance(data.get("key_id"), str):
        raise KeyProblem(f"{path} does not name a key; set GUM_DB_KEY to the recovery copy of the key")
    return data


def write_marker(data_dir: Path, key: DataKey, *, rotating_from: DataKey | None = None) -> None:
    data: dict[str, Any] = {
        "version": 1,
        "cipher": "SQLCipher 4 (raw 256-bit key); files AES-256-GCM; keys HKDF-SHA256 from one secret",
        "key_id": key.key_id,
        "check": key.check,
        "kept_in": key.source,
    }
    if rotating_from is not None:
        data["rotating_from"] = {"key_id": rotating_from.key_id, "check": rotating_from.check,
                                 "kept_in": rotating_from.source}
    write_private(marker_path(data_dir), (json.dumps(data, indent=2) + "\n").encode(), sync_dir=True)


def wants_encryption(settings: Settings) -> bool:
    """Whether a new data directory is created encrypted: yes unless GUM_ENCRYPT=0."""
    return settings.encrypt is not False


# -- finding the key


_cache: dict[tuple[str, bytes, str | None, str | None], DataKey] = {}


def find_key(settings: Settings) -> DataKey | None:
    """The key of the store at `settings.data_dir`, None when it is plaintext or not created yet.
    Raises KeyProblem (one line) when the store is encrypted and its key cannot be found or is wrong."""
    data_dir = settings.data_dir
    state = store_state(settings.db_path)
    explicit = _explicit(settings)
    if state == "plaintext":
        return None
    try:
        marker_bytes = marker_path(data_dir).read_bytes()
    except FileNotFoundError:
        marker_bytes = b""
    cache_key = (str(data_dir), marker_bytes, settings.db_key, str(settings.db_key_file))
    if cache_key in _cache:
        return _cache[cache_key]
    marker = read_marker(data_dir) if marker_bytes else None
    if marker is None:
        if state == "new":
            return None
        if explicit is None:
            raise KeyProblem(
                f"the store in {data_dir} is encrypted but {MARKER_NAME}, which names its key, is missing; "
                "set GUM_DB_KEY to the recovery copy of the key (`gum-mcp key export` printed it)")
        key = DataKey(explicit[0], key_id="unnamed", source=explicit[1], where=explicit[2])
        _cache[cache_key] = key
        return key
    key = marker_key(settings)
    assert key is not None
    _cache[cache_key] = key
    return key


def marker_key(settings: Settings) -> DataKey | None:
    """The key `encryption.json` names, whatever the database's state (None without the file).
    `gum-mcp encrypt` resumes with it after a crash; raises KeyProblem when it cannot be found."""
    marker = read_marker(settings.data_dir)
    if marker is None:
        return None
    key = _lookup(settings, marker, _explicit(settings))
    moving = marker.get("rotating_from")
    if isinstance(moving, dict) and isinstance(moving.get("key_id"), str):
        try:
            previous = _lookup(settings, moving, None)
        except KeyProblem:
            previous = None
        key = DataKey(key.secret, key.key_id, key.source, key.where, previous=previous)
    return key


def _lookup(settings: Settings, marker: dict[str, Any], explicit: tuple[str, Source, str] | None) -> DataKey:
    key_id = str(marker["key_id"])
    check = marker.get("check")
    if explicit is not None:
        secret, source, where = explicit
        if check and check_value(secret) != check:
            raise KeyProblem(f"the key from {source} is not the key of the store in {settings.data_dir} "
                             f"(key id {key_id}): wrong key")
        return DataKey(secret, key_id, source, where)
    problems = []
    keychain, why_not = keychain_backend()
    if keychain is not None:
        try:
            secret = keychain.get_password(SERVICE, key_id)
        except Exception as exc:  # a locked or broken keychain: try the key file, then say both
            secret = None
            problems.append(f"the keychain failed ({type(exc).__name__}: {exc})")
        if secret:
            if check and check_value(secret) != check:
                raise KeyProblem(f"the key kept in {keychain_name(keychain)} for {settings.data_dir} "
                                 f"(key id {key_id}) does not match it: wrong key")
            return DataKey(secret, key_id, "keychain", f"the OS keychain ({keychain_name(keychain)}): "
                           f"service {SERVICE}, account {key_id}")
        problems.append(f"not in {keychain_name(keychain)}")
    else:
        problems.append(f"no OS keychain ({why_not})")
    path = key_file(key_id)
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
        problems.append(f"no {path}")
    if secret:
        if check and check_value(secret) != check:
            raise KeyProblem(f"the key in {path} does not match the store in {settings.data_dir}: wrong key")
        return DataKey(secret, key_id, "key file", str(path))
    raise KeyProblem(
        f"the store in {settings.data_dir} is encrypted and its key (id {key_id}) was not found: "
        f"{'; '.join(problems)}. Set GUM_DB_KEY to the recovery copy (`gum-mcp key export` printed it)")


def _explicit(settings: Settings) -> tuple[str, Source, str] | None:
    """The secret from GUM_DB_KEY or GUM_DB_KEY_FILE, checked; None when neither is set."""
    data_dir = settings.data_dir.resolve()
    if settings.db_key:
        if "GUM_DB_KEY" in parse_env_file(settings.data_dir / ".env") and os.environ.get("GUM_DB_KEY") is None:
            raise KeyProblem(f"GUM_DB_KEY is set in {settings.data_dir / '.env'}, inside the data directory it "
                             "encrypts; keep it elsewhere (the environment, GUM_DB_KEY_FILE, or the keychain)")
        return _checked(settings.db_key, "GUM_DB_KEY"), "GUM_DB_KEY", "GUM_DB_KEY (set by you)"
    if settings.db_key_file:
        path = Path(settings.db_key_file).expanduser().absolute()
        if path.resolve().is_relative_to(data_dir):
            raise KeyProblem(f"GUM_DB_KEY_FILE ({path}) is inside the data directory it encrypts; keep it elsewhere")
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise KeyProblem(f"GUM_DB_KEY_FILE: cannot read {path} ({exc.strerror or exc})") from None
        return _checked(secret, "GUM_DB_KEY_FILE"), "GUM_DB_KEY_FILE", f"GUM_DB_KEY_FILE ({path})"
    return None


def _checked(secret: str, name: str) -> str:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise KeyProblem(f"{name}: the key must be at least {MIN_SECRET_CHARS} characters of random text "
                         "(e.g. `openssl rand -hex 32`, or a copy from `gum-mcp key export`)")
    return secret


# -- making and keeping keys


def create_key(settings: Settings) -> DataKey:
    """A new key for a new data directory, kept (keychain, else key file) and named in encryption.json.
    The caller holds the database's creation lock."""
    explicit = _explicit(settings)
    key_id = secrets.token_hex(8)
    if explicit is not None:
        key = DataKey(explicit[0], key_id, explicit[1], explicit[2])
    else:
        key = keep_new_secret(settings.data_dir, key_id, secrets.token_hex(32))
    write_marker(settings.data_dir, key)
    log.info("encrypted store: new key %s, kept in %s", key.key_id, key.where)
    return key


def keep_new_secret(data_dir: Path, key_id: str, secret: str) -> DataKey:
    """Keep `secret` in the keychain, or where there is none, in a key file (with one warning)."""
    keychain, why_not = keychain_backend()
    if keychain is not None:
        try:
            keychain.set_password(SERVICE, key_id, secret)
            if keychain.get_password(SERVICE, key_id) == secret:
                return DataKey(secret, key_id, "keychain",
                               f"the OS keychain ({keychain_name(keychain)}): service {SERVICE}, account {key_id}")
            why_not = f"{keychain_name(keychain)} did not give the key back"
        except Exception as exc:  # no Secret Service running, a locked keychain: fall back to a file
            why_not = f"{keychain_name(keychain)} failed: {type(exc).__name__}: {exc}"
    path = key_file(key_id)
    if path.resolve().is_relative_to(data_dir.resolve()):
        raise KeyProblem(f"the key file folder {path.parent} is inside the data directory; set GUM_DB_KEY instead")
    _ensure_private_dir(path.parent)
    write_private(path, (secret + "\n").encode(), sync_dir=True)
    log.warning("no OS keychain (%s): the key of %s is kept in %s (0600). Keep a copy somewhere safe: "
                "`gum-mcp key export` prints it", why_not, data_dir, path)
    return DataKey(secret, key_id, "key file", str(path))


def forget_secret(key: DataKey) -> None:
    """Remove a replaced key from where gum-mcp kept it (after a rotation)."""
    if key.source == "keychain":
        keychain, _why = keychain_backend()
        if keychain is not None:
            try:
                keychain.delete_password(SERVICE, key.key_id)
            except Exception as exc:  # already gone
                log.info("the old key %s was not removed from the keychain: %s", key.key_id, exc)
    elif key.source == "key file":
        Path(key.where).unlink(missing_ok=True)


def config_dir() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def key_file(key_id: str) -> Path:
    return config_dir() / "keys" / f"{key_id}.key"


def keychain_backend() -> tuple[Any | None, str]:
    """The OS keychain backend, or (None, why not). The platform's own backend is asked directly
    (quicker than keyring's discovery of every installed backend, and never a plaintext-file backend
    some package installed); PYTHON_KEYRING_BACKEND or a keyringrc.cfg chooses otherwise."""
    try:
        import keyring
        from keyring.backends import fail
        from keyring.util import platform_
    except ImportError:
        return None, "the keyring package is not installed"
    try:
        if os.environ.get("PYTHON_KEYRING_BACKEND") or (Path(platform_.config_root()) / "keyringrc.cfg").exists():
            backend = keyring.get_keyring()
        elif sys.platform == "darwin":
            from keyring.backends import macOS

            backend = macOS.Keyring()
        elif sys.platform == "win32":
            from keyring.backends import Windows

            backend = Windows.WinVaultKeyring()
        else:
            from keyring.backends import SecretService

            backend = SecretService.Keyring()
        priority = backend.priority  # raises when the backend cannot work here
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(backend, fail.Keyring) or priority <= 0:
        return None, "keyring found no usable backend"
    return backend, ""


def keychain_name(backend: Any) -> str:
    return getattr(backend, "name", None) or type(backend).__name__


def sealer_for(key: DataKey | None) -> Sealer | PlainSealer:
    return PLAIN if key is None else key.sealer()


class FileSealer:
    """The sealer of a data directory's files, resolved on first use (the store is opened first,
    and a new store makes its key then). Frames, their sidecars and the file cache go through it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sealer: Sealer | PlainSealer | None = None

    def _resolve(self) -> Sealer | PlainSealer:
        if self._sealer is None:
            key = find_key(self._settings)
            if key is None and store_state(self._settings.db_path) == "new":
                return PLAIN  # no store yet: decide again once it exists (it may be created encrypted)
            self._sealer = sealer_for(key)
        return self._sealer

    @property
    def encrypting(self) -> bool:
        return self._resolve().encrypting

    def seal(self, data: bytes) -> bytes:
        return self._resolve().seal(data)

    def open(self, data: bytes) -> bytes:
        return self._resolve().open(data)


def file_sealer(settings: Settings) -> FileSealer:
    return FileSealer(settings)


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)
