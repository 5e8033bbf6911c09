"""Engine overhead per batch, excluding provider time, replaying a week of observations.

    .venv/bin/python bench/engine.py [--propositions 10000] [--batch 25] [--limit N] [--hybrid]

Replays `tests/fixtures/week.jsonl` (685 observations) through the inbox, in arrival order and
batches of `--batch`, against the loopback fake provider (tests/fake_provider.py: a real HTTP
server on 127.0.0.1 with zero added latency) whose scripted replies are plausible: the audit skips
private chats, propose writes one claim per topic (a project, file or app) in one of three
phrasings, so later batches hit exact repeats (reinforced without asking), paraphrases (relate
says identical) and variants (relate says similar, revise merges them).

Per batch it measures the wall time of `Engine.step()` (claim, audit, propose, gather, relate,
revise, one commit, hooks) minus the time spent inside `provider.complete()` (HTTP round trip,
validation and the provider's accounting writes): the engine's own overhead. Related
propositions come from `gum_mcp.retrieval.Retriever` in BM25-only mode (no vector index, so no
model download); the overhead therefore includes real FTS5 retrieval. Runs twice: on an empty
store, and with `--propositions` existing propositions seeded first. Token counts are the fake's
estimates (characters / 4 of the request and reply JSON).

With `--hybrid`, retrieval is what the server runs: BM25 + MiniLM vectors in a Chroma index under
the temp data dir (the seeded propositions are embedded first, which takes a minute or two at 10k),
and after each batch the index catches up with what the batch committed, as the owning process
does; that catch-up is reported separately (it runs beside the engine, not inside a batch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from seeding import seed_propositions, trace_rows  # noqa: E402

from gum_mcp.domain import NewObservation, Proposition  # noqa: E402
from gum_mcp.engine.loop import Engine  # noqa: E402
from gum_mcp.engine.pipeline import BatchOutcome  # noqa: E402
from gum_mcp.llm.factory import build_provider  # noqa: E402
from gum_mcp.retrieval import Retriever  # noqa: E402
from gum_mcp.store import Store  # noqa: E402
from tests.fake_provider import FakeLLMServer, Reply  # noqa: E402
from tests.test_engine import Request, parse_request  # noqa: E402

USER = "Priya"


# ------------------------------------------------------------------------------ plausible replies


def topic(content: str) -> str:
    """What an observation is about: a project directory, a file, a ticket, or the app."""
    path = re.search(r"~/(?:code|Documents)/([\w.-]+)", content)
    if path:
        return path.group(1)
    named = re.search(r"[\w-]+\.(?:xlsx|py|md|rs|docx)|#\d+|[A-Z]+-\d+|northwind/[\w-]+", content)
    if named:
        return named.group(0)
    app = content.split(" - ", 1)[0].strip()
    if app.startswith("The user"):
        return " ".join(content.split()[3:6]).strip(".,'")
    return app[:40]


def phrasing(key: str, variant: int) -> str:
    return (
        f"{USER} regularly works on {key}",
        f"{USER} spends much of the week on {key}",
        f"{USER} is currently focused on {key}, this week",
    )[variant]


def variant_of(text: str) -> tuple[str, int] | None:
    for number, (prefix, suffix) in enumerate(
        ((f"{USER} regularly works on ", ""), (f"{USER} spends much of the week on ", ""),
         (f"{USER} is currently focused on ", ", this week"))
    ):
        if text.startswith(prefix) and text.endswith(suffix):
            return text[len(prefix) : len(text) - len(suffix) or None], number
    return None


def stable(*parts: object) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


class PlausibleBrain:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, body: Any, path: str) -> Reply:
        request = parse_request(body, path)
        self.calls += 1
        value = getattr(self, request.schema)(request)
        return Reply(value=value, input_tokens=len(json.dumps(body)) // 4, output_tokens=len(json.dumps(value)) // 4)

    def AuditReply(self, r: Request) -> dict:
        return {"verdicts": [
            {"observation_id": o.id, "decision": "skip" if o.content.startswith("WhatsApp") else "allow",
             "reason": "a private chat" if o.content.startswith("WhatsApp") else "ordinary work"}
            for o in r.observations]}

    def ProposeReply(self, r: Request) -> dict:
        groups: dict[str, list[int]] = {}
        for o in r.observations:
            groups.setdefault(topic(o.content), []).append(o.id)
        drafts = []
        for key, ids in list(groups.items())[:8]:
            variant = stable(key, ids[0]) % 3
            drafts.append({"text": phrasing(key, variant), "reasoning": f"seen {len(ids)} times in {key}",
                           "confidence": 5 + len(ids) % 4, "decay": 6, "observation_ids": ids})
        return {"propositions": drafts}

    def RelateReply(self, r: Request) -> dict:
        props = {p.id: p for p in r.propositions}
        judgements = []
        for d in r.drafts:
            mine = variant_of(d.text)
            same = [c for c in d.candidates if c in props and mine and mine[0] in props[c].text]
            if not same or mine is None:
                judgements.append({"draft": d.n, "relation": "unrelated", "proposition_ids": [], "confidence": 5})
            elif mine[1] == 1:
                judgements.append({"draft": d.n, "relation": "identical", "proposition_ids": same[:1],
                                   "confidence": props[same[0]].confidence})
            else:
                judgements.append({"draft": d.n, "relation": "similar", "proposition_ids": same[:3],
                                   "confidence": 6})
        return {"judgements": judgements}

    def ReviseReply(self, r: Request) -> dict:
        outputs = []
        for cluster in r.clusters:
            mine = variant_of(cluster.drafts[0].text) if cluster.drafts else None
            key = mine[0] if mine else "their work"
            top = max([p.confidence for p in cluster.propositions] or [5])
            outputs.append({
                "text": phrasing(key, 0), "reasoning": f"merged {len(cluster.propositions)} claims about {key}",
                "confidence": min(10, top + 1), "decay": 7,
                "supersedes": [p.id for p in cluster.propositions], "drafts": [d.n for d in cluster.drafts],
                "observation_ids": [o.id for o in cluster.observations],
            })
        return {"propositions": outputs}


# --------------------------------------------------------------------------------------- running


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def replay(fake: FakeLLMServer, rows: list[dict], seeded: int, batch: int, hybrid: bool = False
                 ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = fake.settings("openai", Path(tmp) / "data", user_name=USER, batch_min=batch, batch_max=batch,
                                 batch_max_wait=0, llm_max_retries=0)
        store = Store.open(settings)
        provider = build_provider(settings, store)
        try:
            if seeded:
                seed_propositions(store, seeded, sorted({r["content"] for r in rows}), prefix=f"{USER} was seen at: ",
                                  age_seconds=86400 * 30)
            index = None
            if hybrid:
                from gum_mcp.index.vector_index import open_index

                index, reason = open_index(settings)
                if index is None:
                    raise SystemExit(f"--hybrid: {reason}")
                started = time.perf_counter()
                index.catch_up(store)
                print(f"  (embedded {seeded:,} seeded propositions in {time.perf_counter() - started:.0f} s)")
            retriever = Retriever(store, index, None if hybrid else "benchmark: BM25 only")
            catch_ups: list[float] = []
            related_seconds: list[float] = []

            async def related(text: str, k: int) -> list[Proposition]:
                started = time.perf_counter()
                try:
                    return await retriever.related(text, k)
                finally:
                    related_seconds.append(time.perf_counter() - started)

            outcomes: list[BatchOutcome] = []

            async def collect(outcome: BatchOutcome) -> None:
                outcomes.append(outcome)

            engine = Engine(store, provider, settings, related=related, failure_backoff=0, after_commit=[collect])
            overheads, related_per_batch, commits = [], [], []
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                store.add_observations([
                    NewObservation(content=r["content"], kind=r["kind"], source=r["source"],
                                   observed_at=datetime.fromisoformat(r["observed_at"]))
                    for r in chunk
                ])
                while True:
                    related_seconds.clear()
                    before = len(outcomes)
                    started = time.perf_counter()
                    if not await engine.step():
                        break
                    elapsed = time.perf_counter() - started
                    if len(outcomes) == before:
                        raise SystemExit(f"a batch failed: {engine.status().last_error}")
                    outcome = outcomes[-1]
                    overheads.append(elapsed - outcome.llm_seconds)
                    related_per_batch.append(sum(related_seconds))
                    commits.append(outcome.seconds)
                    if index is not None:
                        started = time.perf_counter()
                        index.catch_up(store)
                        catch_ups.append(time.perf_counter() - started)
            calls = store.llm_calls(limit=100_000)
            stats = store.stats()
            tokens = sum(c.input_tokens + c.output_tokens for c in calls)
            return {
                "seeded": seeded,
                "batches": len(overheads),
                "observations": len(rows),
                "overhead_ms": [x * 1000 for x in overheads],
                "related_ms": [x * 1000 for x in related_per_batch],
                "llm_calls": sum(o.llm_calls for o in outcomes),
                "http_requests": len(calls),
                "tokens": tokens,
                "stages": {s: sum(o.stages.count(s) for o in outcomes) for s in ("audit", "propose", "relate",
                                                                                 "revise")},
                "new": sum(len(o.new_ids) for o in outcomes),
                "reinforced": sum(len(o.result.reinforce) for o in outcomes),
                "skipped": sum(len(o.result.skipped) for o in outcomes),
                "current": stats.propositions_current - seeded,
                "retired": stats.propositions_retired,
                "llm_ms": [o.llm_seconds * 1000 for o in outcomes],
                "catch_up_ms": [x * 1000 for x in catch_ups],
                "retrieval": "hybrid (BM25 + MiniLM vectors)" if hybrid else "BM25 only",
            }
        finally:
            if index is not None:
                index.close()
            await provider.aclose()
            store.close()


def report(result: dict[str, Any]) -> None:
    over, rel = result["overhead_ms"], result["related_ms"]
    n = result["observations"]
    print(f"\n== {result['seeded']:,} existing propositions: {result['batches']} batches of up to "
          f"{result.get('batch', '?')} over {n} observations")
    print(f"engine overhead per batch (excl. provider): median {statistics.median(over):6.1f} ms   "
          f"p95 {percentile(over, 0.95):6.1f} ms   max {max(over):6.1f} ms")
    print(f"  of which retrieval (related, {result['retrieval']}): median {statistics.median(rel):6.1f} ms   "
          f"p95 {percentile(rel, 0.95):6.1f} ms")
    if result["catch_up_ms"]:
        print(f"index catch-up after each batch (beside the engine): median "
              f"{statistics.median(result['catch_up_ms']):6.1f} ms")
    print(f"provider time per batch (fake, loopback): median {statistics.median(result['llm_ms']):6.1f} ms")
    stages = ", ".join(f"{k} {v}" for k, v in result["stages"].items())
    print(f"LLM calls: {result['llm_calls']} ({stages}); {result['llm_calls'] / n:.3f} per observation,"
          f" {result['llm_calls'] / result['batches']:.2f} per batch")
    print(f"tokens (estimated): {result['tokens']:,} = {result['tokens'] / n:,.0f} per observation")
    print(f"outcome: {result['new']} new, {result['reinforced']} reinforced, {result['skipped']} skipped; "
          f"{result['current']} current beyond the seeded, {result['retired']} retired")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--propositions", type=int, default=10_000, help="seeded for the second run")
    parser.add_argument("--batch", type=int, default=25, help="GUM_BATCH_MIN = GUM_BATCH_MAX")
    parser.add_argument("--limit", type=int, default=0, help="replay only the first N observations")
    parser.add_argument("--hybrid", action="store_true", help="retrieve with the vector index as the server does")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rows = trace_rows()
    if args.limit:
        rows = rows[: args.limit]

    async def run() -> None:
        with FakeLLMServer() as fake:
            fake.default = PlausibleBrain()
            for seeded in (0, args.propositions):
                result = await replay(fake, rows, seeded, args.batch, args.hybrid)
                result["batch"] = args.batch
                report(result)

    anyio.run(run)
    print("\ngoal: median overhead < 50 ms per batch at 10,000 existing propositions")


if __name__ == "__main__":
    main()
