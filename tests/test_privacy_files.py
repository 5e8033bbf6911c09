"""Every file of the data dir is private, and no secret reaches a file or the model.

A realistic run: the real MCP client records the held-out half of the redaction corpus as observations,
the engine (against the loopback fake provider) audits them and proposes propositions that quote them,
the vector index (real MiniLM, its real vectors.sqlite3) catches up, and the reading tools and prompts are
used. Then every file under the data dir is walked: folders 0700, files 0600, no chroma/ folder, and no secret
of the corpus's held-out half in any of them, nor in any request the fake provider received. Also: stored text from an
older redactor is redacted again (store/reredact.py), and `gum-mcp doctor` sees loose modes anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from gum_mcp.doctor import check_data_dir
from gum_mcp.domain import BatchResult, NewObservation, NewProposition, PropositionDraft
from gum_mcp.index.vector_index import VectorIndex
from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.store import Store, reredact
from gum_mcp.store.keys import store_state
from gum_mcp.store.permissions import loose_paths, secure_tree
from tests.conftest import MODELS_DIR, REPO, eventually, make_settings
from tests.fake_provider import FakeLLMServer
from tests.test_audit import AuditBrain

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

_spec = importlib.util.spec_from_file_location("bench_redaction_files", REPO / "bench" / "redaction.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_redaction_files"] = bench
_spec.loader.exec_module(bench)

HELD_OUT = [item for item in bench.load(bench.CORPUS) if item.split == "held-out" and item.label == "secret"]
SECRETS = sorted({item.text[start:end] for item in HELD_OUT for start, end, _ in item.spans})
PRIVATE = "WhatsApp chat with Sam about his hospital appointment"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value (the request bodies' text, unescaped)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in [root, *root.rglob("*")]}


def quoting_brain(fake: FakeLLMServer) -> AuditBrain:
    """Audits (skipping the private chat), then proposes one claim per observation that quotes it."""
    brain = AuditBrain(fake)
    brain.audit = lambda shown: [
        {"observation_id": oid, "decision": "skip" if "WhatsApp" in content else "allow",
         "reason": "a private chat" if "WhatsApp" in content else "work"} for oid, content in shown.items()]
    brain.claim = lambda content: (f"Priya worked with: {content[:160]}", content[:300])
    return brain


async def test_a_realistic_run_leaves_every_file_private_and_no_secret_anywhere(
    fake_provider: FakeLLMServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = fake_provider.settings(
        "openai", data, user_name="Priya", batch_min=1, batch_max=25, batch_max_wait=0, llm_max_retries=0,
        encrypt=False, models_dir=MODELS_DIR, skipped_retention_days=1)
    quoting_brain(fake_provider)
    runtime = Runtime(settings, index_interval=0.2)
    try:
        async with Client(build_server(runtime), mode="legacy") as client:
            await runtime.wait_owner_ready()
            assert runtime.index is not None, runtime.index_problem  # the real index, in vectors.sqlite3
            for item in [*HELD_OUT, None]:
                content = PRIVATE if item is None else item.text
                result = await client.call_tool("record_observation", {"content": content, "source": "test-agent"})
                assert not result.is_error, result.content
            await eventually(lambda: runtime.store.pending_count() == 0, timeout=180)
            store = runtime.store
            await eventually(lambda: runtime.index is not None
                             and min(runtime.index.cursor(c) for c in ("propositions", "observations"))
                             >= store.index_log_max_seq(), timeout=120)
            assert store.stats().propositions_current >= len(HELD_OUT) // 2  # claims quoting the secrets
            texts = []
            for query in ("password", "api key", "card", "what does Priya work on"):
                found = await client.call_tool("query_user", {"query": query, "limit": 20})
                texts.append(json.dumps(found.structured_content))
            activity = await client.call_tool("get_recent_activity", {"minutes": 600, "limit": 100})
            texts.append(json.dumps(activity.structured_content))
            doing = await client.get_prompt("what_am_i_doing", {})
            texts.append(doing.messages[0].content.text)
            status = await client.call_tool("status", {})
            texts.append(json.dumps(status.structured_content))
            assert all(PRIVATE not in text for text in texts)  # the skipped chat is never served raw
            assert status.structured_content["privacy"]["audit"]["skipped"] == 1
    finally:
        runtime.close()

    assert loose_paths(data) == [], modes(data)  # folders 0700 and files 0600, the index's too
    # the index lives in vectors.sqlite3: no chroma/ folder (whose HNSW file could hold heap fragments)
    assert not (data / "chroma").exists() and store_state(settings.vectors_path) == "plaintext"
    assert stat.S_IMODE(settings.vectors_path.stat().st_mode) == 0o600
    assert check_data_dir(settings).level == "OK"

    contents = {path: path.read_bytes() for path in files(data)}
    for secret in SECRETS:
        needle = secret.encode()
        for path, blob in contents.items():
            assert needle not in blob, f"{secret[:12]}… in {path.relative_to(data)}"

    bodies = fake_provider.bodies()
    assert bodies, "the engine asked the model"
    sent = [text for body in bodies for text in strings(body)]
    for secret in SECRETS:
        assert all(secret not in text for text in sent), f"{secret[:12]}… was sent to the model"
    # the audit sees the private chat (it decides); no later step does
    later = [body for body in bodies if body["response_format"]["json_schema"]["name"] != "AuditReply"]
    assert later and all(PRIVATE not in text for body in later for text in strings(body))


def test_the_vector_files_are_private_after_every_write(settings, store, embedder) -> None:
    import os

    def vector_files() -> dict[str, str]:
        found = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in settings.data_dir.glob("vectors.sqlite3*")}
        assert "vectors.sqlite3" in found
        return found

    store.add_observation("Priya reviews the Q4 budget in Excel")
    previous = os.umask(0o022)  # what a library writing its own files would use
    try:
        with VectorIndex.open(settings, embedder) as index:
            index.catch_up(store)
            assert set(vector_files().values()) == {"0o600"}, vector_files()
            store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(
                draft=PropositionDraft(text="Priya prepares the Q4 budget", confidence=7, decay=5)),)))
            index.catch_up(store)
            assert set(vector_files().values()) == {"0o600"}, vector_files()
            index.rebuild(store)
            assert set(vector_files().values()) == {"0o600"}, vector_files()
            assert loose_paths(settings.data_dir) == [], modes(settings.data_dir)
    finally:
        os.umask(previous)
    assert loose_paths(settings.data_dir) == [], modes(settings.data_dir)
    assert not settings.chroma_dir.exists()


def test_doctor_finds_a_loose_file_or_folder_anywhere_in_the_data_dir(settings, store) -> None:
    deep = settings.data_dir / "screens" / "kept"
    deep.mkdir(parents=True)
    (deep / "0001.png").write_bytes(b"\0" * 16)
    (deep / "0001.png").chmod(0o644)
    deep.chmod(0o700)
    (settings.data_dir / "screens").chmod(0o700)
    check = check_data_dir(settings)
    assert check.level == "FAIL" and "screens/kept/0001.png" in check.detail
    (deep / "0001.png").chmod(0o600)
    deep.chmod(0o755)
    check = check_data_dir(settings)
    assert check.level == "FAIL" and "screens/kept" in check.detail
    assert secure_tree(settings.data_dir) == 1
    assert check_data_dir(settings).level == "OK"


# ------------------------------------------------------------------------ old data gets the new redactor

OLD_OBSERVATION = "Slack: my password is Sunflower-42, mail me at jordan.lee@northwind.io"
OLD_CLAIM = "Priya's wifi password is Sunflower-42"


def stored_by_an_older_redactor(store: Store) -> tuple[int, int, int]:
    """Text as version 1 of the redactor left it: written past the redactor, version marker gone."""
    [pending, done] = store.add_observations([NewObservation(content="placeholder one"),
                                              NewObservation(content="placeholder two")])
    [pid] = store.complete_batch(BatchResult(observation_ids=(done.id,), new=(NewProposition(
        draft=PropositionDraft(text="placeholder claim", reasoning="placeholder", confidence=6, decay=5),
        evidence=(done.id,)),)))
    with store.db.write() as conn:
        conn.execute("UPDATE observations SET content = ? WHERE id IN (?, ?)", (OLD_OBSERVATION, pending.id, done.id))
        conn.execute("INSERT INTO meta (key, value) VALUES ('redacting', '1')")
        conn.execute("UPDATE propositions SET text = ?, reasoning = ? WHERE id = ?", (OLD_CLAIM, OLD_OBSERVATION, pid))
        conn.execute("DELETE FROM meta WHERE key IN ('redacting', ?)", (reredact.VERSION_KEY,))
    return pending.id, done.id, pid


def test_old_data_is_redacted_again_resumably_with_a_count(settings) -> None:
    with Store.open(settings) as store:
        pending, done, pid = stored_by_an_older_redactor(store)
        for i in range(5):
            store.add_observation(f"an ordinary observation {i}")
        with store.db.write() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (reredact.VERSION_KEY,))
        before = reredact.status(store.db, store.redactor)
        assert not before.current and before.total == 8 and "0 of 8 rows checked" in before.line()
        # until the job is done, what reaches the engine or a client is redacted again in memory
        assert "Sunflower-42" not in (store.claim_batch(10)[0].content or "")
        assert all("Sunflower-42" not in (o.content or "") for o in store.observations())
        # one small batch at a time: a restart continues from the state kept in meta
        first = reredact.step(store.db, store.redactor, batch=2)
        assert first.phase == "pending" and first.changed == 1
    with Store.open(settings) as store:  # "restarted"
        done_status = reredact.run(store.db, store.redactor, batch=2)
        assert done_status.current and done_status.changed == 3 and done_status.done == 8
        assert store.get_observation(pending).content == store.get_observation(done).content == (
            "Slack: my password is [REDACTED:password], mail me at [REDACTED:email]")
        claim = store.get_proposition(pid)
        assert claim.text == "Priya's wifi password is [REDACTED:password]" and "Sunflower" not in claim.reasoning
        assert store.take_reindex_request()  # the vectors came from the old text
        assert reredact.status(store.db, store.redactor).line().startswith("up to date")
        assert reredact.step(store.db, store.redactor).current  # nothing more to do
        # content stays immutable for everyone else
        with pytest.raises(Exception, match="immutable"), store.db.write() as conn:
            conn.execute("UPDATE propositions SET text = 'changed' WHERE id = ?", (pid,))
    for path in files(settings.data_dir):
        assert b"Sunflower-42" not in path.read_bytes(), path


async def test_the_owner_runs_the_job_and_status_shows_it(settings) -> None:
    with Store.open(settings) as store:
        stored_by_an_older_redactor(store)
    runtime = Runtime(make_settings(settings.data_dir), engine=False, serving=False)
    try:
        async with Client(build_server(runtime), mode="legacy") as client:
            await runtime.wait_owner_ready()
            await eventually(lambda: reredact.is_current(runtime.store.db, runtime.store.redactor))
            status = (await client.call_tool("status", {})).structured_content
            assert status["privacy"]["redaction"]["current"] is True
            assert status["privacy"]["redaction"]["line"].startswith("up to date")
    finally:
        runtime.close()
    for path in files(settings.data_dir):
        assert b"Sunflower-42" not in path.read_bytes(), path
