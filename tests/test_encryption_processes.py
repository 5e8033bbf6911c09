"""A realistic run on an encrypted data dir: two real `gum-mcp serve` processes (one owns the engine,
the file observer and the vector index; the other follows), observations told and observed, the
engine's propositions, searches by meaning through both, frames pending and kept, the log. Then
every file of the data directory is scanned for known words and for the raw bytes of a stored
embedding: none may be found."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import StdioServerParameters

from gum_mcp.index.vector_store import SealedClient
from gum_mcp.observers.frames import FrameStore
from gum_mcp.store import Store
from gum_mcp.store.keys import find_key, store_state
from tests.conftest import PYTHON, REPO, eventually, gum_env, make_settings
from tests.sqlcipher_pages import readable_bytes
from tests.test_engine import Brain, draft
from tests.test_server_processes import _finds, _is_owner, _roles, hold, status

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

SEAT = "Priya prefers window seats on long flights"
TOLD = "Priya asked for a window seat again on the Lisbon flight"
NOTE = "Priya drafts the capybaraloan application for Marrakesh\n"
#: Words of what was told, observed, inferred and captured. None may be in any file in the clear.
WORDS = (b"Priya", b"window seat", b"Lisbon", b"capybaraloan", b"Marrakesh", b"draft-notes", b"zebrafinch",
         b"quokkaclinic")


def scan(data_dir: Path, needles: list[bytes]) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [(str(path.relative_to(data_dir)), needle[:24]) for needle in needles if needle in data]
    return found


async def test_an_encrypted_data_dir_after_a_realistic_run_holds_no_plaintext_and_no_clear_vector(
        tmp_path: Path, fake_provider) -> None:
    brain = Brain(fake_provider)
    brain.on("propose", lambda r: {"propositions": [draft(SEAT, [o.id for o in r.observations], decay=9)]})
    data_dir, watched = tmp_path / "data", tmp_path / "watched"
    watched.mkdir()
    env = gum_env(data_dir, GUM_ENCRYPT="1", GUM_LLM_PROVIDER="openai", OPENAI_BASE_URL=fake_provider.openai_base_url,
                  GUM_BATCH_MIN="1", GUM_BATCH_MAX_WAIT="0", GUM_LLM_TIMEOUT="10", GUM_OBSERVE="files",
                  GUM_WATCH_DIRS=str(watched), GUM_FILES_WINDOW="0.2", GUM_FILES_INCLUDE_CONTENT="1")
    params = StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=env, cwd=REPO)

    async with anyio.create_task_group() as tg:
        a, stop_a = await tg.start(hold, params, "legacy")
        b, stop_b = await tg.start(hold, params, "2026-07-28")
        first, _second = await eventually(lambda: _roles(a, b))
        owner, follower = (a, b) if first["role"] == "owner" else (b, a)
        stop_owner = stop_a if owner is a else stop_b

        # told through the follower, observed by the owner's file observer (twice: the cache keeps the last)
        added = await follower.call_tool("record_observation", {"content": TOLD})
        assert not added.is_error
        note = watched / "draft-notes.md"
        note.write_text(NOTE)
        await eventually(lambda: _observed_file(data_dir))
        note.write_text(NOTE + "zebrafinch budget, second draft\n")
        await eventually(lambda: _observed_file(data_dir, edits=2))

        # both find the engine's proposition by meaning (the follower through the owner)
        await eventually(lambda: _finds(owner, "airplane seating preference"))
        await eventually(lambda: _finds(follower, "airplane seating preference"))
        assert (await status(follower))["engine_owner"]["pid"] != (await status(follower))["pid"]

        # the owner leaves; the follower takes over, loads the encrypted vectors, still finds it by meaning
        stop_owner.set()
        await eventually(lambda: _is_owner(follower), timeout=60)
        await eventually(lambda: _finds(follower, "airplane seating preference"), timeout=60)
        stop_a.set()
        stop_b.set()

    settings = make_settings(data_dir)
    frames = FrameStore(settings)  # a screen observer's frames: one pending, one kept
    frames.save(datetime.now(UTC), [b"\x89PNG Priya quokkaclinic pixels"], "png", app="Firefox",
                title="Priya - quokkaclinic", window_source="test", monitors=[])
    kept = frames.save(datetime.now(UTC), [b"\xff\xd8 JPEG zebrafinch"], "jpg", app="XTerm", title="Priya's shell",
                       window_source="test", monitors=[])
    assert frames.commit(kept)
    frames.finish(kept, 1, keep=True)

    assert store_state(settings.db_path) == "encrypted"
    log = data_dir / "logs" / "gum-mcp.log"
    assert log.exists() and log.stat().st_size > 0
    assert (data_dir / "vectors.sqlite3").exists() and not (data_dir / "chroma").exists()
    files = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file()}
    assert {"gum.sqlite3", "vectors.sqlite3", "logs/gum-mcp.log"} <= files
    assert any(name.startswith("files-cache/") for name in files) and any("/kept/" in f"/{n}" for n in files)

    # what was stored, read back with the key: the words are there (so the scan below means something) ...
    assert all(word in readable_bytes(data_dir) for word in (b"Priya", b"Lisbon", b"capybaraloan"))
    key = find_key(settings)
    assert key is not None
    vectors = SealedClient(settings.vectors_path, key, create=False)
    try:
        with Store.open(settings) as store:
            [seat] = [p.id for p in store.current_propositions(limit=100).items if p.text == SEAT][:1]
        stored = vectors.get_collection("gum_propositions").get(ids=[str(seat)], include=["embeddings"])
        embedding = np.asarray(stored["embeddings"][0], dtype=np.float32)
        observations = vectors.get_collection("gum_observations").get(include=["embeddings"])["embeddings"]
    finally:
        vectors.close()
    assert embedding.shape == (384,) and len(observations) >= 2
    needles = [*WORDS, embedding.tobytes(), embedding[:8].tobytes(), *(np.asarray(v, np.float32)[:8].tobytes()
                                                                       for v in observations)]
    # ... and no file of the data directory holds any of them, nor a stored vector, in the clear
    assert scan(data_dir, needles) == []


async def _observed_file(data_dir: Path, edits: int = 1) -> bool:
    def look() -> bool:
        with Store.open(make_settings(data_dir)) as store:
            found = [o for o in store.observations(limit=50) if o.source == "files"]
        return len(found) >= edits

    return await anyio.to_thread.run_sync(look)
