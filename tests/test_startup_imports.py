"""`gum-mcp serve` answers its client's handshake before it opens the store and loads the tools, resources
and prompts (gum_mcp/server/app.py, `Serving`); the redactor builds its rules on first use, not on import
(gum_mcp/store/redaction.py). bench/startup.py measures what this buys; these tests hold the shape of it:
what the handshake needs loads, the rest waits for the first request that needs it, and that request (or
a store that cannot be opened) behaves as it did when everything loaded first."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, make_settings

pytestmark = pytest.mark.timeout(180)

#: What `python -m gum_mcp serve` loads before it can answer `initialize`: the CLI, then the server module.
ENTRY = """
import json, sys
import gum_mcp.cli
from gum_mcp.server import serve  # what the serve command imports (gum_mcp.server.app)
print(json.dumps(sorted(sys.modules)))
"""
#: Loaded once the handshake has been answered: the store and everything over it.
AFTER_HANDSHAKE = (
    "gum_mcp.store.store",  # the Store, with every module of the store it is made of
    "gum_mcp.store.redaction",
    "gum_mcp.store.redaction_rules",
    "gum_mcp.runtime",
    "gum_mcp.forgetting",
    "gum_mcp.server.context",
    "gum_mcp.server.tools",
    "gum_mcp.server.resources",
    "gum_mcp.server.prompts",
    "gum_mcp.server.guard",
    "gum_mcp.engine",
    "gum_mcp.llm",
    "gum_mcp.observers",
    "gum_mcp.retrieval",
    "gum_mcp.index",
    "numpy",
)

REDACTION = """
import json, sys, threading
from gum_mcp.store import redaction

def state():
    return {"rules_module": "gum_mcp.store.redaction_rules" in sys.modules,
            "built": sorted(redaction._BUILTIN_RULES)}

imported = state()
redactors = [redaction.Redactor(contacts=i % 2 == 0) for i in range(8)]  # as a store makes one when it opens
made = state()
builds = []
build = redaction._builtin_rules

def counted(*, contacts):
    builds.append(contacts)
    return build(contacts=contacts)

redaction._builtin_rules = counted
start = threading.Barrier(len(redactors))
texts = {}

def work(i):
    start.wait()
    texts[i] = redactors[i].redact("token sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t and priya@example.com").text

threads = [threading.Thread(target=work, args=(i,)) for i in range(len(redactors))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"imported": imported, "made": made, "used": state(), "builds": builds,
                  "texts": [texts[i] for i in range(len(redactors))]}))
"""

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "startup-test", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
LISTS = {2: "tools/list", 3: "prompts/list", 4: "resources/list", 5: "resources/templates/list"}
#: the item key of each list result -> its name field
NAMES = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}
A_KEY, B_KEY = "7f" * 32, "a5" * 32


def child(code: str) -> Any:
    result = subprocess.run([PYTHON, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_serve_loads_what_the_handshake_needs_and_not_the_store_or_the_tools() -> None:
    loaded = set(child(ENTRY))
    assert "gum_mcp.server.app" in loaded and "mcp.server.mcpserver" in loaded
    early = sorted(name for name in loaded if name.startswith(AFTER_HANDSHAKE))
    assert not early, f"imported before the handshake: {early}"


def test_the_redactor_builds_its_rules_once_on_first_use_whichever_threads_ask_at_once() -> None:
    found = child(REDACTION)
    assert found["imported"] == {"rules_module": False, "built": []}  # importing it compiles nothing
    assert found["made"] == {"rules_module": False, "built": []}  # nor does making a redactor
    assert found["used"] == {"rules_module": True, "built": [False, True]}
    assert sorted(found["builds"]) == [False, True]  # each set of rules built once, by the first thread
    for i, text in enumerate(found["texts"]):
        assert "sk-proj" not in text and text.startswith("token [REDACTED:api_key] and ")
        assert text.endswith("[REDACTED:email]" if i % 2 == 0 else "priya@example.com")


def send(proc: subprocess.Popen, *messages: dict) -> None:
    assert proc.stdin is not None
    for message in messages:
        proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def answers(proc: subprocess.Popen, ids: set[int]) -> dict[int, dict]:
    assert proc.stdout is not None
    found: dict[int, dict] = {}
    while set(found) != ids:
        line = proc.stdout.readline()
        assert line, f"serve ended: {proc.stderr.read().decode() if proc.stderr else ''}"
        message = json.loads(line)
        if message.get("id") in ids:
            found[message["id"]] = message
    return found


def names(result: dict) -> dict[str, list[str]]:
    return {key: sorted(item[field] for item in result[key]) for key, field in NAMES.items() if key in result}


@pytest.mark.anyio
async def test_requests_sent_right_behind_the_handshake_get_everything_build_server_serves(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path / "in-process"))
    try:
        async with Client(build_server(runtime), mode="legacy") as client:
            expected = {
                "tools": sorted(t.name for t in (await client.list_tools()).tools),
                "prompts": sorted(p.name for p in (await client.list_prompts()).prompts),
                "resources": sorted(str(r.uri) for r in (await client.list_resources()).resources),
                "resourceTemplates": sorted(t.uri_template for t in
                                            (await client.list_resource_templates()).resource_templates),
            }
    finally:
        runtime.close()
    proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=gum_env(tmp_path / "data"), cwd=REPO)
    try:
        # all at once, as a client that does not wait: the lists wait for the store and the tools to load
        send(proc, INIT, INITIALIZED, *({"jsonrpc": "2.0", "id": i, "method": m} for i, m in LISTS.items()))
        found = answers(proc, {1, *LISTS})
    finally:
        proc.kill()
        proc.communicate()
    assert found[1]["result"]["serverInfo"]["name"] == "gum-mcp"
    served: dict[str, list[str]] = {}
    for i in LISTS:
        assert "result" in found[i], found[i]
        served.update(names(found[i]["result"]))
    assert served == expected and "query_user" in served["tools"]


def test_a_store_serve_cannot_open_ends_it_after_the_handshake_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    Store.open(make_settings(data_dir, encrypt=True, db_key=A_KEY)).close()
    proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=gum_env(data_dir, GUM_ENCRYPT="1", GUM_DB_KEY=B_KEY),
                            cwd=REPO)
    try:
        send(proc, INIT)
        assert answers(proc, {1})[1]["result"]["serverInfo"]["name"] == "gum-mcp"  # the handshake needs no store
        send(proc, INITIALIZED, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        # stdin stays open, as a client waiting for its tools leaves it: the process ends anyway
        code = proc.wait(timeout=60)
        out, err = proc.communicate()
    finally:
        proc.kill()
    assert code == 2 and not out.strip()  # no answer to tools/list: there are no tools without the store
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gum-mcp: ") and "wrong key" in lines[0], err.decode()
