"""What the disclosure policy needs from the store: the classes of propositions and observations, the
propositions still to tag, and the tags themselves.

- A proposition's class is its `sensitivity` column (migration 8): NULL until tagged.
- An observation carries the classes of what was inferred from it: every proposition (current or retired)
  whose evidence it is. A processed observation from which nothing was inferred carries `other`; one not
  yet processed (pending, failed, or skipped by the privacy audit) carries nothing known (`UNPROCESSED`),
  and a policy shows it only to clients allowed every class (gum_mcp/server/disclosure.py).
- The tagging job (gum_mcp/engine/tagging.py) reads `untagged_propositions`, oldest first with the classes
  of what each superseded, and writes `tag_propositions`, which never overwrites a class.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from gum_mcp.domain import SENSITIVITY_ORDER
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import placeholders

#: The classes of an observation not processed yet (or gone): nothing is known about it.
UNPROCESSED = None
#: What a processed observation from which nothing was inferred carries.
NOTHING_INFERRED = "other"

ObservationClasses = frozenset[str | None] | None  # None inside the set: an untagged proposition

_CHUNK = 500


@dataclass(frozen=True)
class Parent:
    id: int
    sensitivity: str | None
    forgotten: bool  # its text is gone: it will never be tagged, and says nothing any more


@dataclass(frozen=True)
class Untagged:
    """A proposition to tag, with what it superseded (lineage)."""

    id: int
    text: str
    parents: tuple[Parent, ...] = ()


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[start:start + _CHUNK] for start in range(0, len(ids), _CHUNK)]


class Sensitivities:
    db: Database

    def observation_classes(self, observation_ids: Collection[int]) -> dict[int, ObservationClasses]:
        """For each id that exists: the classes of the propositions inferred from it (see the module
        docstring); UNPROCESSED for one not processed. Ids that do not exist are left out."""
        ids = sorted(set(observation_ids))
        found: dict[int, ObservationClasses] = {}
        if not ids:
            return found
        with self.db.read() as conn:
            for chunk in _chunks(ids):
                marks = placeholders(chunk)
                statuses = conn.execute(f"SELECT id, status FROM observations WHERE id IN ({marks})", chunk).fetchall()
                found.update((oid, UNPROCESSED) for oid, _ in statuses)
                classes: dict[int, set[str | None]] = {oid: set() for oid, status in statuses if status == "processed"}
                for oid, sensitivity in conn.execute(
                        "SELECT e.observation_id, p.sensitivity FROM evidence e JOIN propositions p"
                        f" ON p.id = e.proposition_id WHERE e.observation_id IN ({marks})", chunk):
                    if oid in classes:
                        classes[oid].add(sensitivity)
                for oid, inferred in classes.items():
                    found[oid] = frozenset(inferred or {NOTHING_INFERRED})
        return found

    def proposition_classes(self, proposition_ids: Collection[int]) -> dict[int, str | None]:
        """The class of each existing proposition (None: untagged)."""
        ids = sorted(set(proposition_ids))
        found: dict[int, str | None] = {}
        with self.db.read() as conn:
            for chunk in _chunks(ids):
                found.update(conn.execute(
                    f"SELECT id, sensitivity FROM propositions WHERE id IN ({placeholders(chunk)})", chunk).fetchall())
        return found

    def suggestion_sources(self, suggestion_ids: Collection[int]) -> dict[int, tuple[int, ...]]:
        """The observations each suggestion was drawn from."""
        ids = sorted(set(suggestion_ids))
        found: dict[int, list[int]] = {sid: [] for sid in ids}
        with self.db.read() as conn:
            for chunk in _chunks(ids):
                for sid, oid in conn.execute(
                        "SELECT suggestion_id, observation_id FROM suggestion_sources"
                        f" WHERE suggestion_id IN ({placeholders(chunk)})", chunk):
                    found[sid].append(oid)
        return {sid: tuple(sorted(oids)) for sid, oids in found.items()}

    def current_outside(self, classes: Collection[str], *, min_confidence: int | None = None) -> int:
        """How many current propositions are not of `classes` (untagged ones included)."""
        allowed = sorted(classes)
        clause = f"coalesce(sensitivity IN ({placeholders(allowed)}), 0) = 0" if allowed else "1"
        params: list[object] = list(allowed)
        if min_confidence is not None:
            clause += " AND confidence >= ?"
            params.append(min_confidence)
        with self.db.read() as conn:
            return int(conn.execute(
                f"SELECT count(*) FROM propositions WHERE retired_at IS NULL AND text IS NOT NULL AND {clause}",
                params).fetchone()[0])

    def sensitivity_counts(self) -> dict[str, int]:
        """Current propositions per class, most sensitive first, and `untagged` (all propositions with text
        still to tag, retired ones too: their history is shown)."""
        with self.db.read() as conn:
            rows = dict(conn.execute(
                "SELECT sensitivity, count(*) FROM propositions WHERE retired_at IS NULL AND text IS NOT NULL"
                " AND sensitivity IS NOT NULL GROUP BY sensitivity").fetchall())
            untagged = conn.execute(
                "SELECT count(*) FROM propositions WHERE sensitivity IS NULL AND text IS NOT NULL").fetchone()[0]
        counts = {name: int(rows[name]) for name in SENSITIVITY_ORDER if rows.get(name)}
        counts["untagged"] = int(untagged)
        return counts

    def untagged_count(self) -> int:
        """Propositions with text still to tag (retired ones too)."""
        with self.db.read() as conn:
            return int(conn.execute(
                "SELECT count(*) FROM propositions WHERE sensitivity IS NULL AND text IS NOT NULL").fetchone()[0])

    def untagged_propositions(self, *, limit: int, exclude: Collection[int] = ()) -> list[Untagged]:
        """Up to `limit` propositions still to tag (with text), oldest first, with what each superseded."""
        skip = sorted(set(exclude))
        clause = f" AND id NOT IN ({placeholders(skip)})" if skip else ""
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT id, text FROM propositions WHERE sensitivity IS NULL AND text IS NOT NULL{clause}"
                " ORDER BY id LIMIT ?", (*skip, limit)).fetchall()
            ids = [row[0] for row in rows]
            parents: dict[int, list[Parent]] = {pid: [] for pid in ids}
            if ids:
                for child, parent, sensitivity, forgotten in conn.execute(
                        "SELECT l.child_id, p.id, p.sensitivity, p.text IS NULL FROM lineage l JOIN propositions p"
                        f" ON p.id = l.parent_id WHERE l.child_id IN ({placeholders(ids)}) ORDER BY p.id", ids):
                    parents[child].append(Parent(parent, sensitivity, bool(forgotten)))
        return [Untagged(row[0], row[1], tuple(parents[row[0]])) for row in rows]

    def tag_propositions(self, tags: Mapping[int, str]) -> int:
        """Set the class of untagged propositions (a class once set is never overwritten); how many were set."""
        unknown = {value for value in tags.values() if value not in SENSITIVITY_ORDER}
        if unknown:
            raise ValueError(f"not a sensitivity class: {sorted(unknown)}")
        with self.db.write() as conn:
            return sum(conn.execute("UPDATE propositions SET sensitivity = ? WHERE id = ? AND sensitivity IS NULL",
                                    (value, pid)).rowcount for pid, value in sorted(tags.items()))
