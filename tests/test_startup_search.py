"""Right after start, search is as good as the index on disk: a fresh server process per call (as
langchain-mcp-adapters opens by default) gets hybrid results, not a keyword-only fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import PYTHON, REPO, gum_env, seeded_with_index

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

FACTS = (
    "Priya is training for the Porto half marathon in March.",
    "Priya prefers the Dracula dark theme in VS Code.",
    "Jordan Lee wants the Q4 forecast draft by Thursday.",
    "Priya is vegetarian and avoids loud restaurants.",
)


async def test_a_fresh_process_per_call_gets_hybrid_results(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded_with_index(data_dir, FACTS)
    params = StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=gum_env(data_dir),
                                   cwd=REPO)
    for mode in ("legacy", "2026-07-28", "legacy"):  # each call its own server, as a per-call client does
        async with Client(params, mode=mode) as client:
            # no word in common with the fact: only the vector half can find it
            result = await client.call_tool("query_user", {"query": "getting ready for a running race", "limit": 3})
        assert not result.is_error, result.content
        found = result.structured_content
        assert "keyword search only" not in (found["note"] or ""), found["note"]
        top = found["propositions"][0]
        assert "Porto half marathon" in top["text"] and "vector" in top["matched"], found
