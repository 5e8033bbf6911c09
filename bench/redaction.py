"""Redaction measured on a labelled corpus: recall per secret class, false positives per near-miss class.

    .venv/bin/python bench/redaction.py [--corpus tests/fixtures/redaction_corpus.jsonl]
                                        [--show tuning] [--check] [--no-contacts]

The corpus (`tests/fixtures/redaction_corpus.jsonl`) is one JSON object a line:

    {"id": "s001", "split": "tuning" | "held-out", "label": "secret" | "near_miss", "class": "api_key",
     "text": "...", "spans": [[start, end], [start, end, "other_class"], ...]}

A secret item's spans are the exact secrets in `text` (character offsets; a third element names the
class of a span when it differs from the item's). A near-miss item is text that must come out of the
redactor unchanged; its spans only point at the tricky part. Every 6th character of a secret is
\\u-escaped in the file so that secret scanners do not flag it (none is a real credential);
`json.loads` gives back the exact text.

Scoring:
- a secret is caught when no run of 4 or more of its characters survives redaction (the redacted text
  is aligned with the original around the `[REDACTED:...]` tokens): `password=Tr0ub4dor&3xyzzy`
  redacted to `password=[REDACTED:password]&3xyzzy` is a miss;
- a near-miss is a false positive when the redactor changes its text at all.

The goals apply to the held-out half (the tuning half is what the redactor was improved on):
recall >= 0.98 overall and >= 0.90 for every class, false positives <= 2 %. `--check` exits 1 when the
held-out half misses a goal. `--show SPLIT` lists that split's misses and false positives (look only at
the tuning half while changing the redactor).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gum_mcp.store.redaction import Redactor

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "redaction_corpus.jsonl"
SPLITS = ("tuning", "held-out")
MAX_SURVIVING_RUN = 3  # a secret with 4 or more consecutive characters left is not redacted
GOAL_RECALL = 0.98
GOAL_CLASS_RECALL = 0.90
GOAL_FP_RATE = 0.02
_TOKEN = re.compile(r"\[REDACTED:[a-z_]+\]")


@dataclass
class Item:
    id: str
    split: str
    label: str
    cls: str
    text: str
    spans: list[tuple[int, int, str]]


@dataclass
class Tally:
    total: int = 0
    good: int = 0  # secrets caught / near-misses left alone
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.good / self.total if self.total else 1.0


def load(path: Path) -> list[Item]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if raw["split"] not in SPLITS or raw["label"] not in ("secret", "near_miss"):
            raise SystemExit(f"{path}:{number}: bad split or label")
        spans = [(s[0], s[1], s[2] if len(s) > 2 else raw["class"]) for s in raw["spans"]]
        items.append(Item(raw["id"], raw["split"], raw["label"], raw["class"], raw["text"], spans))
    return items


def replaced_regions(original: str, redacted: str) -> list[tuple[int, int]] | None:
    """The regions of `original` that became `[REDACTED:...]` tokens in `redacted`, or None when the
    redacted text cannot be aligned with the original (the redactor changed text outside its tokens)."""
    pieces = _TOKEN.split(redacted)
    if len(pieces) == 1:
        return [] if redacted == original else None
    pattern = "".join(
        re.escape(piece) + ("(.+?)" if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces)
    )
    match = re.fullmatch(pattern, original, re.DOTALL)
    if match is None:
        return None
    return [match.span(g) for g in range(1, len(pieces))]


def longest_surviving_run(start: int, end: int, regions: list[tuple[int, int]]) -> int:
    covered = [False] * (end - start)
    for r_start, r_end in regions:
        for i in range(max(start, r_start), min(end, r_end)):
            covered[i - start] = True
    longest = run = 0
    for gone in covered:
        run = 0 if gone else run + 1
        longest = max(longest, run)
    return longest


def score(items: list[Item], redactor: Redactor) -> tuple[dict, dict, float]:
    """(recall tallies by (split, class), near-miss tallies by (split, class), seconds spent redacting)."""
    recall: dict[tuple[str, str], Tally] = defaultdict(Tally)
    false_pos: dict[tuple[str, str], Tally] = defaultdict(Tally)
    seconds = 0.0
    for item in items:
        started = time.perf_counter()
        redacted = redactor.redact(item.text).text
        seconds += time.perf_counter() - started
        if item.label == "near_miss":
            tally = false_pos[(item.split, item.cls)]
            tally.total += 1
            if redacted == item.text:
                tally.good += 1
            else:
                tally.failures.append(f"{item.id} {item.cls}: {item.text!r}\n      -> {redacted!r}")
            continue
        regions = replaced_regions(item.text, redacted)
        for start, end, cls in item.spans:
            tally = recall[(item.split, cls)]
            tally.total += 1
            run = (end - start) if regions is None else longest_surviving_run(start, end, regions)
            if run <= MAX_SURVIVING_RUN:
                tally.good += 1
            else:
                tally.failures.append(
                    f"{item.id} {cls} {item.text[start:end]!r} in {item.text!r}\n      -> {redacted!r}")
    return recall, false_pos, seconds


def overall(tallies: dict, split: str) -> Tally:
    total = Tally()
    for (s, _cls), tally in tallies.items():
        if s == split:
            total.total += tally.total
            total.good += tally.good
    return total


def table(recall: dict, false_pos: dict) -> list[str]:
    def caught(t: Tally) -> str:
        return f"{t.rate:8.3f} ({t.good:3d}/{t.total:3d})"

    def changed(t: Tally) -> str:
        return f"{1 - t.rate:8.3f} ({t.total - t.good:3d}/{t.total:3d})"

    return [*section("recall (secrets caught / secrets)", recall, caught), "",
            *section("false positives (near-misses changed / near-misses)", false_pos, changed)]


def section(title: str, tallies: dict, cell) -> list[str]:
    """A title, a row per class and an overall row, a column per split."""
    def row(label: str, per_split) -> str:
        return f"  {label:20s}" + "".join(f"{cell(per_split(split)):>20s}" for split in SPLITS)

    lines = [title, f"{'':22s}" + "".join(f"{split:>20s}" for split in SPLITS)]
    for cls in sorted({c for _, c in tallies}):
        lines.append(row(cls, lambda split, cls=cls: tallies.get((split, cls), Tally())))
    lines.append(row("overall", lambda split: overall(tallies, split)))
    return lines


def goal_problems(recall: dict, false_pos: dict, split: str = "held-out") -> list[str]:
    problems = []
    total = overall(recall, split)
    if total.rate < GOAL_RECALL:
        problems.append(f"overall recall {total.rate:.3f} < {GOAL_RECALL}")
    for (s, cls), tally in sorted(recall.items()):
        if s == split and tally.rate < GOAL_CLASS_RECALL:
            problems.append(f"{cls} recall {tally.rate:.3f} < {GOAL_CLASS_RECALL}")
    fp = overall(false_pos, split)
    if 1 - fp.rate > GOAL_FP_RATE:
        problems.append(f"false-positive rate {1 - fp.rate:.3f} > {GOAL_FP_RATE}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--show", choices=SPLITS, help="list this split's misses and false positives")
    parser.add_argument("--check", action="store_true", help="exit 1 when the held-out half misses a goal")
    parser.add_argument("--no-contacts", action="store_true",
                        help="GUM_REDACT_CONTACTS=false (emails and phone numbers are then kept)")
    args = parser.parse_args(argv)
    items = load(args.corpus)
    redactor = Redactor(contacts=False) if args.no_contacts else Redactor()
    recall, false_pos, seconds = score(items, redactor)
    secrets = sum(len(i.spans) for i in items if i.label == "secret")
    near = sum(1 for i in items if i.label == "near_miss")
    print(f"{args.corpus.name}: {secrets} secrets, {near} near-misses; "
          f"{seconds * 1000 / max(len(items), 1):.2f} ms per item")
    print()
    print("\n".join(table(recall, false_pos)))
    if args.show:
        print()
        print(f"misses and false positives in the {args.show} half:")
        for tallies in (recall, false_pos):
            for (split, _cls), tally in sorted(tallies.items()):
                if split == args.show:
                    for failure in tally.failures:
                        print(f"  {failure}")
    problems = goal_problems(recall, false_pos)
    print()
    print("held-out goals: " + ("met" if not problems else "NOT met: " + "; ".join(problems)))
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
