"""README's main command, `scripts/serve`, speaks MCP over stdio and nothing else on stdout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import REPO, gum_env

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_scripts_serve_answers_over_stdio(tmp_path: Path, mode: str) -> None:
    params = StdioServerParameters(command=str(REPO / "scripts" / "serve"), env=gum_env(tmp_path / "data"), cwd=REPO)
    async with Client(params, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        result = await client.call_tool("status", {})
        assert not result.is_error
        assert result.structured_content["observations"]["pending"] == 0
    assert (tmp_path / "data" / "gum.sqlite3").exists()
    assert os.stat(tmp_path / "data").st_mode & 0o777 == 0o700
