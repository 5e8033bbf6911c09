"""Settings: environment over .env files over defaults; one clear line for a bad value."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gum_mcp.config import ConfigError, env_names, load_settings
from tests.conftest import PYTHON, REPO, gum_env


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(env={}, cwd=tmp_path, data_dir=tmp_path / "d")
    assert settings.llm_provider == "openai" and settings.embedding == "minilm"
    assert settings.db_path == tmp_path / "d" / "gum.sqlite3"
    assert settings.audit is True and settings.durability == "normal"


def test_environment_beats_data_dir_env_beats_cwd_env(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / ".env").write_text("GUM_USER_NAME=from-cwd\nGUM_BATCH_MAX=7\nGUM_MODEL=cwd-model\n")
    (data / ".env").write_text("# comment\nexport GUM_USER_NAME='from data dir'\nGUM_BATCH_MAX=9 # inline\n")
    env = {"GUM_DATA_DIR": str(data), "GUM_BATCH_MAX": "11"}
    settings = load_settings(env=env, cwd=tmp_path)
    assert settings.user_name == "from data dir"
    assert settings.batch_max == 11
    assert settings.model == "cwd-model"


def test_empty_values_mean_unset(tmp_path: Path) -> None:
    settings = load_settings(env={"GUM_MODEL": "", "GUM_BATCH_MAX": ""}, cwd=tmp_path, data_dir=tmp_path)
    assert settings.model is None and settings.batch_max == 25


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GUM_LLM_PROVIDER": "gemini"}, "GUM_LLM_PROVIDER: Input should be 'openai' or 'anthropic'"),
        ({"GUM_BATCH_MAX": "many"}, "GUM_BATCH_MAX: Input should be a valid integer"),
        ({"GUM_RETENTION_DAYS": "-1"}, "GUM_RETENTION_DAYS: Input should be greater than or equal to 0"),
        ({"GUM_DURABILITY": "max"}, "GUM_DURABILITY: Input should be 'normal' or 'full'"),
        ({"GUM_REDACT_PATTERNS": "(unclosed"}, "GUM_REDACT_PATTERNS: invalid regular expression"),
        ({"GUM_REDACT_PATTERNS": "[1, "}, "GUM_REDACT_PATTERNS: not a JSON array"),
        ({"OPENAI_BASE_URL": "localhost:11434"}, "OPENAI_BASE_URL: must be an http:// or https:// URL"),
        ({"GUM_AUDIT": "perhaps"}, "GUM_AUDIT: Input should be a valid boolean"),
    ],
)
def test_invalid_values_name_the_variable(tmp_path: Path, env: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env, cwd=tmp_path, data_dir=tmp_path)
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_redact_patterns_as_json_list(tmp_path: Path) -> None:
    env = {"GUM_REDACT_PATTERNS": r'["ACME-\\d{6}", "proj-[a-z]+"]'}
    settings = load_settings(env=env, cwd=tmp_path, data_dir=tmp_path)
    assert settings.redact_patterns == [r"ACME-\d{6}", "proj-[a-z]+"]


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings(env={"OPENAI_API_KEY": "sk-verysecretvalue123"}, cwd=tmp_path, data_dir=tmp_path)
    assert "verysecret" not in repr(settings)


def test_a_malformed_env_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GUM_MODEL gpt\n")
    with pytest.raises(ConfigError, match=r"\.env:1: expected KEY=VALUE"):
        load_settings(env={}, cwd=tmp_path, data_dir=tmp_path / "d")


def test_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run([PYTHON, "-m", "gum_mcp", "status"], cwd=REPO, capture_output=True, text=True,
                            env=gum_env(tmp_path / "d", GUM_BATCH_MIN="0"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "gum-mcp: GUM_BATCH_MIN: Input should be greater than or equal to 1 (got '0')"
    assert result.stdout == ""


def test_env_example_lists_every_setting() -> None:
    example = (REPO / ".env.example").read_text()
    readme = (REPO / "README.md").read_text()
    for name in env_names():
        assert f"{name}=" in example, f"{name} missing from .env.example"
        assert f"`{name}`" in readme, f"{name} missing from README.md"
