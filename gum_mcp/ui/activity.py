"""What gum-mcp did: the observations it made (per day and application, what the audit skipped, how many
secrets were redacted, each observation with the beliefs inferred from it) and the model calls it paid for
(tokens per day against the daily budget, from the daily totals kept 400 days, and an estimated cost).
Read-only pages."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from gum_mcp.domain import utcnow
from gum_mcp.ui import charts, prices, queries
from gum_mcp.ui.routes import blocking, is_htmx, render, ui
from gum_mcp.ui.state import UIState

SPANS = {"7": "last 7 days", "14": "last 14 days", "30": "last 30 days"}
DEFAULT_SPAN = "7"
USAGE_SPANS = {"30": "last 30 days", "90": "last 90 days", "400": "last 400 days"}
WEEKLY_FROM = 90  # longer periods are drawn a week a bar
STATUSES = {"": "any status", "processed": "used", "skipped": "skipped by the audit", "pending": "waiting",
            "failed": "failed"}
TOP_GROUPS = 8
OBSERVATIONS_PAGE = 40


def _int(text: str, default: int, low: int = 0) -> int:
    try:
        return max(low, int(text))
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------- activity
async def activity(request: Request) -> Response:
    """Activity: a timeline of observations per day and application, and the observations themselves."""
    params = request.query_params
    chosen = {"days": params.get("days", DEFAULT_SPAN), "group": params.get("group", "").strip()[:200],
              "day": params.get("day", "").strip()[:10], "status": params.get("status", "")}
    if chosen["days"] not in SPANS:
        chosen["days"] = DEFAULT_SPAN
    if chosen["status"] not in STATUSES:
        chosen["status"] = ""
    page = _int(params.get("page", "0"), 0)
    data = await blocking(_activity_data, ui(request), chosen, page)
    query = {k: v for k, v in chosen.items() if v and not (k == "days" and v == DEFAULT_SPAN)}
    more = (page + 1) * OBSERVATIONS_PAGE < data["total"]
    return render(request, "activity.html", partial=is_htmx(request), chosen=chosen, spans=SPANS,
                  statuses=STATUSES, page=page, more=more,
                  next_url="/activity?" + urlencode({**query, "page": page + 1}), **data)


def _activity_data(state: UIState, chosen: dict[str, str], page: int) -> dict[str, Any]:
    store = state.store
    today = datetime.now().astimezone().date()
    first = today - timedelta(days=int(chosen["days"]) - 1)
    since = datetime.combine(first, datetime.min.time()).astimezone()
    counts = queries.activity_by_day(store, since)
    days = [(first + timedelta(days=i)).isoformat() for i in range((today - first).days + 1)]
    by_group: dict[str, int] = defaultdict(int)
    for c in counts:
        by_group[c.group] += c.observations
    ranked = sorted(by_group, key=lambda g: (-by_group[g], g.casefold()))
    top = ranked[:TOP_GROUPS]
    names = top + (["everything else"] if len(ranked) > TOP_GROUPS else [])
    index = {d: i for i, d in enumerate(days)}
    values = {name: [0] * len(days) for name in names}
    rows: dict[str, dict[str, int]] = {g: {"observations": 0, "skipped": 0, "redactions": 0} for g in ranked}
    for c in counts:
        name = c.group if c.group in top else "everything else"
        if c.day in index:
            values[name][index[c.day]] += c.observations
        row = rows[c.group]
        row["observations"] += c.observations
        row["skipped"] += c.skipped
        row["redactions"] += c.redactions
    labels = [date.fromisoformat(d).strftime("%a %d") for d in days]
    chart = charts.stacked_days(days, labels, [(n, values[n]) for n in names], what="Observations")
    legend = [(i, n, sum(values[n])) for i, n in enumerate(names)]
    day = chosen["day"] if chosen["day"] in index else ""
    filters = {"since": None if day else since, "group": chosen["group"] or None, "day": day or None}
    observations, total = queries.observation_rows(store, **filters, status=chosen["status"] or None,
                                                   offset=page * OBSERVATIONS_PAGE, limit=OBSERVATIONS_PAGE)
    return {"chart": chart, "legend": legend, "totals": queries.activity_totals(store, since),
            "groups": [(g, rows[g]) for g in ranked], "observations": observations, "total": total,
            "day_options": [(d, date.fromisoformat(d).strftime("%a %d %b")) for d in reversed(days)],
            "listed": queries.activity_totals(store, **filters), "audit": state.settings.audit}


# ---------------------------------------------------------------------------------------- usage
@dataclass
class ModelRow:
    provider: str
    model: str
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def cost(self) -> float | None:
        return prices.cost(self.provider, self.model, self.input_tokens, self.output_tokens)

    @property
    def price(self) -> prices.Price | None:
        return prices.price_of(self.provider, self.model)


async def usage(request: Request) -> Response:
    """Usage: model calls and tokens per day against the daily budget, and what they cost."""
    span = request.query_params.get("days", "30")
    if span not in USAGE_SPANS:
        span = "30"
    data = await blocking(_usage_data, ui(request), int(span))
    return render(request, "usage.html", partial=is_htmx(request), span=span, spans=USAGE_SPANS, **data)


def _usage_data(state: UIState, span: int) -> dict[str, Any]:
    from gum_mcp.llm.factory import llm_status

    store = state.store
    today = utcnow().astimezone(UTC).date()
    first = today - timedelta(days=span - 1)
    usage = store.usage_by_day(since=first)
    days = [first + timedelta(days=i) for i in range(span)]
    per_day: dict[date, list[int]] = {d: [0, 0, 0, 0] for d in days}  # input, output, calls, failures
    models: dict[tuple[str, str], ModelRow] = {}
    for u in usage:
        slot = per_day.setdefault(u.day, [0, 0, 0, 0])
        slot[0] += u.input_tokens
        slot[1] += u.output_tokens
        slot[2] += u.calls
        slot[3] += u.failures
        row = models.setdefault((u.provider, u.model), ModelRow(u.provider, u.model))
        row.calls += u.calls
        row.failures += u.failures
        row.input_tokens += u.input_tokens
        row.output_tokens += u.output_tokens
    status = llm_status(state.settings, store)
    budget = int(status.get("daily_budget") or 0)
    if span <= WEEKLY_FROM:
        fmt = "%a %d" if span <= 31 else "%d %b"
        chart = charts.usage_days([d.strftime(fmt) for d in days], [(per_day[d][0], per_day[d][1]) for d in days],
                                  budget)
    else:  # a bar per week (its days' average), so that a year stays readable against the daily budget
        weeks: dict[date, list[date]] = {}
        for d in days:
            weeks.setdefault(d - timedelta(days=d.weekday()), []).append(d)
        averages = [(sum(per_day[d][0] for d in ds) // len(ds), sum(per_day[d][1] for d in ds) // len(ds))
                    for ds in weeks.values()]
        chart = charts.usage_days([w.strftime("%d %b") for w in weeks], averages, budget, per="week")
    rows = sorted(models.values(), key=lambda r: (-(r.input_tokens + r.output_tokens), r.provider, r.model))
    known = [r.cost for r in rows if r.cost is not None]
    providers: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = providers.setdefault(r.provider, {"cost": 0.0, "unknown": [], "tokens": 0})
        p["tokens"] += r.input_tokens + r.output_tokens
        if r.cost is None:
            p["unknown"].append(r.model)
        else:
            p["cost"] += r.cost
    busiest = max(days, key=lambda d: per_day[d][0] + per_day[d][1]) if days else None
    return {
        "chart": chart, "rows": rows, "providers": providers, "budget": budget,
        "total_cost": sum(known) if known else None, "unknown": [r for r in rows if r.cost is None],
        "calls": sum(per_day[d][2] for d in days), "failures": sum(per_day[d][3] for d in days),
        "tokens": sum(per_day[d][0] + per_day[d][1] for d in days),
        "today": status.get("tokens_today") or 0, "paused_until": status.get("paused_until"),
        "busiest": None if busiest is None or not sum(per_day[busiest][:2]) else
        (busiest, per_day[busiest][0] + per_day[busiest][1]),
        "over_days": sum(1 for d in days if budget and per_day[d][0] + per_day[d][1] > budget),
        "weekly": span > WEEKLY_FROM, "provider": state.settings.llm_provider, "problem": status.get("problem"),
        "price_table": sorted(prices.PRICES.items()), "prices_as_of": prices.AS_OF,
        "first": first, "last": today,
    }
