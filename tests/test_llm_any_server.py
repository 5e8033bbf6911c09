"""Any OpenAI-compatible server (issue 18), at the provider: the structured-output method found by the real
call and remembered, bounded replies, a runaway asked for again fresh, lenient parsing where it is safe.

Everything talks to the loopback fake (`tests/fake_provider.py`), configured to refuse methods, ramble past
`max_tokens` or answer in other servers' error forms; nothing reaches the internet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gum_mcp.llm.base import BRIEF_NOTE, DEFAULT_MAX_TOKENS
from gum_mcp.llm.check import check_provider
from gum_mcp.llm.errors import LLMInvalidReply, LLMUnavailable, TransportFailure
from gum_mcp.llm.factory import llm_status
from gum_mcp.llm.memory import METHOD_NAMES, config_fingerprint
from gum_mcp.llm.openai_provider import OPENAI_MAX_OUTPUT, OpenAIProvider
from gum_mcp.llm.retry import is_refusal
from gum_mcp.store import Store
from tests.fake_provider import ANTHROPIC_PATH, FakeLLMServer, method_of
from tests.test_llm import Harness, ask, last_user_text, outcomes

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def openai(fake_provider: FakeLLMServer, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(fake_provider, "openai", tmp_path / "data")
    yield h
    await h.close()


@pytest.fixture(params=["openai", "anthropic"])
async def both(fake_provider: FakeLLMServer, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(fake_provider, request.param, tmp_path / "data")
    yield h
    await h.close()


def methods(fake: FakeLLMServer) -> list[str]:
    return [method_of(r.body, r.path) for r in fake.requests]


# ------------------------------------------------------------------------------ 1. the method, found and kept


@pytest.mark.parametrize("status", [500, 400])
async def test_a_server_refusing_json_schema_is_asked_with_json_object_and_that_is_remembered(
    openai: Harness, status: int
) -> None:
    provider, store = openai.open(llm_max_retries=0)  # a refusal is no retry: none are needed
    openai.fake.refuse("json_schema", status=status)
    openai.fake.reply({"answer": 42})
    assert (await ask(provider)).answer == 42
    assert methods(openai.fake) == ["json_schema", "json_object"]
    second = openai.fake.requests[1].body
    schema = second["response_format"]["schema"]
    assert schema["title"] == "Answer" and schema["properties"]["answer"]["type"] == "integer"
    assert '"answer"' in second["messages"][0]["content"]  # the schema is in the prompt too
    assert outcomes(store) == ["retry", "ok"]
    assert f"HTTP {status}" in (store.llm_calls()[0].error or "")
    endpoint = openai.fake.openai_base_url
    assert store.remembered_method(endpoint, provider.model) == "json_object"
    assert provider.method(provider.model) == "json_object"

    # A later process asks the way the server takes from its first call: no refused request again.
    later, _ = openai.open(llm_max_retries=0)
    openai.fake.reply({"answer": 7})
    assert (await ask(later)).answer == 7
    assert methods(openai.fake)[2:] == ["json_object"]


async def test_a_server_refusing_json_schema_and_json_object_gets_a_forced_tool_call(openai: Harness) -> None:
    provider, store = openai.open(llm_max_retries=0)
    openai.fake.refuse("json_schema", status=500)
    openai.fake.refuse("json_object", status=400)
    openai.fake.reply({"answer": 5, "items": [{"name": "x", "score": 3}]})
    reply = await ask(provider)
    assert reply.answer == 5 and reply.items[0].score == 3
    assert methods(openai.fake) == ["json_schema", "json_object", "tool"]
    body = openai.fake.requests[-1].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Answer"}}
    assert body["tools"][0]["function"]["parameters"]["properties"]["answer"]["type"] == "integer"
    assert store.remembered_method(openai.fake.openai_base_url, provider.model) == "tool"
    assert outcomes(store) == ["retry", "retry", "ok"]


async def test_a_server_refusing_every_method_fails_with_its_error_and_nothing_is_remembered(openai: Harness) -> None:
    provider, store = openai.open(llm_max_retries=2)
    for method in ("json_schema", "json_object", "tool"):
        openai.fake.refuse(method, status=400)
    with pytest.raises(LLMUnavailable) as caught:
        await ask(provider)
    assert caught.value.status == 400 and not caught.value.retryable
    assert methods(openai.fake) == ["json_schema", "json_object", "tool"]  # no probes, no retries of a 400
    assert store.remembered_method(openai.fake.openai_base_url, provider.model) is None
    openai.fake.refusing.clear()
    openai.fake.reply({"answer": 1})
    assert (await ask(provider)).answer == 1
    assert methods(openai.fake)[-1] == "json_schema"  # the next call starts over


async def test_an_ordinary_500_is_retried_not_taken_for_a_refusal(openai: Harness) -> None:
    provider, store = openai.open()
    openai.fake.fault("500")
    openai.fake.reply({"answer": 3})
    assert (await ask(provider)).answer == 3
    assert methods(openai.fake) == ["json_schema", "json_schema"]
    assert store.remembered_method(openai.fake.openai_base_url, provider.model) == "json_schema"


def test_what_counts_as_a_refused_request_shape() -> None:
    def failure(status: int, message: str = "", body: str = "") -> TransportFailure:
        return TransportFailure(message, retryable=status >= 500, status=status, body=body)

    assert is_refusal(failure(400)) and is_refusal(failure(422))
    assert is_refusal(failure(500, body='{"error": "response_format.type: Input should be \'text\'"}'))
    assert is_refusal(failure(500, "HTTP 500: tools are not supported"))
    assert not is_refusal(failure(500, "HTTP 500: CUDA out of memory"))
    assert not is_refusal(failure(404, "model not found")) and not is_refusal(failure(503, "json_schema"))


async def test_doctor_names_the_method_and_status_shows_it(openai: Harness) -> None:
    settings = openai.fake.settings("openai", openai.data_dir)
    openai.fake.refuse("json_schema", status=500)
    openai.fake.reply({"ok": True})
    with Store.open(settings) as store:
        result = await check_provider(settings, store)
        assert result.ok and result.method == METHOD_NAMES["json_object"]
        assert "structured output: json_object" in result.line()
        status = llm_status(settings, store)
        assert status["structured_output"] == METHOD_NAMES["json_object"] and status["problem"] is None


async def test_an_error_body_in_the_fastapi_form_is_told_without_its_input(openai: Harness) -> None:
    provider, store = openai.open(llm_max_retries=0)
    secret_prompt = "What is six times seven?"
    openai.fake.fault("500", status=404, body={"detail": [
        {"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": {"messages": secret_prompt}}]})
    with pytest.raises(LLMUnavailable) as caught:
        await ask(provider)
    assert "body.model: Field required" in str(caught.value)
    assert secret_prompt not in str(caught.value) and secret_prompt not in (store.llm_calls()[0].error or "")


# -------------------------------------------------------------------------------------- 3. bounded calls


async def test_every_call_sends_max_tokens(both: Harness) -> None:
    provider, _ = both.open()
    both.fake.reply({"answer": 1})
    both.fake.reply({"answer": 2})
    await ask(provider, max_tokens=321)
    await ask(provider)
    first, second = both.fake.bodies()
    assert first["max_tokens"] == 321 and second["max_tokens"] == DEFAULT_MAX_TOKENS


def test_openai_itself_gets_max_completion_tokens_with_room_for_reasoning(tmp_path: Path) -> None:
    from tests.test_llm import bare_settings

    provider = OpenAIProvider(bare_settings(tmp_path, openai_api_key="sk-test"), None)  # never called
    assert provider._bound(1000) == {"max_completion_tokens": min(OPENAI_MAX_OUTPUT, 1000 + 12_288)}
    local = OpenAIProvider(bare_settings(tmp_path, openai_base_url="http://127.0.0.1:9/v1"), None)
    assert local._bound(1000) == {"max_tokens": 1000}


async def test_a_reply_cut_off_at_max_tokens_is_asked_for_again_fresh(both: Harness) -> None:
    provider, store = both.open()
    both.fake.fault("ramble")
    both.fake.reply({"answer": 6})
    assert (await ask(provider, max_tokens=200)).answer == 6
    runaway, fresh = both.fake.bodies()
    assert runaway["max_tokens"] == fresh["max_tokens"] == 200
    # Not a repair: the garbage is not sent back; the same request, with a note to be brief.
    assert [m["role"] for m in fresh["messages"] if m["role"] != "system"] == ["user"]
    assert last_user_text(fresh).endswith(BRIEF_NOTE)
    calls = store.llm_calls()
    assert [c.outcome for c in calls] == ["invalid", "ok"] and "cut off" in (calls[0].error or "")
    assert calls[0].output_tokens == 200


async def test_a_model_that_always_rambles_fails_after_one_fresh_try(both: Harness) -> None:
    provider, store = both.open()
    both.fake.fault("ramble")
    both.fake.fault("ramble")
    with pytest.raises(LLMInvalidReply) as caught:
        await ask(provider, max_tokens=100)
    assert "cut off at the output token limit (100 tokens)" in str(caught.value)
    assert outcomes(store) == ["invalid", "invalid"]
    assert sum(c.output_tokens for c in store.llm_calls()) == 200  # bounded: two calls of 100


# ------------------------------------------------------------------------------ 4. lenient where it is safe


@pytest.mark.parametrize("text", [
    '{"answer": 3, "note": "line one\nline two\twith a tab"}',  # raw control characters inside a string
    'Here is the JSON:\n```json\n{"answer": 3, "note": "fenced"}\n```\nAnything else?',
    '```\n{"answer": 3}\n```',
    '```json\n{"answer": 3}',  # a fence left open
])
async def test_replies_are_parsed_leniently_where_it_is_safe(both: Harness, text: str) -> None:
    provider, store = both.open()
    both.fake.reply(text)
    assert (await ask(provider)).answer == 3
    assert outcomes(store) == ["ok"]


async def test_the_schema_sent_can_be_the_callers_own(both: Harness) -> None:
    provider, _ = both.open()
    custom: dict[str, Any] = {"type": "object", "title": "Answer", "additionalProperties": False,
                              "required": ["answer"], "properties": {"answer": {"type": "integer", "enum": [41, 42]}}}
    both.fake.reply({"answer": 42})
    assert (await ask(provider, json_schema=custom)).answer == 42
    [body] = both.fake.bodies()
    sent = body["tools"][0]["input_schema"] if both.path == ANTHROPIC_PATH else \
        body["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["answer"]["enum"] == [41, 42]


async def test_a_stored_pause_shows_in_status_and_doctor_until_the_configuration_changes(openai: Harness) -> None:
    settings = openai.fake.settings("openai", openai.data_dir)
    openai.fake.reply({"ok": True})
    with Store.open(settings) as store:
        store.set_engine_pause("the server at X rejects every request for m: HTTP 500: boom",
                               config_fingerprint(settings))
        status = llm_status(settings, store)
        assert "rejects every request" in str(status["problem"]) and status["engine_paused"] == status["problem"]
        result = await check_provider(settings, store)
        assert result.ok and result.paused and "the engine is paused" in result.line()
        other = settings.model_copy(update={"model": "another-model"})
        assert llm_status(other, store)["engine_paused"] is None  # another configuration: not in force
