"""OpenAI Chat Completions, and any OpenAI-compatible server (Ollama, vLLM, SGLang, LM Studio).

Structured output uses `response_format={"type": "json_schema", "json_schema": {..., "strict": True}}`
with the pydantic schema made strict-compatible (see `strict_schema`). Images are sent as
`image_url` parts holding base64 data URLs.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from typing import Any

import openai
from pydantic import BaseModel

from gum_mcp.config import Settings
from gum_mcp.llm.base import LLMProvider, RawReply
from gum_mcp.llm.budget import Accounting
from gum_mcp.llm.errors import short
from gum_mcp.llm.images import image_media_type, with_images
from gum_mcp.llm.retry import sdk_failure
from gum_mcp.llm.schema import inline_refs, tool_name

DEFAULT_MODEL = "gpt-5-mini"
DEFAULT_VISION_MODEL = "gpt-5-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The SDK insists on a key; a local server ignores it.
PLACEHOLDER_KEY = "not-needed"

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


def strict_schema(schema: type[BaseModel]) -> tuple[dict[str, Any], bool]:
    """The schema for `response_format`, and whether it can be sent with `strict: True`.

    Strict mode wants every object closed (`additionalProperties: false`) with every property
    required, and accepts a subset of keywords. Refs are inlined where not recursive. A schema
    with an open-ended object (a `dict[...]` field) cannot be strict; it is sent non-strict.
    """
    raw = inline_refs(copy.deepcopy(schema.model_json_schema()))
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
    ) -> None:
        super().__init__(settings, accounting, model=model, vision_model=vision_model)
        self.base_url = settings.openai_base_url  # None: the default endpoint, not named in messages
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key or PLACEHOLDER_KEY,
            base_url=settings.openai_base_url or DEFAULT_BASE_URL,
            timeout=settings.llm_timeout,
            max_retries=0,  # our own retry loop sees and accounts every attempt
        )
        self._schemas: dict[type[BaseModel], tuple[dict[str, Any], bool]] = {}

    async def aclose(self) -> None:
        await self._client.close()

    def _response_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        if schema not in self._schemas:
            self._schemas[schema] = strict_schema(schema)
        json_schema, strict = self._schemas[schema]
        return {
            "type": "json_schema",
            "json_schema": {"name": tool_name(schema), "schema": json_schema, "strict": strict},
        }

    async def _attempt(
        self,
        schema: type[BaseModel],
        *,
        model: str,
        system: str,
        messages: list[dict[str, str]],
        images: Sequence[bytes],
    ) -> RawReply:
        try:
            completion = await self._client.chat.completions.create(
                model=model,
                messages=build_messages(system, messages, images),  # type: ignore[arg-type]
                response_format=self._response_format(schema),  # type: ignore[arg-type]
                timeout=self.settings.llm_timeout,
            )
        except openai.OpenAIError as exc:
            raise sdk_failure(exc, openai, self.settings.llm_timeout) from None

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
        if choice.finish_reason == "length" and reply.text:
            # Truncated: validation will fail; say why.
            reply.problem = "the reply was cut off at the output token limit; reply more briefly"
        return reply
