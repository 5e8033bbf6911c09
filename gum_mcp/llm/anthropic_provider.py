"""Anthropic Messages API, and Anthropic-compatible servers through `ANTHROPIC_BASE_URL`.

Structured output is a forced tool call: one tool whose `input_schema` is the reply schema and
`tool_choice={"type": "tool", "name": ...}`; the tool's input is the reply. `max_tokens` is the
caller's bound for the step. Images are base64 `image` blocks placed before the text of the last
user message.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Sequence
from typing import Any

import anthropic
from pydantic import BaseModel

from gum_mcp.config import Settings
from gum_mcp.llm.base import LLMProvider, RawReply
from gum_mcp.llm.budget import Accounting
from gum_mcp.llm.images import image_media_type, with_images
from gum_mcp.llm.retry import sdk_failure
from gum_mcp.llm.schema import inline_refs, tool_name

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_VISION_MODEL = "claude-sonnet-4-6"
DEFAULT_BASE_URL = "https://api.anthropic.com"
PLACEHOLDER_KEY = "not-needed"


def tool_schema(schema: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    """The reply schema (a model, or its JSON schema) as a tool `input_schema` (an object schema, refs
    inlined where possible)."""
    source = schema if isinstance(schema, dict) else schema.model_json_schema()
    result = inline_refs(copy.deepcopy(source))
    result.setdefault("type", "object")
    return result


def _content(text: str, images: Sequence[bytes]) -> str | list[dict[str, Any]]:
    if not images:
        return text
    parts: list[dict[str, Any]] = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": image_media_type(image),
                "data": base64.b64encode(image).decode("ascii"),
            },
        }
        for image in images
    ]
    parts.append({"type": "text", "text": text})
    return parts


def build_messages(messages: list[dict[str, str]], images: Sequence[bytes]) -> list[dict[str, Any]]:
    """Messages API turns; the images go with the last user message of the caller's conversation."""
    return with_images(messages, images, _content)


class AnthropicProvider(LLMProvider):
    name = "anthropic"

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
        self.base_url = settings.anthropic_base_url
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key or PLACEHOLDER_KEY,
            base_url=settings.anthropic_base_url or DEFAULT_BASE_URL,
            timeout=settings.llm_timeout,
            max_retries=0,  # our own retry loop sees and accounts every attempt
            open_telemetry=False,  # never put prompts into spans
        )

    async def aclose(self) -> None:
        await self._client.close()

    def method(self, model: str) -> str | None:
        return "tool"

    def _tool(self, schema: type[BaseModel], json_schema: dict[str, Any]) -> dict[str, Any]:
        description = (schema.__doc__ or "").strip() or f"Give the reply ({schema.__name__}) as this tool's input."
        return {
            "name": tool_name(schema),
            "description": description[:1000],
            "input_schema": tool_schema(json_schema),
        }

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
        name = tool_name(schema)
        extra: dict[str, Any] = {"system": system} if system else {}
        try:
            message = await self._client.messages.create(
                model=model,
                max_tokens=max_tokens,
                messages=build_messages(messages, images),  # type: ignore[arg-type]
                tools=[self._tool(schema, json_schema)],  # type: ignore[list-item]
                tool_choice={"type": "tool", "name": name},
                timeout=self.settings.llm_timeout,
                **extra,
            )
        except anthropic.AnthropicError as exc:
            raise sdk_failure(exc, anthropic, self.settings.llm_timeout) from None

        usage = message.usage
        reply = RawReply(
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        )
        texts: list[str] = []
        for block in message.content or []:
            block_type = getattr(block, "type", None)
            if block_type == "tool_use" and getattr(block, "name", None) == name:
                tool_input = getattr(block, "input", None)
                if isinstance(tool_input, str):  # some compatible servers send the input as text
                    reply.text = tool_input
                else:
                    reply.data = tool_input
                break
            if block_type == "text":
                texts.append(getattr(block, "text", "") or "")
        else:
            # No tool call: perhaps the JSON came as text (a compatible server ignoring tools).
            reply.text = "\n".join(texts)
            if not reply.text.strip():
                reply.problem = f"the reply did not call the {name} tool"
        if message.stop_reason == "max_tokens":
            reply.truncated = True
            reply.problem = f"the reply was cut off at the output token limit ({max_tokens} tokens)"
        return reply
