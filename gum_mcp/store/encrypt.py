"""Moving a data directory between plaintext and encrypted, and changing its key.

- `encrypt_data_dir` (`gum-mcp encrypt`): a plaintext store becomes encrypted. The encrypted copy is
  written beside the old file (`gum.sqlite3.rekeying`), checked, synced, then renamed over it: a
  crash at any point leaves either the old store or the new one whole, and running it again finishes
  the job (the key is made first and named in encryption.json, so a second run uses the same one).
  The vector index's file, vectors.sqlite3, is re-written the same way (so nothing is embedded
  again). Then pending screenshots, their sidecars and the file observer's cache are sealed in place,
  one atomic replace a file. (A chroma/ folder an older version left is the index layer's: see
  `index.vector_store.seal_chroma`, which the CLI runs next.)
- `export_plaintext` (`gum-mcp decrypt --to DIR`): a plaintext copy of the store, of the vector
  index and of the screenshots in a new folder, for other tools; it opens as a plaintext data
  directory. The data directory itself stays encrypted.
- `rotate_key` (`gum-mcp key rotate`): a new secret, every file re-encrypted the same way (copy,
  check, rename; files one by one); encryption.json names the old key as `rotating_from` until all is
  done, and readers accept either key meanwhile. Then the old key is deleted.

encrypt and rotate need the data directory alone (`db.exclusive_store`): they refuse, with a clear
message, while another process has it open. The test-only crash points (`crash_point`) let the
tests SIGKILL a real process at each step.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gum_mcp.config import Settings
from gum_mcp.store.crypto import Sealer
from gum_mcp.store.db import (
    FILE_MODE,
    connect,
    connect_with,
    crash_point,
    driver,
    encryption_available,
    ensure_private_dir,
    exclusive_store,
)
from gum_mcp.store.keys import (
    DataKey,
    KeyProblem,
    create_key,
    find_key,
    forget_secret,
    keep_new_secret,
    marker_key,
    store_state,
    write_marker,
)
from gum_mcp.store.private_files import write_private

log = logging.getLogger("gum_mcp.store")

#: Every crash point of `gum-mcp encrypt`, in the order they are passed.
ENCRYPT_CRASH_POINTS = ("encrypt:key", "encrypt:copied", "encrypt:swapped", "encrypt:vectors:copied",
                        "encrypt:vectors:swapped", "encrypt:file", "encrypt:files",
                        "encrypt:chroma")  # the last in index.vector_store.seal_chroma
#: Every crash point of `gum-mcp key rotate`.
ROTATE_CRASH_POINTS = ("rotate:key", "rotate:copied", "rotate:swapped", "rotate:file", "rotate:files")
SUFFIX = ".rekeying"

Progress = Callable[[str], None]


@dataclass
class MigrationReport:
    state_before: str
    key: DataKey | None = None
    databases: list[str] = field(default_factory=list)  # files re-written
    sealed_files: int = 0
    note: str = ""


def sealed_folders(settings: Settings) -> list[Path]:
    """The folders whose files are sealed with the data directory's key."""
    return [settings.screens_dir, settings.files_cache_dir]


def encrypt_data_dir(settings: Settings, *, progress: Progress | None = None,
                     finish: Callable[[Settings], object] | None = None) -> MigrationReport:
    """Encrypt a plaintext data directory in place (see the module docstring). Idempotent: an
    encrypted one has whatever a crash left unsealed sealed, and is otherwise left alone. `finish`
    runs last, still holding the data directory alone (the CLI seals the vector index there)."""
    say = progress or (lambda _message: None)
    if not encryption_available():
        raise KeyProblem("encryption needs the sqlcipher3 package (pip install sqlcipher3)")
    lock = exclusive_store(settings.data_dir, "gum-mcp encrypt")
    try:
        state = store_state(settings.db_path)
        report = MigrationReport(state_before=state)
        if state == "new":
            report.note = "no store yet: it will be created encrypted (unless GUM_ENCRYPT=0)"
            return report
        if state == "plaintext":
            key = marker_key(settings) or create_key(settings)
            crash_point("encrypt:key")
            say(f"key: {key.describe()}")
            say(f"encrypting {settings.db_path.name} ...")
            _rewrite_database(settings.db_path, old_keys=[None], new_key=key.sqlcipher, crash="encrypt")
            report.databases.append(settings.db_path.name)
        else:
            key = find_key(settings)
            assert key is not None
            report.note = "already encrypted"
        report.key = key
        if store_state(settings.vectors_path) == "plaintext":  # the index (derived, but costly to embed again)
            say(f"encrypting {settings.vectors_path.name} ...")
            _rewrite_database(settings.vectors_path, old_keys=[None], new_key=key.sqlcipher, crash="encrypt:vectors")
            report.databases.append(settings.vectors_path.name)
        report.sealed_files = _seal_files(settings, key.sealer(), crash="encrypt", say=say)
        if finish is not None:
            finish(settings)
        return report
    finally:
        lock.release()


def rotate_key(settings: Settings, *, progress: Progress | None = None) -> MigrationReport:
    """Replace the data directory's key: a new secret, kept where the old one was (or the keychain),
    every encrypted file re-encrypted, then the old secret deleted. Resumes an interrupted rotation."""
    say = progress or (lambda _message: None)
    lock = exclusive_store(settings.data_dir, "gum-mcp key rotate")
    try:
        state = store_state(settings.db_path)
        if state != "encrypted":
            raise KeyProblem(f"the store in {settings.data_dir} is not encrypted: nothing to rotate "
                             "(`gum-mcp encrypt` encrypts it)")
        current = find_key(settings)
        assert current is not None
        if not current.managed:
            raise KeyProblem(f"the key comes from {current.source}, which you manage: gum-mcp cannot replace it "
                             "there. To rotate it, export a plaintext copy (`gum-mcp decrypt --to DIR`) and "
                             "encrypt that with a new key")
        report = MigrationReport(state_before=state)
        if current.previous is not None:  # a rotation was interrupted: finish it with the same new key
            new, old = current, current.previous
            say(f"finishing the rotation to key {new.key_id}")
        else:
            old = current
            new = keep_new_secret(settings.data_dir, secrets.token_hex(8), secrets.token_hex(32))
            write_marker(settings.data_dir, new, rotating_from=old)
            say(f"new key: {new.describe()}")
        crash_point("rotate:key")
        for path in (settings.db_path, settings.vectors_path):
            if path.exists() and path.stat().st_size:
                say(f"re-encrypting {path.name} ...")
                if _rewrite_database(path, old_keys=[old.sqlcipher], new_key=new.sqlcipher, crash="rotate"):
                    report.databases.append(path.name)
        report.sealed_files = _seal_files(settings, Sealer([new.secret, old.secret]), crash="rotate", say=say)
        write_marker(settings.data_dir, new)
        forget_secret(old)
        report.key = DataKey(new.secret, new.key_id, new.source, new.where)
        return report
    finally:
        lock.release()


def export_plaintext(settings: Settings, target: Path, *, progress: Progress | None = None) -> list[Path]:
    """Write a plaintext copy of the vector index (vectors.sqlite3), of the store (gum.sqlite3) and of
    the screenshots into the new folder `target`; returns the files written. The data directory is not
    changed; other processes may run. The index is copied first, so its cursor is never ahead of the
    copied store (a copy that cannot catch up is rebuilt when it is first opened)."""
    from gum_mcp.store.keys import sealer_for

    say = progress or (lambda _message: None)
    target = target.expanduser().absolute()
    data_dir = settings.data_dir.resolve()
    if target.resolve() == data_dir or target.resolve().is_relative_to(data_dir):
        raise KeyProblem(f"{target} is inside the data directory: choose a folder outside it")
    if target.exists() and any(target.iterdir()):
        raise KeyProblem(f"{target} is not empty: choose a new folder")
    if store_state(settings.db_path) == "new":
        raise KeyProblem(f"there is no store in {settings.data_dir} yet")
    key = find_key(settings)
    ensure_private_dir(target)
    written = []
    vectors = target / settings.vectors_path.name
    if store_state(settings.vectors_path) != "new":
        say(f"writing {vectors} ...")
        try:
            _export_database(settings.vectors_path, vectors, key)
            written.append(vectors)
        except (KeyProblem, driver().Error) as exc:  # derived data: the copy builds its own index instead
            vectors.unlink(missing_ok=True)
            say(f"left out {settings.vectors_path.name} ({exc}); the copy builds its vector index when first opened")
    out = target / settings.db_path.name
    say(f"writing {out} ...")
    _export_database(settings.db_path, out, key)
    written.append(out)
    sealer = sealer_for(key)
    for path in _files(settings.screens_dir):
        copy = target / "screens" / path.relative_to(settings.screens_dir)
        ensure_private_dir(copy.parent)
        try:
            data = sealer.open(path.read_bytes())
        except (FileNotFoundError, ValueError):
            continue
        write_private(copy, data)
        written.append(copy)
    return written


def _export_database(source: Path, out: Path, key: DataKey | None) -> None:
    """A plaintext copy of the SQLite file `source` (opened with `key`, or plaintext) at `out`: one snapshot."""
    conn = connect_with(source, None if store_state(source) == "plaintext" else key)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        fd = os.open(out, os.O_CREAT | os.O_WRONLY | os.O_EXCL, FILE_MODE)
        os.close(fd)
        conn.execute("ATTACH DATABASE ? AS plaintext KEY ''", (str(out),))
        try:
            conn.execute("BEGIN")  # one snapshot, whatever other processes write meanwhile
            conn.execute("SELECT sqlcipher_export('plaintext')")
            conn.execute(f"PRAGMA plaintext.user_version = {int(version)}")
            conn.execute("COMMIT")
        finally:
            conn.execute("DETACH DATABASE plaintext")
    finally:
        conn.close()


def encryption_status(settings: Settings) -> dict[str, object]:
    """For `status` and `doctor`: whether the store is encrypted and where its key lives."""
    from gum_mcp.store.db import cipher_version

    state = store_state(settings.db_path)
    info: dict[str, object] = {"state": state, "cipher": cipher_version()}
    if state == "encrypted":
        try:
            key = find_key(settings)
        except KeyProblem as exc:
            info["problem"] = str(exc)
        else:
            assert key is not None
            info.update(key_id=key.key_id, kept_in=key.source, where=key.where,
                        rotation_unfinished=key.previous is not None)
    if state == "encrypted" and settings.chroma_dir.exists():
        info["leftover"] = f"{settings.chroma_dir} holds plaintext vectors: run `gum-mcp encrypt` to finish"
    elif state == "encrypted" and store_state(settings.vectors_path) == "plaintext":
        info["leftover"] = f"{settings.vectors_path} is plaintext: run `gum-mcp encrypt` to finish"
    return info


def describe_encryption(info: dict[str, object]) -> str:
    """One line for people, from `encryption_status`."""
    if info["state"] == "new":
        return "no store yet"
    if info["state"] == "plaintext":
        return "off: the store is plaintext (`gum-mcp encrypt` encrypts it)"
    if "problem" in info:
        return f"on, but {info['problem']}"
    line = f"on ({info['cipher'] or 'SQLCipher'}); key in {info['where']} (key id {info['key_id']})"
    if info.get("rotation_unfinished"):
        line += "; a key rotation was interrupted: run `gum-mcp key rotate` to finish it"
    if info.get("leftover"):
        line += f"; {info['leftover']}"
    return line


# -- steps


def _rewrite_database(path: Path, *, old_keys: list[str | None], new_key: str | None, crash: str) -> bool:
    """Re-write the SQLite file at `path` under `new_key` (None: plaintext): copy beside it, check,
    sync, rename over it. False when it already opens with `new_key`."""
    plaintext_now = store_state(path) == "plaintext"
    if plaintext_now == (new_key is None):
        try:
            connect(path, new_key).close()
            return False
        except KeyProblem:
            pass
    conn = None
    for key in old_keys:
        if (key is None) != plaintext_now:
            continue
        try:
            conn = connect(path, key)
            break
        except KeyProblem:
            continue
    if conn is None:
        raise KeyProblem(f"{path} opens neither with the old key nor with the new one")
    tmp = path.with_name(path.name + SUFFIX)
    for stale in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        stale.unlink(missing_ok=True)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, FILE_MODE)
        os.close(fd)
        attach_key = new_key if new_key is not None else "''"
        conn.execute(f"ATTACH DATABASE ? AS rekeyed KEY {attach_key}", (str(tmp),))
        try:
            conn.execute("SELECT sqlcipher_export('rekeyed')")
            conn.execute(f"PRAGMA rekeyed.user_version = {int(version)}")
            _same_counts(conn)
        finally:
            conn.execute("DETACH DATABASE rekeyed")
    finally:
        conn.close()
    check = connect(tmp, new_key)
    try:
        result = check.execute("PRAGMA quick_check").fetchone()[0]
        for (table,) in check.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE "
                                      "'CREATE VIRTUAL TABLE%USING fts5%'").fetchall():
            quoted = '"' + table.replace('"', '""') + '"'
            check.execute(f"INSERT INTO {quoted} ({quoted}) VALUES ('integrity-check')")
    except driver().DatabaseError as exc:
        result = str(exc)
    finally:
        check.close()
    if result != "ok":
        tmp.unlink(missing_ok=True)
        raise KeyProblem(f"the re-encrypted copy of {path.name} failed its check ({result}); nothing was changed")
    _fsync(tmp)
    crash_point(f"{crash}:copied")
    # The old file's WAL is empty (checkpointed) and we hold the data dir alone: drop it with the file.
    for side in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        side.unlink(missing_ok=True)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    crash_point(f"{crash}:swapped")
    return True


def _same_counts(conn: object) -> None:
    """Every table of `main` has as many rows in the copy (`rekeyed`)."""
    tables = [row[0] for row in conn.execute(  # type: ignore[attr-defined]  (virtual tables: their shadow tables)
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'")]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        before = conn.execute(f"SELECT count(*) FROM main.{quoted}").fetchone()[0]  # type: ignore[attr-defined]
        after = conn.execute(f"SELECT count(*) FROM rekeyed.{quoted}").fetchone()[0]  # type: ignore[attr-defined]
        if before != after:
            raise KeyProblem(f"copying {table} lost rows ({before} -> {after}); nothing was changed")


def _seal_files(settings: Settings, sealer: Sealer, *, crash: str, say: Progress) -> int:
    """Seal (or re-seal under the first key) every file of the sealed folders, one atomic replace each."""
    done = 0
    for path in _files(*sealed_folders(settings)):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # forgotten meanwhile
            continue
        if sealer.sealed_with_current(data):
            continue
        try:
            plain = sealer.open(data)  # a plaintext file comes back as it is
        except ValueError:
            log.warning("%s opens with no key of this data directory; left as it is", path)
            continue
        write_private(path, sealer.seal(plain))
        done += 1
        if done == 1:
            crash_point(f"{crash}:file")
    if done:
        say(f"sealed {done} file(s) (screenshots, file cache)")
    crash_point(f"{crash}:files")
    return done


def _files(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        if not folder.exists():
            continue
        for root, _dirs, names in os.walk(folder):
            for name in sorted(names):
                if not name.startswith("."):  # temporary files of an interrupted write
                    yield Path(root) / name


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete a folder of plaintext leftovers (chroma/ after its vectors were sealed)."""
    shutil.rmtree(path, ignore_errors=False)
