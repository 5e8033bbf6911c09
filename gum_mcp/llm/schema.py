"""The reply schema: its name and JSON schema for the APIs, validating a reply against it, and the
repair request sent once when a reply does not validate (quoting a bounded excerpt of the reply)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

#: How much of an invalid reply a repair request quotes back to the model (a reply can be megabytes).
REPAIR_EXCERPT_CHARS = 4000


def tool_name(schema: type[BaseModel]) -> str:
    """A name for the schema that both APIs accept: ^[a-zA-Z0-9_-]{1,64}$."""
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema.__name__)[:64]
    return name or "reply"


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline every non-recursive `$ref` to `#/$defs/...`; keep `$defs` only for recursive ones."""
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    kept: set[str] = set()

    def walk(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            if name in stack or name not in defs:
                kept.add(name)
                return {"$ref": ref}
            target = walk(defs[name], (*stack, name))
            if isinstance(target, dict) and siblings.get("description"):
                target = {**target, "description": siblings["description"]}
            return target
        return {key: walk(value, stack) for key, value in node.items() if key != "$defs"}

    result = walk(schema, ())
    if kept:
        # Recursive definitions stay as definitions (walked once more, so their own inner refs
        # are inlined or kept alike).
        result["$defs"] = {}
        pending = list(kept)
        done: set[str] = set()
        while pending:
            name = pending.pop()
            if name in done or name not in defs:
                continue
            done.add(name)
            before = set(kept)
            result["$defs"][name] = walk(defs[name], (name,))
            pending.extend(kept - before)
    return result


def reply_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent for `schema` when the caller gives none: pydantic's, refs inlined."""
    return inline_refs(copy.deepcopy(schema.model_json_schema()))


_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", flags=re.DOTALL)


def strip_fence(text: str) -> str:
    """Accept a reply wrapped in a ```json fence (some local models add one), also with a line of prose
    before or after it; a reply that starts as JSON is left alone."""
    text = text.strip()
    if text.startswith(("{", "[")):
        return text
    found = _FENCE.findall(text)
    if len(found) == 1:
        return found[0].strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*(?:```)?", text, flags=re.DOTALL)  # a fence left open
    return match.group(1) if match else text


def parse_json(text: str) -> Any:
    """The JSON value of a reply, leniently where it is safe: a fence around it, raw control characters
    (a newline, a tab) inside strings. Raises `json.JSONDecodeError`."""
    return json.loads(strip_fence(text), strict=False)


def validation_lines(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False)[:20]:
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"- {where}: {error['msg']}")
    return "\n".join(lines)


def excerpt(text: str, limit: int = REPAIR_EXCERPT_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit:,} more characters of this reply not shown]"


def repair_prompt(problem: str) -> str:
    return (
        "Your previous reply could not be used: "
        f"{problem}\n"
        "Reply again with only a JSON object that matches the required schema exactly: "
        "every required field, the right types, no extra fields, no commentary."
    )


def validate_reply(schema: type[T], data: Any, text: str | None) -> tuple[T | None, str | None]:
    """The reply as an instance of `schema`, or None and why not (for the repair request). `data` is the
    provider's structured value when it returned one; otherwise `text` must be JSON (`parse_json`: a fence
    and raw control characters inside strings are accepted)."""
    if data is None:
        text = (text or "").strip()
        if not text:
            return None, "the reply was empty; it must be a JSON object"
        try:
            data = parse_json(text)
        except json.JSONDecodeError as exc:
            return (
                None,
                f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            )
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        return None, "the reply does not match the schema:\n" + validation_lines(exc)
