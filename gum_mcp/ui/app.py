"""`gum-mcp ui`: the person's own page, served on loopback behind the page's gate (guard.py).

`build_app` puts the routes behind the gate; `serve_ui` runs it beside a Runtime (the same search as
query_user, and the index kept in step after a change), prints a one-time sign-in link and opens it in
the browser (`webbrowser`, so $BROWSER is honoured).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gum_mcp.config import Settings
from gum_mcp.hosts import Policy, is_loopback, policy_for
from gum_mcp.ui import activity, clients, controls, routes, suggesting
from gum_mcp.ui.guard import UIGate
from gum_mcp.ui.sessions import Sessions
from gum_mcp.ui.state import UIState, template_environment

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8766


def build_app(state: UIState, policy: Policy) -> Any:
    app = Starlette(routes=[
        Route("/", routes.beliefs, methods=["GET"]),
        Route("/login", routes.login, methods=["GET"]),
        Route("/logout", routes.logout, methods=["POST"]),
        Route("/p/{id:int}", routes.proposition, methods=["GET"]),
        Route("/p/{id:int}/confirm", routes.confirm, methods=["POST"]),
        Route("/p/{id:int}/reject", routes.reject, methods=["POST"]),
        Route("/p/{id:int}/correct", routes.correct, methods=["POST"]),
        Route("/p/{id:int}/forget", routes.forget_one, methods=["POST"]),
        Route("/forget", routes.forget_page, methods=["GET"]),
        Route("/forget/preview", routes.forget_preview, methods=["POST"]),
        Route("/forget/confirm", routes.forget_confirm, methods=["POST"]),
        Route("/forget/count", routes.forget_count, methods=["POST"]),
        Route("/forget/scope", routes.forget_scope, methods=["POST"]),
        Route("/activity", activity.activity, methods=["GET"]),
        Route("/usage", activity.usage, methods=["GET"]),
        Route("/suggestions", suggesting.suggestions, methods=["GET"]),
        Route("/suggestions/{id:int}/{verdict}", suggesting.respond, methods=["POST"]),
        Route("/clients", clients.clients, methods=["GET"]),
        Route("/clients/policy", clients.set_policy, methods=["POST"]),
        Route("/clients/tokens/add", clients.add_token, methods=["POST"]),
        Route("/clients/tokens/rotate", clients.rotate_token, methods=["POST"]),
        Route("/clients/tokens/revoke", clients.revoke_token, methods=["POST"]),
        Route("/clients/access", clients.access, methods=["GET"]),
        Route("/controls", controls.controls, methods=["GET"]),
        Route("/controls/pause", controls.pause, methods=["POST"]),
        Route("/controls/resume", controls.resume, methods=["POST"]),
        Route("/controls/screen", controls.screen, methods=["POST"]),
        Route("/controls/retention", controls.retention, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ])
    app.state.ui = state
    return UIGate(app, sessions=state.sessions, policy=policy)


def login_url(host: str, port: int, secret: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/login?token={secret}"


def serve_ui(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C; the runtime runs beside it."""
    import uvicorn

    from gum_mcp.runtime import Runtime

    if not is_loopback(args.host) and not args.allow_remote:
        print(f"gum-mcp: refusing to bind {args.host}: it is not a loopback address; the page shows everything "
              "believed about you. Add --allow-remote if you mean it.", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"gum-mcp: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; try --port", file=sys.stderr)
        return 1
    sock.listen(128)  # connections wait in the backlog until the server accepts them
    sock.set_inheritable(False)
    port = sock.getsockname()[1]

    runtime = Runtime(settings)
    sessions = Sessions()
    state = UIState(settings=settings, store=runtime.store, search=runtime.search, wake_index=runtime.wake_index,
                    sessions=sessions, templates=template_environment(), status=runtime.status)
    app = build_app(state, policy_for(args.host, allow_hosts=args.allow_host or []))
    url = login_url(args.host, port, sessions.issue_link())
    print(f"gum-mcp: your page is at http://{'[' + args.host + ']' if ':' in args.host else args.host}:{port}/\n"
          f"  sign in with this link (it works once, for 10 minutes): {url}\n  Ctrl-C stops the page and ends "
          "every session.", file=sys.stderr, flush=True)
    if not args.no_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True, name="gum-ui-browser").start()
    config = uvicorn.Config(app, log_level="warning", lifespan="off")

    try:
        runtime.run_beside(lambda: uvicorn.Server(config).serve(sockets=[sock]))
    finally:
        sock.close()
    return 0
