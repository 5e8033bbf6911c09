"""decide_or_ask against the frozen choice points (tests/fixtures/decide_choices.json, issue 27).

Each choice point gets a fresh store: its observations are added (and its edits, through the same local diff
record_edit uses, `gum_mcp.engine.edits`), one engine batch runs over them (audit, propose, relate, revise:
`process_batch`, the real pipeline), and then the choice is put to the decide-or-ask rule
(`gum_mcp.engine.decide`), with the current instructions and preferences as decide_or_ask gathers them.

- Default: the loopback fake provider (tests/fake_provider.py) answers the engine: audit allows every
  observation, propose returns for each observation what the fixture says a careful model learns from it
  (`learns`: the contract), relate finds nothing related. Decisions are then made by the rule alone, with no
  LLM: the numbers are those of "an instruction or an exact preference applies".
- `--real`: the configured provider (GUM_LLM_PROVIDER and its key or base URL, from the environment) runs the
  engine's real prompts on the observations, and decide_or_ask may make its one bounded call.

Printed per split: choice points, decisions, decision precision (the right option when it decides), ask rate,
wrong-decision rate (a wrong option, or a decision where the right outcome was to ask, over all points),
missed (asked where an option was right), and decisions by source (instruction / preference / model).

    .venv/bin/python bench/decide.py --split held-out
    .venv/bin/python bench/decide.py --split tuning --show-wrong
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(1 + len([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]), str(REPO))
CHOICES = REPO / "tests" / "fixtures" / "decide_choices.json"

from gum_mcp.config import Settings, load_settings  # noqa: E402
from gum_mcp.domain import NewObservation  # noqa: E402
from gum_mcp.engine import decide, edits  # noqa: E402
from gum_mcp.engine.pipeline import process_batch  # noqa: E402
from gum_mcp.llm.factory import build_provider  # noqa: E402
from gum_mcp.retrieval import Retriever  # noqa: E402
from gum_mcp.store import Store  # noqa: E402
from tests.fake_provider import FakeLLMServer  # noqa: E402
from tests.test_engine import parse_request  # noqa: E402


def load(split: str) -> list[dict[str, Any]]:
    items = json.loads(CHOICES.read_text())["items"]
    return [item for item in items if split == "all" or item["split"] == split]


class Contract:
    """The fake provider's replies: what the fixture says a careful model learns from each observation."""

    def __init__(self) -> None:
        self.learns: dict[str, dict[str, Any]] = {}

    def teach(self, content: str, learns: dict[str, Any] | None) -> None:
        if learns:
            self.learns[" ".join(content.split())] = learns

    def __call__(self, body: Any, path: str) -> Any:
        request = parse_request(body, path)
        if request.schema == "AuditReply":
            return {"verdicts": [{"observation_id": f"o{o.id}", "reason": "about the person's choices",
                                  "decision": "allow"} for o in request.observations]}
        if request.schema == "ProposeReply":
            drafts = []
            for o in request.observations:
                learnt = self.learns.get(" ".join(o.content.split()))
                if learnt:
                    drafts.append({"observation_ids": [f"o{o.id}"], "reasoning": "as the observation shows",
                                   "text": learnt["text"], "confidence": learnt["confidence"],
                                   "decay": 8, "sensitivity": "personal", "kind": learnt["kind"],
                                   "applies_to": learnt["applies_to"]})
            return {"propositions": drafts}
        if request.schema == "RelateReply":
            return {"judgements": [{"draft": f"d{d.n}", "reasoning": "different", "relation": "unrelated",
                                    "proposition_ids": [], "confidence": 5} for d in request.drafts]}
        return {"propositions": []}


def settings_for(base: Settings | None, fake: FakeLLMServer | None, data_dir: Path, person: str) -> Settings:
    overrides: dict[str, Any] = {"user_name": person, "encrypt": False, "batch_max": 50, "embedding": "none"}
    if fake is not None:
        return fake.settings("openai", data_dir, llm_max_retries=0, llm_timeout=10, **overrides)
    assert base is not None
    return load_settings(env=dict(os.environ), cwd=data_dir, data_dir=data_dir,
                         **{k: v for k, v in base.model_dump().items() if k in ("llm_provider",)}, **overrides)


async def run_one(item: dict[str, Any], settings: Settings, contract: Contract | None, real: bool) -> decide.Outcome:
    with Store.open(settings) as store:
        rows = []
        for obs in item["observations"]:
            rows.append(NewObservation(content=obs["content"], kind=obs["kind"], source=obs["source"]))
            if contract is not None:
                contract.teach(obs["content"], obs["learns"])
        store.add_observations(rows)
        for edit in item["edits"]:
            report = edits.describe(edit["before"], edit["after"], edit["context"], edit["source"])
            store.add_observation(report.content, kind="agent", source=edit["source"])
            if contract is not None:
                contract.teach(report.content, edit["learns"])
        retriever = Retriever(store, None, "bench: keyword search only")
        async with build_provider(settings, store) as provider:
            batch = store.claim_batch(settings.batch_max)
            if batch:
                await process_batch(batch, store=store, provider=provider, related=retriever.related,
                                    settings=settings)
            known = []
            for kind in ("instruction", "preference"):
                known.extend(store.current_propositions(limit=500, order="confidence", kind=kind).items)
            text = " ".join([item["question"], item["context"], *item["options"]])
            related = [h.proposition for h in retriever.search(text, 10) if h.proposition is not None]
            return await decide.decide(item["question"], item["options"], item["context"], known,
                                       confidence=settings.decide_confidence, provider=provider if real else None,
                                       user=settings.user_name, related=related)


def report(name: str, items: list[dict[str, Any]], outcomes: list[decide.Outcome]) -> dict[str, Any]:
    decided = [(i, o) for i, o in zip(items, outcomes, strict=True) if o.outcome == "decide"]
    right = sum(1 for i, o in decided if o.option == i["expected"])
    n = len(items)
    numbers = {
        "split": name, "choice_points": n, "decisions": len(decided),
        "decision_precision": round(right / len(decided), 3) if decided else None,
        "ask_rate": round((n - len(decided)) / n, 3) if n else None,
        "wrong_decision_rate": round((len(decided) - right) / n, 3) if n else None,
        "missed": sum(1 for i, o in zip(items, outcomes, strict=True) if o.outcome == "ask" and i["expected"] != "ask"),
        "by": dict(Counter(o.by for _, o in decided)),
        "rule_only_precision": None,
    }
    rule_only = [(i, o) for i, o in decided if o.by in ("instruction", "preference")]
    if rule_only:
        numbers["rule_only_precision"] = round(sum(1 for i, o in rule_only if o.option == i["expected"])
                                               / len(rule_only), 3)
    return numbers


async def main_async(args: argparse.Namespace) -> int:
    items = load(args.split)
    fake = None if args.real else FakeLLMServer()
    contract = None if args.real else Contract()
    if fake is not None:
        fake.default = contract
    base = None
    if args.real:
        base = load_settings(env=dict(os.environ))
        if base.llm_provider in (None, "", "none"):
            print("--real: no LLM provider configured (GUM_LLM_PROVIDER)", file=sys.stderr)
            return 2
    started = time.perf_counter()
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="gum-decide-") as tmp:
            for item in items:
                settings = settings_for(base, fake, Path(tmp) / item["id"], item["person"])
                outcomes.append(await run_one(item, settings, contract, args.real))
    finally:
        if fake is not None:
            fake.close()
    splits = sorted({i["split"] for i in items}) if args.split == "all" else [args.split]
    for split in splits:
        chosen = [(i, o) for i, o in zip(items, outcomes, strict=True) if i["split"] == split]
        print(json.dumps(report(split, [i for i, _ in chosen], [o for _, o in chosen])))
    if args.show_wrong:
        for item, outcome in zip(items, outcomes, strict=True):
            got = outcome.option if outcome.outcome == "decide" else "ask"
            if got != item["expected"]:
                print(f"{item['id']} {item['split']} {item['category']}: expected {item['expected']!r}, got {got!r}"
                      f" ({outcome.why})")
    print(f"# {len(items)} choice points in {time.perf_counter() - started:.1f} s "
          f"({'real provider' if args.real else 'fake provider: decisions by the rule, no LLM'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["tuning", "held-out", "all"], default="tuning")
    parser.add_argument("--real", action="store_true", help="use the configured LLM provider")
    parser.add_argument("--show-wrong", action="store_true", help="list the choice points answered wrongly")
    return anyio.run(main_async, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
