"""A real loopback HTTP server that speaks the OpenAI and Anthropic wire formats, for tests.

It listens on 127.0.0.1 on a random port in a background thread and answers
`POST /v1/chat/completions` (OpenAI) and `POST /v1/messages` (Anthropic) with scripted replies,
including `usage` token counts, so the real `openai` and `anthropic` SDK clients talk to it.

Script it per request, first in first out:

    fake.reply({"answer": 42})            # structured reply: the JSON the model "returns"
    fake.reply("not json at all")         # a str is sent raw as the model's text
    fake.fault("429", retry_after="0.2")  # or "500", "hang", "reset", "invalid_json", "schema_invalid", "ramble"

When the queue is empty, `fake.default(request_json, path)` decides (it may return the same kinds
of things, or a `Fault`); without a default the server answers HTTP 400 "no scripted reply" (not
retryable, so a test that forgot to script fails fast). Every request is recorded in
`fake.requests` (`Recorded(path, body, headers, at)`).

Modes of a server rather than of one request:

    fake.refuse("json_schema", status=500)  # answer every request in that structured-output method with
                                            # the error a server that cannot take it gives (500 or 400
                                            # variants, as real servers do); also "json_object", "tool"
    fake.always(Fault("500"))               # one error for every request, forever (before the script)

OpenAI-path requests are answered in the method they were asked in (`method_of`): content for
`json_schema` and `json_object`, a tool call for `tool`; `schema_name` and `schema_of` read the schema a
request carries whichever the method.

`fake.settings("openai" | "anthropic", data_dir, **overrides)` builds Settings that point at it,
with small timeouts and backoff so tests are fast.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel

from gum_mcp.config import Settings, load_settings

OPENAI_PATH = "/v1/chat/completions"
OPEN_POLICY = Path(__file__).resolve().parent / "fixtures" / "policy-open.toml"
ANTHROPIC_PATH = "/v1/messages"

FaultKind = Literal["429", "500", "hang", "reset", "invalid_json", "schema_invalid", "ramble"]
FAULTS: tuple[str, ...] = ("429", "500", "hang", "reset", "invalid_json", "schema_invalid", "ramble")

INVALID_JSON_TEXT = 'this is not JSON {"answer":'
#: What a rambling model writes (until the request's max_tokens cut it off).
RAMBLE = '{"propositions": [{"observation_ids": ["o1"], "reasoning": "' + "and then it went on " * 2000
CHARS_PER_FAKE_TOKEN = 4

#: What servers that cannot take a structured-output method answer (llama-cpp-python's own words for a 500).
REFUSALS = {
    ("json_schema", 500): "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should "
                          "be 'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]",
    ("json_schema", 400): "Invalid parameter: 'response_format' of type 'json_schema' is not supported.",
    ("json_object", 500): "response_format type 'json_object' is not supported",
    ("json_object", 400): "Invalid parameter: 'response_format' must be one of 'text'.",
    ("tool", 500): "tools are not supported by this server",
    ("tool", 400): "'tool_choice' is only allowed when 'tools' are specified and supported",
}


@dataclass(frozen=True)
class Fault:
    """A failure to inject for one request.

    - `429`: HTTP 429 with `Retry-After: retry_after` (None: no header).
    - `500`: HTTP `status` (default 500) with an error body (`body`: its message, or a dict sent as it is).
    - `hang`: read the request, then say nothing for `seconds` (or until the server stops).
    - `reset`: close the connection with a TCP reset and no response.
    - `invalid_json`: a 200 reply whose content is not JSON (Anthropic: a text block, no tool call).
    - `schema_invalid`: a 200 reply with valid JSON that does not match the request's schema
      (`body` overrides what is sent).
    - `ramble`: a 200 reply that runs until the request's max_tokens (4 characters a token) and is
      cut off there: `finish_reason: "length"` (Anthropic: `stop_reason: "max_tokens"`).
    """

    kind: FaultKind
    retry_after: str | None = "0"
    status: int | None = None
    seconds: float = 10.0
    body: Any = None

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {', '.join(FAULTS)}")


@dataclass(frozen=True)
class Reply:
    """A successful reply: `value` as the structured JSON, or `text` sent raw."""

    value: Any = None
    text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Recorded:
    path: str
    body: Any  # the parsed JSON body (None if it was not JSON)
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """The whole body as JSON text (for `in` assertions)."""
        return json.dumps(self.body)


Scripted = Reply | Fault
DefaultReply = Callable[[Any, str], Any]


def _as_item(value: Any) -> Scripted:
    if isinstance(value, Reply | Fault):
        return value
    if isinstance(value, str):
        return Reply(text=value)
    return Reply(value=value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


class FakeLLMServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Scripted] = deque()
        self._requests: list[Recorded] = []
        self._stop = threading.Event()
        self._tmp_dirs: list[Path] = []
        self.default: DefaultReply | None = None
        self.refusing: dict[str, Fault] = {}
        self.forever: Fault | None = None
        self.input_tokens = 11
        self.output_tokens = 7
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()

    # -- addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- scripting

    def reply(self, value: Any, *, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Queue one reply: a dict / list / pydantic model as structured JSON, or a str sent raw."""
        item = _as_item(value)
        if isinstance(item, Reply) and (input_tokens is not None or output_tokens is not None):
            item = Reply(item.value, item.text, input_tokens, output_tokens)
        self.enqueue(item)

    def fault(
        self,
        kind: FaultKind,
        *,
        retry_after: str | None = "0",
        status: int | None = None,
        seconds: float = 10.0,
        body: Any = None,
    ) -> None:
        """Queue one fault (see `Fault`)."""
        self.enqueue(Fault(kind, retry_after=retry_after, status=status, seconds=seconds, body=body))

    def refuse(self, method: str, *, status: int = 500, message: str | None = None) -> None:
        """Answer every OpenAI-path request in `method` ("json_schema", "json_object", "tool") with HTTP
        `status` and the error a server that cannot take it gives."""
        text = message or REFUSALS.get((method, status), f"{method} is not supported")
        self.refusing[method] = Fault("500", status=status, body=text)

    def always(self, fault: Fault | None) -> None:
        """Answer every request with `fault` (None: stop), before the script and the default."""
        self.forever = fault

    def enqueue(self, *items: Any) -> None:
        """Queue replies and faults in order (a str is a raw reply, a `Fault` a fault)."""
        with self._lock:
            self._script.extend(_as_item(item) for item in items)

    @property
    def pending(self) -> int:
        """How many scripted items have not been used yet."""
        with self._lock:
            return len(self._script)

    # -- what was received

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.body for r in self.requests if path is None or r.path == path]

    # -- settings pointing here

    def settings(self, provider: str = "openai", data_dir: Path | str | None = None, **overrides: Any) -> Settings:
        """Settings for `provider` against this server: no key (a local server needs none),
        timeout 0.5 s, 2 retries, backoff base 0.01 s and cap 0.5 s; the embedding model from GUM_MODELS_DIR
        (tests/conftest.py sets it to the repo's .models); `overrides` win."""
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="gum-fake-"))
            self._tmp_dirs.append(data_dir)
        values: dict[str, Any] = {
            "data_dir": Path(data_dir),
            "policy_file": OPEN_POLICY,  # every client sees every class, as with tests/conftest.py's make_settings
            "llm_provider": provider,
            "openai_base_url": self.openai_base_url,
            "anthropic_base_url": self.anthropic_base_url,
            "llm_timeout": 0.5,
            "llm_max_retries": 2,
            "llm_backoff_base": 0.01,
            "llm_backoff_max": 0.5,
        }
        if "GUM_MODELS_DIR" in os.environ:  # the embedding model, where make_settings finds it (never the user's)
            values["models_dir"] = Path(os.environ["GUM_MODELS_DIR"])
        values.update(overrides)
        return load_settings(env={}, cwd=Path(data_dir), **values)

    # -- lifecycle

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for path in self._tmp_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> FakeLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> None:
        with self._lock:
            self._requests.append(Recorded(path=path, body=body, headers=headers))

    def _next(self, body: Any, path: str) -> Scripted | None:
        with self._lock:
            if self.forever is not None:
                return self.forever
            refused = self.refusing.get(method_of(body, path))
            if refused is not None:
                return refused
            if self._script:
                return self._script.popleft()
            default = self.default
        if default is None:
            return None
        return _as_item(default(body, path))


# ---------------------------------------------------------------------------------- wire formats


def method_of(body: Any, path: str) -> str:
    """The structured-output method of a request: "json_schema", "json_object" or "tool" (Anthropic: "tool")."""
    if path != OPENAI_PATH or not isinstance(body, dict):
        return "tool"
    if body.get("tools"):
        return "tool"
    kind = (body.get("response_format") or {}).get("type")
    return kind if kind in ("json_schema", "json_object") else "text"


def schema_of(body: Any, path: str) -> dict[str, Any]:
    """The JSON schema a request asks its reply to match, whichever the method."""
    try:
        if path != OPENAI_PATH:
            return body["tools"][0]["input_schema"]
        method = method_of(body, path)
        if method == "tool":
            return body["tools"][0]["function"]["parameters"]
        if method == "json_object":
            return body["response_format"]["schema"]
        return body["response_format"]["json_schema"]["schema"]
    except (KeyError, IndexError, TypeError):
        return {}


def schema_name(body: Any, path: str) -> str:
    """The reply schema's name (e.g. "ProposeReply"), whichever the method."""
    if path != OPENAI_PATH:
        return _tool_name(body)
    method = method_of(body, path)
    if method == "tool":
        return body["tool_choice"]["function"]["name"]
    if method == "json_schema":
        return body["response_format"]["json_schema"]["name"]
    return str(schema_of(body, path).get("title", ""))


def _schema_invalid(body: Any, path: str) -> dict[str, Any]:
    """Valid JSON that cannot match the request's schema: every property a list of lists."""
    properties = schema_of(body, path).get("properties") or {}
    value: dict[str, Any] = {name: [[]] for name in properties}
    value["__fake_schema_invalid__"] = [[]]
    return value


def _tool_name(body: Any) -> str:
    try:
        return body["tool_choice"]["name"]
    except (KeyError, TypeError):
        try:
            return body["tools"][0]["name"]
        except (KeyError, IndexError, TypeError):
            return "reply"


def _openai_ok(body: Any, content: str, input_tokens: int, output_tokens: int,
               finish: str = "stop") -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if method_of(body, OPENAI_PATH) == "tool":
        name = body["tool_choice"]["function"]["name"]
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
            {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": content}}]}
        finish = "tool_calls" if finish == "stop" else finish
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": (body or {}).get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def _anthropic_ok(body: Any, value: Any, text: str | None, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    if text is not None:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        stop = "end_turn"
    else:
        content = [{"type": "tool_use", "id": "toolu_fake", "name": _tool_name(body), "input": value}]
        stop = "tool_use"
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": (body or {}).get("model", "fake"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def _error_body(path: str, status: int, message: str) -> dict[str, Any]:
    if path == ANTHROPIC_PATH:
        kind = {429: "rate_limit_error", 400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeLLMServer:
        return self.server.fake  # type: ignore[attr-defined]

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        path = urlsplit(self.path).path
        fake = self.fake
        fake._record(path, body, {key.lower(): value for key, value in self.headers.items()})
        if path not in (OPENAI_PATH, ANTHROPIC_PATH):
            self._send(404, _error_body(path, 404, f"fake provider: no route {path}"))
            return
        try:
            item = fake._next(body, path)
        except Exception as exc:  # a broken default callable: tell the test, don't hang it
            self._send(400, _error_body(path, 400, f"fake provider: default reply raised {exc!r}"))
            return
        if item is None:
            self._send(400, _error_body(path, 400, "fake provider: no scripted reply"))
            return
        if isinstance(item, Fault):
            self._fault(item, body, path)
            return
        input_tokens = fake.input_tokens if item.input_tokens is None else item.input_tokens
        output_tokens = fake.output_tokens if item.output_tokens is None else item.output_tokens
        self._ok(body, path, _jsonable(item.value), item.text, input_tokens, output_tokens)

    def _ok(self, body: Any, path: str, value: Any, text: str | None, input_tokens: int, output_tokens: int) -> None:
        if path == OPENAI_PATH:
            content = text if text is not None else json.dumps(value)
            self._send(200, _openai_ok(body, content, input_tokens, output_tokens))
        else:
            self._send(200, _anthropic_ok(body, value, text, input_tokens, output_tokens))

    def _ramble(self, body: Any, path: str) -> None:
        limit = int((body or {}).get("max_tokens") or (body or {}).get("max_completion_tokens") or 100_000)
        text = (RAMBLE * (1 + limit * CHARS_PER_FAKE_TOKEN // len(RAMBLE)))[: limit * CHARS_PER_FAKE_TOKEN]
        if path == OPENAI_PATH:
            self._send(200, _openai_ok(body, text, self.fake.input_tokens, limit, finish="length"))
            return
        payload = _anthropic_ok(body, None, text, self.fake.input_tokens, limit)
        payload["stop_reason"] = "max_tokens"
        self._send(200, payload)

    def _fault(self, fault: Fault, body: Any, path: str) -> None:
        fake = self.fake
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(429, _error_body(path, 429, "fake provider: rate limited"), headers)
        elif fault.kind == "500":
            status = fault.status or 500
            if isinstance(fault.body, dict):  # an error body in another server's own form, sent as it is
                self._send(status, fault.body)
                return
            message = fault.body if isinstance(fault.body, str) else "fake provider: internal error"
            self._send(status, _error_body(path, status, message))
        elif fault.kind == "hang":
            fake._stop.wait(fault.seconds)
            self.close_connection = True
        elif fault.kind == "reset":
            # SO_LINGER 0: close() sends a TCP RST, not a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        elif fault.kind == "invalid_json":
            self._ok(body, path, None, INVALID_JSON_TEXT, fake.input_tokens, fake.output_tokens)
        elif fault.kind == "ramble":
            self._ramble(body, path)
        else:  # schema_invalid
            value = fault.body if fault.body is not None else _schema_invalid(body, path)
            self._ok(body, path, value, None, fake.input_tokens, fake.output_tokens)


@pytest.fixture
def fake_provider() -> Iterator[FakeLLMServer]:
    """A running `FakeLLMServer`, shut down after the test."""
    server = FakeLLMServer()
    try:
        yield server
    finally:
        server.close()
