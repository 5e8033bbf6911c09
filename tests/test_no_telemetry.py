"""Nothing the server loads reports home. onnxruntime, which runs the embedding encoder, collects telemetry on
Linux and macOS since 1.32: importing it writes a device id and a queue of events (the executable's path, the
OS, sessions made, inference counts) under ~/.cache/Microsoft for upload to Microsoft. gum_mcp switches that
off before onnxruntime loads; chromadb's own telemetry is off wherever a client is made (test_vector_index)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import PYTHON, REPO, gum_env, seeded_with_index

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


async def test_the_server_embeds_without_onnxruntime_writing_or_queueing_telemetry(tmp_path: Path) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    seeded_with_index(data_dir, ["Priya is training for the Porto half marathon in March."])
    # the server's own environment: the opt-out this test process inherited from importing gum_mcp is removed,
    # and the home (where onnxruntime keeps its device id and event queue) is an empty folder of this test's
    env = {k: v for k, v in gum_env(data_dir, HOME=str(home)).items()
           if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    params = StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=env, cwd=REPO)
    async with Client(params) as client:
        # no word in common with the proposition: only the encoder (onnxruntime) can find it
        result = await client.call_tool("query_user", {"query": "getting ready for a running race", "limit": 3})
    assert not result.is_error, result.content
    top = result.structured_content["propositions"][0]
    assert "vector" in top["matched"], result.structured_content
    assert files_under(home) == [], "something the server loaded wrote into the home folder"
