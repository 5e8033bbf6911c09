"""The disclosure policy: which classes of knowledge (gum_mcp/domain.py SENSITIVITY_ORDER) each client may read.

It lives in `<data dir>/policy.toml` (GUM_POLICY_FILE moves it), edited by hand or with `gum-mcp policy`:

    [default]                      # every client not named below
    allow = ["work", "personal", "location", "other"]

    [clients.claude-code]          # a client's name: its token's name over HTTP, GUM_CLIENT or its own over stdio
    allow = ["work", "other"]

    [clients."Claude Desktop"]
    allow = ["all"]

- Without the file, the built-in default applies to every client: everything but health, finance,
  relationships and beliefs-and-identity (`DEFAULT_ALLOWED`), until the person allows them.
- "all" allows every class; an empty list allows none. A client's entry replaces the default for it.
  Client names match exactly, else ignoring case.
- A file that cannot be read or is not valid (bad TOML, an unknown class or key) allows nothing to anyone
  (`Policy.problem` says why): a typo must never widen what a client sees.
- Writing (`write_policy`) renders the whole file again (comments added by hand are not kept), to a temporary
  file beside it, then `os.replace`: a reader sees the old file or the new one, never half of one; 0600.
- `PolicyFile` reads it again whenever it changed (its size, time or inode), so a running server and the
  tagging job follow edits from their next request.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gum_mcp.domain import SENSITIVITY_MEANINGS, SENSITIVITY_ORDER
from gum_mcp.store.permissions import DIR_MODE, FILE_MODE

ALL_CLASSES: frozenset[str] = frozenset(SENSITIVITY_ORDER)
#: Withheld from every client until the person allows them.
WITHHELD_BY_DEFAULT: tuple[str, ...] = ("health", "beliefs-and-identity", "relationships", "finance")
DEFAULT_ALLOWED: frozenset[str] = ALL_CLASSES - set(WITHHELD_BY_DEFAULT)
EVERY = "all"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class PolicyError(ValueError):
    """The policy file is not valid; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class Policy:
    default: frozenset[str] = DEFAULT_ALLOWED
    clients: Mapping[str, frozenset[str]] = field(default_factory=dict)
    problem: str | None = None  # the file could not be used: nothing is allowed to anyone

    def entry(self, client: str) -> str | None:
        """The client's own entry name (exact, else ignoring case), or None when the default applies."""
        if client in self.clients:
            return client
        folded = client.casefold()
        return next((name for name in sorted(self.clients) if name.casefold() == folded), None)

    def allowed(self, client: str) -> frozenset[str]:
        """The classes `client` may read."""
        if self.problem is not None:
            return frozenset()
        name = self.entry(client)
        return self.default if name is None else self.clients[name]

    @property
    def restricts_anyone(self) -> bool:
        """Whether some client (the default one included) is denied some class."""
        return self.problem is not None or self.default != ALL_CLASSES or any(
            classes != ALL_CLASSES for classes in self.clients.values())

    def with_client(self, client: str, classes: Collection[str] | None) -> Policy:
        """This policy with `client`'s entry set to `classes` (None: removed, so the default applies)."""
        clients = {name: value for name, value in self.clients.items() if name != (self.entry(client) or client)}
        if classes is not None:
            clients[client] = classes_of(classes, f"{client}")
        return replace(self, clients=clients)

    def with_default(self, classes: Collection[str]) -> Policy:
        return replace(self, default=classes_of(classes, "default"))


def classes_of(values: Iterable[Any], where: str) -> frozenset[str]:
    """The classes a list names ("all" = every class); PolicyError for anything else."""
    found: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise PolicyError(f"{where}: {value!r} is not a class name")
        name = value.strip().lower()
        if name == EVERY:
            found |= ALL_CLASSES
        elif name in ALL_CLASSES:
            found.add(name)
        else:
            raise PolicyError(f"{where}: unknown class {value!r}; the classes are {', '.join(SENSITIVITY_ORDER)} "
                              f"(or {EVERY})")
    return frozenset(found)


def _allow(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"allow"})
        if extra or "allow" not in value:
            raise PolicyError(f"{where}: expected `allow = [...]`" + (f", not {', '.join(extra)}" if extra else ""))
        value = value["allow"]
    if not isinstance(value, list):
        raise PolicyError(f"{where}: allow must be a list of class names")
    return classes_of(value, where)


def parse_policy(text: str) -> Policy:
    """A policy from TOML text (see the module docstring). Raises PolicyError."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"default", "clients"})
    if unknown:
        raise PolicyError(f"unknown key(s) {', '.join(unknown)}; expected [default] and [clients.NAME]")
    default = _allow(data["default"], "[default]") if "default" in data else DEFAULT_ALLOWED
    clients = data.get("clients", {})
    if not isinstance(clients, Mapping):
        raise PolicyError("[clients]: expected one table per client, e.g. [clients.claude-code]")
    return Policy(default=default, clients={str(name): _allow(value, f"[clients.{_key(str(name))}]")
                                            for name, value in clients.items()})


def read_policy(path: Path) -> Policy:
    """The policy in `path`: the built-in default when there is no file, and a policy allowing nothing (with
    its `problem`) when the file cannot be read or is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Policy()
    except (OSError, UnicodeDecodeError) as exc:
        return Policy(default=frozenset(), problem=f"{path}: cannot be read ({exc}); nothing is shown to any client")
    try:
        return parse_policy(text)
    except PolicyError as exc:
        return Policy(default=frozenset(), problem=f"{path}: {exc}; nothing is shown to any client until it is fixed")


def load_policy(path: Path) -> Policy:
    """The policy in `path` for editing: PolicyError when the file is there but not valid."""
    policy = read_policy(path)
    if policy.problem is not None:
        raise PolicyError(policy.problem.split("; nothing is shown")[0])
    return policy


# ------------------------------------------------------------------------------------------------ writing
def _quote(text: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _quote(name)


def _list(classes: frozenset[str]) -> str:
    if classes == ALL_CLASSES:
        return f'["{EVERY}"]'
    return "[" + ", ".join(f'"{name}"' for name in SENSITIVITY_ORDER if name in classes) + "]"


def render_policy(policy: Policy) -> str:
    """The policy as the TOML file `write_policy` writes, with a header that explains it."""
    width = max(map(len, SENSITIVITY_ORDER))
    lines = [
        "# gum-mcp disclosure policy: which kinds of knowledge each client may read.",
        "# Edit it by hand or with `gum-mcp policy`; a running server follows changes from its next request.",
        "# A client is named by its token (HTTP), or by GUM_CLIENT or the name it gives (stdio).",
        "# A client not listed under [clients] gets [default]. \"all\" allows every class; [] allows none.",
        "# Until a proposition is tagged, and until an observation is processed, only clients allowed every",
        "# class see it. A withheld item is left out of results, which say how many were withheld.",
        "#",
        "# The classes, most sensitive first (a merge of two classes takes the more sensitive):",
        *(f"#   {name:<{width}}  {SENSITIVITY_MEANINGS[name]}" for name in SENSITIVITY_ORDER),
        "",
        "[default]",
        f"allow = {_list(policy.default)}",
    ]
    for name in sorted(policy.clients, key=str.casefold):
        lines += ["", f"[clients.{_key(name)}]", f"allow = {_list(policy.clients[name])}"]
    return "\n".join(lines) + "\n"


def write_policy(path: Path, policy: Policy) -> None:
    """Write the policy atomically (a temporary file beside it, then os.replace), 0600."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    text = render_policy(policy)
    if parse_policy(text) != replace(policy, problem=None):  # what we write reads back as the same policy
        raise PolicyError("internal error: the rendered policy does not read back the same")
    fd, temp = tempfile.mkstemp(prefix=".policy-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # the rename itself durable (not possible on every platform)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class PolicyFile:
    """The policy in one file, read again whenever the file changed. Thread-safe; one `stat` per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: object = object()
        self._policy = Policy()

    def current(self) -> Policy:
        try:
            info = self.path.stat()
            key: object = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            return Policy(default=frozenset(), problem=f"{self.path}: cannot be read ({exc}); nothing is shown "
                                                       "to any client")
        with self._lock:
            if key != self._key:
                self._policy, self._key = read_policy(self.path), key
            return self._policy


# ------------------------------------------------------------------------------------------- `gum-mcp policy`
ACTIONS = ("show", "allow", "deny", "set", "reset")


def edit(policy: Policy, action: str, client: str | None, classes: Collection[str]) -> Policy:
    """`policy` after one `gum-mcp policy` action on a client (None: the default): allow or deny some
    classes, set exactly these ("none" for no class), or reset (the client's entry goes; the default
    applies again; for the default, the built-in default). Raises PolicyError."""
    names = [c.strip().lower() for c in classes]
    current = policy.default if client is None else policy.allowed(client)
    if action == "reset":
        if names:
            raise PolicyError("reset takes no classes")
        return policy.with_default(DEFAULT_ALLOWED) if client is None else policy.with_client(client, None)
    if not names:
        raise PolicyError(f"{action}: name at least one class ({', '.join(SENSITIVITY_ORDER)}, {EVERY}"
                          f"{', none' if action == 'set' else ''})")
    if action == "set" and names == ["none"]:
        chosen: frozenset[str] = frozenset()
    else:
        given = classes_of(names, action)
        chosen = {"allow": current | given, "deny": current - given, "set": given}[action]
    if client is None:
        return policy.with_default(chosen)
    return policy.with_client(client, chosen)


def describe(policy: Policy, path: Path) -> list[str]:
    """The policy as lines for people: the file, the default, each client, what each may not see."""

    def classes(allowed: frozenset[str]) -> str:
        if allowed == ALL_CLASSES:
            return "every class"
        shown = ", ".join(name for name in SENSITIVITY_ORDER if name in allowed) or "nothing"
        withheld = ", ".join(name for name in SENSITIVITY_ORDER if name not in allowed)
        return f"{shown}  (withheld: {withheld})"

    if policy.problem:
        return [f"policy file: {path}", f"PROBLEM: {policy.problem}"]
    lines = [f"policy file: {path}" + ("" if path.exists() else " (not written yet: the built-in default applies)"),
             f"default (any client not listed): {classes(policy.default)}"]
    width = max((len(name) for name in policy.clients), default=0)
    lines += [f"  {name:<{width}}  {classes(policy.clients[name])}"
              for name in sorted(policy.clients, key=str.casefold)]
    if not policy.clients:
        lines.append("no client has an entry of its own: `gum-mcp policy allow NAME CLASS...` makes one")
    return lines
