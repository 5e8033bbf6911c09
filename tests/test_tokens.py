"""Named, scoped, hashed tokens for `serve --http`: the store, the `gum-mcp token` commands, and a
running server that sees every add, rotate and revoke on its next request."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gum_mcp.domain import InvalidInput, NotFound
from gum_mcp.store import Store
from gum_mcp.store.tokens import SCOPES, parse_scopes
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.test_http_gate import http_server, ping


def gum(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "gum_mcp", *args], cwd=REPO, env=gum_env(data_dir), capture_output=True,
                          text=True, timeout=60)


def files_hold(data_dir: Path, secret: str) -> bool:
    return any(secret.encode() in path.read_bytes() for path in data_dir.rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------ the store
def test_a_token_is_stored_hashed_and_names_its_client(store: Store, settings) -> None:
    secret = store.add_token("cursor", "write, read")
    assert secret.startswith("gum_") and len(secret) >= 40
    info = store.authenticate_token(secret)
    assert info is not None and info.name == "cursor" and info.scopes == ("read", "write")
    assert store.tokens()[0].last_used_at is not None
    with store.db.read() as conn:
        [row] = conn.execute("SELECT hash FROM tokens").fetchall()
    assert row["hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not files_hold(settings.data_dir, secret)
    assert store.authenticate_token(secret + "x") is None and store.authenticate_token("") is None
    assert [t.name for t in store.tokens()] == ["cursor"]


def test_rotate_and_revoke(store: Store) -> None:
    old = store.add_token("script", "read")
    new = store.rotate_token("script")
    assert new != old and store.authenticate_token(old) is None
    assert store.authenticate_token(new).scopes == ("read",)
    assert store.tokens()[0].rotated_at is not None
    store.revoke_token("script")
    assert store.authenticate_token(new) is None and store.tokens() == []
    with pytest.raises(NotFound, match="no token named 'script'"):
        store.rotate_token("script")
    with pytest.raises(NotFound):
        store.revoke_token("script")


@pytest.mark.parametrize(("name", "scopes", "message"), [
    ("cursor", "read", "exists"),
    ("", "read", "token name"),
    ("-x", "read", "token name"),
    ("a b", "read", "token name"),
    ("x" * 65, "read", "token name"),
    ("ok", "read,sudo", "unknown 'sudo'"),
    ("ok", " , ", "at least one"),
])
def test_bad_names_and_scopes_are_refused(store: Store, name: str, scopes: str, message: str) -> None:
    store.add_token("cursor", "read")
    with pytest.raises(InvalidInput, match=message):
        store.add_token(name, scopes)
    assert [t.name for t in store.tokens()] == ["cursor"]


def test_scope_names() -> None:
    assert parse_scopes("all") == SCOPES == ("read", "write", "forget", "admin")
    assert parse_scopes(["ADMIN", "read", "read"]) == ("read", "admin")


def test_the_token_file_of_earlier_versions_becomes_the_default_admin_token(store: Store, settings) -> None:
    legacy = settings.data_dir / "token"
    legacy.write_text("an-old-plaintext-token\n")
    assert store.adopt_legacy_token(legacy)
    assert not legacy.exists() and not files_hold(settings.data_dir, "an-old-plaintext-token")
    info = store.authenticate_token("an-old-plaintext-token")
    assert info is not None and info.name == "default" and info.scopes == SCOPES
    assert not store.adopt_legacy_token(legacy)


# ------------------------------------------------------------------------------------ the commands
def test_token_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "token").write_text("from-an-earlier-version\n")

    listed = gum(data_dir, "token")  # an upgrade: the old token is listed as `default`, the file is gone
    assert listed.returncode == 0 and listed.stdout.split()[:2] == ["default", "read,write,forget,admin"]
    assert not (data_dir / "token").exists()

    added = gum(data_dir, "token", "add", "cursor", "--scope", "read,write")
    secret = added.stdout.strip()
    assert added.returncode == 0 and secret.startswith("gum_") and "shown only now" in added.stderr
    shown = gum(data_dir, "token", "list", "--json")
    assert secret not in shown.stdout
    assert {t["name"]: t["scopes"] for t in json.loads(shown.stdout)} == {
        "cursor": ["read", "write"], "default": ["read", "write", "forget", "admin"]}

    rotated = gum(data_dir, "token", "rotate", "cursor", "--json")
    assert json.loads(rotated.stdout)["token"] not in ("", secret)
    assert gum(data_dir, "token", "revoke", "cursor").returncode == 0
    assert "cursor" not in gum(data_dir, "token", "list").stdout

    refused = gum(data_dir, "token", "add", "x", "--scope", "root")
    assert refused.returncode == 2 and "unknown 'root'" in refused.stderr
    missing = gum(data_dir, "token", "revoke", "nobody")
    assert missing.returncode == 1 and "no token named 'nobody'" in missing.stderr


# ------------------------------------------------------------------------------------ a running server
@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_add_rotate_and_revoke_count_on_the_next_request_of_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with http_server(data_dir) as target:  # started with no token at all
        assert ping(target, "gum_not-yet") == 401

        secret = gum(data_dir, "token", "add", "cursor", "--scope", "read").stdout.strip()
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}) as http,
            Client(streamable_http_client(target, http_client=http)) as client,
        ):
            assert not (await client.call_tool("status", {})).is_error

            rotated = gum(data_dir, "token", "rotate", "cursor").stdout.strip()
            assert ping(target, secret) == 401 and ping(target, rotated) == 200
            with pytest.raises(MCPError):  # the open session's next request too (the SDK reports the 401 so)
                await client.call_tool("status", {})

        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {rotated}"}) as http,
            Client(streamable_http_client(target, http_client=http)) as client,
        ):
            assert not (await client.call_tool("status", {})).is_error
            assert gum(data_dir, "token", "revoke", "cursor").returncode == 0
            assert ping(target, rotated) == 401

    with Store.open(make_settings(data_dir)) as store:
        assert {(e.client, e.transport, e.name) for e in store.access_log()} == {("cursor", "http", "status")}
