"""`gum-mcp serve --http`: streamable HTTP behind the gate (gate.py: Host, Origin, bearer token).

Each HTTP client has its own token with its scopes (`gum-mcp token add NAME --scope ...`), stored
hashed in the database (gum_mcp/store/tokens.py) and looked up on every request. The single token
file of earlier versions (`<data dir>/token`) becomes the token `default`, with every scope, the
first time a server or a token command opens the data dir. The server binds loopback by default;
another address needs `--allow-remote`.

Light on purpose: the MCP SDK loads only when a server is built.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gum_mcp.config import Settings
from gum_mcp.server.clients import Caller
from gum_mcp.server.gate import Authenticate, Gate, is_loopback
from gum_mcp.server.logs import log_to_file

if TYPE_CHECKING:
    from gum_mcp.runtime import Runtime
    from gum_mcp.store import Store

#: the plaintext token file of earlier versions, adopted (and removed) on upgrade
LEGACY_TOKEN_FILE = "token"


def legacy_token_path(data_dir: Path) -> Path:
    return data_dir / LEGACY_TOKEN_FILE


def token_authenticator(store: Store) -> Authenticate:
    """The gate's token check against the store's tokens, read afresh on every request."""

    async def authenticate(secret: str) -> Caller | None:
        info = await store.aio.authenticate_token(secret)
        return None if info is None else Caller(name=info.name, scopes=frozenset(info.scopes), transport="http")

    return authenticate


def build_http_app(server: Any, store: Store, host: str, port: int, allow_hosts: list[str] | None = None) -> Any:
    """The MCP server's streamable-HTTP app behind the gate. The gate checks Host and Origin, so the
    SDK's own copy of those checks is off (it still checks Content-Type)."""
    from mcp.server.transport_security import TransportSecuritySettings

    gated = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(host=host, transport_security=gated)
    return Gate(app, authenticate=token_authenticator(store), host=host, port=port, allow_hosts=allow_hosts or [])


def serve_http(settings: Settings, args: argparse.Namespace, build: Callable[[Runtime], Any]) -> int:
    """Serve `build(runtime)` over HTTP until Ctrl-C; the runtime runs beside the server."""
    import uvicorn

    from gum_mcp.runtime import Runtime

    if not is_loopback(args.host) and not getattr(args, "allow_remote", False):
        print(f"gum-mcp: refusing to bind {args.host}: it is not a loopback address. Anyone who can reach it and"
              " has a token can read the user model; add --allow-remote if you mean it.", file=sys.stderr)
        return 2
    log_to_file(settings)
    runtime = Runtime(settings)
    runtime.store.adopt_legacy_token(legacy_token_path(settings.data_dir))
    app = build_http_app(build(runtime), runtime.store, args.host, args.port, getattr(args, "allow_host", None))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", lifespan="on")
    shown = f"[{args.host}]" if ":" in args.host else args.host
    names = [t.name for t in runtime.store.tokens()]
    print(f"gum-mcp: serving MCP on http://{shown}:{args.port}/mcp\n  "
          + (f"tokens: {', '.join(names)} (`gum-mcp token list`; add one per client with `gum-mcp token add`)"
             if names else "no tokens yet: every request is refused until you add one with "
                           "`gum-mcp token add NAME --scope read,write` (it counts at once, no restart)"),
          file=sys.stderr)

    runtime.run_beside(uvicorn.Server(config).serve)
    return 0
