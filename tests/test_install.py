"""`gum-mcp install <client>`: every client, scope and platform layout in a temporary HOME; merging that
keeps everything else; idempotence; JSONC comments; corrupt configs untouched; dry runs."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from datetime import datetime
from pathlib import Path

import pytest

from gum_mcp.install import (
    CLIENTS,
    InstallError,
    JsoncError,
    client_scopes,
    config_path,
    default_launcher,
    loads_jsonc,
    parse_jsonc,
    render_template,
    run_install,
    server_entry,
)

LAUNCHER = ["/opt/gum mcp/bin/gum-mcp", "serve"]
DATA = Path("/srv/gum data")
PLATFORMS = ["linux", "darwin", "win32"]

# Where each client keeps its config, relative to HOME (user scope) or to the project (project scope).
EXPECTED = {
    ("claude-desktop", "user", "linux"): ".config/Claude/claude_desktop_config.json",
    ("claude-desktop", "user", "darwin"): "Library/Application Support/Claude/claude_desktop_config.json",
    ("claude-desktop", "user", "win32"): "AppData/Roaming/Claude/claude_desktop_config.json",
    ("claude-code", "user", "linux"): ".claude.json",
    ("claude-code", "user", "darwin"): ".claude.json",
    ("claude-code", "user", "win32"): ".claude.json",
    ("claude-code", "project", "*"): ".mcp.json",
    ("cursor", "user", "*"): ".cursor/mcp.json",
    ("cursor", "project", "*"): ".cursor/mcp.json",
    ("vscode", "user", "linux"): ".config/Code/User/mcp.json",
    ("vscode", "user", "darwin"): "Library/Application Support/Code/User/mcp.json",
    ("vscode", "user", "win32"): "AppData/Roaming/Code/User/mcp.json",
    ("vscode", "project", "*"): ".vscode/mcp.json",
    ("windsurf", "user", "*"): ".codeium/windsurf/mcp_config.json",
    ("zed", "user", "linux"): ".config/zed/settings.json",
    ("zed", "user", "darwin"): ".config/zed/settings.json",
    ("zed", "user", "win32"): "AppData/Roaming/Zed/settings.json",
    ("zed", "project", "*"): ".zed/settings.json",
}

CASES = [(client, scope, platform) for client, spec in CLIENTS.items() for scope in spec.scopes
         for platform in PLATFORMS]


def expected_path(tmp_path: Path, client: str, scope: str, platform: str) -> Path:
    relative = EXPECTED.get((client, scope, platform)) or EXPECTED[(client, scope, "*")]
    return (tmp_path / ("home" if scope == "user" else "project")) / relative


def install(tmp_path: Path, client: str, scope: str | None = None, platform: str = "linux", dry_run: bool = False,
            **kw):
    kw.setdefault("launcher", LAUNCHER)
    kw.setdefault("data_dir", DATA)
    return run_install(client, scope=scope, dry_run=dry_run, home=tmp_path / "home", platform=platform,
                       project_dir=tmp_path / "project", **kw)


def entry_for(client: str) -> dict:
    return server_entry(client, render_template(client, launcher=LAUNCHER, data_dir=DATA))


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".bak-*"))


def leftovers(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def existing_config(client: str) -> str:
    """A realistic config with another server and other settings (JSONC clients: with comments)."""
    container = CLIENTS[client].container
    if CLIENTS[client].jsonc:
        return (
            "// settings I care about\n"
            "{\n"
            '  "theme": "One Dark", // keep me\n'
            f'  "{container}": {{\n'
            "    /* the server I had */\n"
            '    "other": {"command": "/usr/bin/other", "args": ["--flag"]},\n'
            "  },\n"
            "}\n"
        )
    return json.dumps({"numStartups": 7, container: {"other": {"command": "/usr/bin/other", "args": ["--flag"]}},
                       "projects": {"/p": {"allowedTools": []}}}, indent=2) + "\n"


# ------------------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize(("client", "scope", "platform"), CASES)
def test_fresh_install_writes_the_filled_template_at_the_right_path(tmp_path, client, scope, platform) -> None:
    result = install(tmp_path, client, scope, platform)
    path = expected_path(tmp_path, client, scope, platform)
    assert result.path == path
    assert result.action == "created" and result.changed and result.backup is None
    document = json.loads(path.read_text(encoding="utf-8"))
    # the filled-in template is exactly what install writes
    assert document == render_template(client, launcher=LAUNCHER, data_dir=DATA)
    assert result.entry == entry_for(client)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not leftovers(path)


@pytest.mark.parametrize(("client", "scope", "platform"), CASES)
def test_merge_keeps_everything_else_and_a_second_run_changes_nothing(tmp_path, client, scope, platform) -> None:
    path = expected_path(tmp_path, client, scope, platform)
    path.parent.mkdir(parents=True)
    before = existing_config(client)
    path.write_text(before, encoding="utf-8")
    old_value = loads_jsonc(before)

    first = install(tmp_path, client, scope, platform)
    assert first.action == "added" and first.path == path
    after = path.read_text(encoding="utf-8")
    new_value = loads_jsonc(after)
    container = CLIENTS[client].container
    expected = json.loads(json.dumps(old_value))
    expected[container]["gum"] = entry_for(client)
    assert new_value == expected  # every other server and setting kept, the gum entry added
    if CLIENTS[client].jsonc:
        for comment in ("// settings I care about", "// keep me", "/* the server I had */"):
            assert comment in after
    else:
        assert json.loads(after) == expected  # still strict JSON
    [backup] = backups(path)
    assert backup.read_text(encoding="utf-8") == before
    assert str(backup) in first.report and "add " in first.report

    snapshot = path.read_bytes()
    second = install(tmp_path, client, scope, platform)
    assert second.action == "unchanged" and not second.changed and second.backup is None
    assert path.read_bytes() == snapshot
    assert backups(path) == [backup]
    assert "already up to date" in second.report and second.diff == ""


def test_windows_claude_desktop_prefers_the_msix_location(tmp_path) -> None:
    packaged = tmp_path / "home/AppData/Local/Packages/Claude_pzs8sxrjxfjjc/LocalCache/Roaming/Claude"
    packaged.mkdir(parents=True)
    result = install(tmp_path, "claude-desktop", platform="win32")
    assert result.path == packaged / "claude_desktop_config.json"
    assert result.path.exists()


def test_real_layout_follows_the_environment(tmp_path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "APPDATA": str(tmp_path / "roaming")}
    assert config_path("vscode", "user", platform="linux", environ=env) == tmp_path / "xdg/Code/User/mcp.json"
    assert config_path("zed", "user", platform="win32", environ=env) == tmp_path / "roaming/Zed/settings.json"
    assert config_path("zed", "user", platform="linux", environ={"XDG_CONFIG_HOME": "relative"}).parts[-3:] == (
        ".config", "zed", "settings.json")


def test_clients_and_their_scopes() -> None:
    assert client_scopes() == {
        "claude-desktop": ("user",), "claude-code": ("user", "project"), "cursor": ("user", "project"),
        "vscode": ("user", "project"), "windsurf": ("user",), "zed": ("user", "project"),
    }


def test_unknown_client_and_scope_are_clear_errors(tmp_path) -> None:
    with pytest.raises(InstallError, match=r"unknown client 'notepad'.*claude-desktop"):
        install(tmp_path, "notepad")
    with pytest.raises(InstallError, match="Windsurf has no project scope; it has: user"):
        install(tmp_path, "windsurf", "project")
    assert not (tmp_path / "home").exists()


def test_default_scope_is_user(tmp_path) -> None:
    result = install(tmp_path, "cursor", None)
    assert result.scope == "user" and result.path == tmp_path / "home/.cursor/mcp.json"


# ------------------------------------------------------------------------------------------------ launcher
def test_default_launcher_uses_absolute_paths_of_this_interpreter() -> None:
    launcher = default_launcher()
    assert Path(launcher[0]).is_absolute() and Path(launcher[0]).exists()
    assert launcher[-1] == "serve"
    script = Path(sys.executable).absolute().parent / ("gum-mcp.exe" if os.name == "nt" else "gum-mcp")
    if script.is_file():
        assert launcher == [str(script), "serve"]
    else:
        assert launcher == [str(Path(sys.executable).absolute()), "-m", "gum_mcp", "serve"]


def test_install_defaults_to_this_interpreter_and_the_configured_data_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "my data"))
    monkeypatch.chdir(tmp_path)
    result = run_install("windsurf", scope=None, dry_run=False, home=tmp_path / "home", platform="linux")
    assert result.entry["command"] == default_launcher()[0]
    assert result.entry["env"] == {"GUM_DATA_DIR": str(tmp_path / "my data"), "GUM_CLIENT": "windsurf"}


# ------------------------------------------------------------------------------------------------ edits
def test_a_stale_gum_entry_is_updated_in_place(tmp_path) -> None:
    path = tmp_path / "home/.cursor/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"mcpServers": {
        "a": {"command": "a"}, "gum": {"command": "/old/python", "args": ["-m", "gum_mcp", "serve"]},
        "z": {"command": "z"}}}, indent=2))
    result = install(tmp_path, "cursor")
    assert result.action == "updated" and len(backups(path)) == 1
    value = json.loads(path.read_text())
    assert list(value["mcpServers"]) == ["a", "gum", "z"]  # in place, order kept
    assert value["mcpServers"]["gum"] == entry_for("cursor")
    assert '-      "command": "/old/python",' in result.diff
    assert '"command": "a"' not in result.diff and '"command": "z"' not in result.diff  # only gum's lines change
    assert "update mcpServers.gum" in result.report


def test_dry_run_writes_nothing(tmp_path) -> None:
    fresh = install(tmp_path, "claude-desktop", dry_run=True)
    assert fresh.action == "created" and not fresh.changed
    assert not (tmp_path / "home").exists()  # not even the folder
    assert "dry run: nothing was written" in fresh.report and "would create" in fresh.report

    path = tmp_path / "project/.vscode/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text(existing_config("vscode"))
    before = path.read_bytes()
    result = install(tmp_path, "vscode", "project", dry_run=True)
    assert result.action == "added" and result.diff and "+" in result.diff
    assert path.read_bytes() == before
    assert not backups(path) and not leftovers(path)


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("content", ['{"mcpServers": {"a": ', "not json at all", '{"a": 1} {"b": 2}', '{"a": 01}'])
def test_a_corrupt_config_is_left_untouched_with_a_clear_error(tmp_path, client, content) -> None:
    path = config_path(client, "user", home=tmp_path / "home", platform="linux")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    before = path.read_bytes()
    with pytest.raises(InstallError) as raised:
        install(tmp_path, client)
    message = str(raised.value)
    assert str(path) in message and "line 1, column" in message and "Nothing was changed" in message
    assert raised.value.snippet and '"gum"' in raised.value.snippet  # what to paste by hand
    assert path.read_bytes() == before
    assert not backups(path) and not leftovers(path)


@pytest.mark.parametrize("client", [name for name, spec in CLIENTS.items() if not spec.jsonc])
def test_comments_in_a_strict_json_config_are_refused_with_the_snippet(tmp_path, client) -> None:
    path = config_path(client, "user", home=tmp_path / "home", platform="darwin")
    path.parent.mkdir(parents=True)
    path.write_text('{\n  // my servers\n  "mcpServers": {}\n}\n')
    before = path.read_bytes()
    with pytest.raises(InstallError, match="line 2, column 3: a comment, which strict JSON does not allow") as raised:
        install(tmp_path, client, platform="darwin")
    assert json.loads(raised.value.snippet) == render_template(client, launcher=LAUNCHER, data_dir=DATA)
    assert path.read_bytes() == before and not backups(path)


def test_comments_inside_an_old_gum_entry_are_never_dropped(tmp_path) -> None:
    path = tmp_path / "project/.zed/settings.json"
    path.parent.mkdir(parents=True)
    path.write_text('{\n  "context_servers": {\n    "gum": {\n      // pinned by hand\n'
                    '      "command": "x"\n    }\n  }\n}\n')
    before = path.read_bytes()
    with pytest.raises(InstallError, match="has comments inside") as raised:
        install(tmp_path, "zed", "project")
    assert raised.value.snippet
    assert path.read_bytes() == before and not backups(path)


@pytest.mark.parametrize("content", ["[1, 2]", '{"mcpServers": []}', '{"mcpServers": "none"}'])
def test_unexpected_shapes_are_refused(tmp_path, content) -> None:
    path = tmp_path / "home/.codeium/windsurf/mcp_config.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(InstallError, match="not an object"):
        install(tmp_path, "windsurf")
    assert path.read_text() == content


@pytest.mark.parametrize("content", ["", "   \n", "{}", "{ }", '{"other": true}', '{"mcpServers":{}}',
                                     '{"mcpServers":{"a":{"command":"a"}}}'])
def test_small_and_one_line_files(tmp_path, content) -> None:
    path = tmp_path / "home/.cursor/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    install(tmp_path, "cursor")
    value = json.loads(path.read_text())
    assert value["mcpServers"]["gum"] == entry_for("cursor")
    old = json.loads(content) if content.strip() else {}
    for key, item in old.items():
        if key != "mcpServers":
            assert value[key] == item
    for name in old.get("mcpServers", {}):
        assert value["mcpServers"][name] == old["mcpServers"][name]


def test_a_jsonc_file_of_only_comments_keeps_them(tmp_path) -> None:
    path = tmp_path / "home/.config/zed/settings.json"
    path.parent.mkdir(parents=True)
    path.write_text("// Zed settings\n// nothing yet\n")
    install(tmp_path, "zed")
    text = path.read_text()
    assert text.startswith("// Zed settings\n// nothing yet\n")
    assert loads_jsonc(text) == {"context_servers": {"gum": entry_for("zed")}}


def test_tabs_crlf_and_trailing_commas_are_respected(tmp_path) -> None:
    path = tmp_path / "project/.vscode/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{\r\n\t"inputs": [],\r\n\t"servers": {\r\n\t\t"a": {"command": "a"}, // a\r\n\t},\r\n}\r\n')
    install(tmp_path, "vscode", "project")
    data = path.read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")  # only CRLF line endings
    text = data.decode()
    assert '\r\n\t\t"gum": {\r\n\t\t\t"type": "stdio",' in text  # tab indentation, one level deeper
    assert '"a": {"command": "a"}, // a' in text
    assert loads_jsonc(text)["servers"]["gum"] == entry_for("vscode")
    assert loads_jsonc(text)["inputs"] == []


def test_permissions_are_kept(tmp_path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    path = tmp_path / "home/.claude.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    path.chmod(0o640)
    install(tmp_path, "claude-code")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    [backup] = backups(path)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640


def test_a_symlinked_config_is_written_through(tmp_path) -> None:
    dotfiles = tmp_path / "dotfiles/windsurf.json"
    dotfiles.parent.mkdir(parents=True)
    dotfiles.write_text('{"mcpServers": {}}')
    link = tmp_path / "home/.codeium/windsurf/mcp_config.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    result = install(tmp_path, "windsurf")
    assert link.is_symlink() and result.path == dotfiles.resolve()
    assert json.loads(dotfiles.read_text())["mcpServers"]["gum"] == entry_for("windsurf")
    assert "through the symlink" in result.report


def test_backups_never_overwrite_each_other(tmp_path) -> None:
    path = tmp_path / "home/.cursor/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    now = datetime(2026, 1, 2, 3, 4, 5)
    install(tmp_path, "cursor", now=now)
    install(tmp_path, "cursor", now=now, launcher=["/other/gum-mcp", "serve"])
    assert [p.name for p in backups(path)] == ["mcp.json.bak-20260102-030405", "mcp.json.bak-20260102-030405-2"]
    assert json.loads(path.read_text())["mcpServers"]["gum"]["command"] == "/other/gum-mcp"


def test_the_report_never_shows_other_servers_secrets(tmp_path) -> None:
    path = tmp_path / "home/.cursor/mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"mcpServers": {"x": {"command": "x", "env": {"X_API_KEY": "sk-live-123"}}},\n'
                    ' "apiKey": "sk-other-456"}')
    result = install(tmp_path, "cursor")
    assert "sk-live-123" not in result.report and "sk-other-456" not in result.report
    assert result.action == "added"


# ------------------------------------------------------------------------------------------------ JSONC
def test_jsonc_reader() -> None:
    text = """// head
    {
      "url": "http://example.com//not-a-comment", /* block
      comment */ "s": "a \\"quoted\\" /* word */",
      "list": [1, 2.5e3, -0.5, true, false, null,],
      "nested": {"a": {},},
    }"""
    assert loads_jsonc(text) == {"url": "http://example.com//not-a-comment", "s": 'a "quoted" /* word */',
                                 "list": [1, 2500.0, -0.5, True, False, None], "nested": {"a": {}}}
    parsed = parse_jsonc(text)
    assert parsed.trailing_commas and len(parsed.comments) == 2
    assert loads_jsonc("") is None and loads_jsonc("// only\n") is None
    assert loads_jsonc('\ufeff{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1,, }', "line 1, column 9: expected a string key"),
    ('{\n  "a": 1\n  "b": 2\n}', "line 3, column 3: expected ',' or '}'"),
    ('{"a": "unterminated}', "unterminated string"),
    ("{/* open", "unterminated /* comment"),
    ("[1, 2", "unexpected end of file"),
    ('{"a": tru}', "unexpected character 't'"),
])
def test_jsonc_errors_name_the_place(text, message) -> None:
    with pytest.raises(JsoncError, match=re.escape(message)):
        parse_jsonc(text)


def test_strict_mode_refuses_comments_and_trailing_commas() -> None:
    with pytest.raises(JsoncError, match="a comment, which strict JSON"):
        parse_jsonc('{"a": 1} // x', jsonc=False)
    with pytest.raises(JsoncError, match="a trailing comma, which strict JSON"):
        parse_jsonc('{"a": 1,}', jsonc=False)
    assert parse_jsonc('{"a": [1]}', jsonc=False).root.value == {"a": [1]}
