"""`gum-mcp serve --http`: a real subprocess on loopback; the bearer token is required."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, make_settings, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    data_dir = tmp_path / "data"
    with Store.open(make_settings(data_dir)) as store:
        token = store.add_token("test", "all")
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "serve", "--http", "--port", str(port)], cwd=REPO,
                            env=gum_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: listening(port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read().decode()
        yield f"http://127.0.0.1:{port}/mcp", token, data_dir
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        assert proc.stdout.read() == b""  # nothing but the protocol ever goes to stdout, and HTTP uses none


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_with_the_token_every_request_works(http_server, mode: str) -> None:
    url, token, _ = http_server
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        result = await client.call_tool("status", {})
        assert not result.is_error and result.structured_content["propositions_current"] == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc"])
def test_without_the_token_401(http_server, header: str | None) -> None:
    url, _token, _ = http_server
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if header:
        headers["Authorization"] = header
    response = httpx2.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 401
    assert "gum-mcp token" in response.json()["error"]


def test_dns_rebinding_protection_stays_on(http_server) -> None:
    url, token, _ = http_server
    response = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           headers={"Authorization": f"Bearer {token}", "Host": "evil.example:80",
                                    "Accept": "application/json, text/event-stream"})
    assert response.status_code in (403, 421)


def test_non_loopback_bind_needs_a_flag(tmp_path: Path) -> None:
    result = subprocess.run([PYTHON, "-m", "gum_mcp", "serve", "--http", "--host", "0.0.0.0"], cwd=REPO,
                            env=gum_env(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--allow-remote" in result.stderr


@pytest.mark.anyio
async def test_over_stateless_http_a_forget_token_is_tied_to_the_bearer_token_not_the_declared_name(
        tmp_path: Path) -> None:
    """In the 2026-07-28 era every request stands alone: the confirmation of a forget is tied to the token
    the gate authenticated. Another token's holder declaring the same client name cannot confirm it."""
    from mcp_types import Implementation

    from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft

    data_dir = tmp_path / "data"
    with Store.open(make_settings(data_dir)) as store:
        owner, intruder = store.add_token("desktop", "all"), store.add_token("intruder", "all")
        store.complete_batch(BatchResult(observation_ids=(), new=(NewProposition(draft=PropositionDraft(
            text="Priya is training for the Porto half marathon", confidence=8, decay=5)),)))
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "serve", "--http", "--port", str(port)], cwd=REPO,
                            env=gum_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    same = Implementation(name="Claude Desktop", version="1.0")
    query = {"query": "half marathon"}
    try:
        wait_until(lambda: listening(port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.stderr.read().decode()
        url = f"http://127.0.0.1:{port}/mcp"
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {owner}"}) as mine,
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {intruder}"}) as theirs,
            Client(streamable_http_client(url, http_client=mine), mode="2026-07-28", client_info=same) as a,
            Client(streamable_http_client(url, http_client=theirs), mode="2026-07-28", client_info=same) as b,
        ):
            token = (await a.call_tool("forget", query)).structured_content["confirm_token"]
            stolen = await b.call_tool("forget", {"confirm_token": token})
            assert stolen.is_error and "another client" in stolen.content[0].text
            token = (await a.call_tool("forget", query)).structured_content["confirm_token"]
            assert (await a.call_tool("forget", {"confirm_token": token})).structured_content["status"] == "removed"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
