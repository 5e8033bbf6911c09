"""A person's verdict on a proposition: confirm, reject or correct. Each is a lineage step."""

from __future__ import annotations

from gum_mcp.domain import (
    BatchResult,
    InvalidInput,
    NewProposition,
    NotFound,
    Proposition,
    PropositionDraft,
    Verdict,
    to_ts,
    utcnow,
)
from gum_mcp.store.db import Database
from gum_mcp.store.propositions import (
    PROPOSITION_COLUMNS,
    _successors,
    apply_batch,
    proposition_from_row,
)
from gum_mcp.store.redaction import Redactor


class FeedbackLog:
    db: Database
    redactor: Redactor

    def give_feedback(
        self, proposition_id: int, verdict: Verdict, *, correction: str | None = None,
        note: str | None = None,
    ) -> Proposition | None:
        """Apply a verdict; return the successor (confirm, correct) or None (reject).

        confirm: a successor with confidence 10, marked user-confirmed, supersedes it.
        reject: it is retired (cause feedback) and remembered, see `rejected_texts`.
        correct: a successor with the person's text supersedes it.
        """
        if verdict not in ("confirm", "reject", "correct"):
            raise InvalidInput("verdict: must be one of confirm, reject, correct")
        if verdict == "correct" and not (correction and correction.strip()):
            raise InvalidInput("correction: required when the verdict is 'correct'")
        if verdict != "correct" and correction:
            raise InvalidInput("correction: only allowed when the verdict is 'correct'")
        note = self.redactor.redact(note).text[:2000] if note else None
        now = to_ts(utcnow())
        with self.db.write() as conn:
            row = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id = ?", (proposition_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no proposition with id {proposition_id}")
            current = proposition_from_row(row)
            if not current.current:
                successors = _successors(conn, proposition_id)
                where = (
                    f"its current successors are {', '.join(map(str, successors))}"
                    if successors else "it has no current successor"
                )
                raise InvalidInput(
                    f"proposition {proposition_id} was retired ({current.retired_cause}); {where}"
                )
            successor_id = None
            if verdict == "reject":
                apply_batch(conn, BatchResult(observation_ids=(), retire={proposition_id: "feedback"}), now)
            else:
                if verdict == "confirm":
                    draft = PropositionDraft(
                        text=current.text or "", reasoning=current.reasoning or "",
                        confidence=10, decay=current.decay,
                    )
                else:
                    text = self.redactor.redact(correction.strip()).text
                    try:
                        draft = PropositionDraft(
                            text=text,
                            reasoning=f"Corrected by the user. Before: {current.text}",
                            confidence=10, decay=current.decay,
                        )
                    except ValueError as exc:
                        raise InvalidInput(f"correction: {exc}") from None
                new = NewProposition(
                    draft=draft, supersedes=(proposition_id,), cause="feedback",
                    note=f"user {verdict}" + (f": {note}" if note else ""), user_confirmed=True,
                )
                [successor_id] = apply_batch(conn, BatchResult(observation_ids=(), new=(new,)), now)
            conn.execute(
                "INSERT INTO feedback (proposition_id, verdict, note, at) VALUES (?, ?, ?, ?)",
                (proposition_id, verdict, note, now),
            )
            if successor_id is None:
                return None
            row = conn.execute(
                f"SELECT {PROPOSITION_COLUMNS} FROM propositions WHERE id = ?", (successor_id,)
            ).fetchone()
            return proposition_from_row(row)

    def rejected_texts(self, *, limit: int = 1000) -> list[str]:
        """Texts the person rejected, newest first, so the engine can drop identical drafts."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT p.text FROM feedback f JOIN propositions p ON p.id = f.proposition_id"
                " WHERE f.verdict = 'reject' AND p.text IS NOT NULL ORDER BY f.at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [row[0] for row in rows]
