"""Start-up: spawn -> first response of `gum-mcp serve`, against a bare one-tool MCPServer.

    .venv/bin/python bench/startup.py [--runs 7]

Prints, from one run of this script (side by side, alternating):
- spawn -> initialize response, for `gum-mcp serve` and for a bare one-tool MCPServer (the floor:
  importing `mcp` alone takes most of it);
- spawn -> first query_user result of `gum-mcp serve` on a data dir with 200 propositions.
Medians over --runs spawns, raw JSON-RPC over stdio (no client library in the timing).
"""

from __future__ import annotations

import argparse
import json
import os
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


def spawn(cmd: list[str], env: dict[str, str], *, query: bool) -> tuple[float, float | None]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=REPO)
    try:
        send(proc, INIT)
        wait_for(proc, 1)
        first = time.perf_counter() - start
        answered = None
        if query:
            send(proc, INITIALIZED)
            send(proc, QUERY)
            reply = wait_for(proc, 2)
            assert not reply["result"].get("isError"), reply
            answered = time.perf_counter() - start
        return first, answered
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=30)


def seed(data_dir: Path) -> None:
    from gum_mcp.config import load_settings
    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
    from gum_mcp.store import Store

    with Store.open(load_settings(env={}, cwd=data_dir.parent, data_dir=data_dir)) as store:
        obs = store.add_observation("Excel - Budget-Q4.xlsx for Jordan, due Friday", kind="screen")
        new = [NewProposition(draft=PropositionDraft(text=f"Priya works on topic {i} in project {i % 17}",
                                                     reasoning="seen", confidence=1 + i % 10, decay=1 + i % 10),
                              evidence=(obs.id,)) for i in range(199)]
        new.append(NewProposition(draft=PropositionDraft(text="Priya's Q4 budget is due Friday", reasoning="mail",
                                                         confidence=8, decay=3), evidence=(obs.id,)))
        store.complete_batch(BatchResult(observation_ids=(obs.id,), new=tuple(new)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        seed(data_dir)
        bare_file = Path(tmp) / "bare.py"
        bare_file.write_text(BARE)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GUM_", "OPENAI_", "ANTHROPIC_"))}
        env["GUM_DATA_DIR"] = str(data_dir)
        gum_cmd = [sys.executable, "-m", "gum_mcp", "serve"]
        bare_cmd = [sys.executable, str(bare_file)]
        spawn(gum_cmd, env, query=True)  # warm the OS file cache and the index once
        bare, gum, query = [], [], []
        for _ in range(args.runs):
            bare.append(spawn(bare_cmd, env, query=False)[0])
            first, answered = spawn(gum_cmd, env, query=True)
            gum.append(first)
            query.append(answered)
    med = statistics.median
    print(f"runs: {args.runs} each, alternating")
    print(f"bare one-tool MCPServer, spawn -> initialize : median {med(bare) * 1000:7.0f} ms")
    print(f"gum-mcp serve,           spawn -> initialize : median {med(gum) * 1000:7.0f} ms"
          f"   ({med(gum) / med(bare):.2f}x the bare server; goal <= 1.2x)")
    print(f"gum-mcp serve,           spawn -> query_user : median {med(query) * 1000:7.0f} ms"
          f"   (200 propositions; vector search may still be loading: then keyword search answers)")


if __name__ == "__main__":
    main()
