"""Start-up: spawn -> first response of `gum-mcp serve`, against a bare one-tool MCPServer.

    .venv/bin/python bench/startup.py [--runs 7]

Prints, from one run of this script (side by side, alternating):
- spawn -> initialize response, for `gum-mcp serve` and for a bare one-tool MCPServer (the floor:
  importing `mcp` alone takes most of it);
- spawn -> first query_user result of `gum-mcp serve` on a data dir with 200 propositions and its
  index on disk, and how many of those answers were hybrid (no "keyword search only" note);
- launch -> first capture of `gum-mcp observe --observe files` (a file in a watched folder is
  rewritten every 20 ms until its observation is in the inbox; the coalescing window is 0.1 s).
Medians over --runs spawns, raw JSON-RPC over stdio (no client library in the timing).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BARE = '''
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")

@server.tool()
def ping() -> str:
    return "pong"

server.run("stdio")
'''

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
QUERY = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "query_user", "arguments": {"query": "what is the budget deadline"}}}


def send(proc: subprocess.Popen, message: dict) -> None:
    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()


def wait_for(proc: subprocess.Popen, wanted_id: int) -> dict:
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        message = json.loads(line)
        if message.get("id") == wanted_id:
            return message


def spawn(cmd: list[str], env: dict[str, str], *, query: bool) -> tuple[float, float | None, bool]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=REPO)
    try:
        send(proc, INIT)
        wait_for(proc, 1)
        first = time.perf_counter() - start
        answered, hybrid = None, False
        if query:
            send(proc, INITIALIZED)
            send(proc, QUERY)
            reply = wait_for(proc, 2)
            assert not reply["result"].get("isError"), reply
            answered = time.perf_counter() - start
            note = reply["result"]["structuredContent"].get("note") or ""
            hybrid = "keyword search only" not in note
        return first, answered, hybrid
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=30)


#: The bench's data dirs are encrypted, as new ones are, with this key (GUM_DB_KEY): nothing is left in the
#: keychain or the config folder for a temp store.
KEY = secrets.token_hex(32)


def seed(data_dir: Path) -> None:
    from gum_mcp.config import load_settings
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
    from gum_mcp.store import Store

    with Store.open(load_settings(env={}, cwd=data_dir.parent, data_dir=data_dir, db_key=KEY)) as store:
        obs = store.add_observation("Excel - Budget-Q4.xlsx for Jordan, due Friday", kind="screen")
        new = [NewProposition(draft=PropositionDraft(text=f"Priya works on topic {i} in project {i % 17}",
                                                     reasoning="seen", confidence=1 + i % 10, decay=1 + i % 10),
                              evidence=(obs.id,)) for i in range(199)]
        new.append(NewProposition(draft=PropositionDraft(text="Priya's Q4 budget is due Friday", reasoning="mail",
                                                         confidence=8, decay=3), evidence=(obs.id,)))
        store.complete_batch(BatchResult(observation_ids=(obs.id,), new=tuple(new)))


def first_capture(env: dict[str, str], tmp: Path, run: int) -> float:
    """Seconds from launching `gum-mcp observe --observe files` to its first observation in the inbox."""
    data_dir, watched = tmp / f"observe-{run}", tmp / f"watched-{run}"
    watched.mkdir()
    # plaintext, so this loop can poll the inbox with the standard library's sqlite3
    env = {**env, "GUM_DATA_DIR": str(data_dir), "GUM_WATCH_DIRS": str(watched), "GUM_FILES_WINDOW": "0.1",
           "GUM_ENCRYPT": "0"}
    database = data_dir / "gum.sqlite3"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gum_mcp", "observe", "--observe", "files"], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - start < 60:
            if proc.poll() is not None:
                raise RuntimeError(f"observe exited: {proc.stderr.read().decode()[-2000:]}")
            (watched / "notes.md").write_text(f"draft {time.perf_counter()}\n")
            if database.exists():
                with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                    try:
                        if conn.execute("SELECT 1 FROM observations WHERE kind = 'file' LIMIT 1").fetchone():
                            return time.perf_counter() - start
                    except sqlite3.OperationalError:  # not migrated yet
                        pass
            time.sleep(0.02)
        raise RuntimeError("no capture within 60 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        seed(data_dir)
        from gum_mcp.config import load_settings
        from gum_mcp.index.vector_index import run_reindex

        run_reindex(load_settings(env={}, cwd=data_dir.parent, data_dir=data_dir, db_key=KEY))
        bare_file = Path(tmp) / "bare.py"
        bare_file.write_text(BARE)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GUM_", "OPENAI_", "ANTHROPIC_"))}
        env["GUM_DATA_DIR"] = str(data_dir)
        env["GUM_DB_KEY"] = KEY  # encrypted, as a new data dir is, with a key no keychain or config folder keeps
        gum_cmd = [sys.executable, "-m", "gum_mcp", "serve"]
        bare_cmd = [sys.executable, str(bare_file)]
        spawn(gum_cmd, env, query=True)  # warm the OS file cache and the index once
        bare, gum, query, hybrid, capture = [], [], [], [], []
        for run in range(args.runs):
            bare.append(spawn(bare_cmd, env, query=False)[0])
            first, answered, was_hybrid = spawn(gum_cmd, env, query=True)
            gum.append(first)
            query.append(answered)
            hybrid.append(was_hybrid)
            capture.append(first_capture(env, Path(tmp), run))
    med = statistics.median
    print(f"runs: {args.runs} each, alternating")
    print(f"bare one-tool MCPServer, spawn -> initialize : median {med(bare) * 1000:7.0f} ms")
    print(f"gum-mcp serve,           spawn -> initialize : median {med(gum) * 1000:7.0f} ms"
          f"   ({med(gum) / med(bare):.2f}x the bare server; goal <= 1.2x)")
    print(f"gum-mcp serve,           spawn -> query_user : median {med(query) * 1000:7.0f} ms"
          f"   (200 propositions, index on disk; {sum(hybrid)} of {len(hybrid)} answers hybrid)")
    print(f"gum-mcp observe,  launch -> first capture    : median {med(capture) * 1000:7.0f} ms"
          f"   (files observer; min {min(capture) * 1000:.0f}, max {max(capture) * 1000:.0f})")


if __name__ == "__main__":
    main()
