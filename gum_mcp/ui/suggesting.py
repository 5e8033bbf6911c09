"""Suggestions: the open ones with their reasons and the numbers of the gate that let them through
(gum_mcp/engine/suggest.py), the person's verdicts (accepted, dismissed, done) through
`Store.respond_to_suggestion`, as the MCP tool `respond_to_suggestion` gives them, and the history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gum_mcp.domain import InvalidInput, NotFound
from gum_mcp.store.suggestions import OPEN_TTL_DAYS, Suggestion
from gum_mcp.ui import queries
from gum_mcp.ui.routes import blocking, changes, field, go, is_htmx, refused, render, ui
from gum_mcp.ui.state import UIState

VERDICTS = {"accept": "accepted", "dismiss": "dismissed", "done": "done"}
SAID = {"accepted": "Accepted. It stays open until you mark it done.",
        "dismissed": "Dismissed. Similar suggestions will not be offered again, and ones resting on the same "
                     "beliefs weigh less.",
        "done": "Marked done."}
STATUS_WORDS = {"pending": "waiting for you", "accepted": "accepted", "dismissed": "dismissed", "done": "done",
                "expired": "expired unanswered"}


@dataclass
class Item:
    s: Suggestion
    grounds: list[tuple[int, str, bool]]  # id, text, current

    @property
    def p_needed(self) -> float:
        """The least p_useful that would have passed the gate with this benefit and cost."""
        return (self.s.cost + self.s.threshold) / self.s.benefit

    @property
    def status(self) -> str:
        return STATUS_WORDS.get(self.s.status, self.s.status)

    @property
    def margin(self) -> float:
        return self.s.utility - self.s.threshold


def items(state: UIState, suggestions: list[Suggestion]) -> list[Item]:
    ids = sorted({pid for s in suggestions for pid in s.proposition_ids})
    texts = queries.proposition_texts(state.store, ids)
    return [Item(s, [(pid, *texts[pid]) for pid in s.proposition_ids if pid in texts]) for s in suggestions]


async def suggestions(request: Request) -> Response:
    data = await blocking(_data, ui(request))
    return render(request, "suggestions.html", ttl=int(OPEN_TTL_DAYS), **data)


def _data(state: UIState) -> dict[str, Any]:
    store = state.store
    every = store.suggestions(status="all", limit=300)
    open_ = sorted((s for s in every if s.open), key=lambda s: (s.status != "pending", -s.utility, -s.id))
    past = [s for s in every if not s.open]
    past.sort(key=lambda s: s.responded_at or s.created_at, reverse=True)
    counts = {word: sum(1 for s in past if s.status == word) for word in ("done", "dismissed", "expired")}
    return {"open": items(state, open_), "past": items(state, past[:100]), "counts": counts,
            "threshold": float(getattr(state.settings, "suggest_threshold", 2.0))}


@changes
async def respond(request: Request) -> Response:
    """A verdict on one suggestion, through the store function the MCP tool uses."""
    state = ui(request)
    verdict = VERDICTS.get(request.path_params["verdict"])
    if verdict is None:
        return refused(request, "Unknown verdict: accept, dismiss or done.")
    note = field(request, "note")[:2000] or None
    try:
        updated = await state.store.aio.respond_to_suggestion(int(request.path_params["id"]), verdict, note=note)
    except (InvalidInput, NotFound) as exc:
        return refused(request, str(exc.args[0]) if exc.args else str(exc))
    if not is_htmx(request):
        return go(request, "/suggestions", SAID[verdict])
    [item] = await blocking(items, state, [updated])
    return render(request, "_suggestion.html", partial=True, it=item, note=SAID[verdict])
