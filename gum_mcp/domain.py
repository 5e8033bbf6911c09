"""Pydantic models shared by every layer. This module imports no other gum_mcp module.

Times are timezone-aware UTC datetimes here; the store keeps them as Unix seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ObservationKind = Literal["screen", "file", "agent", "text"]
ObservationStatus = Literal["pending", "processed", "skipped", "failed"]
LineageCause = Literal["proposed", "merged", "split", "revised", "feedback", "forgotten"]
#: What a proposition is: a belief inferred from observations; a preference (a belief about what the person likes,
#: e.g. learnt from their edits); an instruction, a standing rule the person stated ("always book an aisle seat").
#: Instructions are never inferred from behaviour alone and never decay. Lineage keeps the strongest kind.
PropositionKind = Literal["belief", "preference", "instruction"]
KIND_ORDER: tuple[PropositionKind, ...] = ("instruction", "preference", "belief")
Verdict = Literal["confirm", "reject", "correct"]

Score = Annotated[int, Field(ge=1, le=10)]


#: Decay is a half-life: a proposition of decay d counts half as recent after 2^(d-1) days (decay 1:
#: a day, a passing state; 4: 8 days, this week's task; 7: 64 days, a project; 10: 512 days, a trait).
HALF_LIFE_BASE_DAYS = 1.0


def half_life_days(decay: int) -> float:
    """Days after which a proposition of this decay counts half as recent (decay 10 fades slowest)."""
    return HALF_LIFE_BASE_DAYS * 2.0 ** (int(decay) - 1)


#: Sensitivity classes: the kind of knowledge a proposition is, most sensitive first. This order is the one
#: place "the most sensitive class wins" is decided (a merge, a revision, lineage); a disclosure policy
#: (gum_mcp/store/policy.py) allows classes per client.
Sensitivity = Literal["health", "beliefs-and-identity", "relationships", "finance", "location", "personal", "work",
                      "other"]
SENSITIVITY_ORDER: tuple[Sensitivity, ...] = (
    "health", "beliefs-and-identity", "relationships", "finance", "location", "personal", "work", "other")
SENSITIVITY_MEANINGS: dict[Sensitivity, str] = {
    "health": "physical or mental health, symptoms, conditions, medication, care, diet for medical reasons",
    "beliefs-and-identity": "religion, politics, sexuality, gender identity, ethnicity, union membership, deeply "
                            "held views",
    "relationships": "partners, family, friends, dating, conflicts and private life with other people",
    "finance": "money, income, debts, spending, banking, taxes, investments",
    "location": "where the person lives, is or travels; addresses, routes, whereabouts",
    "personal": "hobbies, leisure, tastes and habits outside work",
    "work": "their job, projects, colleagues, tools, code and professional skills",
    "other": "none of the above",
}


def most_sensitive(classes: Iterable[str | None]) -> Sensitivity | None:
    """The most sensitive of `classes` by SENSITIVITY_ORDER (None and unknown names ignored); None when none."""
    found = {c for c in classes if c is not None}
    return next((c for c in SENSITIVITY_ORDER if c in found), None)


#: Bounds of a request for suggestions, shared by the engine that checks them and the tool that
#: advertises them.
SUGGEST_MAX_LIMIT = 10
SUGGEST_MAX_CONTEXT_CHARS = 2000


class InvalidInput(ValueError):
    """A caller passed something the store refuses; nothing was changed. The message is for people."""


class NotFound(LookupError):
    """An id that does not exist."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ts(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewObservation(_Model):
    """An observation as an observer or client reports it, before redaction."""

    content: str
    kind: ObservationKind = "text"
    source: str = Field("unknown", min_length=1, max_length=200)
    observed_at: datetime | None = None  # default: when it is added
    app: str | None = Field(None, max_length=200)  # screen: the focused window's application (forget by app)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content is empty")
        return value


class Observation(_Model):
    id: int
    kind: ObservationKind
    source: str
    content: str | None  # None once pruned by retention
    observed_at: datetime
    created_at: datetime
    status: ObservationStatus
    attempts: int = 0
    last_error: str | None = None
    processed_at: datetime | None = None
    redactions: int = 0


class PropositionDraft(_Model):
    """A proposition's content: immutable once stored."""

    text: str = Field(min_length=1, max_length=2000)
    reasoning: str = Field("", max_length=8000)
    confidence: Score
    decay: Score


class Proposition(_Model):
    id: int
    text: str | None  # None once forgotten
    reasoning: str | None
    confidence: int
    decay: int
    created_at: datetime
    last_supported_at: datetime
    support_count: int
    retired_at: datetime | None = None
    retired_cause: LineageCause | None = None
    user_confirmed: bool = False
    evidence_pruned: bool = False
    sensitivity: Sensitivity | None = None  # None: not tagged yet (withheld from clients a policy restricts)
    kind: PropositionKind = "belief"
    applies_to: str | None = None  # an instruction's or preference's situation ("booking flights"); None once forgotten

    @property
    def current(self) -> bool:
        return self.retired_at is None


class NewProposition(_Model):
    """A proposition to create in a batch: its content, the evidence, and what it supersedes."""

    draft: PropositionDraft
    evidence: tuple[int, ...] = ()  # observation ids
    supersedes: tuple[int, ...] = ()  # proposition ids that this one replaces
    cause: LineageCause = "proposed"
    note: str | None = None  # why (shown in the history)
    user_confirmed: bool = False
    # its class as judged (None: not judged); the store makes it at least as sensitive as what it supersedes
    sensitivity: Sensitivity | None = None
    # belief, preference or instruction; the store keeps the strongest of its own and what it supersedes
    kind: PropositionKind = "belief"
    applies_to: str | None = Field(None, max_length=300)


class Reinforcement(_Model):
    """New evidence for an existing proposition whose content stays as it is."""

    proposition_id: int
    evidence: tuple[int, ...]


class BatchResult(_Model):
    """Everything one engine batch decided, written by the store in one transaction."""

    observation_ids: tuple[int, ...]  # every observation of the batch
    skipped: dict[int, str] = Field(default_factory=dict)  # observation id -> reason
    new: tuple[NewProposition, ...] = ()
    reinforce: tuple[Reinforcement, ...] = ()
    retire: dict[int, LineageCause] = Field(default_factory=dict)  # retired without a successor
    context: tuple[int, ...] = ()  # proposition ids the prompts showed: a forget of one abandons the batch


class LineageEdge(_Model):
    parent_id: int
    child_id: int
    cause: LineageCause
    note: str | None = None
    at: datetime


class PropositionDetail(_Model):
    proposition: Proposition
    parents: tuple[LineageEdge, ...]  # what this one superseded
    children: tuple[LineageEdge, ...]  # what superseded it
    successors: tuple[int, ...]  # current propositions this id leads to (itself when current)
    history: tuple[Proposition, ...]  # every ancestor, oldest first
    evidence: tuple[Observation, ...]
    feedback: tuple[Feedback, ...]


class Feedback(_Model):
    id: int
    proposition_id: int
    verdict: Verdict
    note: str | None
    at: datetime


class LLMCall(_Model):
    stage: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    outcome: str = "ok"  # ok | retry | error | invalid | budget
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)


class ForgetReport(_Model):
    observations_deleted: int = 0
    propositions_forgotten: int = 0
    proposition_ids: tuple[int, ...] = ()
    observation_ids: tuple[int, ...] = ()
    rederive_ids: tuple[int, ...] = ()  # of proposition_ids: lost part of their evidence, re-derived from the rest
    requeued_observation_ids: tuple[int, ...] = ()  # the remaining evidence, pending again for the engine


class Page(_Model):
    items: tuple[Proposition, ...]
    next_cursor: str | None


class Stats(_Model):
    observations: dict[str, int]
    propositions_current: int
    propositions_retired: int
    evidence_links: int
    feedback: int
    llm_calls: int
    tokens_today: int
    oldest_observation: datetime | None
    newest_observation: datetime | None
    schema_version: int
    failed: tuple[Observation, ...] = ()


PropositionDetail.model_rebuild()


def human_age(since: datetime, now: datetime | None = None) -> str:
    """How long ago, compactly: 45s, 12m, 3h, 2d."""
    seconds = max(0.0, ((now or utcnow()) - since).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_RELATIVE = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: Errors quote at most this many characters of what the caller passed.
SHOWN_CHARS = 200
#: The longest duration or age accepted (a century).
MAX_DURATION = timedelta(days=36_525)


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` quoted for an error message, cut to about `limit` characters (`'abc…' (12,345 characters)`)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def local_time(value: datetime, fmt: str = "%H:%M") -> str:
    """A time as people read it: this machine's local time with its zone, e.g. `14:05 CET`."""
    local = value.astimezone()
    return f"{local.strftime(fmt)} {local.tzname() or local.strftime('%z')}"


def parse_duration(text: str, *, name: str = "duration") -> timedelta:
    """A length of time such as `90s`, `30m`, `2h`, `3d`, `1w`, at most MAX_DURATION. Raises InvalidInput
    naming `name`."""
    match = _DURATION_RE.fullmatch(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise InvalidInput(f"{name}: {shown(text)} is not a duration; use e.g. 30m, 2h, 1d")
    seconds = float(match.group(1)) * _RELATIVE[match.group(2).lower()]
    if not seconds <= MAX_DURATION.total_seconds():  # also inf and nan
        raise InvalidInput(f"{name}: {shown(text)} is too long; at most {MAX_DURATION.days:,} days")
    return timedelta(seconds=seconds)


def parse_when(text: str, *, now: datetime | None = None, name: str = "time") -> datetime:
    """ISO-8601 (a date, or a date and time; UTC when no zone is given) or a relative age such as
    `90m`, `2h`, `3d`, `1w` (that long ago). Raises InvalidInput naming `name`."""
    value = text.strip()
    if _DURATION_RE.fullmatch(value):
        try:
            return (now or utcnow()) - parse_duration(value, name=name)
        except OverflowError:
            raise InvalidInput(f"{name}: {shown(text)} is too long ago") from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise InvalidInput(
            f"{name}: {shown(text)} is not a time; use ISO-8601 (2026-11-20 or 2026-11-20T14:30:00Z)"
            " or a relative age like 90m, 2h, 3d, 1w"
        ) from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 lies before the first representable instant
        raise InvalidInput(f"{name}: {shown(text)} is out of range") from None
    return parsed
