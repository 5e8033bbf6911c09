"""Propositions as an append-only lineage: batches committed whole, pages, history, as-of."""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Literal

from gum_mcp.domain import (
    KIND_ORDER,
    BatchResult,
    Feedback,
    InvalidInput,
    LineageEdge,
    NotFound,
    Page,
    Proposition,
    PropositionDetail,
    from_ts,
    most_sensitive,
    to_ts,
    utcnow,
)
from gum_mcp.store.db import Database, crash_point
from gum_mcp.store.forget_guard import check_batch, link_rederived
from gum_mcp.store.inbox import OBSERVATION_COLUMNS, observation_from_row, placeholders

PROPOSITION_COLUMNS = (
    "id, text, reasoning, confidence, decay, created_at, last_supported_at, support_count,"
    " retired_at, retired_cause, user_confirmed, evidence_pruned, sensitivity, kind, applies_to"
)

Order = Literal["recent", "confidence"]


class StaleBatch(RuntimeError):
    """The batch was decided against propositions that changed meanwhile; decide it again."""


def proposition_from_row(row: sqlite3.Row) -> Proposition:
    return Proposition(
        id=row["id"],
        text=row["text"],
        reasoning=row["reasoning"],
        confidence=row["confidence"],
        decay=row["decay"],
        created_at=from_ts(row["created_at"]),
        last_supported_at=from_ts(row["last_supported_at"]),
        support_count=row["support_count"],
        retired_at=from_ts(row["retired_at"]),
        retired_cause=row["retired_cause"],
        user_confirmed=bool(row["user_confirmed"]),
        evidence_pruned=bool(row["evidence_pruned"]),
        sensitivity=row["sensitivity"],
        kind=row["kind"],
        applies_to=row["applies_to"],
    )


def _encode_cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[object]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != size or not all(map(_cursor_number, values)):
        raise InvalidInput("cursor: not a cursor returned by a previous page (or from another order)")
    return values


def _cursor_number(value: object) -> bool:
    """A value a cursor may hold: a number SQLite can compare (no bool, list, dict, nan or 64-bit overflow)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, float) and math.isfinite(value)


class Propositions:
    db: Database

    # -- writing
    def complete_batch(self, result: BatchResult, *, at: datetime | None = None) -> list[int]:
        """Apply one engine batch in one transaction; return the ids of the new propositions.

        `at` is when the beliefs were formed (default: now); a retired parent is never retired
        before it was created. If an observation of the batch, or a proposition its prompts showed
        (`result.context`), was forgotten meanwhile, BatchForgotten is raised and nothing changes
        (a forget wins every race); propositions that were retired meanwhile raise StaleBatch.
        """
        with self.db.write() as conn:
            crash_point("batch:begin")
            new_ids = apply_batch(conn, result, to_ts(at or utcnow()))
            crash_point("batch:before_commit")
        crash_point("batch:after_commit")
        return new_ids

    # -- reading
    def get_proposition(self, proposition_id: int) -> Proposition:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id = ?", (proposition_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no proposition with id {proposition_id}")
        return proposition_from_row(row)

    def get_propositions(self, ids: Sequence[int]) -> dict[int, Proposition]:
        if not ids:
            return {}
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id IN ({placeholders(ids)})",
                tuple(ids),
            ).fetchall()
        return {row["id"]: proposition_from_row(row) for row in rows}

    def current_propositions(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        order: Order = "recent",
        min_confidence: int | None = None,
        sensitivity: Collection[str] | None = None,
        kind: str | None = None,
    ) -> Page:
        """A page of current propositions, newest support first or most confident first; with `sensitivity`,
        only those of these classes (untagged ones never)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit: must be between 1 and 1000")
        if order not in ("recent", "confidence"):
            raise InvalidInput("order: must be 'recent' or 'confidence'")
        if min_confidence is not None and not 1 <= min_confidence <= 10:
            raise InvalidInput("min_confidence: must be between 1 and 10")
        keys = ["last_supported_at", "id"] if order == "recent" else ["confidence", "last_supported_at", "id"]
        clauses, params = ["retired_at IS NULL"], []
        if min_confidence is not None:
            clauses.append("confidence >= ?")
            params.append(min_confidence)
        if kind is not None:
            if kind not in KIND_ORDER:
                raise InvalidInput(f"kind: must be one of {', '.join(KIND_ORDER)}")
            clauses.append("kind = ?")
            params.append(kind)
        if sensitivity is not None:
            classes = sorted(sensitivity)
            clauses.append(f"sensitivity IN ({placeholders(classes)})" if classes else "0")
            params.extend(classes)
        if cursor:
            values = _decode_cursor(cursor, len(keys))
            clauses.append(f"({', '.join(keys)}) < ({placeholders(keys)})")
            params.extend(values)
        order_by = ", ".join(f"{key} DESC" for key in keys)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE {' AND '.join(clauses)}"
                f" ORDER BY {order_by} LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor([rows[-1][key] for key in keys]) if more else None
        return Page(items=tuple(proposition_from_row(row) for row in rows), next_cursor=next_cursor)

    def as_of(self, when: datetime, *, limit: int = 100) -> list[Proposition]:
        """What was believed at `when`: propositions created by then and not yet retired."""
        ts = to_ts(when)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE created_at <= ?"
                " AND (retired_at IS NULL OR retired_at > ?) AND text IS NOT NULL"
                " ORDER BY confidence DESC, last_supported_at DESC, id DESC LIMIT ?",
                (ts, ts, limit),
            ).fetchall()
        return [proposition_from_row(row) for row in rows]

    def successors(self, proposition_id: int) -> list[int]:
        """The current propositions an id leads to through lineage (itself when current)."""
        with self.db.read() as conn:
            return _successors(conn, proposition_id)

    def proposition_detail(self, proposition_id: int, *, evidence_limit: int = 50) -> PropositionDetail:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id = ?", (proposition_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no proposition with id {proposition_id}")
            parents = conn.execute(
                "SELECT * FROM lineage WHERE child_id = ? ORDER BY parent_id", (proposition_id,)
            ).fetchall()
            children = conn.execute(
                "SELECT * FROM lineage WHERE parent_id = ? ORDER BY child_id", (proposition_id,)
            ).fetchall()
            history = conn.execute(
                "WITH RECURSIVE up(id) AS (SELECT parent_id FROM lineage WHERE child_id = ?"
                " UNION SELECT l.parent_id FROM lineage l JOIN up ON l.child_id = up.id)"
                f" SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id IN (SELECT id FROM up)"
                " ORDER BY created_at, id",
                (proposition_id,),
            ).fetchall()
            evidence = conn.execute(
                f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE id IN"
                " (SELECT observation_id FROM evidence WHERE proposition_id = ?)"
                " ORDER BY observed_at DESC, id DESC LIMIT ?",
                (proposition_id, evidence_limit),
            ).fetchall()
            feedback = conn.execute(
                "SELECT * FROM feedback WHERE proposition_id = ? ORDER BY at, id", (proposition_id,)
            ).fetchall()
            successors = _successors(conn, proposition_id)
        return PropositionDetail(
            proposition=proposition_from_row(row),
            parents=tuple(_edge(r) for r in parents),
            children=tuple(_edge(r) for r in children),
            successors=tuple(successors),
            history=tuple(proposition_from_row(r) for r in history),
            evidence=tuple(observation_from_row(r) for r in evidence),
            feedback=tuple(feedback_from_row(r) for r in feedback),
        )

    def evidence_snippets(self, proposition_ids: Sequence[int], *, per: int = 2, chars: int = 200
                          ) -> dict[int, list[dict]]:
        """The newest `per` evidence observations of each proposition, content cut to `chars`."""
        found: dict[int, list[dict]] = {}
        for row in self.evidence_rows(proposition_ids, per=per, chars=chars):
            found.setdefault(row["proposition_id"], []).append({
                "observation_id": row["id"], "kind": row["kind"], "source": row["source"],
                "observed_at": from_ts(row["observed_at"]), "snippet": row["snippet"],
            })
        return found

    def evidence_rows(self, proposition_ids: Sequence[int], *, per: int, chars: int) -> list[sqlite3.Row]:
        """The newest `per` evidence observations of each proposition, by proposition then newest first: rows of
        proposition_id, id, kind, source, app, observed_at, snippet (content cut to `chars`) and n (how many
        evidence observations the proposition has)."""
        if not proposition_ids:
            return []
        ids = list(proposition_ids)
        with self.db.read() as conn:
            return conn.execute(
                "SELECT * FROM (SELECT e.proposition_id, o.id, o.kind, o.source, o.app, o.observed_at,"
                " substr(o.content, 1, ?) AS snippet, row_number() OVER (PARTITION BY e.proposition_id"
                " ORDER BY o.observed_at DESC, o.id DESC) AS rank, count(*) OVER (PARTITION BY e.proposition_id) AS n"
                f" FROM evidence e JOIN observations o ON o.id = e.observation_id WHERE e.proposition_id IN"
                f" ({placeholders(ids)})) WHERE rank <= ? ORDER BY proposition_id, rank",
                (chars, *ids, per),
            ).fetchall()

    def evidence_ids(self, proposition_id: int) -> list[int]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT observation_id FROM evidence WHERE proposition_id = ? ORDER BY observation_id",
                (proposition_id,),
            ).fetchall()
        return [row[0] for row in rows]


def apply_batch(conn: sqlite3.Connection, result: BatchResult, when: float) -> list[int]:
    """The body of `complete_batch`, for callers that already hold a write transaction."""
    live = _existing_observations(conn, tuple(result.observation_ids))
    touched = {pid for new in result.new for pid in new.supersedes}
    touched |= {r.proposition_id for r in result.reinforce} | set(result.retire)
    check_batch(conn, result.observation_ids, live, (*result.context, *touched))  # a forget meanwhile wins
    parents = _current_propositions(conn, touched)
    if len(parents) != len(touched):
        gone = sorted(touched - set(parents))
        raise StaleBatch(f"propositions {gone} are no longer current")

    new_ids = []
    drawn: list[tuple[int, list[int]]] = []  # new id, its evidence
    for new in result.new:
        evidence = [oid for oid in new.evidence if oid in live]
        supported = [live[oid] for oid in evidence]
        supported += [parents[pid]["last_supported_at"] for pid in new.supersedes]
        created = max([when, *(parents[pid]["created_at"] for pid in new.supersedes)])
        draft = new.draft
        kind = carried_kind(new.kind, [parents[p]["kind"] for p in new.supersedes])
        applies_to = new.applies_to or next((parents[p]["applies_to"] for p in new.supersedes
                                             if parents[p]["applies_to"]), None)
        pid = conn.execute(
            "INSERT INTO propositions (text, reasoning, confidence, decay, created_at,"
            " last_supported_at, support_count, user_confirmed, sensitivity, kind, applies_to)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id",
            (draft.text, draft.reasoning, draft.confidence, 10 if kind == "instruction" else draft.decay, created,
             max(supported, default=created), int(new.user_confirmed),
             carried_sensitivity(new.sensitivity, [parents[p]["sensitivity"] for p in new.supersedes]),
             kind, applies_to),
        ).fetchone()[0]
        new_ids.append(pid)
        drawn.append((pid, evidence))
        for parent in new.supersedes:
            conn.execute(
                "INSERT OR IGNORE INTO lineage (parent_id, child_id, cause, note, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (parent, pid, new.cause, new.note, created),
            )
            conn.execute(
                "INSERT OR IGNORE INTO evidence (proposition_id, observation_id)"
                " SELECT ?, observation_id FROM evidence WHERE proposition_id = ?",
                (pid, parent),
            )
        conn.executemany(
            "INSERT OR IGNORE INTO evidence (proposition_id, observation_id) VALUES (?, ?)",
            [(pid, oid) for oid in evidence],
        )
        conn.execute(
            "UPDATE propositions SET support_count = max(1, (SELECT count(*) FROM evidence"
            " WHERE proposition_id = ?)), evidence_pruned = (SELECT coalesce(max(p.evidence_pruned), 0)"
            " FROM lineage l JOIN propositions p ON p.id = l.parent_id WHERE l.child_id = ?)"
            " WHERE id = ?",
            (pid, pid, pid),
        )
    link_rederived(conn, drawn, list(live), when)
    retiring = {pid: new.cause for new in result.new for pid in new.supersedes}
    retiring.update(result.retire)
    for pid, cause in retiring.items():
        conn.execute(
            "UPDATE propositions SET retired_at = max(?, created_at), retired_cause = ?"
            " WHERE id = ?",
            (when, cause, pid),
        )
    crash_point("batch:propositions")

    for item in result.reinforce:
        if item.proposition_id in retiring:
            continue
        evidence = [oid for oid in item.evidence if oid in live]
        added = sum(
            conn.execute(
                "INSERT OR IGNORE INTO evidence (proposition_id, observation_id) VALUES (?, ?)",
                (item.proposition_id, oid),
            ).rowcount
            for oid in evidence
        )
        latest = max((live[oid] for oid in evidence), default=None)
        conn.execute(
            "UPDATE propositions SET support_count = support_count + ?,"
            " last_supported_at = max(last_supported_at, coalesce(?, last_supported_at))"
            " WHERE id = ?",
            (added, latest, item.proposition_id),
        )
    crash_point("batch:evidence")

    now = to_ts(utcnow())
    skipped = {oid: reason for oid, reason in result.skipped.items() if oid in live}
    conn.executemany(
        "UPDATE observations SET status = 'skipped', last_error = ?, processed_at = ?"
        " WHERE id = ?",
        [(reason[:2000], now, oid) for oid, reason in skipped.items()],
    )
    done = [oid for oid in live if oid not in skipped]
    if done:
        conn.execute(
            f"UPDATE observations SET status = 'processed', processed_at = ?"
            f" WHERE id IN ({placeholders(done)})",
            (now, *done),
        )
    crash_point("batch:observations")
    return new_ids


def carried_sensitivity(own: str | None, parents: Sequence[str | None]) -> str | None:
    """A new proposition's class: the most sensitive of its own and those of what it supersedes (lineage
    carries it); None (tagged later, with its lineage) while one of those is untagged."""
    if any(parent is None for parent in parents):
        return None
    return most_sensitive([own, *parents])


def carried_kind(own: str, parents: Sequence[str]) -> str:
    """A new proposition's kind: the strongest (KIND_ORDER) of its own and those of what it supersedes, so a
    revision or a correction of an instruction stays one. An instruction never decays (stored as decay 10)."""
    found = {own, *parents}
    return next(kind for kind in KIND_ORDER if kind in found)


def feedback_from_row(row: sqlite3.Row) -> Feedback:
    return Feedback(
        id=row["id"], proposition_id=row["proposition_id"], verdict=row["verdict"],
        note=row["note"], at=from_ts(row["at"]),
    )


def _edge(row: sqlite3.Row) -> LineageEdge:
    return LineageEdge(
        parent_id=row["parent_id"], child_id=row["child_id"], cause=row["cause"],
        note=row["note"], at=from_ts(row["at"]),
    )


def _successors(conn: sqlite3.Connection, proposition_id: int) -> list[int]:
    rows = conn.execute(
        "WITH RECURSIVE down(id) AS (SELECT ? UNION SELECT l.child_id FROM lineage l"
        " JOIN down ON l.parent_id = down.id)"
        " SELECT p.id FROM propositions p JOIN down ON p.id = down.id"
        " WHERE p.retired_at IS NULL ORDER BY p.id",
        (proposition_id,),
    ).fetchall()
    return [row[0] for row in rows]


def _existing_observations(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, float]:
    """id -> observed_at of the batch observations that still exist."""
    found: dict[int, float] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(
            f"SELECT id, observed_at FROM observations WHERE id IN ({placeholders(chunk)})", chunk
        ):
            found[row[0]] = row[1]
    return found


def _current_propositions(conn: sqlite3.Connection, ids: set[int]) -> dict[int, sqlite3.Row]:
    if not ids:
        return {}
    ordered = sorted(ids)
    rows = conn.execute(
        f"SELECT id, created_at, last_supported_at, sensitivity, kind, applies_to FROM propositions"
        f" WHERE retired_at IS NULL AND id IN ({placeholders(ordered)})",
        ordered,
    ).fetchall()
    return {row["id"]: row for row in rows}
