"""What clients see on the wire, for every tool, prompt and resource alike (server middleware).

The SDK builds listings and results from Python objects; `ClientView` shapes them for the clients
and agent frameworks that read them:

- tools/list: descriptions without Python's docstring indentation (paragraphs on one line each),
  and input schemas that declare `additionalProperties: false` and list `required` (an empty
  object too), so frameworks can turn them into strict function schemas;
- tools/call: the text of a result is compact JSON of its structured content (structuredContent is
  untouched); an error's text carries no links to pydantic's website and quotes at most
  SHOWN_CHARS characters of what the client sent;
- prompts/get: an unknown prompt, a missing required argument or an oversized one is an
  INVALID_PARAMS error with our own message, and a failure inside a prompt is one line (the
  traceback goes to the gum-mcp log only), instead of an SDK error with a traceback on stderr;
- resources/read: an oversized URI is refused before the SDK quotes it back.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from gum_mcp.domain import SHOWN_CHARS, shown

log = logging.getLogger("gum_mcp.server")

#: The longest error text a client gets back (pydantic already shortens the values it quotes).
MAX_ERROR_CHARS = 1000
#: The longest value a prompt argument may have (the prompt quotes it back in its message).
MAX_PROMPT_ARGUMENT_CHARS = 10_000

_PYDANTIC_URL = re.compile(r"^\s*For further information visit https?://errors\.pydantic\.dev/\S*\s*$", re.M)
_UNKNOWN_TOOL = re.compile(r"^Unknown tool: (.*)$", re.S)


def clean_description(text: str | None) -> str | None:
    """A docstring as a client shows it: no common indentation, each paragraph on one line."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An object input schema that says it takes no other properties and lists the required ones."""
    if schema.get("type") != "object":
        return schema
    schema = dict(schema)
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    schema.setdefault("additionalProperties", False)
    return schema


def clean_error(text: str) -> str:
    """An error text without pydantic's links, quoting at most SHOWN_CHARS of an unknown name, bounded."""
    text = _PYDANTIC_URL.sub("", text).rstrip()
    text = re.sub(r"\n{2,}", "\n", text)
    unknown = _UNKNOWN_TOOL.match(text)
    if unknown:
        text = f"Unknown tool: {shown(unknown.group(1))}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return text


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class ClientView:
    """Server middleware: see the module docstring."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        method = ctx.method
        if method == "prompts/get":
            await self._check_prompt(ctx.params or {})
            try:
                return await call_next(ctx)
            except MCPError:
                raise
            except Exception as exc:
                name = (ctx.params or {}).get("name")
                log.info("prompt %s failed", shown(name), exc_info=True)
                raise MCPError(code=INTERNAL_ERROR, message=f"prompt {shown(name)} failed: {type(exc).__name__} "
                                                            "(details in the gum-mcp log)") from None
        if method == "resources/read":
            uri = (ctx.params or {}).get("uri")
            if isinstance(uri, str) and len(uri) > SHOWN_CHARS:
                raise MCPError(code=INVALID_PARAMS, message=f"no resource at {shown(uri)}")
        result = await call_next(ctx)
        if method == "tools/list" and isinstance(result, dict):
            return {**result, "tools": [self._tool(tool) for tool in result.get("tools") or []]}
        if method == "tools/call" and isinstance(result, dict):
            return self._call_result(result)
        return result

    @staticmethod
    def _tool(tool: Any) -> Any:
        if not isinstance(tool, dict):
            return tool
        tool = dict(tool)
        if isinstance(tool.get("description"), str):
            tool["description"] = clean_description(tool["description"])
        if isinstance(tool.get("inputSchema"), dict):
            tool["inputSchema"] = strict_schema(tool["inputSchema"])
        return tool

    @staticmethod
    def _call_result(result: dict[str, Any]) -> dict[str, Any]:
        content = result.get("content")
        if not isinstance(content, list):
            return result
        if result.get("isError"):
            content = [{**block, "text": clean_error(block["text"])}
                       if isinstance(block, dict) and isinstance(block.get("text"), str) else block
                       for block in content]
            return {**result, "content": content}
        structured = result.get("structuredContent")
        texts = [block for block in content if isinstance(block, dict) and block.get("type") == "text"]
        if structured is not None and len(texts) == len(content) == 1 and _renders(texts[0].get("text"), structured):
            return {**result, "content": [{**texts[0], "text": compact_json(structured)}]}
        return result

    async def _check_prompt(self, params: dict[str, Any]) -> None:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        prompts = {prompt.name: prompt for prompt in await self.server.list_prompts()}
        prompt = prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise MCPError(code=INVALID_PARAMS,
                           message=f"unknown prompt {shown(name)}; the prompts are {', '.join(sorted(prompts))}")
        if not isinstance(arguments, dict):
            raise MCPError(code=INVALID_PARAMS, message=f"prompt {name}: arguments must be an object")
        for argument in prompt.arguments or []:
            value = arguments.get(argument.name)
            if argument.required and (value is None or (isinstance(value, str) and not value.strip())):
                about = f" ({argument.description})" if argument.description else ""
                raise MCPError(code=INVALID_PARAMS,
                               message=f"prompt {name}: the argument {argument.name!r} is required{about}")
            if isinstance(value, str) and len(value) > MAX_PROMPT_ARGUMENT_CHARS:
                raise MCPError(code=INVALID_PARAMS,
                               message=f"prompt {name}: {argument.name} is {len(value):,} characters; at most "
                                       f"{MAX_PROMPT_ARGUMENT_CHARS:,}")


def _renders(text: object, structured: object) -> bool:
    """Whether `text` is the structured content as JSON (the SDK's rendering), not text a tool wrote itself."""
    try:
        return isinstance(text, str) and json.loads(text) == structured
    except ValueError:
        return False
