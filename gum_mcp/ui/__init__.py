"""The person's own page (`gum-mcp ui`): what gum-mcp believes about them and how to correct it; what it
observed, what its model calls cost, its suggestions; and the controls (pausing, the screen, retention, who
sees what, tokens).

Served on loopback behind the HTTP transport's Host and Origin policy (gum_mcp.hosts), with a one-time
sign-in link, a session cookie (HttpOnly, SameSite=Strict, 12 hours or until the process stops), CSRF
tokens on every change and a strict Content-Security-Policy. Templates are Jinja2 (autoescaped);
interactivity is htmx, vendored with its licence in static/vendor/ and configured for the CSP (no eval,
no inline script or style); charts are SVG drawn on the server. Nothing is fetched from anywhere else.

Modules: `app` (build_app, serve_ui), `guard` (the page's gate and headers), `sessions` (links, cookies,
CSRF, pending previews), `routes` (beliefs, forget, and the helpers every page uses), `activity` (activity and
usage), `suggesting` (suggestions and verdicts), `clients` (the disclosure policy, tokens, the access log),
`controls` (pause, screen mode and exclusions, retention), `prices` (what model calls cost), `queries`
(read-only reads the store's API lacks), `views` (cards, freshness, the timeline), `charts` (SVG), `state`
(what routes reach).
"""

from __future__ import annotations

__all__ = ["serve_ui"]


def serve_ui(settings, args):
    from gum_mcp.ui.app import serve_ui as serve

    return serve(settings, args)
