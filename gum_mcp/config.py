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
    # the stdio client this server answers (set in its config entry; HTTP clients are named by their token)
    client: str | None = Field(None, alias="GUM_CLIENT", min_length=1, max_length=64)
    scopes: list[Literal["read", "write", "forget", "admin"]] | None = Field(None, alias="GUM_SCOPES")
    # which classes of knowledge each client may read (gum_mcp/store/policy.py); default <data dir>/policy.toml
    policy_file: Path | None = Field(None, alias="GUM_POLICY_FILE")

    # -- store
    max_observation_chars: int = Field(20_000, alias="GUM_MAX_OBSERVATION_CHARS", ge=100, le=1_000_000)
    redact_patterns: list[str] = Field(default_factory=list, alias="GUM_REDACT_PATTERNS")
    redact_contacts: bool = Field(True, alias="GUM_REDACT_CONTACTS")  # email addresses and phone numbers
    retention_days: int = Field(30, alias="GUM_RETENTION_DAYS", ge=0, le=36_500)
    retention_interval: float = Field(3600.0, alias="GUM_RETENTION_INTERVAL", ge=1, le=7 * 86_400)
    evidence_keep: int = Field(20, alias="GUM_EVIDENCE_KEEP", ge=0, le=100_000)
    llm_calls_days: int = Field(30, alias="GUM_LLM_CALLS_DAYS", ge=0, le=36_500)
    log_max_bytes: int = Field(5_000_000, alias="GUM_LOG_MAX_BYTES", ge=4096, le=10_000_000_000)
    log_backups: int = Field(3, alias="GUM_LOG_BACKUPS", ge=1, le=100)
    durability: Literal["normal", "full"] = Field("normal", alias="GUM_DURABILITY")
    # encryption at rest (gum_mcp/store/keys.py): unset = on for a new data dir; the store's own file decides after
    encrypt: bool | None = Field(None, alias="GUM_ENCRYPT")
    db_key: str | None = Field(None, alias="GUM_DB_KEY", repr=False)
    db_key_file: Path | None = Field(None, alias="GUM_DB_KEY_FILE")

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
    # tokens one call may use, prompt and reply together: prompts are bounded by it and batches split to fit
    llm_context: int = Field(8192, alias="GUM_LLM_CONTEXT", ge=2048, le=2_000_000)
    # the same error from the provider this many times in a row pauses the engine until `gum-mcp retry` (0 = never)
    llm_same_error_limit: int = Field(5, alias="GUM_LLM_SAME_ERROR_LIMIT", ge=0, le=1000)
    llm_backoff_base: float = Field(1.0, alias="GUM_LLM_BACKOFF_BASE", ge=0, le=60)
    llm_backoff_max: float = Field(30.0, alias="GUM_LLM_BACKOFF_MAX", ge=0, le=600)
    daily_token_budget: int = Field(0, alias="GUM_DAILY_TOKEN_BUDGET", ge=0)

    # -- embeddings and vector index
    embedding: Literal["minilm", "openai", "none"] = Field("minilm", alias="GUM_EMBEDDING")
    embedding_model: str | None = Field(None, alias="GUM_EMBEDDING_MODEL")
    # MiniLM's arithmetic: float32 (the reference vectors) or int8 (~2.5x faster in bulk, cosine >= 0.99)
    embedding_precision: Literal["float32", "int8"] = Field("float32", alias="GUM_EMBEDDING_PRECISION")
    # ... of a search query alone: int8 by default (about 2x faster a query; held-out quality within 0.005)
    query_precision: Literal["float32", "int8"] = Field("int8", alias="GUM_QUERY_PRECISION")
    models_dir: Path = Field(default_factory=default_models_dir, alias="GUM_MODELS_DIR")
    chroma_url: str | None = Field(None, alias="GUM_CHROMA_URL")
    # sent to that server as `Authorization: Bearer <token>` (a proxy or Chroma's token auth checks it)
    chroma_token: str | None = Field(None, alias="GUM_CHROMA_TOKEN", repr=False)
    index_wait: float = Field(5.0, alias="GUM_INDEX_WAIT", ge=0, le=120)

    # -- engine
    batch_min: int = Field(5, alias="GUM_BATCH_MIN", ge=1, le=1000)
    batch_max: int = Field(25, alias="GUM_BATCH_MAX", ge=1, le=1000)
    batch_max_wait: float = Field(60.0, alias="GUM_BATCH_MAX_WAIT", ge=0, le=86_400)
    audit: bool = Field(True, alias="GUM_AUDIT")
    # how long the content of an observation the audit skipped is kept for review (`gum-mcp audit`), in days
    skipped_retention_days: float = Field(1.0, alias="GUM_SKIPPED_RETENTION_DAYS", ge=0, le=365)
    max_attempts: int = Field(5, alias="GUM_MAX_ATTEMPTS", ge=1, le=100)
    # cosine (of a draft without the person's name and an existing proposition) from which a draft using the same
    # words is that proposition again, merged without asking the model (gum_mcp/engine/dedup.py); 1 = only exact
    dedup_similarity: float = Field(0.5, alias="GUM_DEDUP_SIMILARITY", ge=0, le=1)

    # -- decide_or_ask (gum_mcp/engine/decide.py): the confidence a preference (or the model's decision) needs
    # before gum-mcp acts on it instead of advising the agent to ask; instructions need none
    decide_confidence: int = Field(7, alias="GUM_DECIDE_CONFIDENCE", ge=1, le=10)

    # -- suggestions
    suggest_threshold: float = Field(2.0, alias="GUM_SUGGEST_THRESHOLD", ge=-10, le=10)
    suggestion_days: int = Field(90, alias="GUM_SUGGESTION_DAYS", ge=7, le=36_500)

    # -- observers
    observe: list[Literal["screen", "files"]] = Field(default_factory=list, alias="GUM_OBSERVE")
    screen_interval: float = Field(1.0, alias="GUM_SCREEN_INTERVAL", gt=0, le=60)
    screen_settle: float = Field(1.5, alias="GUM_SCREEN_SETTLE", ge=0, le=60)
    screen_exclude: list[str] = Field(default_factory=list, alias="GUM_SCREEN_EXCLUDE")
    screen_unknown: Literal["capture", "skip"] = Field("capture", alias="GUM_SCREEN_UNKNOWN")
    # text: only redacted OCR text reaches the model; vision: the masked image; local: no model at capture
    screen_mode: Literal["text", "vision", "local"] = Field("text", alias="GUM_SCREEN_MODE")
    screen_max_pending: int = Field(200, alias="GUM_SCREEN_MAX_PENDING", ge=1, le=100_000)
    # the tesseract program that reads screens (None: found on PATH and in the usual macOS / Windows folders)
    tesseract: Path | None = Field(None, alias="GUM_TESSERACT")
    keep_screenshots: bool = Field(False, alias="GUM_KEEP_SCREENSHOTS")
    watch_dirs: list[Path] = Field(default_factory=list, alias="GUM_WATCH_DIRS")
    files_ignore: list[str] = Field(default_factory=list, alias="GUM_FILES_IGNORE")
    files_window: float = Field(600.0, alias="GUM_FILES_WINDOW", gt=0, le=86_400)
    files_include_content: bool = Field(False, alias="GUM_FILES_INCLUDE_CONTENT")

    @field_validator("observe", "files_ignore", "scopes", mode="before")
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
    def policy_path(self) -> Path:
        """The disclosure policy (gum_mcp/store/policy.py)."""
        return (self.policy_file or self.data_dir / "policy.toml").expanduser().absolute()

    @property
    def chroma_dir(self) -> Path:
        """Where versions before vectors.sqlite3 kept a plaintext data dir's index (deleted on open, or
        moved by `gum-mcp encrypt`)."""
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

    @property
    def vectors_path(self) -> Path:
        """The local vector index (SQLite; SQLCipher when the store is encrypted): gum_mcp/index/vector_store.py."""
        return self.data_dir / "vectors.sqlite3"


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


# ------------------------------------------------------------------------------ settings changed while running
#: Settings the person may change while gum-mcp runs (the page `gum-mcp ui` writes them to `<data dir>/.env`):
#: the processes that use them re-read that file when it changes (`LiveSettings`), as they re-read pause.json
#: and policy.toml. The process environment still wins over the file, as it does at start.
LIVE_SETTINGS: tuple[str, ...] = ("GUM_SCREEN_MODE", "GUM_SCREEN_EXCLUDE", "GUM_RETENTION_DAYS")


def env_value(value: str) -> str:
    """`value` as a `.env` line's value that parse_env_file reads back unchanged (quoted: no ` #` comment cut)."""
    if "\n" in value or "\r" in value:
        raise ConfigError("a .env value cannot span lines")
    return f"'{value}'" if "'" not in value or '"' in value else f'"{value}"'


def write_env_values(path: Path, values: Mapping[str, str | None]) -> None:
    """Set these keys in a `.env` file (None removes one), keeping every other line and comment as it was;
    written to a temporary file beside it, then renamed over it (a reader sees the old or the new file), 0600."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    left = dict(values)
    out: list[str] = []
    for line in lines:
        key = line.strip().removeprefix("export ").lstrip().partition("=")[0].strip()
        if key in values:
            if key in left and left[key] is not None:
                out.append(f"{key}={env_value(left[key])}")  # type: ignore[arg-type]
            left.pop(key, None)  # a key repeated further down goes
            continue
        out.append(line)
    out += [f"{key}={env_value(value)}" for key, value in left.items() if value is not None]
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class LiveSettings:
    """`settings`, with LIVE_SETTINGS re-read from `<data dir>/.env` whenever that file changes (one stat per
    call). A key set in the process environment keeps its value; a key the file lacks keeps the value the
    process started with; a value the file gets wrong is ignored (`problem` says why) until it is fixed."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.base = settings
        self.path = settings.data_dir / ".env"
        self.fixed = {key for key in LIVE_SETTINGS if (os.environ if env is None else env).get(key)}
        self._key: object = object()
        self._current = settings
        self.problem: str | None = None

    def current(self) -> Settings:
        try:
            info = self.path.stat()
            key: object = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            key = None
        if key != self._key:
            self._key = key
            self._current, self.problem = self._read()
        return self._current

    def _read(self) -> tuple[Settings, str | None]:
        try:
            found = _relevant(parse_env_file(self.path))
        except ConfigError as exc:
            return self._current, str(exc)
        wanted = {key: value for key, value in found.items() if key in LIVE_SETTINGS and key not in self.fixed
                  and value != "" and not _PLACEHOLDER.fullmatch(value)}
        if not wanted:
            return self.base, None
        try:
            read = Settings.model_validate({**wanted, "GUM_DATA_DIR": str(self.base.data_dir)})
        except ValidationError as exc:
            return self._current, _one_line(exc)
        return self.base.model_copy(update={_ENV_NAMES[key]: getattr(read, _ENV_NAMES[key]) for key in wanted}), None
