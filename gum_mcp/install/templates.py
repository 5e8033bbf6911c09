"""Filling a client's template: the launcher command, its arguments, the data directory and the client's
name (GUM_CLIENT)."""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gum_mcp.install.clients import SERVER_NAME, get_client
from gum_mcp.install.errors import InstallError

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def default_launcher() -> list[str]:
    """How GUI apps should start the server: absolute paths, no PATH lookup. The `gum-mcp` script next to
    this interpreter when there is one, else `<python> -m gum_mcp serve`."""
    if not sys.executable:
        raise InstallError("cannot tell which Python runs gum-mcp (sys.executable is empty); pass a launcher")
    exe = Path(sys.executable).absolute()  # not resolve(): a venv's python is a symlink that must stay one
    script = exe.parent / ("gum-mcp.exe" if os.name == "nt" else "gum-mcp")
    if script.is_file():
        return [str(script), "serve"]
    return [str(exe), "-m", "gum_mcp", "serve"]


def load_template(client: str) -> dict[str, Any]:
    path = get_client(client).template
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InstallError(f"the client template {path} is missing; reinstall gum-mcp") from None


def fill(value: Any, values: Mapping[str, Any]) -> Any:
    """Replace {{name}} placeholders in a parsed template. A string that is exactly one placeholder takes
    the value as it is (so "{{args}}" becomes a list); elsewhere placeholders are replaced as text."""
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return copy.deepcopy(values[whole.group(1)])
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    return value


def render_template(client: str, *, launcher: Sequence[str], data_dir: Path) -> dict[str, Any]:
    """The client's template with the placeholders filled in: the document a person would paste."""
    if not launcher:
        raise InstallError("the launcher command is empty")
    values = {"command": str(launcher[0]), "args": [str(a) for a in launcher[1:]], "data_dir": str(data_dir),
              "client": client}  # GUM_CLIENT: the name the access log knows this client by
    return fill(load_template(client), values)


def server_entry(client: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The `gum` entry inside a rendered template."""
    return document[get_client(client).container][SERVER_NAME]
