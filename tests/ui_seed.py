"""A realistic user model for the page's tests, screenshots and bench, written through the store.

The working week of tests/fixtures/week.jsonl (shifted so that it ends an hour ago, each screen
observation with the application its title names), then beliefs about the person drawn from it: each
proposed from its first observations, reinforced by later ones, some revised or merged, one confirmed,
one corrected and one rejected, all through `Store.complete_batch` and `Store.give_feedback`, as the
engine and the MCP tools write them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gum_mcp.domain import (
    BatchResult,
    NewObservation,
    NewProposition,
    Observation,
    PropositionDraft,
    Reinforcement,
    utcnow,
)
from gum_mcp.store import Store

TRACE = Path(__file__).resolve().parent / "fixtures" / "week.jsonl"

#: A screen title's first part -> the application (as the window observer would report it)
APPS = {"VS Code": "VS Code", "Slack": "Slack", "Chrome": "Chrome", "Google Calendar": "Google Calendar",
        "Excel": "Excel", "GitHub": "GitHub", "Jira": "Jira", "Gmail": "Gmail", "Outlook": "Outlook",
        "Strava": "Strava", "Notion": "Notion", "Terminal": "Terminal", "WhatsApp": "WhatsApp"}


@dataclass(frozen=True)
class Belief:
    text: str
    reasoning: str
    confidence: int
    decay: int
    match: tuple[str, ...] = ()  # words any of which an observation's content contains
    source: str | None = None  # or: every observation of this source


def app_of(kind: str, content: str) -> str | None:
    if kind != "screen":
        return None
    head = content.split(" - ", 1)[0]
    return next((app for prefix, app in APPS.items() if head.startswith(prefix)), None)


BELIEFS = {
    "running": Belief("Has taken up running", "Strava activities appear on several mornings.", 5, 5, ("Strava",)),
    "marathon": Belief("Is training for the Porto Half Marathon on March 22, running three times a week",
                       "A registration confirmation, a 12-week plan asked of Claude and Strava runs labelled with "
                       "the plan's week.", 8, 6, ("Porto Half", "half marathon", "Strava")),
    "budget": Belief("Edits the Q4 budget forecast in Excel most mornings", "Budget-Q4.xlsx is open and edited "
                     "almost every morning.", 7, 5, ("Budget-Q4",)),
    "jordan": Belief("Keeps Jordan Lee updated on the Q4 forecast", "Posts in #finance-planning and emails with "
                     "Jordan Lee about the forecast.", 6, 5, ("Jordan Lee",)),
    "forecast": Belief("Owns the Q4 budget forecast and reports it to Jordan Lee, who wants the draft by Thursday",
                       "Edits the forecast daily, posts its versions for Jordan Lee and was asked for the draft by "
                       "Thursday EOD.", 8, 5, ("Budget-Q4", "Jordan Lee", "forecast")),
    "data238": Belief("Is fixing DATA-238, the claims dashboard refresh that fails on Mondays",
                      "The Jira ticket is assigned to her and in progress all week.", 7, 4, ("DATA-238",)),
    "etl": Belief("Maintains the S3 loader of northwind/etl-pipeline and reviews its pull requests",
                  "Edits loaders/s3.py and its tests, and reviews PR #412 'Add retry to S3 loader'.", 8, 7,
                  ("etl-pipeline", "s3.py", "#412")),
    "lisbon": Belief("Is planning a trip to Lisbon with Sam, March 14 to 24", "Flights to Lisbon, an Alfama flat on "
                     "a 'Lisbon March' wishlist and a shared itinerary from Sam.", 8, 5, ("Lisbon", "Alfama")),
    "wedding": Belief("Will attend Anika's wedding in Toronto on December 12", "A calendar event, the invitation "
                      "email and the couple's gift registry.", 9, 3, ("Anika",)),
    "focus": Belief("Keeps mornings from 8:30 to 10:00 free of meetings for focused work", "Mornings are blocked as "
                    "'Focus time' and she moves meetings after 10.", 7, 8, ("Focus time", "Vendor sync")),
    "vegetarian": Belief("Is vegetarian", "Restaurant lists with vegetarian options marked, lentil soup lunches.",
                         6, 9, ("vegetarian", "lentil")),
    "mei": Belief("Often has lunch with Mei Chen at Green Bowl", "Slack messages with Mei Chen about lunch.", 6, 4,
                  ("Mei Chen",)),
    "rust": Belief("Is learning Rust in the evenings, reading The Rust Programming Language",
                   "The Rust book is open late in the day, at the chapter on lifetimes.", 7, 7, ("Rust",)),
    "theme": Belief("Prefers a dark editor theme (Dracula in VS Code)", "VS Code always appears in a dark theme.",
                    6, 9, ("dark theme",)),
    "pydata": Belief("Is going to PyData Lisbon and budgets it as team travel", "A PyData Lisbon row in the Travel "
                     "sheet of the budget.", 6, 5, ("PyData",)),
    "claude": Belief("Asks Claude to plan training and draft summaries", "Conversations with Claude Desktop.", 5, 6,
                     source="claude-desktop"),
    "cursor": Belief("Writes the pipeline's Python with Cursor", "Cursor sessions on the ETL code.", 5, 6,
                     source="cursor"),
    "mixer": Belief("Wants a KitchenAid stand mixer", "Viewed a KitchenAid stand mixer on a registry.", 4, 3,
                    ("KitchenAid",)),
}


def add_week(store: Store, *, end: datetime | None = None) -> list[Observation]:
    """The week's observations, shifted to end an hour before `end` (default now)."""
    rows = [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]
    times = [datetime.fromisoformat(r["observed_at"]) for r in rows]
    shift = (end or utcnow()) - timedelta(hours=1) - max(times)
    return store.add_observations([
        NewObservation(content=r["content"], kind=r["kind"], source=r["source"], observed_at=t + shift,
                       app=app_of(r["kind"], r["content"]))
        for r, t in zip(rows, times, strict=True)])


def _evidence(observations: list[Observation], belief: Belief, most: int = 12) -> list[Observation]:
    found = [o for o in observations if (belief.source and o.source == belief.source)
             or any(m.lower() in (o.content or "").lower() for m in belief.match)]
    found.sort(key=lambda o: (o.observed_at, o.id))
    if len(found) <= most:
        return found
    step = len(found) / most
    return [found[int(i * step)] for i in range(most)]


def _propose(store: Store, belief: Belief, evidence: list[Observation], *, supersedes: tuple[int, ...] = (),
             cause: str = "proposed", note: str | None = None, first: int = 3) -> int:
    """Propose from the first `first` observations, then reinforce with the rest in two later batches."""
    head, tail = evidence[:first], evidence[first:]
    at = head[-1].observed_at + timedelta(minutes=4)
    draft = PropositionDraft(text=belief.text, reasoning=belief.reasoning, confidence=belief.confidence,
                             decay=belief.decay)
    [pid] = store.complete_batch(BatchResult(observation_ids=tuple(o.id for o in head), new=(NewProposition(
        draft=draft, evidence=tuple(o.id for o in head), supersedes=supersedes, cause=cause, note=note),)), at=at)
    half = len(tail) // 2
    for part in (tail[:half], tail[half:]):
        if part:
            ids = tuple(o.id for o in part)
            store.complete_batch(BatchResult(observation_ids=ids, reinforce=(Reinforcement(proposition_id=pid,
                                                                                             evidence=ids),)),
                                 at=part[-1].observed_at + timedelta(minutes=4))
    return pid


def seed(store: Store, *, end: datetime | None = None) -> dict[str, int]:
    """Write the week and the beliefs; returns name -> the id of each belief's current version (None when
    rejected). Every observation ends up processed."""
    observations = add_week(store, end=end)
    ids: dict[str, int] = {}
    for name, belief in BELIEFS.items():
        if name in ("running", "marathon", "forecast", "budget", "jordan"):
            continue
        ids[name] = _propose(store, belief, _evidence(observations, belief))
    # revised: a vague belief made precise by later evidence
    runs = _evidence(observations, BELIEFS["running"], most=4)
    old = _propose(store, BELIEFS["running"], runs, first=2)
    later = [o for o in _evidence(observations, BELIEFS["marathon"]) if o.observed_at > runs[-1].observed_at]
    ids["marathon"] = _propose(store, BELIEFS["marathon"], later or runs, supersedes=(old,), cause="revised",
                               note="a race date and a training plan appeared")
    # merged: two beliefs about the same work
    a = _propose(store, BELIEFS["budget"], _evidence(observations, BELIEFS["budget"], most=6))
    b = _propose(store, BELIEFS["jordan"], _evidence(observations, BELIEFS["jordan"], most=5))
    tail = [o for o in _evidence(observations, BELIEFS["forecast"]) if o.observed_at.weekday() >= 2][-4:]
    ids["forecast"] = _propose(store, BELIEFS["forecast"], tail, supersedes=(a, b), cause="merged",
                               note="the same work, seen from Excel and from Slack", first=len(tail))
    # the person's verdicts, as the MCP tool gives them
    ids["wedding"] = store.give_feedback(ids["wedding"], "confirm").id
    ids["vegetarian"] = store.give_feedback(ids["vegetarian"], "correct",
                                            correction="Eats mostly vegetarian, but not strictly").id
    store.give_feedback(ids.pop("mixer"), "reject")
    pending = [o.id for o in store.observations(status="pending", limit=100000)]
    if pending:
        store.complete_batch(BatchResult(observation_ids=tuple(pending)))
    return ids


def add_bulk(store: Store, count: int, *, evidence_per: int = 2) -> None:
    """`count` more current propositions (texts from the week), each resting on `evidence_per` observations:
    a user model of realistic size for the render bench."""
    rows = [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]
    texts = [r["content"] for r in rows]
    with store.db.read() as conn:
        obs = [r[0] for r in conn.execute("SELECT id FROM observations ORDER BY id")]
        now = utcnow().timestamp()
    with store.db.write() as conn:
        start = conn.execute("SELECT coalesce(max(id), 0) FROM propositions").fetchone()[0] + 1
        conn.executemany(
            "INSERT INTO propositions (text, reasoning, confidence, decay, created_at, last_supported_at,"
            " support_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((f"{texts[i % len(texts)][:150]} (#{i})", "seeded for the bench", 1 + i % 10, 1 + (i * 7) % 10,
              now - 600 - i * 60, now - 300 - i * 45, evidence_per) for i in range(count)))
        conn.executemany(
            "INSERT OR IGNORE INTO evidence (proposition_id, observation_id) VALUES (?, ?)",
            ((start + i, obs[(i * 7 + j * 13) % len(obs)]) for i in range(count) for j in range(evidence_per)))


# ------------------------------------------------------------------------------------------------ part two
#: The class of knowledge each seeded belief is (gum_mcp/domain.py SENSITIVITY_ORDER), as the tagger would say.
CLASSES = {"marathon": "health", "forecast": "work", "data238": "work", "etl": "work", "lisbon": "location",
           "wedding": "relationships", "focus": "work", "vegetarian": "personal", "mei": "relationships",
           "rust": "personal", "theme": "work", "pydata": "work", "claude": "work", "cursor": "work"}

#: What the audit skipped, and observations carrying secrets (the redactor removes them on the way in).
PRIVATE = [
    ("WhatsApp - chat with Mum: 'the test results came back, call me tonight'", "screen", "WhatsApp",
     "audit: a private family conversation about health"),
    ("Chrome - Online banking, statement for November, balance and card transactions", "screen", "Chrome",
     "audit: banking details the person would not want used"),
    ("Signal - message thread with Alex about the weekend", "screen", None, "audit: a private conversation"),
]
SECRETS = [
    ("Terminal - export OPENAI_API_KEY=sk-proj-Zx8Qp2Lm4Nv6Rt8Yw0Ab2Cd4Ef6Gh8Ij0Kl2Mn4Op6Qr8St0 && python run.py",
     "screen", "Terminal"),
    ("Terminal - psql postgresql://etl:Tr0ub4dor-and-3@db.northwind.internal:5432/claims", "screen", "Terminal"),
    ("Slack - #finance-planning: Jordan Lee (jordan.lee@northwind.example) asks for the draft; call +1 415 555 0142",
     "screen", "Slack"),
    ("edited ~/code/etl-pipeline/.env.local 2 times (+2/-1 lines): AWS_SECRET_ACCESS_KEY="
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "file", None),
]

SUGGESTIONS = [  # title, action, rationale, benefit, cost, grounds, verdict (None: still open)
    ("Block a long run on Saturday morning", "Add a 16 km run to the calendar for Saturday 8:00, after the week's "
     "focus mornings", "Week 6 of the half-marathon plan asks for a long run and Saturday is free.", 7, 2,
     ("marathon", "focus"), None),
    ("Send Jordan the Q4 draft before Thursday", "Draft a short message to Jordan Lee with the current Budget-Q4 "
     "figures and the open questions", "Jordan asked for the draft by Thursday EOD; the forecast changed today.", 8,
     2, ("forecast",), None),
    ("Book the Alfama flat for the Lisbon trip", "Open the saved listing and check availability for March 14-24",
     "The flat is on the 'Lisbon March' wishlist and Sam shared the itinerary.", 7, 2, ("lisbon",), "accepted"),
    ("Suggest a vegetarian place near Green Bowl", "List three vegetarian lunch places within 10 minutes' walk",
     "Lunches with Mei at Green Bowl; mostly vegetarian.", 6, 2, ("vegetarian", "mei"), "dismissed"),
    ("Add a test for the S3 loader's backoff cap", "Open loaders/test_s3.py with a test skeleton for the cap",
     "PR #412 review asked for it.", 6, 2, ("etl",), "done"),
]

#: (provider, model, days it was used, calls a day, input and output tokens per call)
USAGE = [("openai", "gpt-5-mini", range(0, 60), 42, 1800, 260),
         ("anthropic", "claude-sonnet-4-6", range(60, 140), 30, 2100, 320),
         ("openai", "llama3.2:3b", range(140, 200), 55, 1500, 200)]

ACCESS = [  # client, kind, name, outcome, how many hours ago, beliefs returned (names)
    ("claude-desktop", "tool", "query_user", "ok", 1, ("marathon", "focus")),
    ("claude-desktop", "resource", "gum://profile", "ok", 3, ("forecast", "etl", "lisbon", "rust")),
    ("cursor", "tool", "query_user", "ok", 5, ("etl", "cursor")),
    ("chat-app", "tool", "query_user", "ok", 8, ("vegetarian", "mei")),
    ("chat-app", "tool", "forget", "denied", 9, ()),
    ("nightly-script", "tool", "record_observation", "ok", 20, ()),
    ("claude-desktop", "tool", "suggest_actions", "ok", 26, ("marathon", "forecast")),
    ("cursor", "tool", "get_recent_activity", "ok", 30, ()),
    ("chat-app", "tool", "list_propositions", "ok", 50, ("forecast", "wedding", "lisbon")),
    ("claude-desktop", "tool", "status", "ok", 75, ()),
]


def seed_more(store: Store, ids: dict[str, int], *, now: datetime | None = None) -> dict[str, int]:
    """Part two of the page's data: every belief tagged with its class; observations the audit skipped and
    ones whose secrets were redacted; suggestions, open and answered; 200 days of model usage; HTTP clients'
    tokens and what each client read. Through the store's own functions. Returns `ids` with the suggestions
    (`s0`...) and the extra observations (`private0`..., `secret0`...)."""
    from gum_mcp.domain import LLMCall
    from gum_mcp.engine.suggest import gate
    from gum_mcp.store.access_log import AccessEntry
    from gum_mcp.store.suggestions import NewSuggestion

    now = now or utcnow()
    store.tag_propositions({ids[name]: cls for name, cls in CLASSES.items() if name in ids})
    with store.db.read() as conn:  # earlier versions and anything else: work
        rest = [r[0] for r in conn.execute("SELECT id FROM propositions WHERE sensitivity IS NULL")]
    store.tag_propositions(dict.fromkeys(rest, "work"))
    base = now - timedelta(hours=2)
    new = [NewObservation(content=text, kind=kind, source="screen" if kind == "screen" else "files", app=app,
                          observed_at=base + timedelta(minutes=7 * i))
           for i, (text, kind, app, *_) in enumerate([*PRIVATE, *SECRETS])]
    added = store.add_observations(new)
    private, secret = added[:len(PRIVATE)], added[len(PRIVATE):]
    store.complete_batch(BatchResult(observation_ids=tuple(o.id for o in added),
                                     skipped={o.id: reason for o, (*_, reason) in zip(private, PRIVATE, strict=True)},
                                     reinforce=(Reinforcement(proposition_id=ids["forecast"],
                                                              evidence=(secret[2].id,)),)))
    out = dict(ids)
    out.update({f"private{i}": o.id for i, o in enumerate(private)})
    out.update({f"secret{i}": o.id for i, o in enumerate(secret)})
    props = store.get_propositions([ids[n] for n in ids if n in CLASSES])
    threshold = float(store.settings.suggest_threshold)
    made = []
    for title, action, rationale, benefit, cost, grounds, _ in SUGGESTIONS:
        g = gate([props[ids[n]] for n in grounds], {}, benefit, cost, threshold, now)
        made.append(NewSuggestion(title=title, action=action, rationale=rationale, benefit=benefit, cost=cost,
                                  p_useful=g.p_useful, utility=g.utility, threshold=threshold,
                                  proposition_ids=tuple(ids[n] for n in grounds)))
    saved = store.save_suggestions(made, now=now - timedelta(hours=30)).stored
    for i, (suggestion, spec) in enumerate(zip(saved, SUGGESTIONS, strict=True)):
        assert suggestion is not None, spec[0]
        out[f"s{i}"] = suggestion.id
        if spec[-1]:
            store.respond_to_suggestion(suggestion.id, spec[-1], now=now - timedelta(hours=20 - i),
                                        note="We eat there every week already" if spec[-1] == "dismissed" else None)
    for provider, model, days, per_day, inp, out_tokens in USAGE:
        for day in days:
            calls = per_day + (day * 7) % 13 - 6 + (12 if day % 7 in (1, 2) else 0)
            for n in range(calls):  # one row per call, as the engine records them
                at = now - timedelta(days=day, hours=1, minutes=11 * n)
                store.record_llm_call(LLMCall(stage=("audit", "propose", "relate", "revise")[n % 4], provider=provider,
                                              model=model, input_tokens=inp + (n * 37) % 400,
                                              output_tokens=out_tokens + (n * 13) % 90, latency_ms=900.0,
                                              outcome="ok" if (day + n) % 23 else "retry", at=at))
    for name, scopes in (("chat-app", "read,write"), ("nightly-script", "write"), ("cursor", "read")):
        store.add_token(name, scopes)
    for client, kind, name, outcome, hours, returned in ACCESS:
        store.record_access(AccessEntry(at=now - timedelta(hours=hours), client=client,
                                        transport="http" if client in ("chat-app", "nightly-script") else "stdio",
                                        kind=kind, name=name, outcome=outcome,
                                        proposition_ids=tuple(ids[n] for n in returned if n in ids),
                                        observation_ids=(secret[2].id,) if name == "get_recent_activity" else ()))
    return out
