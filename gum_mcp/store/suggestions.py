"""Suggestions: actions offered to the person unprompted, what they rest on, and how they were received.

A suggestion is stored when the gate in `gum_mcp.engine.suggest` admits it. It rests on one or more
propositions (`suggestion_grounds`) and was drawn from the recent observations its prompt showed
(`suggestion_sources`); schema triggers delete it when any of those is forgotten (migration 2).

Status: `pending` (offered, no answer yet) -> `accepted` | `dismissed` | `done` through
`respond_to_suggestion`; any verdict may replace an earlier one (the person changed their mind).
`expired` is derived, never stored: a pending suggestion older than `OPEN_TTL_DAYS`, or an accepted
one answered longer ago than that, is no longer open and no longer blocks a similar one.

Open = pending or accepted (and not expired): what `gum://suggestions` lists.

Near-duplicates: a new suggestion is not stored when it is similar to one that is open or was
dismissed (a done one may come back: a recurring chore is useful again). Similarity is the Jaccard
index of the two suggestions' word sets (title and action together), words case-folded, stop-words
dropped and lightly stemmed (`suggestion_words`); similar means >= `DUPLICATE_SIMILARITY` (0.6).
Token Jaccard rather than embeddings: it needs no model, so every process (the engine's owner,
followers, tests) decides alike, and it is checked again inside the write transaction, so two
processes suggesting at once cannot both store the same thing. Paraphrases with few shared words
get past it; the prompt shows the model the open and dismissed suggestions so it avoids them itself.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gum_mcp.domain import InvalidInput, NotFound, from_ts, to_ts, utcnow
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import placeholders
from gum_mcp.store.redaction import Redactor
from gum_mcp.store.search import STOP_WORDS

SuggestionStatus = Literal["pending", "accepted", "dismissed", "done", "expired"]
SuggestionVerdict = Literal["accepted", "dismissed", "done"]
VERDICTS: tuple[str, ...] = ("accepted", "dismissed", "done")
STATUS_FILTERS: tuple[str, ...] = ("open", "pending", "accepted", "dismissed", "done", "expired", "all")

#: Days a pending suggestion stays open without an answer (and an accepted one after its answer).
OPEN_TTL_DAYS = 7.0
#: Word-set Jaccard at or above which two suggestions count as the same suggestion.
DUPLICATE_SIMILARITY = 0.6

MAX_TITLE_CHARS = 200
MAX_TEXT_CHARS = 2000
MAX_NOTE_CHARS = 2000

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SUFFIXES = ("ing", "ed", "es", "s")


class Suggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    title: str
    action: str
    rationale: str
    benefit: int
    cost: int
    p_useful: float
    utility: float
    threshold: float
    status: SuggestionStatus
    created_at: datetime
    responded_at: datetime | None = None
    note: str | None = None
    proposition_ids: tuple[int, ...] = ()

    @property
    def open(self) -> bool:
        return self.status in ("pending", "accepted")


class NewSuggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = Field(min_length=1)
    action: str = Field(min_length=1)
    rationale: str = ""
    benefit: int = Field(ge=1, le=10)
    cost: int = Field(ge=1, le=10)
    p_useful: float = Field(ge=0.0, le=1.0)
    utility: float
    threshold: float
    proposition_ids: tuple[int, ...]
    observation_ids: tuple[int, ...] = ()


@dataclass
class SaveResult:
    saved: list[Suggestion] = field(default_factory=list)
    duplicates: list[tuple[NewSuggestion, Suggestion]] = field(default_factory=list)  # (new, the earlier one)
    ungrounded: list[NewSuggestion] = field(default_factory=list)  # its propositions were forgotten meanwhile
    stored: list[Suggestion | None] = field(default_factory=list)  # one per input, in order; None = not stored


# ------------------------------------------------------------------------------------- similarity


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def suggestion_words(*texts: str) -> frozenset[str]:
    """The words that identify a suggestion: case-folded, stop-words dropped, lightly stemmed
    ("schedules", "scheduled", "scheduling" and "schedule" all become "schedul")."""
    words: set[str] = set()
    for text in texts:
        for word in _WORD.findall((text or "").casefold()):
            if word not in STOP_WORDS:
                words.add(_stem(word))
    return frozenset(words)


def similarity(title_a: str, action_a: str, title_b: str, action_b: str) -> float:
    """Jaccard index of the two suggestions' word sets (title and action together), 0..1."""
    a, b = suggestion_words(title_a, action_a), suggestion_words(title_b, action_b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def find_duplicate(title: str, action: str, among: Sequence[Suggestion]) -> tuple[Suggestion, float] | None:
    """The most similar suggestion among `among` when it is a near-duplicate, with the similarity."""
    best: tuple[Suggestion, float] | None = None
    for other in among:
        score = similarity(title, action, other.title, other.action)
        if score >= DUPLICATE_SIMILARITY and (best is None or score > best[1]):
            best = (other, score)
    return best


# ------------------------------------------------------------------------------------------ reading

_COLUMNS = (
    "s.id, s.title, s.action, s.rationale, s.benefit, s.cost, s.p_useful, s.utility, s.threshold,"
    " s.status, s.created_at, s.responded_at, s.note,"
    " (SELECT group_concat(g.proposition_id) FROM"
    "  (SELECT proposition_id FROM suggestion_grounds WHERE suggestion_id = s.id ORDER BY proposition_id) g)"
    " AS grounds"
)
# The status as read: expired is derived from the age of the last step (see the module docstring).
_EFFECTIVE = (
    "CASE WHEN (s.status = 'pending' AND s.created_at < :cutoff)"
    " OR (s.status = 'accepted' AND coalesce(s.responded_at, s.created_at) < :cutoff)"
    " THEN 'expired' ELSE s.status END"
)


def _cutoff(now: datetime | None) -> float:
    return to_ts((now or utcnow()) - timedelta(days=OPEN_TTL_DAYS))


def _from_row(row: sqlite3.Row) -> Suggestion:
    grounds = row["grounds"]
    return Suggestion(
        id=row["id"], title=row["title"], action=row["action"], rationale=row["rationale"],
        benefit=row["benefit"], cost=row["cost"], p_useful=row["p_useful"], utility=row["utility"],
        threshold=row["threshold"], status=row["effective"], created_at=from_ts(row["created_at"]),
        responded_at=from_ts(row["responded_at"]), note=row["note"],
        proposition_ids=tuple(int(x) for x in grounds.split(",")) if grounds else (),
    )


def _select(conn: sqlite3.Connection, where: str, params: dict[str, object], *, order: str, limit: int
            ) -> list[Suggestion]:
    rows = conn.execute(
        f"SELECT {_COLUMNS}, {_EFFECTIVE} AS effective FROM suggestions s WHERE {where} ORDER BY {order} LIMIT :limit",
        {**params, "limit": limit},
    ).fetchall()
    return [_from_row(row) for row in rows]


def _status_where(status: str) -> str:
    if status == "all":
        return "1"
    if status == "open":
        return f"{_EFFECTIVE} IN ('pending', 'accepted')"
    return f"{_EFFECTIVE} = '{status}'"  # one of STATUS_FILTERS, checked by the caller


def _blocking(conn: sqlite3.Connection, cutoff: float, limit: int = 5000) -> list[Suggestion]:
    """What a new suggestion must not duplicate: the open ones and every dismissed one."""
    return _select(conn, f"{_EFFECTIVE} IN ('pending', 'accepted', 'dismissed')", {"cutoff": cutoff},
                   order="s.id DESC", limit=limit)


class Suggestions:
    db: Database
    redactor: Redactor

    def suggestions(self, *, status: str = "open", limit: int = 50, now: datetime | None = None) -> list[Suggestion]:
        """Suggestions with this status (open = pending or accepted, not expired), newest first."""
        if status not in STATUS_FILTERS:
            raise InvalidInput(f"status: must be one of {', '.join(STATUS_FILTERS)}")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit: must be between 1 and 1000")
        with self.db.read() as conn:
            return _select(conn, _status_where(status), {"cutoff": _cutoff(now)}, order="s.id DESC", limit=limit)

    def blocking_suggestions(self, *, limit: int = 5000, now: datetime | None = None) -> list[Suggestion]:
        """The open and dismissed suggestions, newest first: what a new one must not repeat."""
        with self.db.read() as conn:
            return _blocking(conn, _cutoff(now), limit)

    def get_suggestion(self, suggestion_id: int, *, now: datetime | None = None) -> Suggestion:
        with self.db.read() as conn:
            found = _select(conn, "s.id = :id", {"id": suggestion_id, "cutoff": _cutoff(now)}, order="s.id", limit=1)
        if not found:
            raise NotFound(f"no suggestion with id {suggestion_id} (it may have been forgotten)")
        return found[0]

    def suggestions_fingerprint(self, *, now: datetime | None = None) -> str:
        """Changes whenever the set of open suggestions or their status changes (cheap; for watchers)."""
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT group_concat(id || ':' || status, ' ') FROM"
                f" (SELECT s.id, s.status FROM suggestions s WHERE {_status_where('open')} ORDER BY s.id)",
                {"cutoff": _cutoff(now)},
            ).fetchone()
        return row[0] or ""

    def dismissals(self, proposition_ids: Sequence[int]) -> dict[int, int]:
        """For each proposition, how many dismissed suggestions rested on it or on an earlier version
        of it (its lineage ancestors): a revision does not wash a dismissal away."""
        counts: dict[int, int] = {}
        with self.db.read() as conn:
            for pid in dict.fromkeys(proposition_ids):
                row = conn.execute(
                    "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT l.parent_id FROM lineage l"
                    " JOIN up ON l.child_id = up.id)"
                    " SELECT count(DISTINCT s.id) FROM up JOIN suggestion_grounds g ON g.proposition_id = up.id"
                    " JOIN suggestions s ON s.id = g.suggestion_id WHERE s.status = 'dismissed'",
                    (pid,),
                ).fetchone()
                counts[pid] = int(row[0])
        return counts

    # -- writing

    def save_suggestions(self, new: Sequence[NewSuggestion], *, now: datetime | None = None) -> SaveResult:
        """Store admitted suggestions in one transaction, best first as given.

        Inside the transaction, each is checked again: grounding propositions that were forgotten
        meanwhile are dropped (none left: not stored, `ungrounded`), and one similar to an open or
        dismissed suggestion, or to one stored just before it, is not stored (`duplicates`). Text is
        redacted like everything else that enters the store.
        """
        now = now or utcnow()
        stamp = to_ts(now)
        result = SaveResult()
        with self.db.write() as conn:
            blocking = _blocking(conn, _cutoff(now))
            for item in new:
                grounds = list(dict.fromkeys(item.proposition_ids))
                if grounds:
                    alive = {row[0] for row in conn.execute(
                        f"SELECT id FROM propositions WHERE text IS NOT NULL AND id IN ({placeholders(grounds)})",
                        grounds)}
                    grounds = [pid for pid in grounds if pid in alive]
                if not grounds:
                    result.ungrounded.append(item)
                    result.stored.append(None)
                    continue
                title = self._clean(item.title, MAX_TITLE_CHARS)
                action = self._clean(item.action, MAX_TEXT_CHARS)
                duplicate = find_duplicate(title, action, blocking)
                if duplicate is not None:
                    result.duplicates.append((item, duplicate[0]))
                    result.stored.append(None)
                    continue
                sources = list(dict.fromkeys(item.observation_ids))
                if sources:
                    present = {row[0] for row in conn.execute(
                        f"SELECT id FROM observations WHERE id IN ({placeholders(sources)})", sources)}
                    sources = [oid for oid in sources if oid in present]
                cursor = conn.execute(
                    "INSERT INTO suggestions (title, action, rationale, benefit, cost, p_useful, utility, threshold,"
                    " status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (title, action, self._clean(item.rationale, MAX_TEXT_CHARS), item.benefit, item.cost,
                     min(1.0, max(0.0, item.p_useful)), item.utility, item.threshold, stamp),
                )
                sid = int(cursor.lastrowid)
                conn.executemany("INSERT INTO suggestion_grounds (suggestion_id, proposition_id) VALUES (?, ?)",
                                 [(sid, pid) for pid in grounds])
                conn.executemany("INSERT INTO suggestion_sources (suggestion_id, observation_id) VALUES (?, ?)",
                                 [(sid, oid) for oid in sources])
                [saved] = _select(conn, "s.id = :id", {"id": sid, "cutoff": _cutoff(now)}, order="s.id", limit=1)
                result.saved.append(saved)
                result.stored.append(saved)
                blocking.insert(0, saved)
        return result

    def respond_to_suggestion(
        self, suggestion_id: int, verdict: str, *, note: str | None = None, now: datetime | None = None,
    ) -> Suggestion:
        """Record the person's verdict: accepted (they want it), dismissed (they do not: similar ones are
        not offered again, and ones resting on the same propositions weigh less), done (it was carried out)."""
        if verdict not in VERDICTS:
            raise InvalidInput(f"verdict: must be one of {', '.join(VERDICTS)}")
        now = now or utcnow()
        cleaned = self._clean(note, MAX_NOTE_CHARS) if note and note.strip() else None
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE suggestions SET status = ?, responded_at = ?, note = coalesce(?, note) WHERE id = ?",
                (verdict, to_ts(now), cleaned, suggestion_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no suggestion with id {suggestion_id} (it may have been forgotten)")
            [updated] = _select(conn, "s.id = :id", {"id": suggestion_id, "cutoff": _cutoff(now)}, order="s.id",
                                limit=1)
        return updated

    def delete_closed_suggestions(self, *, before: datetime, now: datetime | None = None) -> int:
        """Retention: delete the suggestions that are no longer open (expired, dismissed, done) and whose
        last step (offered, or answered) was before `before`. Returns how many."""
        params = {"cutoff": _cutoff(now), "before": to_ts(before)}
        with self.db.write() as conn:
            ids = [row[0] for row in conn.execute(
                f"SELECT s.id FROM suggestions s WHERE coalesce(s.responded_at, s.created_at) < :before"
                f" AND {_EFFECTIVE} NOT IN ('pending', 'accepted')", params)]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                conn.execute(f"DELETE FROM suggestions WHERE id IN ({placeholders(chunk)})", chunk)
        return len(ids)

    def _clean(self, text: str | None, limit: int) -> str:
        text = self.redactor.redact(text or "").text
        return " ".join(text.split())[:limit]
