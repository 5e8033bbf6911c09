"""The reply schema: its name and JSON schema for the APIs, validating a reply against it, and the
repair request sent once when a reply does not validate."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


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


def strip_fence(text: str) -> str:
    """Accept a reply wrapped in a ```json fence (some local models add one)."""
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    return match.group(1) if match else text


def validation_lines(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False)[:20]:
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"- {where}: {error['msg']}")
    return "\n".join(lines)


def repair_prompt(problem: str) -> str:
    return (
        "Your previous reply could not be used: "
        f"{problem}\n"
        "Reply again with only a JSON object that matches the required schema exactly: "
        "every required field, the right types, no extra fields, no commentary."
    )


def validate_reply(schema: type[T], data: Any, text: str | None) -> tuple[T | None, str | None]:
    """The reply as an instance of `schema`, or None and why not (for the repair request). `data` is the
    provider's structured value when it returned one; otherwise `text` must be JSON (a ```json fence is
    accepted)."""
    if data is None:
        text = (text or "").strip()
        if not text:
            return None, "the reply was empty; it must be a JSON object"
        try:
            data = json.loads(strip_fence(text))
        except json.JSONDecodeError as exc:
            return (
                None,
                f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            )
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        return None, "the reply does not match the schema:\n" + validation_lines(exc)
