"""Encryption at rest: the store, its key, the files beside it, the commands (issue 22).

The keyring is real: conftest points `keyring` at keyrings.alt's file backend in a folder of the test
session (never the developer's keychain); the "no keychain" tests use keyring's own `fail` backend.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gum_mcp.cli import main
from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft
from gum_mcp.observers.files import FileCache
from gum_mcp.observers.frames import FrameStore
from gum_mcp.store import Store
from gum_mcp.store.crypto import MAGIC, Sealer, sqlcipher_key
from gum_mcp.store.db import PAGE_HMAC, cipher_version, connect
from gum_mcp.store.keys import KeyProblem, file_sealer, find_key, key_file, marker_path, store_state
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.sqlcipher_pages import page_reserve, raw_file_bytes, readable_bytes

SECRET_WORDS = (b"quokkaclinic", b"zebrafinch", b"Priya")
A_KEY = "7f" * 32


def fill(store: Store) -> int:
    [obs] = store.add_observations([NewObservation(content="Priya books quokkaclinic for Tuesday", kind="screen")])
    [pid] = store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
        draft=PropositionDraft(text="Priya sees a doctor at quokkaclinic", reasoning="zebrafinch calendar",
                               confidence=7, decay=4), evidence=(obs.id,)),)))
    return pid


def run_cli(data_dir: Path, *argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "gum_mcp", *argv], cwd=REPO, env=gum_env(data_dir, **env),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process `main()` on a data dir of its own, nothing from the developer's GUM_ settings."""
    for name in list(os.environ):
        if name.startswith("GUM_") and name != "GUM_MODELS_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


# -- the store


def test_a_new_store_is_encrypted_and_its_files_hold_no_plaintext(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store:
        pid = fill(store)
        assert store.db.encrypted
        assert store.get_proposition(pid).text == "Priya sees a doctor at quokkaclinic"
        assert store.search_propositions_text("quokkaclinic", limit=5)[0][0] == pid  # FTS5 works encrypted
        raw = raw_file_bytes(settings.data_dir)
        assert b"SQLite format 3" not in raw and not [w for w in SECRET_WORDS if w in raw]
        assert b"quokkaclinic" in readable_bytes(settings.data_dir)  # the pages do hold it, encrypted
    assert store_state(settings.db_path) == "encrypted"
    marker = json.loads(marker_path(settings.data_dir).read_text())
    assert set(marker) >= {"key_id", "check"} and A_KEY not in marker_path(settings.data_dir).read_text()
    with Store.open(settings) as store:  # reopened: the same key is found
        assert store.get_proposition(pid).reasoning == "zebrafinch calendar"
    assert cipher_version() and cipher_version().startswith("4.")


def test_a_store_made_with_sqlciphers_older_page_hmac_opens_reads_and_writes(tmp_path: Path) -> None:
    """New files authenticate pages with HMAC-SHA256; stores made before (SQLCipher 4's default,
    HMAC-SHA512) still open, read and write."""
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store:
        pid = fill(store)
        version = store.db.version()
    key = find_key(settings)
    assert page_reserve(settings.db_path, key.sqlcipher) == 16 + 32  # IV + HMAC-SHA256
    legacy = tmp_path / "legacy.sqlite3"  # the same store as an older version wrote it
    conn = connect(settings.db_path, key.sqlcipher)
    try:
        conn.execute("PRAGMA cipher_default_hmac_algorithm = HMAC_SHA512")  # process-wide: restored below
        conn.execute(f"ATTACH DATABASE ? AS legacy KEY {key.sqlcipher}", (str(legacy),))
        conn.execute("SELECT sqlcipher_export('legacy')")
        conn.execute(f"PRAGMA legacy.user_version = {version}")
        conn.execute("DETACH DATABASE legacy")
    finally:
        conn.execute(f"PRAGMA cipher_default_hmac_algorithm = {PAGE_HMAC}")
        conn.close()
    os.replace(legacy, settings.db_path)
    assert page_reserve(settings.db_path, key.sqlcipher) == 16 + 64  # IV + HMAC-SHA512
    with Store.open(settings) as store:
        assert store.get_proposition(pid).text == "Priya sees a doctor at quokkaclinic"
        [obs] = store.add_observations([NewObservation(content="zebrafinch feeding at noon", kind="screen")])
    with Store.open(settings) as store:
        assert store.get_observation(obs.id).content == "zebrafinch feeding at noon"
    assert b"zebrafinch feeding" in readable_bytes(settings.data_dir)
    assert not [w for w in SECRET_WORDS if w in raw_file_bytes(settings.data_dir)]
    with pytest.raises(KeyProblem):
        connect(settings.db_path, sqlcipher_key("5a" * 32))  # a wrong key fails under both
    rotated = run_cli(settings.data_dir, "key", "rotate")  # rewrites it the current way
    assert rotated.returncode == 0, rotated.stderr
    assert page_reserve(settings.db_path, find_key(settings).sqlcipher) == 16 + 32


def test_gum_encrypt_0_keeps_a_new_store_plaintext_and_an_existing_plaintext_store_stays_readable(
        tmp_path: Path) -> None:
    plain = make_settings(tmp_path / "data", encrypt=False)
    with Store.open(plain) as store:
        fill(store)
        assert not store.db.encrypted
    assert store_state(plain.db_path) == "plaintext" and not marker_path(plain.data_dir).exists()
    default = make_settings(tmp_path / "data", encrypt=None)  # the default: on, for *new* stores
    with Store.open(default) as store:
        assert not store.db.encrypted and store.stats().propositions_current == 1
    with pytest.raises(KeyProblem, match=r"not encrypted yet.*gum-mcp encrypt"):
        Store.open(make_settings(tmp_path / "data", encrypt=True))


def test_a_forget_that_left_text_in_a_free_page_would_be_caught_on_encrypted_data(tmp_path: Path) -> None:
    """The encrypted variant of the raw-byte forget tests looks inside the pages, free ones included."""
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store:
        obs = store.add_observation("a note about narwhalbank")
        with store.db.write() as conn:  # a broken forget: no secure_delete, no purge
            conn.execute("PRAGMA secure_delete = OFF")
            conn.execute("DELETE FROM observations WHERE id = ?", (obs.id,))
        store.db.purge_freed_text()
    assert b"narwhalbank" not in raw_file_bytes(settings.data_dir)
    assert b"narwhalbank" in readable_bytes(settings.data_dir)


# -- keys


def test_the_key_lives_in_the_keychain_and_never_in_the_data_dir(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", encrypt=True)
    with Store.open(settings) as store:
        fill(store)
        key = store.db.key
    assert key is not None and key.source == "keychain" and key.key_id in key.where
    import keyring

    assert keyring.get_password("gum-mcp", key.key_id) == key.secret
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert key.secret.encode() not in path.read_bytes(), path


def test_without_a_keychain_the_key_goes_to_a_private_file_outside_the_data_dir_with_one_warning(
        tmp_path: Path) -> None:
    data_dir, config = tmp_path / "data", tmp_path / "config"
    env = {"GUM_ENCRYPT": "1", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "XDG_CONFIG_HOME": str(config)}
    first = run_cli(data_dir, "add", "Priya plans a zebrafinch trip", **env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("no OS keychain") == 1 and "gum-mcp key export" in first.stderr
    key_id = json.loads(marker_path(data_dir).read_text())["key_id"]
    path = config / "gum-mcp" / "keys" / f"{key_id}.key"
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.resolve().is_relative_to(data_dir.resolve())
    again = run_cli(data_dir, "status", **env)  # another process finds the same key, quietly
    assert again.returncode == 0 and "warning" not in again.stderr.lower(), again.stderr
    assert f"key in {path}" in again.stdout


def test_gum_db_key_and_gum_db_key_file_override_the_keychain(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = run_cli(data_dir, "add", "zebrafinch", GUM_ENCRYPT="1", GUM_DB_KEY=A_KEY)
    assert made.returncode == 0, made.stderr
    marker = json.loads(marker_path(data_dir).read_text())
    assert marker["kept_in"] == "GUM_DB_KEY"
    import keyring

    assert keyring.get_password("gum-mcp", marker["key_id"]) is None  # nothing kept for the person
    key_path = tmp_path / "secret.key"
    key_path.write_text(A_KEY + "\n")
    by_file = run_cli(data_dir, "status", "--json", GUM_DB_KEY_FILE=str(key_path))
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["encryption"]["kept_in"] == "GUM_DB_KEY_FILE"
    missing = run_cli(data_dir, "status")
    assert missing.returncode == 2 and "was not found" in missing.stderr and "Traceback" not in missing.stderr
    short = run_cli(data_dir, "status", GUM_DB_KEY="too short")
    assert short.returncode == 2 and "at least 32 characters" in short.stderr


def test_a_key_kept_inside_the_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / ".env").write_text(f"GUM_DB_KEY={A_KEY}\n")
    result = run_cli(data_dir, "add", "x", GUM_ENCRYPT="1")
    assert result.returncode == 2 and "inside the data directory" in result.stderr
    (data_dir / ".env").unlink()
    (data_dir / "k").write_text(A_KEY)
    result = run_cli(data_dir, "add", "x", GUM_ENCRYPT="1", GUM_DB_KEY_FILE=str(data_dir / "k"))
    assert result.returncode == 2 and "inside the data directory" in result.stderr


@pytest.mark.parametrize("how", ["wrong key", "missing key", "missing encryption.json"])
def test_a_wrong_or_missing_key_is_one_clear_error_and_never_a_new_database(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    assert run_cli(data_dir, "add", "Priya at quokkaclinic", GUM_ENCRYPT="1").returncode == 0
    before = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    env: dict[str, str] = {}
    if how == "wrong key":
        env["GUM_DB_KEY"] = A_KEY
    elif how == "missing key":
        env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
        env["XDG_CONFIG_HOME"] = str(tmp_path / "nowhere")
    else:
        marker_path(data_dir).unlink()
        del before["encryption.json"]
    for command in (["status"], ["add", "more"], ["query", "clinic"]):
        result = run_cli(data_dir, *command, **env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("gum-mcp: "), (command, result.stderr)
        assert {"wrong key": "wrong key", "missing key": "was not found",
                "missing encryption.json": "is missing"}[how] in lines[0]
    after = {p.name: p.read_bytes() for p in data_dir.iterdir() if p.is_file()}
    assert after["gum.sqlite3"] == before["gum.sqlite3"]  # untouched: no new, empty database over it
    assert set(after) <= set(before) | {"store.lock", "engine.lock"}


def test_key_export_gives_a_copy_that_opens_the_store_anywhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert run_cli(data_dir, "add", "Priya at quokkaclinic", GUM_ENCRYPT="1").returncode == 0
    exported = run_cli(data_dir, "key", "export")
    assert exported.returncode == 0 and "somewhere safe" in exported.stderr
    secret = exported.stdout.strip()
    assert len(secret) == 64
    elsewhere = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", "XDG_CONFIG_HOME": str(tmp_path / "x")}
    restored = run_cli(data_dir, "status", "--json", GUM_DB_KEY=secret, **elsewhere)  # a new machine, say
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["observations"]["pending"] == 1
    plain = tmp_path / "plain"
    assert run_cli(plain, "add", "x").returncode == 0
    refused = run_cli(plain, "key", "export")
    assert refused.returncode == 2 and "not encrypted" in refused.stderr


HOLDER = textwrap.dedent(
    """
    import sys
    from gum_mcp.config import load_settings
    from gum_mcp.store import Store

    store = Store.open(load_settings())
    print("open", flush=True)
    sys.stdin.read()
    store.close()
    """
)


def test_key_rotate_re_encrypts_everything_and_refuses_while_another_process_holds_the_data_dir(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, encrypt=True)
    with Store.open(settings) as store:
        pid = fill(store)
    frames = FrameStore(settings)
    frames.save(datetime.now(UTC), [b"\x89PNG zebrafinch pixels"], "png", app="XTerm", title="Priya's notes",
                window_source="test", monitors=[])
    old_key = find_key(settings)
    holder = subprocess.Popen([PYTHON, "-c", HOLDER], cwd=REPO, env=gum_env(data_dir), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open", holder.stderr.read()
        refused = run_cli(data_dir, "key", "rotate")
        assert refused.returncode == 2 and "another gum-mcp process has" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        holder.communicate("", timeout=60)
    assert find_key(settings) == old_key  # nothing changed
    rotated = run_cli(data_dir, "key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_key = find_key(make_settings(data_dir))
    assert new_key is not None and new_key.key_id != old_key.key_id and new_key.previous is None
    import keyring

    assert keyring.get_password("gum-mcp", old_key.key_id) is None  # the old key is gone
    with Store.open(settings) as store:
        assert store.get_proposition(pid).text == "Priya sees a doctor at quokkaclinic"
    [frame] = FrameStore(settings).pending()
    assert frame.read_images() == [b"\x89PNG zebrafinch pixels"] and frame.title == "Priya's notes"
    for path in settings.screens_dir.rglob("*"):
        if path.is_file():
            assert Sealer([new_key.secret]).sealed_with_current(path.read_bytes()), path


# -- files beside the store


def test_frames_and_the_file_cache_are_sealed_and_read_back(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", encrypt=True, keep_screenshots=True)
    Store.open(settings).close()
    store = FrameStore(settings)
    frame = store.save(datetime.now(UTC), [b"JPEG with zebrafinch", b"second monitor quokkaclinic"], "jpg",
                       app="Firefox", title="Priya - quokkaclinic booking", window_source="test",
                       monitors=[{"n": 0}], analysis={"ocr": "Priya zebrafinch"})
    frame.attempts = 1
    assert store.update(frame)
    [loaded] = store.pending()
    assert loaded.read_images() == [b"JPEG with zebrafinch", b"second monitor quokkaclinic"]
    assert (loaded.title, loaded.attempts, loaded.analysis) == ("Priya - quokkaclinic booking", 1,
                                                                {"ocr": "Priya zebrafinch"})
    assert store.commit(loaded)
    store.finish(loaded, 7, keep=True)
    cache = FileCache(settings.files_cache_dir, file_sealer(settings))
    cache.put("/home/p/notes.md", b"Priya: zebrafinch budget\n")
    assert cache.get("/home/p/notes.md") == b"Priya: zebrafinch budget\n"
    files = [p for p in settings.data_dir.rglob("*") if p.is_file() and p.parent.name in ("kept", "files-cache")]
    assert len(files) == 4
    for path in files:
        data = path.read_bytes()
        assert data.startswith(MAGIC) and not [w for w in SECRET_WORDS if w in data], path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.forget_app("firefox") == 1  # forget still reads the sealed sidecars
    plain = make_settings(tmp_path / "plain", encrypt=False)
    Store.open(plain).close()
    FrameStore(plain).save(datetime.now(UTC), [b"raw"], "png", app=None, title="t", window_source="test",
                           monitors=[])
    [raw] = list((plain.screens_dir / "pending").glob("*.png"))
    assert raw.read_bytes() == b"raw"  # a plaintext data dir writes its files as before


# -- the commands


def test_status_and_doctor_say_whether_the_store_is_encrypted_and_where_the_key_lives(
        cli_env: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["add", "Priya at quokkaclinic"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "encryption    on (4." in out and "key in the OS keychain" in out
    assert main(["status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)["encryption"]
    assert info["state"] == "encrypted" and info["kept_in"] == "keychain"
    assert main(["doctor", "--offline", "--json"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["encryption"]["level"] == "OK" and "key in the OS keychain" in checks["encryption"]["detail"]
    assert checks["store"]["level"] == "OK"


def test_doctor_offers_to_encrypt_a_plaintext_store(cli_env: Path, capsys: pytest.CaptureFixture) -> None:
    os.environ["GUM_ENCRYPT"] = "0"
    try:
        assert main(["add", "x"]) == 0
    finally:
        del os.environ["GUM_ENCRYPT"]
    capsys.readouterr()
    main(["doctor", "--offline"])
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if "encryption" in line]
    assert line.startswith("WARN") and "run `gum-mcp encrypt`" in line


def test_decrypt_to_writes_a_plaintext_copy_and_nowhere_else(tmp_path: Path) -> None:
    import sqlite3

    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, encrypt=True)
    with Store.open(settings) as store:
        pid = fill(store)
    FrameStore(settings).save(datetime.now(UTC), [b"PNG zebrafinch"], "png", app="a", title="t", window_source="x",
                              monitors=[])
    out = tmp_path / "copy"
    result = run_cli(data_dir, "decrypt", "--to", str(out))
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(out / "gum.sqlite3")  # any SQLite tool reads it
    assert conn.execute("SELECT text FROM propositions WHERE id = ?", (pid,)).fetchone()[0] == (
        "Priya sees a doctor at quokkaclinic")
    assert conn.execute("SELECT count(*) FROM propositions_fts WHERE propositions_fts MATCH 'quokkaclinic'"
                        ).fetchone()[0] == 1
    conn.close()
    assert [p.read_bytes() for p in (out / "screens").rglob("*.png")] == [b"PNG zebrafinch"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert store_state(settings.db_path) == "encrypted"  # the data dir itself is unchanged
    as_plain = run_cli(out, "status", "--json")  # a plaintext data dir gum-mcp opens too
    assert as_plain.returncode == 0 and json.loads(as_plain.stdout)["propositions_current"] == 1
    for target in (out, data_dir / "inside"):
        refused = run_cli(data_dir, "decrypt", "--to", str(target))
        assert refused.returncode == 2 and ("not empty" in refused.stderr or "inside" in refused.stderr)


# -- processes


WRITER = textwrap.dedent(
    """
    import sys
    from gum_mcp.config import load_settings
    from gum_mcp.domain import NewObservation
    from gum_mcp.store import Store

    name, count = sys.argv[1], int(sys.argv[2])
    store = Store.open(load_settings())
    for i in range(count):
        store.add_observations([NewObservation(content=f"{name} zebrafinch {i}", source=name)])
    print(store.db.key.key_id)
    """
)


def test_processes_starting_at_once_on_a_new_data_dir_agree_on_one_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    procs = [subprocess.Popen([PYTHON, "-c", WRITER, name, "30"], cwd=REPO, env=gum_env(data_dir, GUM_ENCRYPT="1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("alpha", "beta", "gamma")]
    key_ids = set()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        key_ids.add(out.strip())
    assert len(key_ids) == 1
    with Store.open(make_settings(data_dir)) as store:
        assert store.db.encrypted and len(store.observations(limit=1000)) == 90
    assert not [w for w in SECRET_WORDS if w in raw_file_bytes(data_dir)]


def test_the_keychain_lookup_does_not_scan_every_backend(tmp_path: Path) -> None:
    """Without PYTHON_KEYRING_BACKEND the platform's own backend is asked directly: a plaintext-file
    backend some package installed (keyrings.alt here) is never chosen behind the person's back."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_KEYRING_BACKEND"}
    code = ("from gum_mcp.store.keys import keychain_backend; b, why = keychain_backend(); "
            "print(type(b).__module__ if b else 'none')")
    out = subprocess.run([PYTHON, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "keyrings.alt" not in out.stdout
    if sys.platform.startswith("linux"):
        assert out.stdout.strip() in ("none", "keyring.backends.SecretService")


def test_the_key_file_path_is_in_the_config_folder() -> None:
    assert key_file("abc").parts[-3:] == ("gum-mcp", "keys", "abc.key")
