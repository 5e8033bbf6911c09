"""One Settings object, read from the environment, `.env` files and defaults.

Precedence, highest first: the process environment, `<data dir>/.env`, `./.env` (for development),
then the defaults below. Every setting has one environment name; README.md and `.env.example` list
them all. An invalid value raises `ConfigError` with one line that names the variable and what is
allowed; the CLI turns that into exit code 2 without a traceback.

This module imports no other gum_mcp module.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

APP_NAME = "gum-mcp"


class ConfigError(ValueError):
    """A setting has a value that is not allowed. The message is one line, fit for a user."""


def default_data_dir() -> Path:
    return Path(user_data_dir(APP_NAME, appauthor=False))


def default_models_dir() -> Path:
    return Path(user_cache_dir(APP_NAME, appauthor=False)) / "models"


class Settings(BaseModel):
    """Every setting of gum-mcp. Field aliases are the environment variable names."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    # -- where and who
    data_dir: Path = Field(default_factory=default_data_dir, alias="GUM_DATA_DIR")
    user_name: str = Field("the user", alias="GUM_USER_NAME", min_length=1, max_length=100)

    # -- store
    max_observation_chars: int = Field(20_000, alias="GUM_MAX_OBSERVATION_CHARS", ge=100, le=1_000_000)
    redact_patterns: list[str] = Field(default_factory=list, alias="GUM_REDACT_PATTERNS")
    retention_days: int = Field(30, alias="GUM_RETENTION_DAYS", ge=0, le=36_500)
    durability: Literal["normal", "full"] = Field("normal", alias="GUM_DURABILITY")

    # -- LLM provider
    llm_provider: Literal["openai", "anthropic"] = Field("openai", alias="GUM_LLM_PROVIDER")
    model: str | None = Field(None, alias="GUM_MODEL")
    vision_model: str | None = Field(None, alias="GUM_VISION_MODEL")
    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY", repr=False)
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    anthropic_api_key: str | None = Field(None, alias="ANTHROPIC_API_KEY", repr=False)
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    llm_max_retries: int = Field(4, alias="GUM_LLM_MAX_RETRIES", ge=0, le=20)
    llm_timeout: float = Field(60.0, alias="GUM_LLM_TIMEOUT", gt=0, le=3600)
    llm_backoff_base: float = Field(1.0, alias="GUM_LLM_BACKOFF_BASE", ge=0, le=60)
    llm_backoff_max: float = Field(30.0, alias="GUM_LLM_BACKOFF_MAX", ge=0, le=600)
    daily_token_budget: int = Field(0, alias="GUM_DAILY_TOKEN_BUDGET", ge=0)

    # -- embeddings and vector index
    embedding: Literal["minilm", "openai", "none"] = Field("minilm", alias="GUM_EMBEDDING")
    embedding_model: str | None = Field(None, alias="GUM_EMBEDDING_MODEL")
    models_dir: Path = Field(default_factory=default_models_dir, alias="GUM_MODELS_DIR")
    chroma_url: str | None = Field(None, alias="GUM_CHROMA_URL")
    index_wait: float = Field(5.0, alias="GUM_INDEX_WAIT", ge=0, le=120)

    # -- engine
    batch_min: int = Field(5, alias="GUM_BATCH_MIN", ge=1, le=1000)
    batch_max: int = Field(25, alias="GUM_BATCH_MAX", ge=1, le=1000)
    batch_max_wait: float = Field(60.0, alias="GUM_BATCH_MAX_WAIT", ge=0, le=86_400)
    audit: bool = Field(True, alias="GUM_AUDIT")
    max_attempts: int = Field(5, alias="GUM_MAX_ATTEMPTS", ge=1, le=100)

    # -- suggestions
    suggest_threshold: float = Field(2.0, alias="GUM_SUGGEST_THRESHOLD", ge=-10, le=10)

    # -- observers
    observe: list[Literal["screen", "files"]] = Field(default_factory=list, alias="GUM_OBSERVE")
    screen_interval: float = Field(1.0, alias="GUM_SCREEN_INTERVAL", gt=0, le=60)
    screen_settle: float = Field(1.5, alias="GUM_SCREEN_SETTLE", ge=0, le=60)
    screen_exclude: list[str] = Field(default_factory=list, alias="GUM_SCREEN_EXCLUDE")
    screen_unknown: Literal["capture", "skip"] = Field("capture", alias="GUM_SCREEN_UNKNOWN")
    keep_screenshots: bool = Field(False, alias="GUM_KEEP_SCREENSHOTS")
    watch_dirs: list[Path] = Field(default_factory=list, alias="GUM_WATCH_DIRS")
    files_ignore: list[str] = Field(default_factory=list, alias="GUM_FILES_IGNORE")
    files_window: float = Field(600.0, alias="GUM_FILES_WINDOW", gt=0, le=86_400)
    files_include_content: bool = Field(False, alias="GUM_FILES_INCLUDE_CONTENT")

    @field_validator("observe", "files_ignore", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("watch_dirs", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        # os.pathsep-separated, like PATH (commas are legal in directory names)
        if isinstance(value, str):
            return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("redact_patterns", "screen_exclude", mode="before")
    @classmethod
    def _parse_patterns(cls, value: Any) -> Any:
        # A JSON array of regexes, or one regex. Commas are common inside regexes, so no CSV here.
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return []
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON array of strings ({exc.msg})") from None
            return [text]
        return value

    @field_validator("redact_patterns", "screen_exclude")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return value

    @field_validator("data_dir", "models_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("openai_base_url", "anthropic_base_url", "chroma_url", mode="after")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value or None

    # -- derived paths (one place that names the files under the data dir)
    @property
    def db_path(self) -> Path:
        return self.data_dir / "gum.sqlite3"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def screens_dir(self) -> Path:
        return self.data_dir / "screens"

    @property
    def files_cache_dir(self) -> Path:
        return self.data_dir / "files-cache"


_ENV_NAMES = {field.alias: name for name, field in Settings.model_fields.items() if field.alias}


def env_names() -> list[str]:
    """Every environment variable gum-mcp reads, in declaration order."""
    return list(_ENV_NAMES)


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse a `.env` file: KEY=VALUE lines, `#` comments, optional `export`, optional quotes."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


_PLACEHOLDER = re.compile(r"\$\{[^}]+\}")


def _relevant(source: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in source.items() if key in _ENV_NAMES}


def load_settings(
    env: Mapping[str, str] | None = None, *, cwd: Path | None = None, **overrides: Any
) -> Settings:
    """Build Settings from `env` (default: os.environ), the `.env` files and `overrides`.

    `overrides` use field names (e.g. data_dir=...) and win over everything; tests use them.
    """
    environ = dict(os.environ if env is None else env)
    merged: dict[str, Any] = _relevant(parse_env_file((cwd or Path.cwd()) / ".env"))
    data_dir = overrides.get("data_dir") or environ.get("GUM_DATA_DIR") or merged.get("GUM_DATA_DIR")
    data_dir_path = Path(data_dir).expanduser() if data_dir else default_data_dir()
    merged.update(_relevant(parse_env_file(data_dir_path / ".env")))
    merged.update(_relevant(environ))
    # An empty value means "unset" (so `.env.example` can be copied as it is), and so does a bare
    # `${...}`: some MCP hosts pass an unfilled bundle option through literally.
    merged = {key: value for key, value in merged.items() if value != "" and not _PLACEHOLDER.fullmatch(value)}
    for name, value in overrides.items():
        alias = Settings.model_fields[name].alias
        merged[alias or name] = value
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = error["loc"][0] if error["loc"] else "?"
    name = str(loc)
    field = Settings.model_fields.get(name)
    if field is not None and field.alias:
        name = field.alias
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if (isinstance(value, dict) or "KEY" in name) else f" (got {value!r})"
    return f"{name}: {message}{shown}"
