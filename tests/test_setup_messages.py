"""What `gum-mcp doctor` and `gum-mcp install` tell a person setting gum-mcp up: the one thing to fix
and where, and a snippet to paste by hand that is printed cleanly, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gum_mcp.cli import main
from gum_mcp.store import Store
from tests.conftest import make_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("GUM_LLM_PROVIDER", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                 "GUM_OBSERVE", "GUM_WATCH_DIRS", "DISPLAY", "WAYLAND_DISPLAY", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    Store.open(make_settings(tmp_path / "data")).close()
    return tmp_path / "home"


def test_doctor_without_a_provider_has_one_failure_that_names_the_env_file(home: Path, capsys) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert code == 1 and len(failures) == 1, out
    [failure] = failures
    data_dir = home.parent / "data"
    assert "llm provider" in failure and str(data_dir / ".env") in failure and "OPENAI_API_KEY" in failure
    assert "GUM_OBSERVE" not in out  # not set: nothing to say about it
    assert not [line for line in out.splitlines() if line.startswith("WARN") and "screen" in line]


def test_a_dry_run_shows_the_diff_and_the_clean_snippet(home: Path, capsys) -> None:
    assert main(["install", "cursor", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+    \"gum\": {" in out.replace("  +", "+")  # the diff
    start = out.index("by hand")
    block = out[out.index("\n", start) + 1 : out.index("\n\n", start)]
    snippet = json.loads(block)  # printed as it is, without diff markers or indentation
    assert snippet["mcpServers"]["gum"]["args"] == ["serve"]
    assert not (home / ".cursor").exists()


def test_a_dry_run_in_json_never_says_created(home: Path, capsys) -> None:
    assert main(["install", "cursor", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dry_run"] is True and result["changed"] is False
    assert result["action"] == "would_create" and "created" not in json.dumps(result)
    assert json.loads(result["snippet"])["mcpServers"]["gum"] == result["entry"]
    assert main(["install", "cursor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "created"


def test_a_refusal_prints_its_snippet_once(home: Path, capsys) -> None:
    path = home / ".cursor" / "mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text('{\n  // my servers\n  "mcpServers": {}\n}\n')
    assert main(["install", "cursor"]) == 1
    err = capsys.readouterr().err
    assert "a comment" in err and err.count('"mcpServers"') == 1 and err.count("by hand") == 1, err
