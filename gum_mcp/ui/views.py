"""What a page shows, worked out from the store's records: cards (a belief with its confidence, freshness and
newest evidence) and a proposition's history as a timeline people can read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gum_mcp.domain import Feedback, LineageEdge, Proposition, half_life_days, utcnow
from gum_mcp.ui.queries import EvidenceItem

SURE_WORDS = {1: "a hunch", 2: "a hunch", 3: "a hunch", 4: "likely", 5: "likely", 6: "likely",
              7: "fairly sure", 8: "fairly sure", 9: "sure", 10: "sure"}


def freshness(p: Proposition, now: datetime) -> float:
    """The weight recency gives it now: 2^(-age / half-life), age counted from its last support."""
    age = max(0.0, (now - p.last_supported_at).total_seconds() / 86400)
    return 2.0 ** (-age / half_life_days(p.decay))


def span(days: float) -> str:
    """A length of time in words: 45 minutes, 3 hours, 8 days, 2 months, 1.4 years."""
    if days < 1 / 24:
        minutes = max(1, round(days * 1440))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    if days < 1:
        hours = round(days * 24)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if days < 60:
        d = round(days)
        return f"{d} day{'s' if d != 1 else ''}"
    if days < 365:
        months = round(days / 30.4)
        return f"{months} months"
    return f"{days / 365:.1f} years".replace(".0 ", " ")


def ago(when: datetime, now: datetime) -> str:
    seconds = (now - when).total_seconds()
    if seconds < 60:
        return "just now"
    return span(seconds / 86400) + " ago"


def local(when: datetime, fmt: str = "%a %d %b %Y, %H:%M") -> str:
    return when.astimezone().strftime(fmt)


def ago_now(when: datetime | None) -> str:
    """How long ago, in words ("never" for None)."""
    return "never" if when is None else ago(when, utcnow())


def number(n: float | int) -> str:
    """A count with thousands separators."""
    return f"{n:,.0f}"


def without_app(text: str | None, app: str | None) -> str | None:
    """An observation's text without the "App - " its chip already shows."""
    if text and app and text.startswith(f"{app} - "):
        return text[len(app) + 3:]
    return text


def snippet(item: EvidenceItem) -> str:
    """An observation's text without the application name its chip already shows."""
    text = item.snippet or ""
    if item.app and text.startswith(f"{item.app} - "):
        text = text[len(item.app) + 3:]
    return text or "(text pruned by retention)"


@dataclass
class Card:
    p: Proposition
    evidence: list[EvidenceItem]
    evidence_total: int
    freshness: float
    half_life: str
    seen: str
    sure: str
    note: str | None = None  # a result to announce (e.g. "Confirmed")

    @property
    def fresh_pct(self) -> int:
        return round(self.freshness * 100)


def card(p: Proposition, now: datetime, evidence: list[EvidenceItem] | None = None, total: int = 0,
         note: str | None = None) -> Card:
    return Card(p=p, evidence=evidence or [], evidence_total=total, freshness=freshness(p, now),
                half_life=span(half_life_days(p.decay)), seen=ago(p.last_supported_at, now),
                sure="confirmed by you" if p.user_confirmed else SURE_WORDS.get(p.confidence, ""), note=note)


@dataclass
class Event:
    kind: str  # proposed, reinforced, merged, revised, split, confirmed, corrected, rejected, rederived, forgotten
    at: datetime
    title: str
    text: str | None = None
    detail: str | None = None
    proposition_id: int | None = None
    sources: list[EvidenceItem] = field(default_factory=list)


CAUSE_TITLES = {"merged": "Merged", "revised": "Revised", "split": "Split off", "forgotten": "Re-derived",
                "proposed": "Proposed"}


def timeline(p: Proposition, history: list[Proposition], edges: list[LineageEdge],
             links: list[EvidenceItem], feedback: list[Feedback]) -> list[Event]:
    """The story of a belief, oldest first: how each version came about, the evidence that reinforced it
    after it was formed, and the person's verdicts."""
    versions = {v.id: v for v in [*history, p]}
    parents: dict[int, list[LineageEdge]] = {}
    for edge in edges:
        if edge.child_id in versions:
            parents.setdefault(edge.child_id, []).append(edge)
    by_version: dict[int, list[EvidenceItem]] = {}
    for item in links:
        by_version.setdefault(item.proposition_id, []).append(item)
    events: list[Event] = []
    for v in sorted(versions.values(), key=lambda v: (v.created_at, v.id)):
        ins = parents.get(v.id, [])
        inherited = {i.observation_id for e in ins for i in by_version.get(e.parent_id, [])}
        own = [i for i in by_version.get(v.id, []) if i.observation_id not in inherited]
        before = [i for i in own if i.observed_at <= v.created_at]
        after = [i for i in own if i.observed_at > v.created_at]
        text = v.text
        if not ins:
            events.append(Event("proposed", v.created_at, "Proposed", text=text, proposition_id=v.id,
                                detail=_from(before), sources=before[-3:]))
        else:
            cause = ins[0].cause
            note = next((e.note for e in ins if e.note), None) or ""
            if cause == "feedback" and note.startswith("user confirm"):
                events.append(Event("confirmed", v.created_at, "You confirmed it", text=text, proposition_id=v.id))
            elif cause == "feedback" and note.startswith("user correct"):
                old = next((versions[e.parent_id].text for e in ins if e.parent_id in versions), None)
                events.append(Event("corrected", v.created_at, "You corrected it", text=text, proposition_id=v.id,
                                    detail=f"It said: “{old}”" if old else None))
            elif cause == "merged" or len(ins) > 1:
                events.append(Event("merged", v.created_at, f"Merged from {len(ins)} beliefs", text=text,
                                    proposition_id=v.id, detail=_from(before), sources=before[-3:]))
            else:
                events.append(Event(cause if cause in CAUSE_TITLES else "revised", v.created_at,
                                    CAUSE_TITLES.get(cause, "Revised"), text=text, proposition_id=v.id,
                                    detail=_from(before) if before else (note or None), sources=before[-3:]))
        for item in after:
            where = item.app or item.source
            events.append(Event("reinforced", item.observed_at, f"Reinforced by {item.kind} in {where}",
                                detail=item.snippet, proposition_id=v.id, sources=[item]))
    for fb in feedback:
        if fb.verdict == "reject":
            events.append(Event("rejected", fb.at, "You rejected it", detail="It will not be proposed again.",
                                proposition_id=fb.proposition_id))
    if p.retired_at is not None and p.retired_cause == "forgotten":
        events.append(Event("forgotten", p.retired_at, "Forgotten", proposition_id=p.id))
    events.sort(key=lambda e: e.at)
    return events


def _from(items: list[EvidenceItem]) -> str | None:
    if not items:
        return None
    kinds = sorted({i.app or i.source for i in items})
    return f"from {len(items)} observation{'s' if len(items) != 1 else ''} ({', '.join(kinds)})"
