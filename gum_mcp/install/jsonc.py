"""A JSON / JSONC parser that keeps where every value is in the text, so edits can keep the rest.

JSONC is JSON with // and /* */ comments and trailing commas (VS Code, Zed). The parse tree records
each value's span and each object's members, the comments' spans and whether trailing commas were
seen; `gum_mcp.install.edit` uses them to change one entry textually.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


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
