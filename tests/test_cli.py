"""The command line, in-process through main() and once as a real subprocess."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from gum_mcp.cli import build_parser, main
from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, make_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("GUM_") and name != "GUM_MODELS_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def seed(data_dir: Path) -> int:
    with Store.open(make_settings(data_dir)) as store:
        obs = store.add_observation("Excel - Budget-Q4.xlsx", kind="screen", source="screen")
        [pid] = store.complete_batch(BatchResult(observation_ids=(obs.id,), new=(NewProposition(
            draft=PropositionDraft(text="Priya prepares the Q4 budget", reasoning="Excel open", confidence=7, decay=4),
            evidence=(obs.id,)),)))
    return pid


def test_add_status_list_show(data_dir: Path, capsys) -> None:
    code, out, _ = run(capsys, "add", "password=hunter2hunter2 typed in a terminal", "--kind", "screen")
    assert code == 0 and "added observation 1" in out and "redacted" in out
    pid = seed(data_dir)
    code, out, _ = run(capsys, "status", "--json")
    status = json.loads(out)
    assert status["observations"]["pending"] == 1 and status["propositions_current"] == 1
    code, out, _ = run(capsys, "list")
    assert f"[{pid}] Priya prepares the Q4 budget" in out
    code, out, _ = run(capsys, "list", "--json", "--order", "confidence")
    assert json.loads(out)["items"][0]["id"] == pid
    code, out, _ = run(capsys, "show", str(pid))
    assert "confidence 7" in out and "evidence #2" in out
    code, _, err = run(capsys, "show", "999")
    assert code == 1 and "no proposition with id 999" in err


def test_export_file_is_private(data_dir: Path, capsys, tmp_path: Path) -> None:
    seed(data_dir)
    out_file = tmp_path / "export.jsonl"
    code, _, err = run(capsys, "export", "--out", str(out_file))
    assert code == 0 and "exported" in err
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    types = {json.loads(line)["type"] for line in out_file.read_text().splitlines()}
    assert {"observation", "proposition", "evidence"} <= types


def test_forget_and_prune(data_dir: Path, capsys) -> None:
    pid = seed(data_dir)
    code, _, err = run(capsys, "forget")
    assert code == 2 and "exactly one of" in err
    code, _, err = run(capsys, "forget", "--all")
    assert code == 2 and "--yes" in err
    code, _, err = run(capsys, "forget", "--since", "yesterday")
    assert code == 2 and "--since: 'yesterday' is not a time" in err
    code, out, _ = run(capsys, "forget", "--proposition", str(pid), "--with-evidence")
    assert code == 0 and "forgot 1 observation(s) and 1 proposition version(s)" in out
    code, out, _ = run(capsys, "prune", "--json")
    pruned = json.loads(out)
    assert pruned["pruned"] == 0 and pruned["retention_days"] == 30 and "removed" in pruned


def test_retry_requeues_failed(data_dir: Path, capsys) -> None:
    with Store.open(make_settings(data_dir)) as store:
        obs = store.add_observation("x")
        store.fail_batch([obs.id], "provider down", max_attempts=1)
    _, out, _ = run(capsys, "status")
    assert "failed        observation 1: provider down" in out
    _code, out, _ = run(capsys, "retry")
    assert "re-queued 1" in out


def test_every_command_has_help(capsys) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage: gum-mcp" in capsys.readouterr().out


def test_python_dash_m_works_as_a_subprocess(tmp_path: Path) -> None:
    result = subprocess.run([PYTHON, "-m", "gum_mcp", "status"], cwd=REPO, env=gum_env(tmp_path / "d"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "propositions  0 current" in result.stdout


def test_status_names_the_process_that_runs_the_engine(data_dir: Path, capsys) -> None:
    import os

    from gum_mcp.lock import EngineLock

    _, out, _ = run(capsys, "status")
    assert "engine        not running" in out
    with EngineLock(data_dir) as lock:
        assert lock.try_acquire()
        _, out, _ = run(capsys, "status", "--json")
        assert json.loads(out)["engine_owner"]["pid"] == os.getpid()
