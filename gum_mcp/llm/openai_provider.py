"""OpenAI Chat Completions, and any OpenAI-compatible server (Ollama, vLLM, SGLang, LM Studio, llama.cpp).

Structured output, by the first method the server accepts (`memory.METHODS`, in this order):

1. `json_schema`: `response_format={"type": "json_schema", "json_schema": {..., "strict": True}}` with the
   schema made strict-compatible (`strict_schema`);
2. `json_object`: `response_format={"type": "json_object", "schema": ...}` (llama.cpp, llama-cpp-python
   and others turn the `schema` into a grammar) and the schema in the system prompt too;
3. `tool`: one function tool with the schema as its parameters, forced through `tool_choice`.

No probe calls are made: the real call finds out. A refusal (HTTP 400 or 422, or a 500 whose body names
response_format, json_schema or tools: `retry.is_refusal`) makes the call ask again at once in the next
method. The method a server accepted is remembered per (base URL, model) in the store (`MethodMemory`,
injected by the factory), so later calls and later processes start with it.

Every request bounds the reply: `max_tokens` for a server named by OPENAI_BASE_URL; OpenAI's own API
takes `max_completion_tokens`, which also covers its reasoning models' hidden reasoning, so it gets
`OPENAI_REASONING_TOKENS` more (at most `OPENAI_MAX_OUTPUT`). Images are sent as `image_url` parts
holding base64 data URLs.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import openai
from pydantic import BaseModel

from gum_mcp.config import Settings
from gum_mcp.llm.base import LLMProvider, RawReply
from gum_mcp.llm.budget import Accounting
from gum_mcp.llm.errors import short
from gum_mcp.llm.images import image_media_type, with_images
from gum_mcp.llm.memory import METHOD_NAMES, METHODS, MethodMemory
from gum_mcp.llm.retry import is_refusal, sdk_failure
from gum_mcp.llm.schema import inline_refs, tool_name

log = logging.getLogger("gum_mcp.llm")

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_VISION_MODEL = "gpt-5-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The SDK insists on a key; a local server ignores it.
PLACEHOLDER_KEY = "not-needed"
#: OpenAI's own API: room for a reasoning model's hidden reasoning on top of the reply, and the most any
#: of its chat models accepts as `max_completion_tokens` that every one of them takes.
OPENAI_REASONING_TOKENS = 12_288
OPENAI_MAX_OUTPUT = 16_384

# Keywords that strict structured outputs accept; everything else is dropped (pydantic still
# validates the reply against the full schema, and a violation goes through the repair request).
_STRICT_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "$ref",
    "$defs",
    "description",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
}
_STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}


def strict_schema(schema: type[BaseModel] | dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema for `response_format` (a model, or its JSON schema), and whether it can be sent with
    `strict: True`.

    Strict mode wants every object closed (`additionalProperties: false`) with every property
    required, and accepts a subset of keywords. Refs are inlined where not recursive. A schema
    with an open-ended object (a `dict[...]` field) cannot be strict; it is sent non-strict.
    """
    source = schema if isinstance(schema, dict) else schema.model_json_schema()
    raw = inline_refs(copy.deepcopy(source))
    can_be_strict = True

    def walk(node: Any) -> Any:
        nonlocal can_be_strict
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return {"$ref": node["$ref"]}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in _STRICT_KEYWORDS:
                continue
            if key == "format" and value not in _STRICT_FORMATS:
                continue
            if key in ("properties", "$defs"):
                out[key] = {name: walk(sub) for name, sub in value.items()}
            elif key in ("items", "anyOf"):
                out[key] = walk(value)
            else:
                out[key] = value
        is_object = out.get("type") == "object" or "properties" in node
        if is_object:
            if "properties" in node:
                out.setdefault("properties", {})
                out["required"] = list(out["properties"])
                out["additionalProperties"] = False
            else:  # a dict: strict mode cannot say "any keys"
                can_be_strict = False
                extra = node.get("additionalProperties")
                if isinstance(extra, dict):
                    out["additionalProperties"] = walk(extra)
        return out

    result = walk(raw)
    return result, can_be_strict


def _content(text: str, images: Sequence[bytes]) -> str | list[dict[str, Any]]:
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        encoded = base64.b64encode(image).decode("ascii")
        parts.append({"type": "image_url", "image_url": {"url": f"data:{image_media_type(image)};base64,{encoded}"}})
    return parts


def build_messages(system: str, messages: list[dict[str, str]], images: Sequence[bytes]) -> list[dict[str, Any]]:
    """Chat messages; the images go with the last user message of the caller's conversation."""
    head: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    return head + with_images(messages, images, _content)


def schema_instruction(json_schema: dict[str, Any]) -> str:
    """The schema in the prompt, for servers that take it only as a plain JSON object request."""
    return ("\n\nThe reply is one JSON object, nothing before or after it, that validates against this JSON "
            "schema (give the keys in this order):\n" + json.dumps(json_schema, separators=(",", ":")))


class OpenAIProvider(LLMProvider):
    name = "openai"

    default_model = DEFAULT_MODEL
    default_vision_model = DEFAULT_VISION_MODEL

    def __init__(
        self,
        settings: Settings,
        accounting: Accounting | None,
        *,
        model: str | None = None,
        vision_model: str | None = None,
        memory: MethodMemory | None = None,
    ) -> None:
        super().__init__(settings, accounting, model=model, vision_model=vision_model)
        self.base_url = settings.openai_base_url  # None: the default endpoint, not named in messages
        self.endpoint = settings.openai_base_url or DEFAULT_BASE_URL
        self.memory = memory
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or PLACEHOLDER_KEY,
            base_url=self.endpoint,
            timeout=settings.llm_timeout,
            max_retries=0,  # our own retry loop sees and accounts every attempt
        )
        self._methods: dict[str, str] = {}  # model -> the method asked in next
        self._refused: dict[str, set[str]] = {}  # model -> methods refused since the last accepted request
        self._remembered: set[tuple[str, str]] = set()  # (model, method) known to the memory

    async def aclose(self) -> None:
        await self._client.close()

    def method(self, model: str) -> str | None:
        return self._methods.get(model)

    async def _method(self, model: str) -> str:
        if model not in self._methods:
            remembered = None
            if self.memory is not None:
                try:
                    remembered = await anyio.to_thread.run_sync(self.memory.remembered_method, self.endpoint, model)
                except Exception:  # a busy store must not stop the call: start from the first method
                    log.exception("llm: could not read the structured-output method remembered for %s", model)
            if remembered in METHODS:
                self._remembered.add((model, remembered))
            self._methods[model] = remembered if remembered in METHODS else METHODS[0]
        return self._methods[model]

    def _refusal(self, model: str, method: str) -> str | None:
        """`method` was refused: the next one to ask in, or None when every method was (then the refusal is
        not about the method, and the next call starts over)."""
        refused = self._refused.setdefault(model, set())
        refused.add(method)
        left = [m for m in METHODS if m not in refused]
        if not left:
            refused.clear()
            self._methods[model] = METHODS[0]
            return None
        self._methods[model] = left[0]
        return left[0]

    async def _accepted(self, model: str, method: str) -> None:
        self._refused.pop(model, None)
        if (model, method) in self._remembered:
            return
        self._remembered.add((model, method))
        log.info("llm: %s at %s takes structured output as %s", model, self.endpoint, METHOD_NAMES[method])
        if self.memory is not None:
            try:
                await anyio.to_thread.run_sync(self.memory.remember_method, self.endpoint, model, method)
            except Exception:
                log.exception("llm: could not remember the structured-output method for %s", model)

    def _bound(self, max_tokens: int) -> dict[str, int]:
        if self.base_url is None:  # OpenAI's API: reasoning models spend hidden tokens before the reply
            return {"max_completion_tokens": min(OPENAI_MAX_OUTPUT, max_tokens + OPENAI_REASONING_TOKENS)}
        return {"max_tokens": max_tokens}

    def _request(
        self, method: str, schema: type[BaseModel], json_schema: dict[str, Any], system: str,
    ) -> tuple[dict[str, Any], str]:
        """The structured-output part of the request for `method`, and the system prompt to send with it."""
        name = tool_name(schema)
        shaped, strict = strict_schema(json_schema)
        if method == "json_schema":
            return {"response_format": {"type": "json_schema",
                                        "json_schema": {"name": name, "schema": shaped, "strict": strict}}}, system
        shaped = {"title": name, **shaped}
        if method == "json_object":
            return ({"response_format": {"type": "json_object", "schema": shaped}},
                    (system + schema_instruction(shaped)).strip())
        description = (schema.__doc__ or "").strip() or f"Give the reply ({name}) as this function's arguments."
        return {
            "tools": [{"type": "function", "function": {"name": name, "description": description[:1000],
                                                        "parameters": shaped}}],
            "tool_choice": {"type": "function", "function": {"name": name}},
        }, system

    async def _attempt(
        self,
        schema: type[BaseModel],
        *,
        model: str,
        system: str,
        messages: list[dict[str, str]],
        images: Sequence[bytes],
        max_tokens: int,
        json_schema: dict[str, Any],
    ) -> RawReply:
        method = await self._method(model)
        shape, system = self._request(method, schema, json_schema, system)
        try:
            completion = await self._client.chat.completions.create(  # type: ignore[call-overload]
                model=model,
                messages=build_messages(system, messages, images),
                timeout=self.settings.llm_timeout,
                **shape,
                **self._bound(max_tokens),
            )
        except openai.OpenAIError as exc:
            failure = sdk_failure(exc, openai, self.settings.llm_timeout)
            if is_refusal(failure):
                following = self._refusal(model, method)
                if following is not None:
                    failure.fallback = True
                    failure.message += f" (refused {method}; asking with {following} next)"
            raise failure from None
        await self._accepted(model, method)

        usage = completion.usage
        reply = RawReply(
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        if not completion.choices:
            reply.problem = "the reply had no choices"
            return reply
        choice = completion.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal:
            reply.text = message.content
            reply.problem = f"the model refused: {short(refusal)}"
            return reply
        reply.text = message.content or ""
        if method == "tool":
            calls = [c for c in (getattr(message, "tool_calls", None) or []) if getattr(c, "function", None)]
            call = next((c for c in calls if c.function.name == tool_name(schema)), calls[0] if calls else None)
            if call is not None:  # else a server that ignored the tool: perhaps the JSON came as text
                reply.text = call.function.arguments or ""
        if choice.finish_reason == "length":
            reply.truncated = True
            reply.problem = f"the reply was cut off at the output token limit ({max_tokens} tokens)"
        return reply
