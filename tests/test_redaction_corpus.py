"""Redaction measured on the labelled corpus (tests/fixtures/redaction_corpus.jsonl, scored by bench/redaction.py),
and the secrets the issue found stored and sent to the model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from gum_mcp.config import load_settings
from gum_mcp.store.redaction import Redactor
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location("bench_redaction", REPO / "bench" / "redaction.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_redaction"] = bench
_spec.loader.exec_module(bench)

ITEMS = bench.load(bench.CORPUS)


def test_the_corpus_is_big_enough_and_split_in_two() -> None:
    secrets = [(i, s) for i in ITEMS if i.label == "secret" for s in i.spans]
    near = [i for i in ITEMS if i.label == "near_miss"]
    assert len(secrets) >= 200 and len(near) >= 200
    classes = {s[2] for _, s in secrets}
    assert classes >= {"api_key", "cloud_credential", "private_key", "jwt", "password", "card_number", "iban",
                       "national_id", "email", "phone"}
    for split in bench.SPLITS:  # every class is in both halves
        assert {s[2] for i, s in secrets if i.split == split} == classes
    for item in ITEMS:  # spans point at text
        assert all(0 <= start < end <= len(item.text) for start, end, _ in item.spans), item.id


def test_held_out_half_meets_the_goals() -> None:
    recall, false_pos, _ = bench.score(ITEMS, Redactor())
    problems = bench.goal_problems(recall, false_pos, "held-out")
    assert not problems, "\n".join(bench.table(recall, false_pos))


def test_tuning_half_is_all_caught() -> None:
    recall, false_pos, _ = bench.score(ITEMS, Redactor())
    assert bench.overall(recall, "tuning").rate == 1.0
    assert bench.overall(false_pos, "tuning").rate == 1.0


def test_the_alignment_counts_a_partly_redacted_secret_as_missed() -> None:
    text = "password=Tr0ub4dor&3xyzzy"
    regions = bench.replaced_regions(text, "password=[REDACTED:password]&3xyzzy")
    assert regions == [(9, 18)]
    assert bench.longest_surviving_run(9, len(text), regions) == 7


# The secrets the issue recorded as observations and found stored and sent to the LLM (fakes: built from
# harmless pieces so secret scanners stay quiet).
AWS_SECRET = "".join(["wJalrXUtnFEMI", "/K7MDENG/bPxRfiCY", "7QzLp2Wk9mNx"])
ISSUE_CASES = [
    (f"Slack from Sam: the backup user's secret key is {AWS_SECRET} (id in 1Password)", AWS_SECRET),
    (f"aws creds {AWS_SECRET}", AWS_SECRET),
    ("Paid with 4111.1111.1111.1111 at the hotel", "4111.1111.1111.1111"),
    ("the wifi: password hunter2", "hunter2"),
    ("my password is Sunflower-42 so do not lose it", "Sunflower-42"),
    ("Send it to jordan.lee@northwind.io please", "jordan.lee@northwind.io"),
    ("password=Tr0ub4dor&3xyzzy", "&3xyzzy"),
]


@pytest.mark.parametrize(("text", "secret"), ISSUE_CASES)
def test_the_secrets_the_issue_found_are_redacted(text: str, secret: str) -> None:
    assert secret not in Redactor().redact(text).text


def test_contacts_are_a_setting(tmp_path: Path) -> None:
    text = "Call +44 20 7946 0958 or mail alice@example.com"
    assert load_settings(env={}, cwd=tmp_path).redact_contacts is True
    off = load_settings(env={"GUM_REDACT_CONTACTS": "false"}, cwd=tmp_path)
    assert Redactor(off.redact_patterns, contacts=off.redact_contacts).redact(text).text == text
    assert Redactor().redact(text).text == "Call [REDACTED:phone] or mail [REDACTED:email]"
    # secrets are redacted either way
    assert "hunter2" not in Redactor(contacts=False).redact("password hunter2").text
