"""A forget wins every race with the engine, and partial forgets are re-derived with their cause.

The engine decides a batch from observations (and shows it existing propositions) long before it
commits, while its LLM calls are in flight. A forget can land in between. `check_batch` runs inside
the commit's transaction (`Propositions.complete_batch`), so it sees every forget committed before
it and none can land after it: if an observation of the batch was deleted, or a proposition the
prompts showed was forgotten (its text scrubbed), it raises `BatchForgotten` and nothing is written.
The engine then decides again from what is still pending, counting no attempt. A batch is never
committed with its evidence stripped.

A proposition that lost part of its evidence to a forget is scrubbed and retired (cause forgotten)
by the forget; its remaining evidence is queued again and recorded in `rederive`. `link_rederived`
(also inside the commit) gives each new proposition drawn from such an observation a lineage edge
from the scrubbed one, cause "forgotten", and clears the queue entries of the batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

REDERIVED_NOTE = "re-derived from the evidence left after part of it was forgotten"


class BatchForgotten(RuntimeError):
    """Something the batch was decided from was forgotten while it was in flight: decide it again
    from what remains (no attempt counted)."""


def check_batch(conn: sqlite3.Connection, observation_ids: Sequence[int], live: Collection[int],
                context: Sequence[int]) -> None:
    """Raise BatchForgotten when an observation of the batch is gone or a proposition its prompts
    showed was forgotten. Call inside the batch's write transaction."""
    gone = [oid for oid in observation_ids if oid not in live]
    if gone:
        raise BatchForgotten(f"{len(gone)} observation(s) of the batch were forgotten while it was decided")
    shown = sorted(set(context))
    for start in range(0, len(shown), 500):
        chunk = shown[start : start + 500]
        marks = ",".join("?" * len(chunk))
        forgotten = conn.execute(
            f"SELECT count(*) FROM propositions WHERE id IN ({marks}) AND text IS NULL", chunk
        ).fetchone()[0]
        if forgotten:
            raise BatchForgotten("a proposition the batch was shown was forgotten while it was decided")


def link_rederived(conn: sqlite3.Connection, created: Sequence[tuple[int, Sequence[int]]],
                   observation_ids: Sequence[int], when: float) -> None:
    """Lineage from each scrubbed proposition queued for re-derivation to the new propositions drawn
    from its remaining evidence (`created`: new id and its evidence), then clear the queue entries of
    the batch's observations."""
    ids = list(observation_ids)
    if not ids:
        return
    for child, evidence in created:
        if not evidence:
            continue
        marks = ",".join("?" * len(evidence))
        conn.execute(
            "INSERT OR IGNORE INTO lineage (parent_id, child_id, cause, note, at)"
            f" SELECT DISTINCT proposition_id, ?, 'forgotten', ?, ? FROM rederive WHERE observation_id IN ({marks})"
            " AND proposition_id != ?",
            (child, REDERIVED_NOTE, when, *evidence, child),
        )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        conn.execute(f"DELETE FROM rederive WHERE observation_id IN ({','.join('?' * len(chunk))})", chunk)
