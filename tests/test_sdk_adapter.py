"""Guard for gum_mcp/server/sdk_adapter.py, the only code touching private attributes of MCP SDK
objects (mcp 2.3): if an SDK upgrade moves one of them, these tests fail and say where to look."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from mcp import Client

from gum_mcp.runtime import Runtime
from gum_mcp.server import build_server
from gum_mcp.server.notifications import SUGGESTIONS_URI
from gum_mcp.server.sdk_adapter import missing_internals
from tests.conftest import make_settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_sdk_internals_the_adapter_uses_are_still_there(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path / "data"), engine=False)
    try:
        server = build_server(runtime, manage_runtime=False)
        # MCPServer._lowlevel_server and its request-handler registry: handshake-era resources/subscribe
        assert missing_internals(server) == [], "the MCP SDK moved these; update gum_mcp/server/sdk_adapter.py"
        notifier = server.gum_suggestions.notifier
        async with Client(server, mode="legacy") as client:
            assert client.server_capabilities.resources.subscribe is True, "resources/subscribe is not served"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # resources/subscribe is deprecated at 2026-07-28, not here
                await client.subscribe_resource(SUGGESTIONS_URI)
                await client.subscribe_resource(SUGGESTIONS_URI)
                # ServerSession._connection: two requests on one connection are one subscriber, and
                # unsubscribing finds it
                assert notifier.subscribers(SUGGESTIONS_URI) == 1, \
                    "sdk_adapter.connection_of no longer tells connections apart (ServerSession._connection moved?)"
                await client.unsubscribe_resource(SUGGESTIONS_URI)
            assert notifier.subscribers(SUGGESTIONS_URI) == 0
    finally:
        runtime.close()
