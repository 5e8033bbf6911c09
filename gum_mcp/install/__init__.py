"""`gum-mcp install <client>`: add gum-mcp to an MCP client's configuration file.

One source of truth: the ready-to-copy templates in `manifests/clients/<client>.json`. `install` fills
in their placeholders ({{command}}, {{args}}, {{data_dir}}) and merges the `gum` entry they hold into
the client's config file:

- at the right path for the client, the scope (user or project) and the platform (`clients`);
- keeping every other server, setting, comment and the file's formatting: the entry is inserted (or
  its value replaced) textually, then the whole file is parsed again and must equal the old content
  plus the new entry, or nothing is written (`jsonc`, `edit`);
- backup first (`<file>.bak-<timestamp>`), then an atomic replace that keeps the file's permissions
  (`backup`);
- idempotent: when the entry is already there nothing is written and no backup is made;
- absolute paths to this interpreter's `gum-mcp` script (or `python -m gum_mcp`), because GUI apps
  do not inherit the shell's PATH; GUM_DATA_DIR is pinned for the same reason (`templates`).

VS Code and Zed configs are JSONC (comments, trailing commas) and are read as such; their comments
survive the edit. The other clients parse their files as strict JSON, so a comment or a trailing
comma there makes the file corrupt for them too: we refuse with a clear error and print the snippet
to paste. A config that cannot be parsed is never written.

`command.run_install` is the entry point; the diff it shows is masked (`diff`). This package imports
`config` (for the default data directory) and nothing else from gum_mcp.
"""

from __future__ import annotations

from gum_mcp.install.clients import CLIENTS, SERVER_NAME, TEMPLATES_DIR, Client, client_scopes, config_path, get_client
from gum_mcp.install.command import InstallResult, run_install
from gum_mcp.install.errors import InstallError
from gum_mcp.install.jsonc import JsoncError, loads_jsonc, parse_jsonc
from gum_mcp.install.templates import PLACEHOLDER, default_launcher, render_template, server_entry

__all__ = [
    "CLIENTS",
    "PLACEHOLDER",
    "SERVER_NAME",
    "TEMPLATES_DIR",
    "Client",
    "InstallError",
    "InstallResult",
    "JsoncError",
    "client_scopes",
    "config_path",
    "default_launcher",
    "get_client",
    "loads_jsonc",
    "parse_jsonc",
    "render_template",
    "run_install",
    "server_entry",
]
