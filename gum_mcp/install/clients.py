"""The MCP clients `install` knows: their config file per scope and platform, and their templates.

The templates are `manifests/clients/<client>.json` in a source checkout (or an editable install),
and data files under `<prefix>/share/gum-mcp/clients` in an installed wheel (pyproject.toml).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gum_mcp.install.errors import InstallError

SERVER_NAME = "gum"


def _templates_dir() -> Path:
    """manifests/clients/ in a source checkout (or an editable install); in an installed wheel the
    same files are data files under <prefix>/share/gum-mcp/clients (pyproject.toml)."""
    source = Path(__file__).resolve().parents[2] / "manifests" / "clients"  # gum_mcp/install/ -> the checkout
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "gum-mcp" / "clients"


TEMPLATES_DIR = _templates_dir()

Scope = Literal["user", "project"]


@dataclass(frozen=True)
class Layout:
    """Where things are on one machine: home and the per-platform config roots."""

    platform: str  # darwin, win32 or linux
    home: Path
    appdata: Path  # Windows %APPDATA% (Roaming)
    localappdata: Path  # Windows %LOCALAPPDATA%
    config_home: Path  # Linux $XDG_CONFIG_HOME or ~/.config

    @classmethod
    def detect(cls, *, home: Path | None = None, platform: str | None = None,
               environ: Mapping[str, str] | None = None) -> Layout:
        """The real machine's layout; with `home` given, everything derives from it (for tests)."""
        plat = normalize_platform(platform or sys.platform)
        if home is not None:
            env: Mapping[str, str] = {}
            home = Path(home)
        else:
            env = os.environ if environ is None else environ
            home = Path.home()

        def from_env(name: str, fallback: Path) -> Path:
            value = env.get(name, "")
            return Path(value) if value and Path(value).is_absolute() else fallback

        return cls(
            platform=plat, home=home,
            appdata=from_env("APPDATA", home / "AppData" / "Roaming"),
            localappdata=from_env("LOCALAPPDATA", home / "AppData" / "Local"),
            config_home=from_env("XDG_CONFIG_HOME", home / ".config"),
        )


def normalize_platform(name: str) -> str:
    name = name.lower()
    if name in ("darwin", "macos", "mac", "osx"):
        return "darwin"
    if name in ("win32", "windows", "cygwin", "msys"):
        return "win32"
    return "linux"


def _claude_desktop(layout: Layout, project: Path) -> Path:
    name = "claude_desktop_config.json"
    if layout.platform == "darwin":
        return layout.home / "Library" / "Application Support" / "Claude" / name
    if layout.platform == "win32":
        # The MSIX-packaged app (Microsoft Store and the current installer) reads a virtualised AppData.
        packaged = sorted(layout.localappdata.glob("Packages/Claude_*/LocalCache/Roaming/Claude"))
        with_config = [p for p in packaged if (p / name).exists()]
        if with_config or packaged:
            return (with_config or packaged)[0] / name
        return layout.appdata / "Claude" / name
    return layout.config_home / "Claude" / name  # Linux: community builds of Claude Desktop


def _vscode_user(layout: Layout, project: Path) -> Path:
    if layout.platform == "darwin":
        return layout.home / "Library" / "Application Support" / "Code" / "User" / "mcp.json"
    if layout.platform == "win32":
        return layout.appdata / "Code" / "User" / "mcp.json"
    return layout.config_home / "Code" / "User" / "mcp.json"


def _zed_user(layout: Layout, project: Path) -> Path:
    if layout.platform == "win32":
        return layout.appdata / "Zed" / "settings.json"
    if layout.platform == "darwin":
        return layout.home / ".config" / "zed" / "settings.json"
    return layout.config_home / "zed" / "settings.json"


PathFn = Callable[[Layout, Path], Path]


@dataclass(frozen=True)
class Client:
    name: str
    title: str
    container: str  # the top-level key that holds the servers
    jsonc: bool  # the client reads its config as JSONC (comments, trailing commas)
    paths: dict[str, PathFn]  # scope -> config path
    restart: str  # what to do after installing

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.paths)

    @property
    def default_scope(self) -> str:
        return "user" if "user" in self.paths else self.scopes[0]

    @property
    def template(self) -> Path:
        return TEMPLATES_DIR / f"{self.name}.json"


CLIENTS: dict[str, Client] = {c.name: c for c in (
    Client("claude-desktop", "Claude Desktop", "mcpServers", jsonc=False,
           paths={"user": _claude_desktop},
           restart="quit Claude Desktop completely and start it again"),
    Client("claude-code", "Claude Code", "mcpServers", jsonc=False,
           paths={"user": lambda lay, proj: lay.home / ".claude.json",
                  "project": lambda lay, proj: proj / ".mcp.json"},
           restart="start a new Claude Code session; /mcp shows the server (project scope: approve it once)"),
    Client("cursor", "Cursor", "mcpServers", jsonc=False,
           paths={"user": lambda lay, proj: lay.home / ".cursor" / "mcp.json",
                  "project": lambda lay, proj: proj / ".cursor" / "mcp.json"},
           restart="open Cursor Settings > MCP and check that gum is enabled"),
    Client("vscode", "VS Code", "servers", jsonc=True,
           paths={"user": _vscode_user, "project": lambda lay, proj: proj / ".vscode" / "mcp.json"},
           restart="run 'MCP: List Servers' in VS Code and start gum (or reload the window)"),
    Client("windsurf", "Windsurf", "mcpServers", jsonc=False,
           paths={"user": lambda lay, proj: lay.home / ".codeium" / "windsurf" / "mcp_config.json"},
           restart="press refresh in Windsurf's MCP panel (Cascade > MCP servers)"),
    Client("zed", "Zed", "context_servers", jsonc=True,
           paths={"user": _zed_user, "project": lambda lay, proj: proj / ".zed" / "settings.json"},
           restart="Zed reloads its settings by itself; check the Agent Panel's settings for a green dot"),
)}


def client_scopes() -> dict[str, tuple[str, ...]]:
    """Every client `install` knows, with the scopes it has (the first is the default)."""
    return {name: (c.default_scope, *[s for s in c.scopes if s != c.default_scope]) for name, c in CLIENTS.items()}


def get_client(name: str) -> Client:
    try:
        return CLIENTS[name]
    except KeyError:
        raise InstallError(f"unknown client {name!r}; choose one of: {', '.join(CLIENTS)}") from None


def config_path(client: str, scope: str | None = None, *, home: Path | None = None, platform: str | None = None,
                project_dir: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file of `client` for `scope` on `platform` (default: this machine)."""
    spec = get_client(client)
    scope = scope or spec.default_scope
    if scope not in spec.paths:
        raise InstallError(f"{spec.title} has no {scope} scope; it has: {', '.join(spec.scopes)}")
    layout = Layout.detect(home=home, platform=platform, environ=environ)
    project = Path(project_dir) if project_dir is not None else Path.cwd()
    return spec.paths[scope](layout, project.absolute())
