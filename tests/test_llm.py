"""LLM providers through the real openai and anthropic SDK clients against the loopback fake."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from gum_mcp.config import Settings, load_settings
from gum_mcp.domain import LLMCall
from gum_mcp.llm.base import LLMProvider
from gum_mcp.llm.budget import budget_state, read_budget_state, start_of_day
from gum_mcp.llm.check import check_provider
from gum_mcp.llm.errors import LLMBudgetExceeded, LLMInvalidReply, LLMNotConfigured, LLMUnavailable
from gum_mcp.llm.factory import build_provider
from gum_mcp.llm.openai_provider import strict_schema
from gum_mcp.llm.retry import backoff_delay, parse_retry_after
from gum_mcp.store import Store
from tests.fake_provider import ANTHROPIC_PATH, INVALID_JSON_TEXT, OPENAI_PATH, FakeLLMServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(30),
]

PROVIDERS = ["openai", "anthropic"]
PATHS = {"openai": OPENAI_PATH, "anthropic": ANTHROPIC_PATH}
DEFAULT_MODELS = {"openai": "gpt-5-mini", "anthropic": "claude-sonnet-4-6"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake-jpeg-bytes\xff\xd9"


class Item(BaseModel):
    name: str
    score: int = Field(ge=1, le=10)


class Answer(BaseModel):
    """The answer to the question."""

    model_config = ConfigDict(extra="forbid")
    answer: int
    items: list[Item] = []
    note: str | None = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=PROVIDERS)
def provider_name(request: pytest.FixtureRequest) -> str:
    return request.param


class Harness:
    """One provider against the fake, accounted in a real Store."""

    def __init__(self, fake: FakeLLMServer, provider_name: str, data_dir: Path) -> None:
        self.fake = fake
        self.name = provider_name
        self.data_dir = data_dir
        self.path = PATHS[provider_name]
        self.stores: list[Store] = []
        self.providers: list[LLMProvider] = []

    def open(self, **overrides: Any) -> tuple[LLMProvider, Store]:
        settings = self.fake.settings(self.name, self.data_dir, **overrides)
        store = Store.open(settings)
        provider = build_provider(settings, store)
        self.stores.append(store)
        self.providers.append(provider)
        return provider, store

    async def close(self) -> None:
        for provider in self.providers:
            await provider.aclose()
        for store in self.stores:
            store.close()


@pytest.fixture
async def harness(fake_provider: FakeLLMServer, provider_name: str, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(fake_provider, provider_name, tmp_path / "data")
    yield h
    await h.close()


async def ask(provider: LLMProvider, **kwargs: Any) -> Answer:
    kwargs.setdefault("system", "You answer questions.")
    kwargs.setdefault("messages", [{"role": "user", "content": "What is six times seven?"}])
    kwargs.setdefault("stage", "propose")
    return await provider.complete(Answer, **kwargs)


def outcomes(store: Store) -> list[str]:
    return [call.outcome for call in store.llm_calls()]


def last_user_text(body: dict[str, Any]) -> str:
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content)


# --------------------------------------------------------------------------------------- success


async def test_success_returns_validated_instance_and_accounts_it(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.reply(
        {"answer": 42, "items": [{"name": "x", "score": 3}], "note": None}, input_tokens=120, output_tokens=30
    )
    result = await ask(provider, stage="propose")
    assert result == Answer(answer=42, items=[Item(name="x", score=3)])

    [request] = harness.fake.requests
    assert request.path == harness.path
    body = request.body
    assert body["model"] == DEFAULT_MODELS[harness.name]
    if harness.name == "openai":
        assert body["messages"][0] == {"role": "system", "content": "You answer questions."}
        assert body["messages"][1] == {"role": "user", "content": "What is six times seven?"}
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "Answer"
        assert fmt["json_schema"]["strict"] is True
        schema = fmt["json_schema"]["schema"]
        assert schema["additionalProperties"] is False
        assert schema["required"] == ["answer", "items", "note"]
        item_schema = schema["properties"]["items"]["items"]
        assert item_schema["required"] == ["name", "score"] and item_schema["additionalProperties"] is False
        assert "$defs" not in schema and "default" not in request.text
        assert "max_retries" not in request.text  # nothing SDK-internal leaks into the body
    else:
        assert body["system"] == "You answer questions."
        assert body["messages"] == [{"role": "user", "content": "What is six times seven?"}]
        assert body["tool_choice"] == {"type": "tool", "name": "Answer"}
        [tool] = body["tools"]
        assert tool["name"] == "Answer"
        assert tool["input_schema"]["type"] == "object"
        assert set(tool["input_schema"]["properties"]) == {"answer", "items", "note"}
        assert body["max_tokens"] > 0
    # The SDKs' own retries are off: exactly one attempt, and no retry header counting up.
    assert request.headers.get("x-stainless-retry-count", "0") == "0"

    [call] = store.llm_calls()
    assert call.stage == "propose"
    assert call.provider == harness.name
    assert call.model == DEFAULT_MODELS[harness.name]
    assert (call.input_tokens, call.output_tokens) == (120, 30)
    assert call.latency_ms > 0
    assert call.outcome == "ok" and call.error is None
    assert store.tokens_used_since(start_of_day()) == 150


async def test_models_come_from_settings(harness: Harness) -> None:
    provider, store = harness.open(model="text-model", vision_model="eyes-model")
    assert (provider.model, provider.vision_model) == ("text-model", "eyes-model")
    harness.fake.enqueue({"answer": 1}, {"answer": 2})
    await ask(provider)
    await ask(provider, vision=True)
    assert [b["model"] for b in harness.fake.bodies()] == ["text-model", "eyes-model"]
    assert [c.model for c in store.llm_calls()] == ["text-model", "eyes-model"]


async def test_default_reply_callable_sees_the_request(harness: Harness) -> None:
    provider, _ = harness.open()
    seen: list[str] = []

    def default(request_json: dict[str, Any], path: str) -> dict[str, Any]:
        seen.append(path)
        text = last_user_text(request_json)
        return {"answer": len(text)}

    harness.fake.default = default
    result = await ask(provider, messages=[{"role": "user", "content": "12345"}])
    assert result.answer == 5
    assert seen == [harness.path]


async def test_multi_turn_messages_keep_their_roles(harness: Harness) -> None:
    provider, _ = harness.open()
    harness.fake.reply({"answer": 3})
    conversation = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    await ask(provider, messages=conversation)
    sent = [m for m in harness.fake.bodies()[0]["messages"] if m["role"] != "system"]
    assert sent == conversation


# ---------------------------------------------------------------------------------------- faults


async def test_429_honours_retry_after_then_succeeds(harness: Harness) -> None:
    provider, store = harness.open(llm_backoff_base=0.01, llm_backoff_max=1.0)
    harness.fake.fault("429", retry_after="0.3")
    harness.fake.reply({"answer": 1})
    assert (await ask(provider)).answer == 1
    first, second = harness.fake.requests
    # Backoff alone (base 0.01) would retry within ~10 ms; Retry-After asked for 0.3 s.
    assert second.at - first.at >= 0.29
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["retry", "ok"]
    assert "429" in (calls[0].error or "")
    assert (calls[0].input_tokens, calls[0].output_tokens) == (0, 0)


async def test_retry_after_is_capped_by_backoff_max(harness: Harness) -> None:
    provider, store = harness.open(llm_backoff_max=0.05)
    harness.fake.fault("429", retry_after="3600")
    harness.fake.reply({"answer": 1})
    # the wait is computed, not timed: the hour the server asked for is cut to GUM_LLM_BACKOFF_MAX
    assert all(backoff_delay(attempt, provider.settings, 3600.0) <= 0.05 for attempt in range(5))
    assert (await ask(provider)).answer == 1  # within pytest's timeout, not an hour
    assert outcomes(store) == ["retry", "ok"]


async def test_500_then_success(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.fault("500")
    harness.fake.fault("500", status=503)
    harness.fake.reply({"answer": 7})
    assert (await ask(provider)).answer == 7
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["retry", "retry", "ok"]
    assert "HTTP 500" in (calls[0].error or "") and "HTTP 503" in (calls[1].error or "")
    assert len(harness.fake.requests) == 3


async def test_a_timeout_is_not_retried_at_once(harness: Harness) -> None:
    """A local server keeps working on a request the client gave up on: asking again at once would queue
    behind it. The timeout goes to the caller (the engine backs off), with retries left unused."""
    provider, store = harness.open(llm_timeout=0.4, llm_max_retries=3)
    harness.fake.fault("hang")
    harness.fake.reply({"answer": 2})
    with pytest.raises(LLMUnavailable) as caught:
        await ask(provider)
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert "not retried at once" in str(caught.value)
    assert len(harness.fake.requests) == 1 and harness.fake.pending == 1
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["error"]
    assert "timed out" in (calls[0].error or "")
    assert calls[0].latency_ms >= 350
    assert (await ask(provider)).answer == 2  # the next call, later, goes through


async def test_reset_connection_retries(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.fault("reset")
    harness.fake.reply({"answer": 4})
    assert (await ask(provider)).answer == 4
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["retry", "ok"]
    assert "connection failed" in (calls[0].error or "")


async def test_retries_exhausted_raise_unavailable(harness: Harness) -> None:
    provider, store = harness.open(llm_max_retries=2)
    harness.fake.fault("500")
    harness.fake.fault("reset")
    harness.fake.fault("429", retry_after="0")
    harness.fake.reply({"answer": 1})  # never reached
    with pytest.raises(LLMUnavailable) as caught:
        await ask(provider)
    assert caught.value.status == 429
    assert "HTTP 429" in str(caught.value) and harness.name in str(caught.value)
    assert len(harness.fake.requests) == 3 and harness.fake.pending == 1
    assert outcomes(store) == ["retry", "retry", "error"]


async def test_non_retryable_status_fails_at_once(harness: Harness) -> None:
    provider, store = harness.open(llm_max_retries=3)
    harness.fake.fault("500", status=401)
    with pytest.raises(LLMUnavailable) as caught:
        await ask(provider)
    assert caught.value.status == 401 and not caught.value.retryable
    assert len(harness.fake.requests) == 1
    assert outcomes(store) == ["error"]


async def test_invalid_json_is_repaired(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.fault("invalid_json")
    harness.fake.reply({"answer": 9})
    assert (await ask(provider)).answer == 9
    _, repair = harness.fake.bodies()
    # The repair request is the conversation, the bad reply, and what was wrong with it.
    turns = [m for m in repair["messages"] if m["role"] != "system"]
    assert turns[0] == {"role": "user", "content": "What is six times seven?"}
    assert turns[1] == {"role": "assistant", "content": INVALID_JSON_TEXT}
    assert turns[2]["role"] == "user" and "not valid JSON" in turns[2]["content"]
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["invalid", "ok"]
    assert "not valid JSON" in (calls[0].error or "")
    assert calls[0].input_tokens == harness.fake.input_tokens  # the invalid reply's tokens count too
    assert store.tokens_used_since(start_of_day()) == 2 * (harness.fake.input_tokens + harness.fake.output_tokens)


async def test_invalid_twice_raises_invalid_reply(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.fault("invalid_json")
    harness.fake.reply("still {not json")
    harness.fake.reply({"answer": 1})  # never asked for: one repair only
    with pytest.raises(LLMInvalidReply) as caught:
        await ask(provider)
    assert "not valid JSON" in str(caught.value)
    assert len(harness.fake.requests) == 2 and harness.fake.pending == 1
    assert outcomes(store) == ["invalid", "invalid"]


async def test_schema_invalid_repair_shows_the_validation_error(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.fault("schema_invalid")
    harness.fake.reply({"answer": 5})
    assert (await ask(provider)).answer == 5
    _, repair = harness.fake.bodies()
    prompt = last_user_text(repair)
    assert "does not match the schema" in prompt
    assert "answer: Input should be a valid integer" in prompt
    assert "__fake_schema_invalid__: Extra inputs are not permitted" in prompt
    assert outcomes(store) == ["invalid", "ok"]


async def test_schema_invalid_values_after_repair_raise(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.reply({"answer": 1, "items": [{"name": "x", "score": 99}]})  # score out of range
    harness.fake.fault("schema_invalid")
    with pytest.raises(LLMInvalidReply) as caught:
        await ask(provider)
    assert "does not match the schema" in caught.value.detail
    assert "items.0.score" in last_user_text(harness.fake.bodies()[1])
    assert outcomes(store) == ["invalid", "invalid"]


async def test_repair_request_is_itself_retried(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.enqueue({"wrong": True})
    harness.fake.fault("500")
    harness.fake.reply({"answer": 8})
    assert (await ask(provider)).answer == 8
    assert outcomes(store) == ["invalid", "retry", "ok"]


# ---------------------------------------------------------------------------------------- images


async def test_images_are_sent_in_the_provider_format(harness: Harness) -> None:
    provider, store = harness.open(vision_model="eyes")
    harness.fake.reply({"answer": 1})
    await ask(
        provider,
        messages=[
            {"role": "user", "content": "context"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "what is on screen?"},
        ],
        images=[JPEG, JPEG[::-1]],
        stage="transcribe",
    )
    body = harness.fake.bodies()[0]
    assert body["model"] == "eyes"  # images go to the vision model
    encoded = base64.b64encode(JPEG).decode()
    user_turns = [m for m in body["messages"] if m["role"] == "user"]
    assert user_turns[0]["content"] == "context"  # images go with the last user message only
    parts = user_turns[-1]["content"]
    if harness.name == "openai":
        assert parts[0] == {"type": "text", "text": "what is on screen?"}
        assert parts[1] == {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}
        assert parts[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    else:
        assert parts[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": encoded}}
        assert parts[1]["type"] == "image"
        assert parts[2] == {"type": "text", "text": "what is on screen?"}
    [call] = store.llm_calls()
    assert (call.stage, call.model) == ("transcribe", "eyes")


# ---------------------------------------------------------------------------------------- budget


async def test_budget_pauses_calls_for_the_rest_of_the_day(harness: Harness) -> None:
    provider, store = harness.open(daily_token_budget=25)
    per_call = harness.fake.input_tokens + harness.fake.output_tokens  # 18
    harness.fake.enqueue({"answer": 1}, {"answer": 2}, {"answer": 3})
    await ask(provider)
    await ask(provider)  # 18 < 25 before this call: allowed, and now 36 are used
    with pytest.raises(LLMBudgetExceeded) as caught:
        await ask(provider)
    assert len(harness.fake.requests) == 2  # nothing was sent
    assert harness.fake.pending == 1
    tomorrow = start_of_day() + timedelta(days=1)
    assert caught.value.paused_until == tomorrow
    assert (caught.value.used, caught.value.budget) == (2 * per_call, 25)
    assert "GUM_DAILY_TOKEN_BUDGET" in str(caught.value)
    assert outcomes(store) == ["ok", "ok", "budget"]

    state = await budget_state(provider.settings, store)
    assert (state.used, state.budget, state.paused_until, state.paused) == (36, 25, tomorrow, True)
    assert read_budget_state(provider.settings, store) == state
    # Tokens spent yesterday do not count today.
    assert read_budget_state(provider.settings, store, now=datetime.now(UTC) + timedelta(days=1)).used == 0


async def test_budget_off_by_default(harness: Harness) -> None:
    provider, store = harness.open()
    harness.fake.reply({"answer": 1}, input_tokens=10**9)
    await ask(provider)
    state = await budget_state(provider.settings, store)
    assert (state.budget, state.paused_until) == (0, None)
    harness.fake.reply({"answer": 2})
    assert (await ask(provider)).answer == 2


# ---------------------------------------------------------------------------- configuration & keys


def bare_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(env={}, cwd=tmp_path, data_dir=tmp_path / "data", **overrides)


def test_not_configured_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(LLMNotConfigured) as caught:
        build_provider(bare_settings(tmp_path), None)
    message = str(caught.value)
    assert "set OPENAI_API_KEY, or OPENAI_BASE_URL for a local" in message and "Ollama" in message
    with pytest.raises(LLMNotConfigured) as caught:
        build_provider(bare_settings(tmp_path, llm_provider="anthropic"), None)
    assert "set ANTHROPIC_API_KEY, or ANTHROPIC_BASE_URL" in str(caught.value)
    # A key alone, or a base URL alone, is enough.
    assert build_provider(bare_settings(tmp_path, openai_api_key="sk-x"), None).model == "gpt-5-mini"
    local = build_provider(bare_settings(tmp_path, openai_base_url="http://localhost:11434/v1"), None)
    assert local.base_url == "http://localhost:11434/v1"
    claude = build_provider(bare_settings(tmp_path, llm_provider="anthropic", anthropic_api_key="k"), None)
    assert (claude.model, claude.vision_model) == ("claude-sonnet-4-6", "claude-sonnet-4-6")


async def test_local_server_needs_no_key_and_a_key_is_sent_when_set(harness: Harness) -> None:
    provider, _ = harness.open()
    keyed, _ = harness.open(openai_api_key="sk-test-secret", anthropic_api_key="sk-ant-test-secret")
    harness.fake.enqueue({"answer": 1}, {"answer": 2})
    await ask(provider)
    await ask(keyed)
    first, second = harness.fake.requests
    if harness.name == "openai":
        assert first.headers["authorization"] == "Bearer not-needed"
        assert second.headers["authorization"] == "Bearer sk-test-secret"
    else:  # this SDK version sends the key as a bearer token; older ones used x-api-key

        def key(headers: dict[str, str]) -> str:
            return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")

        assert key(first.headers) == "not-needed"
        assert key(second.headers) == "sk-ant-test-secret"


async def test_logs_carry_neither_prompts_nor_keys(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    provider, _ = harness.open(openai_api_key="sk-test-secret", anthropic_api_key="sk-ant-test-secret")
    harness.fake.fault("500")
    harness.fake.fault("invalid_json")
    harness.fake.reply({"answer": 1})
    with caplog.at_level(logging.DEBUG, logger="gum_mcp.llm"):
        await ask(provider, system="SYSTEM-SECRET", messages=[{"role": "user", "content": "PROMPT-SECRET"}])
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gum_mcp.llm"))
    assert "retrying" in text and "repair" in text
    for secret in ("SYSTEM-SECRET", "PROMPT-SECRET", "sk-test-secret", "sk-ant-test-secret", INVALID_JSON_TEXT):
        assert secret not in text


async def test_rejects_malformed_messages(harness: Harness) -> None:
    provider, _ = harness.open()
    with pytest.raises(ValueError):
        await ask(provider, messages=[])
    with pytest.raises(ValueError):
        await ask(provider, messages=[{"role": "system", "content": "x"}])
    assert harness.fake.requests == []


# ----------------------------------------------------------------------------------------- check


async def test_check_provider_ok(harness: Harness) -> None:
    settings = harness.fake.settings(harness.name, harness.data_dir)
    harness.fake.reply({"ok": True})
    with Store.open(settings) as store:
        result = await check_provider(settings, store)
        calls = store.llm_calls()
    assert result.ok, result.reason
    assert (result.provider, result.model) == (harness.name, DEFAULT_MODELS[harness.name])
    assert result.latency_ms is not None and result.latency_ms > 0
    assert result.reason is None
    assert "ok in" in result.line()
    assert [(c.stage, c.outcome) for c in calls] == [("doctor", "ok")]


async def test_check_provider_reports_the_exact_failure(harness: Harness) -> None:
    settings = harness.fake.settings(harness.name, harness.data_dir)
    harness.fake.fault("500", status=404)
    with Store.open(settings) as store:
        result = await check_provider(settings, store)
        assert outcomes(store) == ["error"]
    assert not result.ok
    assert result.reason is not None and result.reason.startswith("HTTP 404: fake provider")
    assert "set GUM_MODEL" in result.reason
    assert "FAILED: HTTP 404" in result.line()

    # No retries in a check: a 500 is reported as it is, at once.
    harness.fake.fault("500")
    harness.fake.reply({"ok": True})
    result = await check_provider(settings, None)
    assert not result.ok and result.reason == "HTTP 500: fake provider: internal error"


async def test_check_provider_unreachable_and_not_configured(tmp_path: Path, provider_name: str) -> None:
    with FakeLLMServer() as fake:
        settings = fake.settings(provider_name, tmp_path / "data")
    # The server is gone: nothing listens on that port any more.
    result = await check_provider(settings, None)
    assert not result.ok and result.reason is not None
    assert result.reason.startswith("connection failed")

    result = await check_provider(bare_settings(tmp_path, llm_provider=provider_name), None)
    assert not result.ok and result.latency_ms is None
    assert result.reason is not None and f"set {provider_name.upper()}_API_KEY" in result.reason


# ------------------------------------------------------------------------------------ pure parts


def test_parse_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    http_date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": http_date}, now=now) == 30.0
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_capped(tmp_path: Path) -> None:
    settings = bare_settings(tmp_path, llm_backoff_base=1.0, llm_backoff_max=5.0)
    for attempt in range(8):
        delays = [backoff_delay(attempt, settings) for _ in range(50)]
        assert all(0 <= d <= min(5.0, 2**attempt) for d in delays)
    assert len({backoff_delay(3, settings) for _ in range(20)}) > 1  # jittered
    assert backoff_delay(0, settings, retry_after=2.0) == 2.0
    assert backoff_delay(0, settings, retry_after=60.0) == 5.0


def test_strict_schema_shapes() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = []

    class Loose(BaseModel):
        tags: dict[str, int]

    class Wrapper(BaseModel):
        answer: Answer
        when: datetime | None = None
        link: str = Field("", max_length=10)

    schema, strict = strict_schema(Wrapper)
    assert strict
    inner = schema["properties"]["answer"]
    assert inner["required"] == ["answer", "items", "note"] and inner["additionalProperties"] is False
    assert "$defs" not in schema and "$ref" not in str(schema)
    assert "maxLength" not in str(schema) and "title" not in schema

    recursive, strict = strict_schema(Node)
    assert strict
    assert recursive["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert recursive["$defs"]["Node"]["additionalProperties"] is False

    loose, strict = strict_schema(Loose)
    assert not strict  # a dict cannot be strict; it is sent non-strict
    assert loose["properties"]["tags"]["additionalProperties"] == {"type": "integer"}


def test_accounting_protocol_matches_the_store(tmp_path: Path) -> None:
    from gum_mcp.llm.budget import Accounting

    with Store.open(bare_settings(tmp_path)) as store:
        assert isinstance(store, Accounting)
        store.record_llm_call(LLMCall(stage="s", provider="p", model="m", input_tokens=1, output_tokens=2))
        assert store.tokens_used_since(start_of_day()) == 3
