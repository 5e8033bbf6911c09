"""Shared fixtures. Fixtures that live in their own modules are re-exported here."""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import anyio
import pytest

from gum_mcp.config import Settings, load_settings
from gum_mcp.store import Store
from tests.fake_provider import fake_provider  # noqa: F401  (a fixture, re-exported)

REPO = Path(__file__).resolve().parent.parent
#: Where the tests' embedding model lives: a git-ignored folder of the repository that `scripts/test`
#: installs it into (GUM_TEST_MODELS_DIR moves it), never the user's own model folder. Subprocesses
#: started by the tests inherit it through the environment.
MODELS_DIR = Path(os.environ.get("GUM_TEST_MODELS_DIR") or REPO / ".models")
os.environ["GUM_MODELS_DIR"] = str(MODELS_DIR)
#: Encryption keys: the tests keep them with a real keyring backend (keyrings.alt's plaintext file), in a
#: folder of their own, never in the developer's keychain or ~/.config (the key-file fallback). Subprocesses
#: inherit this through the environment.
_KEYS_HOME = Path(tempfile.mkdtemp(prefix="gum-tests-keys-"))
atexit.register(shutil.rmtree, _KEYS_HOME, ignore_errors=True)
os.environ["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
os.environ["XDG_DATA_HOME"] = str(_KEYS_HOME / "data")
os.environ["XDG_CONFIG_HOME"] = str(_KEYS_HOME / "config")

#: The week of observations the engine tests replay (a copy of the project's benchmark trace).
WEEK_TRACE = REPO / "tests" / "fixtures" / "week.jsonl"
#: The disclosure policy tests run under unless they set their own: every client may read every class
#: (without it, the built-in default withholds untagged propositions from every client).
OPEN_POLICY = REPO / "tests" / "fixtures" / "policy-open.toml"


def make_settings(data_dir: Path, **overrides) -> Settings:
    """Settings for a test: nothing from the developer's environment or .env files leaks in,
    except where the embedding model lives (installed once per machine)."""
    env = {key: os.environ[key] for key in ("GUM_MODELS_DIR",) if key in os.environ}
    # Plaintext unless a test asks (encrypt=True): the encryption tests and the raw-byte privacy tests
    # run both ways; the rest of the suite reads its files with the standard library's sqlite3.
    overrides.setdefault("encrypt", False)
    overrides.setdefault("policy_file", OPEN_POLICY)
    return load_settings(env=env, cwd=data_dir, data_dir=data_dir, **overrides)


def seeded_with_index(data_dir: Path, texts: Iterable[str]) -> None:
    """`data_dir` holding `texts` as current propositions, and their vector index on disk before any server
    starts (as `gum-mcp reindex` leaves it)."""
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
    from gum_mcp.index.vector_index import run_reindex

    settings = make_settings(data_dir)
    texts = list(texts)
    with Store.open(settings) as store:
        for text in texts:
            draft = PropositionDraft(text=text, confidence=7, decay=5)
            store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(draft=draft),)))
    assert run_reindex(settings) == len(texts)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings) as opened:
        yield opened


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):
    """The offline MiniLM embedder, loaded once per session. Missing model (`scripts/test` installs it):
    skip here, fail in CI."""
    from gum_mcp.index.embeddings import make_embedder
    from gum_mcp.index.models import find_minilm

    settings = make_settings(tmp_path_factory.mktemp("embedder"))
    if find_minilm(settings.models_dir) is None:
        missing = f"MiniLM is not installed in {settings.models_dir} (gum-mcp models install)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    made, reason = make_embedder(settings)
    assert made is not None, reason
    return made


def wait_until(predicate: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def eventually(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.05) -> object:
    """Call `predicate()` (awaiting it when it is a coroutine function) until it returns something
    truthy, sleeping between tries without blocking the event loop; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await anyio.sleep(interval)


def gum_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An environment for a gum-mcp subprocess on `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUM_", "OPENAI_", "ANTHROPIC_"))}
    env["GUM_DATA_DIR"] = str(data_dir)
    env["GUM_ENCRYPT"] = "0"  # a new data dir is plaintext, as with make_settings (extra may say "1")
    env["GUM_POLICY_FILE"] = str(OPEN_POLICY)  # as with make_settings (extra may name another)
    if "GUM_MODELS_DIR" in os.environ:
        env["GUM_MODELS_DIR"] = os.environ["GUM_MODELS_DIR"]
    env.update(extra)
    return env


PYTHON = sys.executable
