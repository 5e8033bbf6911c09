"""The Chroma server backend (GUM_CHROMA_URL) against a real `chroma run` on 127.0.0.1: one set of collections per
data directory, GUM_CHROMA_TOKEN sent as a header (checked by a loopback proxy: `chroma run` has no auth options),
a server restart mid-run (searches answer by keyword with a note, the owner retries, the index catches up), and
doctor's line about the backend."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from gum_mcp.doctor import check_index_backend
from gum_mcp.domain import BatchResult, NewProposition, PropositionDraft
from gum_mcp.index.vector_index import COLLECTION_NAMES, collection_names, open_index, server_namespace
from gum_mcp.retrieval import search
from gum_mcp.retrieval.dedup import dedup_search_many
from gum_mcp.runtime import Runtime
from gum_mcp.store import Store
from tests.conftest import eventually, make_settings, wait_until

TOKEN = "s3cret-token-for-the-test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ChromaServer:
    """A real `chroma run` on a fixed local port; `stop()` and `start()` restart it on the same data."""

    path: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as response:
                    return response.status == 200
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, "chroma run exited"
                return False

        wait_until(up, timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    if not Path(sys.executable).with_name("chroma").exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    server = ChromaServer(tmp_path / "chroma-server", _free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()


class _TokenProxy(BaseHTTPRequestHandler):
    """Forwards every request to the upstream Chroma server if it carries `Authorization: Bearer TOKEN`."""

    upstream: tuple[str, int]
    seen: list[str | None]

    def _forward(self) -> None:
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if auth != f"Bearer {TOKEN}":
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            payload = b'{"error": "Unauthorized", "message": "missing or wrong token"}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_proxy(chroma: ChromaServer) -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Handler", (_TokenProxy,), {"upstream": ("127.0.0.1", chroma.port), "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def add(store: Store, *texts: str) -> list[int]:
    new = tuple(NewProposition(draft=PropositionDraft(text=t, confidence=7, decay=6)) for t in texts)
    return store.complete_batch(BatchResult(observation_ids=(), new=new))


def test_two_data_dirs_on_one_server_never_mix(tmp_path: Path, chroma: ChromaServer, embedder) -> None:
    a = make_settings(tmp_path / "a", chroma_url=chroma.url)
    b = make_settings(tmp_path / "b", chroma_url=chroma.url)
    with Store.open(a) as store_a, Store.open(b) as store_b:
        [pa] = add(store_a, "Priya is training for the Porto Half Marathon on March 22.")
        [pb] = add(store_b, "Sam keeps his tax receipts in a blue folder.")
        index_a, reason_a = open_index(a, embedder=embedder)
        index_b, reason_b = open_index(b, embedder=embedder)
        assert index_a is not None and index_b is not None, (reason_a, reason_b)
        with index_a, index_b:
            index_a.catch_up(store_a)
            index_b.catch_up(store_b)
            names_a, names_b = collection_names(server_namespace(a)), collection_names(server_namespace(b))
            assert index_a.names == names_a and index_b.names == names_b
            assert not set(names_a.values()) & set(names_b.values())
            assert not set(names_a.values()) & set(COLLECTION_NAMES.values())
            on_server = {c.name for c in index_a.client.list_collections()}
            assert set(names_a.values()) | set(names_b.values()) <= on_server
            # each data dir sees only its own propositions, though both ids are 1
            assert [h.id for h in index_a.query("propositions", "running a race", 5)] == [pa]
            assert [h.id for h in index_b.query("propositions", "running a race", 5)] == [pb]
            # several vectors in one request (a batch's drafts): each gets the hits it gets alone
            vectors = [index_a.embed_query(text) for text in ("running a race", "a blue folder")]
            together = index_a.query_many("propositions", vectors, 5, include_embeddings=True)
            alone = [index_a.query("propositions", vector, 5) for vector in vectors]
            assert [[(h.id, round(h.similarity, 5)) for h in hits] for hits in together] == \
                [[(h.id, round(h.similarity, 5)) for h in hits] for hits in alone] and together[0][0].id == pa
            assert all(h.embedding is not None and h.embedding.shape == vectors[0].shape for h in together[1])
            # the engine's gather over the server: every draft gets its candidates, with cosines
            drafts = dedup_search_many(store_a, index_a, ["running a race in March", "a marathon in Porto"], 5)
            assert [[h.id for h in hits] for hits in drafts] == [[pa], [pa]]
            assert all(h.similarity is not None for hits in drafts for h in hits)
            assert index_a.count("propositions") == index_b.count("propositions") == 1
            hits = search(store_b, index_b, "receipts", 3)
            assert hits[0].proposition is not None and "tax receipts" in (hits[0].proposition.text or "")
    # a data dir opened again finds its own collections (no rebuild)
    with Store.open(a) as store_a:
        index, reason = open_index(a, embedder=embedder)
        assert index is not None, reason
        with index:
            assert index.count("propositions") == 1 and not index.catch_up(store_a).rebuilt


def test_the_token_is_sent_as_a_header(tmp_path: Path, token_proxy, embedder) -> None:
    url, seen = token_proxy
    good = make_settings(tmp_path / "data", chroma_url=url, chroma_token=TOKEN)
    with Store.open(good) as store:
        [pid] = add(store, "Priya prefers the Dracula dark theme in VS Code.")
        index, reason = open_index(good, embedder=embedder)
        assert index is not None, reason
        with index:
            index.catch_up(store)
            assert [h.id for h in index.query("propositions", "editor colours", 1)] == [pid]
    assert seen and all(auth == f"Bearer {TOKEN}" for auth in seen)
    assert check_index_backend(good).level == "OK"
    assert "reachable" in check_index_backend(good).detail

    for wrong in (make_settings(tmp_path / "data", chroma_url=url),  # no token
                  make_settings(tmp_path / "data", chroma_url=url, chroma_token="not-it")):
        index, reason = open_index(wrong, embedder=embedder)
        assert index is None and reason and "unavailable" in reason
        check = check_index_backend(wrong)
        assert check.level == "FAIL" and "unreachable" in check.detail


def test_doctor_names_the_backend(tmp_path: Path, chroma: ChromaServer) -> None:
    local = make_settings(tmp_path / "local")
    check = check_index_backend(local)
    assert check.level == "OK" and "local" in check.detail
    served = make_settings(tmp_path / "served", chroma_url=chroma.url)
    Store.open(served).close()
    check = check_index_backend(served)
    assert check.level == "OK" and chroma.url in check.detail
    assert collection_names(server_namespace(served))["propositions"] in check.detail
    chroma.stop()
    check = check_index_backend(served)
    assert check.level == "FAIL" and "unreachable" in check.detail and check.hint


@pytest.mark.anyio
async def test_a_server_restart_mid_run(tmp_path: Path, chroma: ChromaServer, embedder) -> None:
    settings = make_settings(tmp_path / "data", chroma_url=chroma.url)
    runtime = Runtime(settings, engine=False, serving=False, index_interval=0.1)
    store = runtime.store
    [first] = add(store, "Priya is training for the Porto Half Marathon on March 22.")
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            await runtime.wait_owner_ready()
            assert runtime.index is not None, runtime.index_problem

            async def hybrid(query: str, wanted: int) -> bool:
                result = await runtime.search(query, k=3)
                return bool(result.hits) and result.hits[0].id == wanted and "vector" in result.hits[0].signals \
                    and result.note is None

            await eventually(lambda: hybrid("half marathon", first))

            await anyio.to_thread.run_sync(chroma.stop)
            result = await runtime.search("half marathon", k=3)  # never fails: keywords, with a note
            assert [h.id for h in result.hits] == [first] and result.hits[0].signals == ("bm25",)
            assert result.note and "keyword search only" in result.note
            [second] = add(store, "Sam keeps his tax receipts in a blue folder.")  # while the server is down
            runtime.wake_index()
            await eventually(lambda: runtime.index_problem is not None and "catch-up failed" in runtime.index_problem)

            await anyio.to_thread.run_sync(chroma.start)  # same data, same port
            runtime.wake_index()
            await eventually(lambda: runtime.index_problem is None, timeout=60)
            await eventually(lambda: hybrid("receipts folder", second), timeout=60)
            assert runtime.index is not None and runtime.index.count("propositions") == 2
            tg.cancel_scope.cancel()
    finally:
        runtime.close()
