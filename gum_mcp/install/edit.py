"""Merging the gum entry into a config file's text while keeping everything else.

The entry is inserted (or its value replaced) textually, with the file's newline style and indent;
then the whole new text is parsed again and must equal the old content plus the new entry, or
nothing is planned (InstallError).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gum_mcp.install.clients import SERVER_NAME, Client
from gum_mcp.install.errors import InstallError
from gum_mcp.install.jsonc import JsoncError, Member, Node, Parsed, parse_jsonc

Action = Literal["created", "added", "updated", "unchanged"]


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
    parsed = _parse_config(old_text, client, path=path, snippet=snippet)
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
    _check_result(new_text, client, expected, path=path, snippet=snippet)
    return Plan(action, old_text, new_text)


def _parse_config(text: str, client: Client, *, path: Path, snippet: str) -> Parsed:
    kind = "JSONC" if client.jsonc else "JSON"
    try:
        return parse_jsonc(text, jsonc=client.jsonc)
    except JsoncError as exc:
        hint = "" if client.jsonc else f" {client.title} reads this file as strict JSON."
        raise InstallError(f"{path} is not valid {kind}: {exc}.{hint} Nothing was changed.",
                           snippet=snippet) from None


def _check_result(new_text: str, client: Client, expected: Any, *, path: Path, snippet: str) -> None:
    """A safety net: never write what we did not intend. The new text must parse to `expected`."""
    try:
        check = parse_jsonc(new_text, jsonc=client.jsonc).root
    except JsoncError:
        check = None
    if check is None or check.value != expected:
        raise InstallError(f"{path}: could not insert the entry without disturbing the rest of the file.",
                           snippet=snippet)
