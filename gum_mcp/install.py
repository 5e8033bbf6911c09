"""`gum-mcp install <client>`: add gum-mcp to an MCP client's configuration file.

One source of truth: the ready-to-copy templates in `manifests/clients/<client>.json`. `install` fills
in their placeholders ({{command}}, {{args}}, {{data_dir}}) and merges the `gum` entry they hold into
the client's config file:

- at the right path for the client, the scope (user or project) and the platform;
- keeping every other server, setting, comment and the file's formatting: the entry is inserted (or
  its value replaced) textually, then the whole file is parsed again and must equal the old content
  plus the new entry, or nothing is written;
- backup first (`<file>.bak-<timestamp>`), then an atomic replace that keeps the file's permissions;
- idempotent: when the entry is already there nothing is written and no backup is made;
- absolute paths to this interpreter's `gum-mcp` script (or `python -m gum_mcp`), because GUI apps
  do not inherit the shell's PATH; GUM_DATA_DIR is pinned for the same reason.

VS Code and Zed configs are JSONC (comments, trailing commas) and are read as such; their comments
survive the edit. The other clients parse their files as strict JSON, so a comment or a trailing
comma there makes the file corrupt for them too: we refuse with a clear error and print the snippet
to paste. A config that cannot be parsed is never written.

This module imports `config` (for the default data directory) and nothing else from gum_mcp.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

SERVER_NAME = "gum"
def _templates_dir() -> Path:
    """manifests/clients/ in a source checkout (or an editable install); in an installed wheel the
    same files are data files under <prefix>/share/gum-mcp/clients (pyproject.toml)."""
    source = Path(__file__).resolve().parent.parent / "manifests" / "clients"
    if source.is_dir():
        return source
    return Path(sys.prefix) / "share" / "gum-mcp" / "clients"


TEMPLATES_DIR = _templates_dir()
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

Scope = Literal["user", "project"]
Action = Literal["created", "added", "updated", "unchanged"]


class InstallError(Exception):
    """The install cannot go ahead; nothing was written. The message is for a person; `snippet` (when
    set) is the configuration to paste by hand."""

    def __init__(self, message: str, *, snippet: str | None = None) -> None:
        super().__init__(message if snippet is None else f"{message}\n\nAdd this by hand instead:\n{snippet}")
        self.snippet = snippet


# ------------------------------------------------------------------------------------------------ JSONC
class JsoncError(ValueError):
    def __init__(self, message: str, text: str, pos: int) -> None:
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        super().__init__(f"line {line}, column {col}: {message}")
        self.line, self.col = line, col


@dataclass
class Node:
    """A parsed JSON value with its span [start, end) in the text; objects keep their members."""

    kind: str  # object, array, string, number, literal
    start: int
    end: int
    value: Any
    members: list[Member] = field(default_factory=list)


@dataclass
class Member:
    key: str
    key_start: int
    node: Node
    comma: bool  # a comma follows the value


@dataclass
class Parsed:
    root: Node | None  # None: an empty document (only whitespace and comments)
    comments: list[tuple[int, int]]
    trailing_commas: bool


_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class _Parser:
    def __init__(self, text: str, *, jsonc: bool) -> None:
        self.text, self.jsonc, self.pos = text, jsonc, 0
        self.comments: list[tuple[int, int]] = []
        self.trailing_commas = False

    def fail(self, message: str, pos: int | None = None) -> JsoncError:
        pos = self.pos if pos is None else pos
        if pos >= len(self.text) and "end of file" not in message:
            message = f"unexpected end of file ({message})"
        return JsoncError(message, self.text, pos)

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif text.startswith("//", self.pos) or text.startswith("/*", self.pos):
                if not self.jsonc:
                    raise self.fail("a comment, which strict JSON does not allow")
                start = self.pos
                if text[self.pos + 1] == "/":
                    newline = text.find("\n", self.pos)
                    self.pos = len(text) if newline < 0 else newline
                else:
                    close = text.find("*/", self.pos + 2)
                    if close < 0:
                        raise self.fail("unterminated /* comment")
                    self.pos = close + 2
                self.comments.append((start, self.pos))
            else:
                return

    def document(self) -> Parsed:
        if self.text.startswith("\ufeff"):
            self.pos = 1
        self.skip()
        root = None
        if self.pos < len(self.text):
            root = self.value()
            self.skip()
            if self.pos < len(self.text):
                raise self.fail("unexpected text after the end of the document")
        return Parsed(root, self.comments, self.trailing_commas)

    def value(self) -> Node:
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.fail("unexpected end of file")
        ch = text[start]
        if ch == "{":
            return self.object()
        if ch == "[":
            return self.array()
        if ch == '"':
            return Node("string", start, self.pos, self.string())
        for word, literal in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, start):
                self.pos += len(word)
                return Node("literal", start, self.pos, literal)
        match = _NUMBER.match(text, start)
        if match:
            self.pos = match.end()
            return Node("number", start, self.pos, json.loads(match.group()))
        raise self.fail(f"unexpected character {ch!r}")

    def string(self) -> str:
        text, start = self.text, self.pos
        i = start + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self.fail("unterminated string", start)
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                break
            i += 1
        self.pos = i + 1
        try:
            return json.loads(text[start:self.pos])
        except json.JSONDecodeError as exc:
            raise self.fail(f"invalid string ({exc.msg})", start) from None

    def object(self) -> Node:
        start = self.pos
        self.pos += 1
        members: list[Member] = []
        self.skip()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return Node("object", start, self.pos, {}, members)
        while True:
            self.skip()
            if self.text.startswith("}", self.pos) and members:  # after a trailing comma
                if not self.jsonc:
                    raise self.fail("a trailing comma, which strict JSON does not allow")
                self.trailing_commas = True
                self.pos += 1
                break
            if not self.text.startswith('"', self.pos):
                raise self.fail("expected a string key")
            key_start = self.pos
            key = self.string()
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.fail("expected ':' after the key")
            self.pos += 1
            self.skip()
            node = self.value()
            self.skip()
            member = Member(key, key_start, node, comma=False)
            members.append(member)
            if self.text.startswith(",", self.pos):
                member.comma = True
                self.pos += 1
                continue
            if self.text.startswith("}", self.pos):
                self.pos += 1
                break
            raise self.fail("expected ',' or '}'")
        value = {m.key: m.node.value for m in members}
        return Node("object", start, self.pos, value, members)

    def array(self) -> Node:
        start = self.pos
        self.pos += 1
        items: list[Any] = []
        self.skip()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return Node("array", start, self.pos, items)
        while True:
            self.skip()
            if self.text.startswith("]", self.pos) and items:
                if not self.jsonc:
                    raise self.fail("a trailing comma, which strict JSON does not allow")
                self.trailing_commas = True
                self.pos += 1
                break
            items.append(self.value().value)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                continue
            if self.text.startswith("]", self.pos):
                self.pos += 1
                break
            raise self.fail("expected ',' or ']'")
        return Node("array", start, self.pos, items)


def parse_jsonc(text: str, *, jsonc: bool = True) -> Parsed:
    """Parse JSON, or JSONC (// and /* */ comments, trailing commas) when `jsonc`. Raises JsoncError."""
    return _Parser(text, jsonc=jsonc).document()


def loads_jsonc(text: str) -> Any:
    """The value of a JSONC document (None when it is empty)."""
    parsed = parse_jsonc(text)
    return None if parsed.root is None else parsed.root.value


# ------------------------------------------------------------------------------------------------ clients
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


# ------------------------------------------------------------------------------------------------ templates
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
    values = {"command": str(launcher[0]), "args": [str(a) for a in launcher[1:]], "data_dir": str(data_dir)}
    return fill(load_template(client), values)


def server_entry(client: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The `gum` entry inside a rendered template."""
    return document[get_client(client).container][SERVER_NAME]


# ------------------------------------------------------------------------------------------------ editing
def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_indent(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _starts_line(text: str, pos: int) -> bool:
    return text[_line_start(text, pos):pos].strip() == ""


def _indent_unit(text: str) -> str:
    found = [m.group(1) for m in re.finditer(r'^([ \t]+)["{\[]', text, re.M)]
    if not found:
        return "  "
    return min(found, key=len)


def _dump(value: Any, unit: str, indent: str, newline: str) -> str:
    """`value` as JSON whose continuation lines start at `indent`."""
    lines = json.dumps(value, indent=unit, ensure_ascii=False).split("\n")
    return newline.join([lines[0], *[indent + line for line in lines[1:]]])


def _insert_member(text: str, obj: Node, key: str, value: Any, unit: str) -> list[tuple[int, int, str]]:
    """Edits (start, end, replacement) that add `"key": value` as the last member of `obj`."""
    nl = _newline(text)
    base = _line_indent(text, obj.start)
    members = obj.members
    if members and _starts_line(text, members[0].key_start):
        indent = _line_indent(text, members[0].key_start)
    else:
        indent = base + unit
    member = f"{json.dumps(key, ensure_ascii=False)}: {_dump(value, unit, indent, nl)}"
    close = obj.end - 1
    edits: list[tuple[int, int, str]] = []
    if members and not members[-1].comma:
        end = members[-1].node.end
        edits.append((end, end, ","))
    if _starts_line(text, close) and _line_start(text, close) > obj.start:
        at = _line_start(text, close)
        edits.append((at, at, f"{indent}{member}{nl}"))
    elif not members and text[obj.start + 1:close].strip() == "":
        edits.append((obj.start + 1, close, f"{nl}{indent}{member}{nl}{base}"))
    else:
        edits.append((close, close, f"{nl}{indent}{member}{nl}{base}"))
    return edits


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    # From the end backwards; edits at the same place keep their order (a comma before the new member).
    for _, (start, end, replacement) in sorted(enumerate(edits), key=lambda e: (e[1][0], e[1][1], e[0]),
                                               reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _find(obj: Node, key: str) -> Member | None:
    found = [m for m in obj.members if m.key == key]
    return found[-1] if found else None  # duplicates: the last one wins, as in every JSON parser


@dataclass
class Plan:
    action: Action
    old_text: str | None
    new_text: str


def plan_edit(old_text: str | None, client: Client, entry: Mapping[str, Any], *, path: Path,
              snippet: str) -> Plan:
    """The new text of a config file with `entry` as its gum server, or why that cannot be done."""
    entry = dict(entry)
    container = client.container
    if old_text is None:
        document = {container: {SERVER_NAME: entry}}
        return Plan("created", None, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    kind = "JSONC" if client.jsonc else "JSON"
    try:
        parsed = parse_jsonc(old_text, jsonc=client.jsonc)
    except JsoncError as exc:
        hint = "" if client.jsonc else f" {client.title} reads this file as strict JSON."
        raise InstallError(f"{path} is not valid {kind}: {exc}.{hint} Nothing was changed.",
                           snippet=snippet) from None
    nl = _newline(old_text)
    unit = _indent_unit(old_text)
    root = parsed.root
    if root is None:  # empty, or only comments: keep them and add the document after them
        body = json.dumps({container: {SERVER_NAME: entry}}, indent=unit, ensure_ascii=False).replace("\n", nl)
        kept = old_text.rstrip()
        return Plan("added", old_text, (kept + nl if kept else "") + body + nl)
    if root.kind != "object":
        raise InstallError(f"{path} holds a JSON {root.kind}, not an object; gum-mcp will not rewrite it.",
                           snippet=snippet)
    expected = copy.deepcopy(root.value)
    holder = _find(root, container)
    if holder is None:
        edits = _insert_member(old_text, root, container, {SERVER_NAME: entry}, unit)
        action: Action = "added"
        expected[container] = {SERVER_NAME: entry}
    elif holder.node.kind != "object":
        raise InstallError(f"{path}: {container!r} is a {holder.node.kind}, not an object; fix it first.",
                           snippet=snippet)
    else:
        existing = _find(holder.node, SERVER_NAME)
        expected[container][SERVER_NAME] = entry
        if existing is None:
            edits = _insert_member(old_text, holder.node, SERVER_NAME, entry, unit)
            action = "added"
        elif existing.node.value == entry:
            return Plan("unchanged", old_text, old_text)
        else:
            span = existing.node
            if any(span.start <= start < span.end for start, _ in parsed.comments):
                raise InstallError(f"{path}: the existing {container}.{SERVER_NAME} entry has comments inside; "
                                   "gum-mcp will not drop them. Replace the entry by hand.", snippet=snippet)
            indent = _line_indent(old_text, existing.key_start)
            edits = [(span.start, span.end, _dump(entry, unit, indent, nl))]
            action = "updated"
    new_text = _apply(old_text, edits)
    try:
        check = parse_jsonc(new_text, jsonc=client.jsonc).root
    except JsoncError:
        check = None
    if check is None or check.value != expected:  # a safety net: never write what we did not intend
        raise InstallError(f"{path}: could not insert the entry without disturbing the rest of the file.",
                           snippet=snippet)
    return Plan(action, old_text, new_text)


# ------------------------------------------------------------------------------------------------ writing
def _backup_path(path: Path, now: datetime) -> Path:
    stamp = now.strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    return candidate


def write_atomic(path: Path, data: bytes, *, mode: int, like: os.stat_result | None = None) -> None:
    """Replace `path` with `data` in one step (a temp file in the same folder, fsync, rename); `mode`
    for the new file; the owner of `like` kept when running as root."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if like is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# ------------------------------------------------------------------------------------------------ install
@dataclass
class InstallResult:
    client: str
    scope: str
    path: Path
    action: Action
    dry_run: bool
    backup: Path | None
    entry: dict[str, Any]
    diff: str
    report: str  # what happened, for a person

    @property
    def changed(self) -> bool:
        return self.action != "unchanged" and not self.dry_run

    def as_dict(self) -> dict[str, Any]:
        return {"client": self.client, "scope": self.scope, "path": str(self.path), "action": self.action,
                "dry_run": self.dry_run, "changed": self.changed,
                "backup": None if self.backup is None else str(self.backup), "entry": self.entry}


_SECRET_VALUE = re.compile(r'("[^"\n]*(?:key|token|secret|password|passwd|auth)[^"\n]*"\s*:\s*)"(?:[^"\\\n]|\\.)*"',
                           re.I)


def _diff(old: str | None, new: str, path: Path) -> str:
    """A unified diff without context lines (the lines around ours may hold other servers' secrets),
    with values of secret-looking keys masked anyway."""
    lines = difflib.unified_diff(
        [] if old is None else old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else str(path), tofile=str(path), n=0)
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return _SECRET_VALUE.sub(lambda m: m.group(1) + '"***"', text)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InstallError(f"{path} is a directory, not a config file.") from None
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}") from None


def run_install(client: str, *, scope: str | None, dry_run: bool, home: Path | None = None,
                platform: str | None = None, launcher: list[str] | None = None, data_dir: Path | None = None,
                project_dir: Path | None = None, now: datetime | None = None) -> InstallResult:
    """Merge the gum server into `client`'s config for `scope` (default: the client's first scope).

    `home` and `platform` choose the machine layout (default: this one; tests pass a temporary home);
    `launcher` is the command clients run (default: `default_launcher()`); `data_dir` is pinned as
    GUM_DATA_DIR (default: the configured one); `project_dir` is the project for scope=project
    (default: the current directory). Raises InstallError, after writing nothing, when it cannot.
    """
    spec = get_client(client)
    scope = scope or spec.default_scope
    path = config_path(client, scope, home=home, platform=platform, project_dir=project_dir)
    if data_dir is None:
        from gum_mcp.config import load_settings

        data_dir = load_settings().data_dir
    launcher = list(launcher) if launcher else default_launcher()
    document = render_template(client, launcher=launcher, data_dir=Path(data_dir))
    entry = server_entry(client, document)
    snippet = json.dumps(document, indent=2, ensure_ascii=False)

    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # write through a dotfiles symlink
    raw = _read(target)
    if raw is None:
        old_text = None
    else:
        try:
            old_text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InstallError(f"{target} is not UTF-8 text; gum-mcp will not rewrite it.", snippet=snippet) from None
    plan = plan_edit(old_text, spec, entry, path=target, snippet=snippet)
    diff = "" if plan.action == "unchanged" else _diff(plan.old_text, plan.new_text, target)

    backup = None
    if plan.action != "unchanged" and not dry_run:
        st = None
        if raw is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600  # it may hold other servers' secrets later
        else:
            st = target.stat()
            mode = stat.S_IMODE(st.st_mode)
            backup = _backup_path(target, now or datetime.now())
            shutil.copy2(target, backup)
        if _read(target) != raw:
            raise InstallError(f"{target} changed while gum-mcp was editing it (is {spec.title} writing it?). "
                               "Nothing was changed; run the command again.")
        write_atomic(target, plan.new_text.encode("utf-8"), mode=mode, like=st)

    report = _report(spec, scope, path, target, plan.action, dry_run, backup, launcher, Path(data_dir), diff)
    return InstallResult(client, scope, target, plan.action, dry_run, backup, entry, diff, report)


def _report(spec: Client, scope: str, path: Path, target: Path, action: Action, dry_run: bool,
            backup: Path | None, launcher: list[str], data_dir: Path, diff: str) -> str:
    where = f"{spec.container}.{SERVER_NAME}"
    would = "would " if dry_run else ""
    what = {
        "created": f"{would}create the file with {where}",
        "added": f"{would}add {where}",
        "updated": f"{would}update {where}",
        "unchanged": f"nothing to do: {where} is already up to date",
    }[action]
    lines = [f"{spec.title} ({scope} scope)", f"  config   {target}"]
    if target != path:
        lines.append(f"           (through the symlink {path})")
    if backup is not None:
        lines.append(f"  backup   {backup}")
    elif dry_run and action in ("added", "updated"):
        lines.append("  backup   would be written first")
    lines.append(f"  change   {what}")
    lines.append(f"  runs     {' '.join(_quote(a) for a in launcher)}  (GUM_DATA_DIR={data_dir})")
    if diff:
        lines.append("")
        lines.extend("  " + line for line in diff.rstrip("\n").split("\n"))
        lines.append("")
    if dry_run:
        lines.append("  dry run: nothing was written")
    elif action != "unchanged":
        lines.append(f"  next     {spec.restart}")
    return "\n".join(lines)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (not arg or any(ch.isspace() for ch in arg)) else arg
