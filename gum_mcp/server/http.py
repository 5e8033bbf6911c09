"""`gum-mcp serve --http`: streamable HTTP behind the gate (gate.py: bearer token, Host, Origin).

The token is generated on first use into `<data dir>/token` (0600); `gum-mcp token` shows it and
`gum-mcp token --rotate` replaces it. The server binds loopback by default; another address needs
`--allow-remote`. DNS-rebinding protection (Host and Origin checks) stays on.

Light on purpose: the token commands import this module without the MCP SDK.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from gum_mcp.config import Settings
from gum_mcp.server.gate import Gate, is_loopback
from gum_mcp.server.logs import log_to_file
from gum_mcp.store.db import FILE_MODE, ensure_private_dir

if TYPE_CHECKING:
    from gum_mcp.runtime import Runtime

TOKEN_NAME = "token"


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


def build_http_app(server: Any, token: str, host: str, port: int) -> Any:
    """The MCP server's streamable-HTTP app behind the gate. The gate checks Host and Origin, so the
    SDK's own copy of those checks is off (it still checks Content-Type)."""
    from mcp.server.transport_security import TransportSecuritySettings

    gated = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return Gate(server.streamable_http_app(host=host, transport_security=gated), token=token, host=host, port=port)


def serve_http(settings: Settings, args: argparse.Namespace, build: Callable[[Runtime], Any]) -> int:
    """Serve `build(runtime)` over HTTP until Ctrl-C; the runtime runs beside the server."""
    import uvicorn

    from gum_mcp.runtime import Runtime

    if not is_loopback(args.host) and not getattr(args, "allow_remote", False):
        print(f"gum-mcp: refusing to bind {args.host}: it is not a loopback address. Anyone who can reach it and"
              " has the token can read the user model; add --allow-remote if you mean it.", file=sys.stderr)
        return 2
    log_to_file(settings)
    token = load_or_create_token(settings.data_dir)
    runtime = Runtime(settings)
    app = build_http_app(build(runtime), token, args.host, args.port)
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
