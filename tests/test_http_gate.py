"""The one HTTP gate: Host and Origin derived for every bind address, then the client's token.

The policy is checked as pure functions for every kind of bind address, the gate as ASGI, and a real
`gum-mcp serve --http` on each bind address answers what the policy says (the issue's probes:
127.0.0.2 took a foreign Origin and a rebinding Host; 0.0.0.0 answered 421 to 127.0.0.1).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gum_mcp.server.clients import SCOPE_KEY, Caller
from gum_mcp.server.gate import Gate, bearer, policy_for, split_authority
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, make_settings, wait_until

OWN_NAMES = ["myhost", "myhost.local"]


# ------------------------------------------------------------------------------------ a real server
def free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def ipv6() -> bool:
    try:
        free_port("::1")
    except OSError:
        return False
    return True


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}/mcp" if ":" in address else f"http://{address}:{port}/mcp"


def add_token(data_dir: Path, name: str = "test", scopes: str = "all") -> str:
    with Store.open(make_settings(data_dir)) as store:
        return store.add_token(name, scopes)


@contextmanager
def http_server(data_dir: Path, host: str = "127.0.0.1", *flags: str, connect: str | None = None,
                **env: str) -> Iterator[str]:
    """`gum-mcp serve --http` bound to `host`; yields its URL through `connect` (default: `host`)."""
    connect = connect or host
    port = free_port(connect)
    log = data_dir.parent / f"serve-{port}.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([PYTHON, "-m", "gum_mcp", "serve", "--http", "--host", host, "--port", str(port),
                                 *flags], cwd=REPO, env=gum_env(data_dir, **env), stdout=subprocess.PIPE,
                                stderr=err)
    try:
        wait_until(lambda: listening(connect, port) or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()
        yield url(connect, port)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        assert proc.stdout is not None and proc.stdout.read() == b""


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}}


def ping(target: str, token: str | None, **headers: str) -> int:
    """The status of an MCP initialize request: 200 once past the gate."""
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return httpx2.post(target, headers=sent, json=INITIALIZE).status_code


# ------------------------------------------------------------------------------------ the policy
# bind address -> (Host values it accepts, Host values it refuses)
BINDS: dict[str, tuple[list[str], list[str]]] = {
    "127.0.0.1": (["127.0.0.1:8765", "localhost:8765", "localhost", "LOCALHOST:9000", "127.0.0.1:9000"],
                  ["evil.example:8765", "127.0.0.2:8765", "[::1]:8765", "192.168.1.20:8765"]),
    "127.0.0.2": (["127.0.0.2:8765", "127.0.0.2"],
                  ["evil.example:8765", "localhost:8765", "127.0.0.1:8765", "127.0.0.2.nip.io:8765"]),
    "::1": (["[::1]:8765", "[0:0:0:0:0:0:0:1]:8765", "localhost:8765"],
            ["127.0.0.1:8765", "evil.example:8765", "[2001:db8::1]:8765"]),
    "[::1]": (["[::1]:8765", "localhost:8765"], ["evil.example:8765"]),
    "localhost": (["localhost:8765", "127.0.0.1:8765", "[::1]:8765"],
                  ["evil.example:8765", "127.0.0.2:8765", "localhost.evil.example:8765"]),
    "0.0.0.0": (["127.0.0.1:8765", "localhost:8765", "192.168.1.20:8765", "10.0.0.7:8765", "myhost:8765",
                 "MyHost.local.:8765"],
                ["evil.example:8765", "[::1]:8765", "[2001:db8::1]:8765", "myhost.evil.example:8765"]),
    "::": (["127.0.0.1:8765", "[::1]:8765", "[2001:db8::1]:8765", "192.168.1.20:8765", "localhost:8765",
            "myhost:8765"],
           ["evil.example:8765", "myhost.evil.example"]),
    "192.168.1.20": (["192.168.1.20:8765", "192.168.1.20"],
                     ["127.0.0.1:8765", "localhost:8765", "192.168.1.21:8765", "evil.example:8765"]),
    "2001:db8::1": (["[2001:db8::1]:8765", "[2001:DB8:0::1]:8765"],
                    ["[2001:db8::2]:8765", "localhost:8765", "evil.example:8765"]),
    "myhost.lan": (["myhost.lan:8765", "MyHost.LAN.:8765"], ["evil.example:8765", "127.0.0.1:8765", "myhost:8765"]),
}
MALFORMED = [None, "", "a b:8765", "[::1", "::1:8765", "localhost:99999", "localhost:port", "user@localhost:8765",
             "localhost/x", "[::1]x"]


@pytest.mark.parametrize("bind", list(BINDS))
def test_host_policy_for_each_bind_address(bind: str) -> None:
    policy = policy_for(bind, own_names=OWN_NAMES)
    accepted, refused = BINDS[bind]
    assert [h for h in accepted if not policy.host_ok(h)] == []
    assert [h for h in refused + MALFORMED if policy.host_ok(h)] == []


@pytest.mark.parametrize("bind", list(BINDS))
def test_origin_policy_for_each_bind_address(bind: str) -> None:
    policy = policy_for(bind, own_names=OWN_NAMES)
    host = BINDS[bind][0][0]
    for origin in (None, "http://localhost:6274", "http://127.0.0.1:3000", "http://[::1]:3000", "https://localhost",
                   f"http://{host}"):  # the last: the request's own origin
        assert policy.origin_ok(origin, host), (origin, host)
    for origin in ("http://evil.example", "https://evil.example:8765", "null", "file://", "http://127.0.0.1.nip.io",
                   "http://localhost.evil.example:6274", "ftp://localhost", "http://10.0.0.7:8765", "not a url",
                   "http://localhost:99999"):
        assert not policy.origin_ok(origin, host), (origin, host)


def test_same_origin_means_the_host_and_port_the_request_was_sent_to() -> None:
    policy = policy_for("0.0.0.0", own_names=OWN_NAMES)
    assert policy.origin_ok("http://192.168.1.20:8765", "192.168.1.20:8765")
    assert policy.origin_ok("http://myhost", "myhost:80") and policy.origin_ok("https://myhost", "myhost:443")
    assert not policy.origin_ok("http://192.168.1.20:9999", "192.168.1.20:8765")
    assert not policy.origin_ok("http://10.0.0.7:8765", "192.168.1.20:8765")  # another machine's page
    assert not policy.origin_ok("https://myhost", "myhost:80")


def test_allow_host_adds_a_name_for_host_and_origin() -> None:
    policy = policy_for("127.0.0.1", allow_hosts=["gum.example.com"])
    assert policy.host_ok("gum.example.com") and policy.host_ok("GUM.example.com:443")
    assert policy.origin_ok("https://gum.example.com", "127.0.0.1:8765")
    assert not policy.host_ok("evil.example.com")


def test_the_system_names_of_a_wildcard_bind() -> None:
    policy = policy_for("0.0.0.0")
    assert policy.host_ok(f"{socket.gethostname()}:8765") and policy.host_ok("127.0.0.1:8765")
    assert not policy.host_ok("evil.example:8765")


def test_authority_and_bearer_parsing() -> None:
    assert split_authority("[::1]:8765") == ("::1", 8765)
    assert split_authority("Example.COM.") == ("example.com", None)
    assert bearer("Bearer abc") == bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") == bearer(None) == bearer("Bearer") == ""


# ------------------------------------------------------------------------------------ the gate (ASGI)
class Echo:
    """An app behind the gate: answers 200 with the caller the gate vouched for."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        caller = scope.get(SCOPE_KEY)
        body = f"{caller.name}:{','.join(sorted(caller.scopes))}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def call(gate: Gate, headers: dict[str, str], kind: str = "http") -> tuple[int, bytes, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": kind, "method": "POST", "path": "/mcp",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    await gate(scope, None, send)
    if kind == "websocket":
        return sent[0]["code"], b"", {}
    return sent[0]["status"], sent[1]["body"], dict(sent[0]["headers"])


@pytest.mark.anyio
async def test_the_gate_checks_host_then_origin_then_the_token() -> None:
    looked_up: list[str] = []

    async def authenticate(secret: str) -> Caller | None:
        looked_up.append(secret)
        return Caller("cursor", frozenset({"read"}), "http") if secret == "good" else None

    gate = Gate(Echo(), authenticate=authenticate, host="127.0.0.2", port=8765)
    assert (await call(gate, {"Host": "evil.example:8765", "Authorization": "Bearer good"}))[0] == 421
    assert (await call(gate, {"Host": "127.0.0.2:8765", "Origin": "http://evil.example",
                              "Authorization": "Bearer good"}))[0] == 403
    assert looked_up == []  # no token lookups for requests the cheap checks refuse
    status, body, headers = await call(gate, {"Host": "127.0.0.2:8765", "Authorization": "Bearer bad"})
    assert status == 401 and b"gum-mcp token add" in body and headers[b"www-authenticate"].startswith(b"Bearer")
    assert (await call(gate, {"Host": "127.0.0.2:8765"}))[0] == 401
    assert looked_up == ["bad"]  # no header: no lookup
    assert await call(gate, {"Host": "127.0.0.2:8765", "Origin": "http://localhost:6274",
                             "Authorization": "Bearer good"}) == (200, b"cursor:read", {})
    assert (await call(gate, {"Host": "127.0.0.2:8765"}, kind="websocket"))[0] == 1008


# ------------------------------------------------------------------------------------ a real server per bind
# bind, address to connect to, Host values accepted, Host values refused (as sent to the real server)
# (127.0.0.1, the default, is what every other HTTP test serves on)
REAL = [
    ("127.0.0.2", "127.0.0.2", [], ["evil.example", "localhost", "127.0.0.1"]),
    ("::1", "::1", ["localhost"], ["evil.example", "127.0.0.1"]),
    ("localhost", "127.0.0.1", ["[::1]"], ["evil.example", "127.0.0.2"]),
    ("0.0.0.0", "127.0.0.1", ["localhost", "192.0.2.7", socket.gethostname()], ["evil.example", "[::1]"]),
    ("::", "::1", ["localhost", "127.0.0.1", "[2001:db8::7]"], ["evil.example"]),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("bind", "connect", "accepted", "refused"), REAL, ids=[r[0] for r in REAL])
def test_a_real_server_on_each_bind_address(tmp_path: Path, bind: str, connect: str, accepted: list[str],
                                           refused: list[str]) -> None:
    if ":" in connect and not ipv6():
        pytest.skip("no IPv6 loopback on this machine")
    data_dir = tmp_path / "data"
    token = add_token(data_dir)
    flags = [] if bind in ("127.0.0.1", "127.0.0.2", "::1", "localhost") else ["--allow-remote"]
    with http_server(data_dir, bind, *flags, connect=connect) as target:
        port = target.rsplit(":", 1)[1].split("/")[0]
        assert ping(target, token) == 200  # the address it was reached by
        assert ping(target, None) == 401 and ping(target, "wrong") == 401
        for host in accepted:
            assert ping(target, token, Host=f"{host}:{port}") == 200, host
        for host in refused:
            assert ping(target, token, Host=f"{host}:{port}") == 421, host
        assert ping(target, token, Origin="http://evil.example") == 403
        assert ping(target, token, Origin=f"http://{'[::1]' if ':' in connect else connect}:6274") == 200
