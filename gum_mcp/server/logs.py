"""Where a serving process logs: stderr (warnings, at the level the CLI chose) and
`<data dir>/logs/gum-mcp.log` (info and up, 0600). Never stdout: over stdio it belongs to the protocol."""

from __future__ import annotations

import logging

from gum_mcp.config import Settings


def log_to_file(settings: Settings) -> None:
    from gum_mcp.store.db import ensure_private_dir

    ensure_private_dir(settings.log_dir)
    handler = logging.FileHandler(settings.log_dir / "gum-mcp.log", encoding="utf-8")
    (settings.log_dir / "gum-mcp.log").chmod(0o600)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("gum_mcp")
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    for handler in root.handlers:  # stderr stays at the level the CLI chose
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
