"""`gum-mcp doctor`: real checks against a healthy and a broken data dir, and the fake provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gum_mcp.cli import main
from gum_mcp.store import Store
from tests.conftest import make_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("GUM_LLM_PROVIDER", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GUM_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GUM_LLM_TIMEOUT", "2")
    Store.open(make_settings(tmp_path / "data")).close()
    return tmp_path / "data"


def doctor(capsys, *args: str) -> tuple[int, dict[str, dict]]:
    code = main(["doctor", "--json", *args])
    return code, {check["name"]: check for check in json.loads(capsys.readouterr().out)}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_healthy_data_dir_and_working_provider(env: Path, capsys, monkeypatch, fake_provider, provider: str) -> None:
    monkeypatch.setenv("GUM_LLM_PROVIDER", provider)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_provider.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.anthropic_base_url)
    fake_provider.reply({"ok": True})
    code, checks = doctor(capsys)
    assert checks["store"]["level"] == "OK" and checks["data dir"]["level"] == "OK"
    assert checks["llm provider"]["level"] == "OK", checks["llm provider"]
    assert "ok in" in checks["llm provider"]["detail"]
    assert code == 0  # a healthy data dir: warnings at most (no display here, say), no failure


def test_provider_failure_is_reported_with_the_reason(env: Path, capsys, monkeypatch, fake_provider) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_provider.openai_base_url)
    fake_provider.fault("500", status=503)
    code, checks = doctor(capsys)
    assert code == 1
    assert checks["llm provider"]["level"] == "FAIL" and "503" in checks["llm provider"]["detail"]


def test_unconfigured_provider_names_the_variable(env: Path, capsys) -> None:
    code, checks = doctor(capsys)
    assert code == 1 and "OPENAI_API_KEY" in checks["llm provider"]["detail"]


def test_broken_data_dir_fails(env: Path, capsys) -> None:
    (env / "gum.sqlite3").chmod(0o644)
    code, checks = doctor(capsys, "--offline")
    assert code == 1 and checks["data dir"]["level"] == "FAIL" and "gum.sqlite3" in checks["data dir"]["detail"]


def test_corrupt_database_fails(env: Path, capsys) -> None:
    for side in ("gum.sqlite3-wal", "gum.sqlite3-shm"):
        (env / side).unlink(missing_ok=True)
    (env / "gum.sqlite3").write_bytes(b"this is not a database" * 100)
    code, checks = doctor(capsys, "--offline")
    assert code == 1 and checks["store"]["level"] == "FAIL"


def test_observer_checks(env: Path, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, checks = doctor(capsys, "--offline")
    assert checks["screen"]["level"] == "OK" and "not observed" in checks["screen"]["detail"]
    assert checks["watch dirs"]["level"] == "OK"
    assert checks["vector index"]["level"] in ("OK", "WARN")
    monkeypatch.setenv("GUM_OBSERVE", "screen,files")
    monkeypatch.setenv("GUM_WATCH_DIRS", str(tmp_path / "no-such-folder"))
    code, checks = doctor(capsys, "--offline")
    assert code == 1
    assert checks["screen"]["level"] == "FAIL" and "display" in checks["screen"]["detail"].lower()
    assert checks["watch dirs"]["level"] == "FAIL" and "no-such-folder" in checks["watch dirs"]["detail"]


def test_the_index_backend_names_the_local_vectors_file_and_an_old_chroma_folder(tmp_path: Path) -> None:
    from gum_mcp.doctor import check_index_backend

    plain = make_settings(tmp_path / "plain")
    Store.open(plain).close()
    check = check_index_backend(plain)
    assert check.level == "OK" and check.detail == f"local, plaintext: {plain.vectors_path}"
    (plain.chroma_dir / "0b8f").mkdir(parents=True)  # what a version before vectors.sqlite3 left
    check = check_index_backend(plain)
    assert check.level == "WARN" and str(plain.chroma_dir) in check.detail and "deletes it" in check.hint
    encrypted = make_settings(tmp_path / "encrypted", encrypt=True)
    Store.open(encrypted).close()
    check = check_index_backend(encrypted)
    assert check.level == "OK" and check.detail == f"local, encrypted: {encrypted.vectors_path}"


def test_gum_tesseract_in_the_data_dirs_env_file_names_the_ocr_program(env: Path, capsys, tmp_path: Path) -> None:
    """GUM_TESSERACT is a setting like the others: <data dir>/.env can name the program (a Windows or macOS
    install outside PATH), not only the process environment."""
    program = tmp_path / "my tesseract"
    program.write_text("#!/bin/sh\ncase \"$1\" in\n  --version) echo 'tesseract 9.8.7';;\n"
                       "  --list-langs) printf 'List of available languages (1):\\neng\\n';;\nesac\n")
    program.chmod(0o755)
    (env / ".env").write_text(f"GUM_TESSERACT={program}\n")
    _code, checks = doctor(capsys)
    assert "OCR tesseract 9.8.7" in checks["screen text"]["detail"], checks["screen text"]
