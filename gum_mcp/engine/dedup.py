"""Deciding, before the model is asked, what a draft is to the existing propositions gathered for it.

The gather step (`pipeline`) stages each draft against its candidates (the runtime's dedup search:
current propositions by cosine and keywords, unweighted, at most 20):

1. exact: the normalised text equals a candidate's (`pipeline.normalise`) -> the same claim;
2. near duplicate: cosine >= `GUM_DEDUP_SIMILARITY` AND the same words (`same_words`) -> the same
   claim. Cosine alone is not enough: MiniLM puts distinct facts about one person at 0.9 and more
   ("prefers tea" / "prefers green tea in the morning", "runs 5 km" / "runs 10 km", "mentors Ravi" /
   "Ravi mentors"), so a near duplicate must also use the same words in the same order up to what
   never changes a claim: case, punctuation, hyphens, articles, possessive marks, digits for number
   words (`words`). A different number, a negation, another name or any other content word sends
   the draft on to the model. A fronted phrase ("On Fridays Priya works from home") is the same
   sequence rotated, which is allowed; a role reversal ("Ravi mentors Priya") is not a rotation;
3. the uncertain middle: candidates with cosine >= `RELATE_FLOOR` and within `RELATE_MARGIN` of the
   draft's best candidate go to the model's relate judgement (identical / similar / unrelated);
4. below that: unrelated, without asking.

An exact or near-duplicate match is a reinforcement of the existing proposition (new evidence, its
content unchanged), as the normalised-equality shortcut always was. When a draft is a near
duplicate of several candidates, those are duplicates of each other: the draft goes to relate with
them, which can merge them (identical to several -> revise).

Cosines are those of the search: the draft without the person's name (the query, see `pipeline`)
against the stored proposition, name included. On that scale a verbatim restatement scores about
0.6-0.85, not ~1, hence the default `GUM_DEDUP_SIMILARITY` of 0.5; the word check does the real work.

Without cosines (retrieval without vectors), stage 2 is skipped and stage 3 keeps the first
`KEYWORD_CANDIDATES` candidates, as the gather did before.

The thresholds were chosen on the tuning half of `tests/fixtures/dedup_pairs.json` only (see
`bench/engine.py --gather-recall`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

RELATE_FLOOR = 0.35  # a candidate less similar than this is not the same subject
RELATE_MARGIN = 0.25  # ... nor one this much less similar than the draft's best candidate
KEYWORD_CANDIDATES = 5  # per draft, when there are no cosines (keyword search only)

_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "first": "1 st", "second": "2 nd",
    "third": "3 rd", "fourth": "4 th", "fifth": "5 th",
}
_DROPPED = {"a", "an", "the"}
_WORD = re.compile(r"\d+|[^\W\d_]+", re.UNICODE)  # digits and letters apart: "10am" = "10 am", "6:30" = "6.30"


def words(text: str) -> tuple[str, ...]:
    """The words of a claim that can change what it says, in order (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    text = re.sub(r"'s\b", " ", text)  # possessive mark: "Priya's" -> "priya"
    out: list[str] = []
    for word in _WORD.findall(text):
        if word not in _DROPPED:
            out.extend(_NUMBERS.get(word, word).split())
    return tuple(out)


def same_words(a: str, b: str) -> bool:
    """Whether two claims use the same words in the same order, or one is the other rotated (a phrase
    moved from the end to the front)."""
    wa, wb = words(a), words(b)
    if len(wa) != len(wb) or not wa:
        return False
    if wa == wb:
        return True
    doubled = wa + wa
    return any(doubled[i : i + len(wb)] == wb for i in range(1, len(wa)))


def near_duplicates(text: str, candidates: Sequence[tuple[int, str, float | None]], threshold: float) -> list[int]:
    """Ids of the candidates (id, text, cosine) that are near duplicates of `text`."""
    return [pid for pid, other, similarity in candidates
            if similarity is not None and similarity >= threshold and same_words(text, other)]


def for_relate(candidates: Sequence[tuple[int, str, float | None]], limit: int) -> list[int]:
    """Ids of the candidates in the uncertain middle (stage 3), best first, at most `limit`."""
    if not candidates:
        return []
    if any(similarity is None for _, _, similarity in candidates):
        return [pid for pid, _, _ in candidates[: min(limit, KEYWORD_CANDIDATES)]]
    best = max(similarity or 0.0 for _, _, similarity in candidates)
    floor = max(RELATE_FLOOR, best - RELATE_MARGIN)
    return [pid for pid, _, similarity in candidates if (similarity or 0.0) >= floor][:limit]
