"""`gum-mcp serve --http`: streamable HTTP with a bearer token on every request.

The token is generated on first use into `<data dir>/token` (0600); `gum-mcp token` shows it and
`gum-mcp token --rotate` replaces it. The server binds loopback by default; another address needs
`--allow-remote`. DNS-rebinding protection (Host and Origin checks) stays on.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio

from gum_mcp.config import Settings
from gum_mcp.store.db import FILE_MODE, ensure_private_dir

log = logging.getLogger("gum_mcp.http")

TOKEN_NAME = "token"

Scope = dict[str, Any]


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_NAME


def write_token(data_dir: Path) -> str:
    ensure_private_dir(data_dir)
    token = secrets.token_urlsafe(32)
    path = token_path(data_dir)
    tmp = path.with_suffix(".tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "w") as out:
        out.write(token + "\n")
    os.replace(tmp, path)
    return token


def load_or_create_token(data_dir: Path) -> str:
    try:
        token = token_path(data_dir).read_text().strip()
    except FileNotFoundError:
        token = ""
    return token or write_token(data_dir)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """ASGI middleware: every HTTP request must carry `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token> "
                                            "(see `gum-mcp token`)"}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="gum-mcp"'),
                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def build_http_app(server: Any, token: str, host: str, port: int) -> Any:
    from mcp.server.transport_security import TransportSecuritySettings

    security = None
    if not is_loopback(host):
        security = TransportSecuritySettings(allowed_hosts=[f"{host}:{port}", host],
                                             allowed_origins=[f"http://{host}:{port}"])
    return BearerAuth(server.streamable_http_app(host=host, transport_security=security), token)


def serve_http(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gum_mcp.runtime import Runtime
    from gum_mcp.server import build_server, log_to_file

    if not is_loopback(args.host) and not getattr(args, "allow_remote", False):
        print(f"gum-mcp: refusing to bind {args.host}: it is not a loopback address. Anyone who can reach it and"
              " has the token can read the user model; add --allow-remote if you mean it.", file=sys.stderr)
        return 2
    log_to_file(settings)
    token = load_or_create_token(settings.data_dir)
    runtime = Runtime(settings)
    app = build_http_app(build_server(runtime, manage_runtime=False), token, args.host, args.port)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    print(f"gum-mcp: serving MCP on http://{args.host}:{args.port}/mcp\n"
          f"  bearer token: `gum-mcp token` (stored in {token_path(settings.data_dir)})", file=sys.stderr)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            await uvicorn.Server(config).serve()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0
