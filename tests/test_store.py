"""The store through its public interface: real SQLite in a temp dir."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from gum_mcp.domain import (
    BatchResult,
    InvalidInput,
    NewObservation,
    NewProposition,
    NotFound,
    PropositionDraft,
    Reinforcement,
)
from gum_mcp.store import StaleBatch, Store
from gum_mcp.store.schema import SCHEMA_VERSION
from tests.conftest import make_settings
from tests.sqlcipher_pages import readable_bytes

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def draft(text: str, confidence: int = 6, decay: int = 5) -> PropositionDraft:
    return PropositionDraft(text=text, reasoning=f"because of {text}", confidence=confidence, decay=decay)


def observe(store: Store, *contents: str, at: datetime = T0) -> list[int]:
    items = [
        NewObservation(content=c, kind="screen", source="screen", observed_at=at + timedelta(minutes=i))
        for i, c in enumerate(contents)
    ]
    return [obs.id for obs in store.add_observations(items)]


def propose(store: Store, text: str, evidence: list[int], **kw) -> int:
    new = NewProposition(draft=draft(text, **kw), evidence=tuple(evidence))
    [pid] = store.complete_batch(BatchResult(observation_ids=tuple(evidence), new=(new,)))
    return pid


def test_fresh_store_is_migrated_and_empty(store: Store) -> None:
    stats = store.stats()
    assert stats.schema_version == SCHEMA_VERSION
    assert stats.observations == {"pending": 0, "processed": 0, "skipped": 0, "failed": 0}
    assert stats.propositions_current == 0
    assert store.current_propositions().items == ()


def test_reopening_keeps_data_and_does_not_migrate_twice(settings) -> None:
    with Store.open(settings) as first:
        observe(first, "Priya opens Budget-Q4.xlsx")
    with Store.open(settings) as second:
        assert second.stats().observations["pending"] == 1
        assert second.stats().schema_version == SCHEMA_VERSION


def test_observation_round_trip(store: Store) -> None:
    [oid] = observe(store, "Excel - Budget-Q4.xlsx, sheet 'Forecast'")
    obs = store.get_observation(oid)
    assert obs.content == "Excel - Budget-Q4.xlsx, sheet 'Forecast'"
    assert (obs.kind, obs.source, obs.status, obs.attempts) == ("screen", "screen", "pending", 0)
    assert obs.observed_at == T0
    assert [o.id for o in store.claim_batch(10)] == [oid]


def test_secrets_are_redacted_before_they_are_stored(store: Store) -> None:
    secret = "sk-ant-api03-" + "A1b2C3d4" * 6
    [oid] = observe(store, f"terminal: export ANTHROPIC_API_KEY={secret}")
    obs = store.get_observation(oid)
    assert secret not in obs.content
    assert "[REDACTED" in obs.content
    assert obs.redactions >= 1
    raw = readable_bytes(store.settings.data_dir)  # the files' bytes; every page decrypted when encrypted
    assert secret.encode() not in raw


def test_batch_creates_propositions_with_evidence_and_marks_observations(store: Store) -> None:
    a, b, c = observe(store, "PR #412 review", "test_s3.py edited", "Porto marathon page")
    [pid] = store.complete_batch(
        BatchResult(
            observation_ids=(a, b, c),
            skipped={c: "audit: health information"},
            new=(NewProposition(draft=draft("Priya maintains the ETL S3 loader", 7, 6), evidence=(a, b)),),
        )
    )
    detail = store.proposition_detail(pid)
    assert detail.proposition.text == "Priya maintains the ETL S3 loader"
    assert detail.proposition.support_count == 2
    assert {o.id for o in detail.evidence} == {a, b}
    assert detail.proposition.last_supported_at == T0 + timedelta(minutes=1)
    statuses = {o.id: (o.status, o.last_error) for o in store.observations(limit=10)}
    assert statuses == {a: ("processed", None), b: ("processed", None), c: ("skipped", "audit: health information")}
    assert store.claim_batch(10) == []


def test_evidence_outside_the_batch_is_ignored(store: Store) -> None:
    [a] = observe(store, "inside the batch")
    [outside] = observe(store, "another pending one")
    pid = store.complete_batch(
        BatchResult(observation_ids=(a,), new=(NewProposition(draft=draft("x"), evidence=(a, outside, 9999)),))
    )[0]
    assert store.evidence_ids(pid) == [a]
    assert store.get_observation(outside).status == "pending"


def test_revision_supersedes_with_lineage_and_carries_evidence(store: Store) -> None:
    [a] = observe(store, "Budget-Q4.xlsx open")
    old = propose(store, "Priya works on the Q4 budget", [a])
    [b] = observe(store, "mail to Jordan: budget due Friday", at=T0 + timedelta(days=1))
    [new] = store.complete_batch(
        BatchResult(
            observation_ids=(b,),
            new=(NewProposition(draft=draft("Priya prepares the Q4 budget for Jordan, due Friday", 8, 3),
                                evidence=(b,), supersedes=(old,), cause="merged", note="same task"),),
        ),
        at=T0 + timedelta(days=1, hours=1),
    )
    retired = store.get_proposition(old)
    assert retired.retired_cause == "merged" and retired.text == "Priya works on the Q4 budget"
    assert store.successors(old) == [new]
    detail = store.proposition_detail(new)
    assert [p.id for p in detail.history] == [old]
    assert detail.parents[0].cause == "merged" and detail.parents[0].note == "same task"
    assert set(store.evidence_ids(new)) == {a, b}
    assert [p.id for p in store.current_propositions().items] == [new]


def test_as_of_shows_what_was_believed_then(store: Store) -> None:
    [a] = observe(store, "first")
    [old] = store.complete_batch(
        BatchResult(observation_ids=(a,), new=(NewProposition(draft=draft("old belief"), evidence=(a,)),)),
        at=T0 + timedelta(hours=1),
    )
    [b] = observe(store, "second", at=T0 + timedelta(days=2))
    [new] = store.complete_batch(
        BatchResult(observation_ids=(b,), new=(NewProposition(draft=draft("new belief"), evidence=(b,),
                                                                supersedes=(old,), cause="revised"),)),
        at=T0 + timedelta(days=2, hours=1),
    )
    assert [p.id for p in store.as_of(T0)] == []
    assert [p.id for p in store.as_of(T0 + timedelta(days=1))] == [old]
    assert [p.id for p in store.as_of(T0 + timedelta(days=3))] == [new]


def test_reinforcement_updates_bookkeeping_in_place(store: Store) -> None:
    [a] = observe(store, "PR #412 review")
    pid = propose(store, "Priya reviews ETL pull requests", [a])
    [b] = observe(store, "PR #412 review again", at=T0 + timedelta(hours=3))
    again = Reinforcement(proposition_id=pid, evidence=(b,))
    ids = store.complete_batch(BatchResult(observation_ids=(b,), reinforce=(again,)))
    assert ids == []
    prop = store.get_proposition(pid)
    assert prop.current and prop.support_count == 2
    assert prop.last_supported_at == T0 + timedelta(hours=3)
    assert store.stats().propositions_current == 1


def test_stale_batch_changes_nothing(store: Store) -> None:
    [a] = observe(store, "x")
    pid = propose(store, "claim", [a])
    store.give_feedback(pid, "reject")
    [b] = observe(store, "y")
    with pytest.raises(StaleBatch):
        again = Reinforcement(proposition_id=pid, evidence=(b,))
        store.complete_batch(BatchResult(observation_ids=(b,), reinforce=(again,)))
    assert store.get_observation(b).status == "pending"


def test_proposition_content_is_immutable_in_the_database(store: Store) -> None:
    [a] = observe(store, "x")
    pid = propose(store, "claim", [a])
    conn = sqlite3.connect(store.settings.db_path)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE propositions SET confidence = 9 WHERE id = ?", (pid,))
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        conn.execute("UPDATE propositions SET text = 'edited' WHERE id = ?", (pid,))
    conn.close()


def test_pages_by_recency_and_confidence_with_cursor(store: Store) -> None:
    ids = []
    for i in range(7):
        [oid] = observe(store, f"obs {i}", at=T0 + timedelta(hours=i))
        ids.append(propose(store, f"claim {i}", [oid], confidence=(i % 3) + 1))
    first = store.current_propositions(limit=3)
    assert [p.id for p in first.items] == ids[::-1][:3]
    second = store.current_propositions(limit=3, cursor=first.next_cursor)
    third = store.current_propositions(limit=3, cursor=second.next_cursor)
    seen = [p.id for page in (first, second, third) for p in page.items]
    assert seen == ids[::-1] and third.next_cursor is None
    by_conf = store.current_propositions(limit=10, order="confidence")
    assert [p.confidence for p in by_conf.items] == sorted((p.confidence for p in by_conf.items), reverse=True)
    assert all(p.confidence >= 3 for p in store.current_propositions(min_confidence=3).items)
    with pytest.raises(InvalidInput, match="cursor"):
        store.current_propositions(cursor="not-a-cursor")
    with pytest.raises(InvalidInput, match="cursor"):
        store.current_propositions(order="confidence", cursor=first.next_cursor)


def test_feedback_confirm_reject_correct(store: Store) -> None:
    a, b, c = observe(store, "one", "two", "three")
    p1, p2, p3 = (propose(store, f"claim {n}", [o], confidence=5) for n, o in ((1, a), (2, b), (3, c)))
    confirmed = store.give_feedback(p1, "confirm")
    assert confirmed.confidence == 10 and confirmed.user_confirmed and confirmed.text == "claim 1"
    assert store.successors(p1) == [confirmed.id]
    assert store.evidence_ids(confirmed.id) == [a]
    assert store.give_feedback(p2, "reject", note="not true") is None
    assert store.get_proposition(p2).retired_cause == "feedback"
    assert store.rejected_texts() == ["claim 2"]
    corrected = store.give_feedback(p3, "correct", correction="claim 3, but on Fridays")
    assert corrected.text == "claim 3, but on Fridays" and corrected.user_confirmed
    with pytest.raises(InvalidInput, match=f"current successors are {confirmed.id}"):
        store.give_feedback(p1, "reject")
    with pytest.raises(InvalidInput, match="no current successor"):
        store.give_feedback(p2, "confirm")
    with pytest.raises(InvalidInput, match="correction"):
        store.give_feedback(corrected.id, "correct")
    with pytest.raises(NotFound):
        store.give_feedback(9999, "confirm")
    assert [f.verdict for f in store.proposition_detail(p1).feedback] == ["confirm"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty"), ("   \n ", "empty"), ("x" * 20_001, "GUM_MAX_OBSERVATION_CHARS")],
)
def test_bad_observations_are_refused_and_change_nothing(store: Store, content: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        store.add_observation(content)
    assert store.stats().observations["pending"] == 0


def test_a_batch_with_one_bad_item_stores_nothing(settings) -> None:
    small = make_settings(settings.data_dir, max_observation_chars=100)
    with Store.open(small) as store:
        with pytest.raises(InvalidInput, match="observation 2: content is 101 characters"):
            store.add_observations([NewObservation(content="ok"), NewObservation(content="y" * 101)])
        assert store.stats().observations["pending"] == 0


@pytest.mark.parametrize("confidence", [0, 11, -3])
def test_confidence_outside_1_to_10_is_refused(confidence: int) -> None:
    with pytest.raises(ValueError, match="confidence"):
        PropositionDraft(text="x", confidence=confidence, decay=5)


def test_unknown_ids_are_not_found(store: Store) -> None:
    for call in (lambda: store.get_proposition(42), lambda: store.proposition_detail(42),
                 lambda: store.get_observation(42), lambda: store.forget_proposition(42)):
        with pytest.raises(NotFound, match="42"):
            call()


def test_fail_batch_counts_attempts_then_fails_and_retry_requeues(store: Store) -> None:
    ids = observe(store, "a", "b")
    for attempt in range(1, 3):
        assert store.fail_batch(ids, f"provider down ({attempt})", max_attempts=3) == 0
    assert all(o.attempts == 2 and o.status == "pending" for o in store.claim_batch(10))
    assert store.fail_batch(ids, "provider down (3)", max_attempts=3) == 2
    stats = store.stats()
    assert stats.observations["failed"] == 2 and stats.failed[0].last_error == "provider down (3)"
    assert store.claim_batch(10) == []
    assert store.retry_failed() == 2
    assert [o.attempts for o in store.claim_batch(10)] == [0, 0]


def test_llm_accounting_rows(store: Store) -> None:
    from gum_mcp.domain import LLMCall

    store.record_llm_call(LLMCall(stage="propose", provider="openai", model="m", input_tokens=100, output_tokens=20))
    store.record_llm_call(LLMCall(stage="audit", provider="openai", model="m", outcome="error", error="500"))
    calls = store.llm_calls()
    assert [(c.stage, c.outcome) for c in calls] == [("propose", "ok"), ("audit", "error")]
    assert store.tokens_used_since(datetime.now(UTC) - timedelta(hours=1)) == 120
    assert store.stats().tokens_today == 120


def test_export_has_every_record(store: Store, tmp_path) -> None:
    import io
    import json

    [a] = observe(store, "x")
    pid = propose(store, "claim", [a])
    store.give_feedback(pid, "confirm")
    out = io.StringIO()
    count = store.export_jsonl(out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == count
    kinds = {r["type"] for r in records}
    assert kinds == {"observation", "proposition", "lineage", "evidence", "feedback"}
    assert any(r["type"] == "proposition" and r["text"] == "claim" for r in records)
    assert records[0]["observed_at"].startswith("2026-11-16T09:00:00")


def test_prune_drops_old_content_but_not_pending(store: Store) -> None:
    old, pending = observe(store, "old screen text", "old but pending", at=T0 - timedelta(days=60))
    pid = propose(store, "claim", [old])
    [recent] = observe(store, "recent text", at=T0)
    store.complete_batch(BatchResult(observation_ids=(recent,)))
    assert store.prune(30, now=T0) == 1
    assert store.get_observation(old).content is None
    assert store.get_observation(pending).content == "old but pending"
    assert store.get_observation(recent).content == "recent text"
    prop = store.get_proposition(pid)
    assert prop.evidence_pruned and prop.text == "claim"
    assert store.prune(0, now=T0) == 0


def test_async_proxy_runs_store_methods_in_worker_threads(store: Store) -> None:
    import threading

    import anyio

    seen: list[int] = []
    store.after_forget_hooks.append(lambda report: seen.append(threading.get_ident()))

    async def main() -> int:
        obs = await store.aio.add_observation("from async code")
        await store.aio.forget_observations([obs.id])
        await store.aio.add_observation("another")
        return (await store.aio.stats()).observations["pending"]

    assert anyio.run(main) == 1
    assert seen and seen[0] != threading.get_ident()  # the forget ran off the event loop's thread
