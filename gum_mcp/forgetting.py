"""Forgetting across every place that keeps a person's data, and forgetting by description.

Layers: the store (observations, propositions, suggestions, through its own transaction and
triggers), kept and pending screenshots, and the file observer's cached copies. The vector index
learns of removals from `index_log`. Entry points (the CLI, the MCP server, the runtime) open the
store through `open_store`, which gives it the deleters for what a forget leaves outside SQLite
(`store.pending_deletes`) and finishes any such work a crash interrupted.

Forgetting by description asks first. `content_words` refuses a query with nothing to match on (no
word of two or more letters once stop-words, the person's name and words like "forget" are
dropped). `preview_forget` finds the current propositions that match on an absolute rule, never
relative to the best hit:
- keyword: the proposition's text contains enough of the query's content words (the full-text
  index's stemming): all of one or two, two of up to six, a third of more;
- vectors (when the index answered): cosine similarity of the content words and the proposition at
  least FORGET_MIN_SIMILARITY.
Each match says why (which words, what similarity). The preview pins each match's version;
`confirm_forget` removes exactly those, or nothing if any changed since.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gum_mcp.config import Settings
from gum_mcp.domain import ForgetReport, InvalidInput, utcnow
from gum_mcp.observers import forget_file_cache, forget_screenshots
from gum_mcp.observers.frames import FrameStore
from gum_mcp.store import Store
from gum_mcp.store.search import STOP_WORDS, query_terms

if TYPE_CHECKING:
    from gum_mcp.retrieval import Hit

#: Sources whose observers keep files: the screen observer's frames, the file observer's cache.
SCREEN_SOURCE = "screen"
FILES_SOURCE = "files"

#: A proposition this similar (cosine, MiniLM) to the query's content words matches. Measured: a
#: paraphrase of one fact scores 0.45-0.55, unrelated propositions under 0.25, a shared name 0.45+
#: (hence names never count).
FORGET_MIN_SIMILARITY = 0.45
#: Words that say what to do, not what about.
FILLER_WORDS = frozenset({
    "forget", "forgets", "forgot", "forgotten", "remove", "delete", "erase", "wipe", "purge", "please",
    "everything", "anything", "something", "stuff", "thing", "things",
})


def open_store(settings: Settings) -> Store:
    """The store, with the deleters that carry a forget beyond SQLite; finishes what a crash left."""
    store = Store.open(settings)
    register_deleters(store)
    store.finish_pending_deletes()
    return store


def register_deleters(store: Store) -> None:
    settings = store.settings
    frames = FrameStore(settings)

    def observations(spec: Mapping[str, Any]) -> None:
        frames.forget_observations(int(i) for i in spec.get("ids") or [])

    def time_range(spec: Mapping[str, Any]) -> None:
        frames.forget(_when(spec.get("since")), _when(spec.get("until")))

    def source(spec: Mapping[str, Any]) -> None:
        if spec.get("source") == SCREEN_SOURCE:
            frames.forget(None, _when(spec.get("until")))
        elif spec.get("source") == FILES_SOURCE:
            forget_file_cache(settings)

    def app(spec: Mapping[str, Any]) -> None:
        frames.forget_app(str(spec.get("app") or ""), _when(spec.get("until")))

    def everything(spec: Mapping[str, Any]) -> None:
        frames.forget(None, _when(spec.get("until")))
        forget_file_cache(settings)

    store.deleters.update(observations=observations, range=time_range, source=source, app=app,
                          everything=everything)


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def forget_range(store: Store, since: datetime | None, until: datetime | None) -> ForgetReport:
    """Observations in [since, until), and screenshots captured then, pending ones included."""
    return store.forget_range(since, until)


def forget_everything(store: Store) -> ForgetReport:
    return store.forget_everything()


def prune(store: Store, retention_days: int, *, now: datetime | None = None) -> int:
    """Retention: observation text and kept screenshots older than `retention_days` (0 = keep)."""
    if retention_days <= 0:
        return 0
    count = store.prune(retention_days, now=now)
    forget_screenshots(store.settings, until=(now or utcnow()) - timedelta(days=retention_days), pending=False)
    return count


# -- forgetting by description

def content_words(query: str, user_name: str = "") -> list[str]:
    """The words of `query` worth matching on; InvalidInput (nothing is searched) when there are none."""
    names = set(query_terms(user_name, drop_stop_words=False))
    words = [
        w for w in query_terms(query, drop_stop_words=False)
        if w not in STOP_WORDS and w not in FILLER_WORDS and w not in names and sum(ch.isalpha() for ch in w) >= 2
    ]
    if not words:
        raise InvalidInput(
            "query: nothing to match on: it needs a content word of two or more letters (stop-words such as "
            "'the', the person's name, words such as 'forget', punctuation and symbols do not count). Nothing "
            "was removed. Describe the topic (e.g. 'bank account'), or forget by proposition_id, source, app or "
            "time range"
        )
    return words


def words_needed(count: int) -> int:
    """How many of `count` content words a proposition's text must contain to match by keyword."""
    return 1 if count <= 1 else max(2, math.ceil(count / 3))


@dataclass(frozen=True)
class ForgetMatch:
    id: int
    text: str
    words: tuple[str, ...]  # content words of the query its text contains
    similarity: float | None  # cosine to the query's content words, when it counted

    @property
    def why(self) -> str:
        reasons = []
        if self.words:
            reasons.append(f"its text contains {', '.join(repr(w) for w in self.words)}")
        if self.similarity is not None:
            reasons.append(f"it is close in meaning (similarity {self.similarity:.2f} >= {FORGET_MIN_SIMILARITY})")
        return " and ".join(reasons)


@dataclass(frozen=True)
class ForgetPreview:
    query: str
    words: tuple[str, ...]
    matches: tuple[ForgetMatch, ...]
    more: int  # matches beyond max_matches, not covered
    versions: dict[int, str]  # what a confirmation covers: id -> version
    with_evidence: bool
    observations: int  # with_evidence: how many observations would go too
    note: str | None = None  # e.g. keyword search only

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.matches]


def preview_forget(
    store: Store, query: str, words: Sequence[str], hits: Sequence[Hit], *, max_matches: int,
    with_evidence: bool, note: str | None = None,
) -> ForgetPreview:
    """The current propositions `query` describes (see the module doc); blocking. `hits` come from a
    search for the content words (their similarity, when vectors answered)."""
    need = words_needed(len(words))
    by_words = {pid: tuple(found) for pid, found in store.propositions_matching_words(words).items()
                if len(found) >= need}
    by_vector = {h.id: float(h.similarity) for h in hits
                 if h.proposition is not None and h.similarity is not None
                 and h.similarity >= FORGET_MIN_SIMILARITY}
    ids = sorted(set(by_words) | set(by_vector))
    current = {pid: p for pid, p in store.get_propositions(ids).items() if p.current and p.text}
    found = [ForgetMatch(pid, current[pid].text or "", by_words.get(pid, ()), by_vector.get(pid))
             for pid in ids if pid in current]
    found.sort(key=lambda m: (-len(m.words), -(m.similarity or 0.0), -m.id))
    shown = found[:max_matches]
    versions = store.proposition_versions([m.id for m in shown])
    shown = [m for m in shown if m.id in versions]
    evidence: set[int] = set()
    if with_evidence:
        for m in shown:
            evidence.update(store.evidence_ids(m.id))
    return ForgetPreview(query=query, words=tuple(words), matches=tuple(shown), more=len(found) - len(shown),
                         versions=versions, with_evidence=with_evidence, observations=len(evidence), note=note)


def confirm_forget(store: Store, versions: Mapping[int, str], with_evidence: bool) -> ForgetReport:
    """Remove exactly the propositions a preview covered (with their lineages, and with_evidence their
    observations), or nothing, raising ChangedSincePreview, if any of them changed since."""
    return store.forget_propositions(list(versions), delete_evidence=with_evidence, expect=dict(versions))


def describe_preview(preview: ForgetPreview) -> str:
    """The preview for a person: one line per match, then what confirming removes."""
    lines = [f"[{m.id}] {m.text}\n      matched because {m.why}" for m in preview.matches]
    if preview.more:
        lines.append(f"... and {preview.more} more match(es) not covered: narrow the query or raise the limit")
    removes = "these proposition(s) and their earlier versions"
    if preview.with_evidence:
        removes += f", and the {preview.observations} observation(s) they rest on"
    lines.append(f"Confirming removes {removes} for good.")
    if preview.note:
        lines.append(f"({preview.note})")
    return "\n".join(lines)
