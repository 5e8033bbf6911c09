"""The page's routes: reading (beliefs, one belief, forget), signing in and out, and the changes.

Every change calls what the MCP tools call: `Store.give_feedback` (confirm, reject, correct),
`Store.forget_proposition`, `Store.forget_source` / `forget_app` and `gum_mcp.forgetting.forget_range`,
and for a description `forgetting.content_words` -> the runtime's search (query_user's) ->
`forgetting.preview_forget`, then `forgetting.confirm_forget` with exactly what the preview pinned. A
change needs the session's CSRF token (`changes`). With htmx the answer is the changed fragment; without
JavaScript the browser is sent back with a message, so every flow also works with plain forms.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gum_mcp.domain import SENSITIVITY_ORDER, InvalidInput, NotFound, half_life_days, parse_duration, utcnow
from gum_mcp.forgetting import confirm_forget, content_words, forget_range, preview_forget
from gum_mcp.store.forget import ChangedSincePreview
from gum_mcp.ui import charts, queries, views
from gum_mcp.ui.guard import SESSION_KEY
from gum_mcp.ui.sessions import COOKIE, SESSION_TTL, Session
from gum_mcp.ui.state import UIState

PAGE = 30
WHEN = {"": "any time", "1d": "last day", "7d": "last week", "30d": "last month", "90d": "last 3 months"}
MAX_PREVIEW = 50
Handler = Callable[[Request], Awaitable[Response]]


def ui(request: Request) -> UIState:
    return request.app.state.ui


def session_of(request: Request) -> Session:
    return request.scope[SESSION_KEY]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, name: str, *, status: int = 200, partial: bool = False, **context: Any) -> HTMLResponse:
    state = ui(request)
    session = request.scope.get(SESSION_KEY)
    html = state.templates.get_template(name).render(
        csrf=session.csrf if session else "", flash=[] if partial or session is None else session.take_flash(),
        path=request.url.path, user_name=state.settings.user_name, **context)
    return HTMLResponse(html, status_code=status)


async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def changes(handler: Handler) -> Handler:
    """A change: the form is read, and refused (403) without the session's CSRF token."""

    @functools.wraps(handler)
    async def checked(request: Request) -> Response:
        form = await request.form()
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        if not session_of(request).csrf_ok(token if isinstance(token, str) else None):
            return HTMLResponse("<p>This form has expired (CSRF token missing or wrong). Reload the page and try "
                                "again.</p>", status_code=403)
        request.state.form = form
        return await handler(request)

    return checked


def field(request: Request, name: str, default: str = "") -> str:
    value = request.state.form.get(name, default)
    return value.strip() if isinstance(value, str) else default


def back_to(request: Request, fallback: str = "/") -> str:
    target = field(request, "back")
    return target if target.startswith("/") and not target.startswith("//") else fallback


# ---------------------------------------------------------------------------------------- signing in
async def login(request: Request) -> Response:
    state = ui(request)
    cookie = state.sessions.redeem_link(request.query_params.get("token", ""))
    if cookie is None:
        return render(request, "message.html", status=403, title="This link no longer works",
                      message="A sign-in link works once, for ten minutes. Run gum-mcp ui again for a new one.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, cookie, max_age=int(SESSION_TTL), httponly=True, samesite="strict", path="/")
    return response


@changes
async def logout(request: Request) -> Response:
    ui(request).sessions.end(request.cookies.get(COOKIE))
    response = render(request, "message.html", title="Signed out",
                      message="Run gum-mcp ui again to open this page with a new link.")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# ---------------------------------------------------------------------------------------- reading
def _filters(request: Request) -> tuple[queries.Filters, dict[str, str]]:
    params = request.query_params
    chosen = {k: params.get(k, "").strip()[:200] for k in ("q", "source", "app", "sensitivity", "when", "order")}
    if chosen["sensitivity"] not in (*SENSITIVITY_ORDER, queries.UNTAGGED):
        chosen["sensitivity"] = ""
    if chosen["when"] not in WHEN:
        chosen["when"] = ""
    if chosen["order"] not in ("recent", "confidence"):
        chosen["order"] = "recent"
    since = utcnow() - parse_duration(chosen["when"]) if chosen["when"] else None
    return queries.Filters(source=chosen["source"] or None, app=chosen["app"] or None, since=since,
                           sensitivity=chosen["sensitivity"] or None), chosen


async def beliefs(request: Request) -> Response:
    """What I believe about you: current beliefs, searched and filtered."""
    state = ui(request)
    filters, chosen = _filters(request)
    try:
        page = max(0, int(request.query_params.get("page", "0")))
    except ValueError:
        page = 0
    now = utcnow()
    note = None
    if chosen["q"]:
        from gum_mcp.retrieval import MAX_K  # numpy: not at start

        result = await state.search(chosen["q"], k=MAX_K, since=filters.since)
        hits = [h for h in result.hits if h.proposition is not None]
        keep = await blocking(queries.keep_matching, state.store, [h.id for h in hits], filters)
        found = [h.proposition for h in hits if h.id in keep]
        props, total, note = found[page * PAGE:(page + 1) * PAGE], len(found), result.note
    else:
        props, total = None, 0
    body = await blocking(_page_data, state, filters, chosen, page, props, total)
    cards = [views.card(p, now, body["evidence"].get(p.id, []), body["counts"].get(p.id, 0)) for p in body["props"]]
    more = (page + 1) * PAGE < body["total"]
    query = {k: v for k, v in chosen.items() if v and not (k == "order" and v == "recent")}
    return render(request, "beliefs.html", partial=is_htmx(request), cards=cards, total=body["total"],
                  chosen=chosen, when_options=WHEN, sources=body["sources"], apps=body["apps"], note=note,
                  classes=body["classes"], untagged=queries.UNTAGGED,
                  histogram=charts.histogram(body["histogram"]), page=page, more=more,
                  next_url="/?" + urlencode({**query, "page": page + 1}), charts=charts,
                  searched=bool(chosen["q"]))


def _page_data(state: UIState, filters: queries.Filters, chosen: dict[str, str], page: int, props: Any,
               total: int) -> dict[str, Any]:
    store = state.store
    if props is None:
        props, total = queries.current(store, filters, order=chosen["order"], offset=page * PAGE, limit=PAGE)
    evidence, counts = queries.evidence(store, [p.id for p in props])
    sources, apps = queries.facets(store)
    return {"props": props, "total": total, "evidence": evidence, "counts": counts, "sources": sources,
            "apps": apps, "classes": queries.class_facets(store),
            "histogram": queries.confidence_histogram(store, filters)}


async def proposition(request: Request) -> Response:
    """One belief: how sure and how fresh, the evidence, and its history."""
    state = ui(request)
    try:
        pid = int(request.path_params["id"])
        data = await blocking(_detail_data, state, pid)
    except (ValueError, NotFound):
        return render(request, "message.html", status=404, title="Not found",
                      message="There is no belief with that number. It may have been forgotten.")
    return render(request, "proposition.html", **data)


def _detail_data(state: UIState, pid: int) -> dict[str, Any]:
    store = state.store
    detail = store.proposition_detail(pid, evidence_limit=50)
    p = detail.proposition
    now = utcnow()
    ids = [h.id for h in detail.history] + [p.id]
    edges = queries.lineage_around(store, ids)
    links = queries.evidence_of_versions(store, ids)
    feedback = list(detail.feedback)
    evidence, counts = queries.evidence(store, [p.id], per=50)
    age = max(0.0, (now - p.last_supported_at).total_seconds() / 86400)
    return {"card": views.card(p, now, evidence.get(p.id, []), counts.get(p.id, 0)),
            "events": views.timeline(p, list(detail.history), edges, links, feedback),
            "successors": [s for s in detail.successors if s != p.id], "charts": charts,
            "curve": charts.decay_curve(half_life_days(p.decay), age), "local": views.local}


# ---------------------------------------------------------------------------------------- verdicts
async def _verdict(request: Request, verdict: str) -> Response:
    state = ui(request)
    pid = int(request.path_params["id"])
    correction = field(request, "text") if verdict == "correct" else None
    try:
        successor = await state.store.aio.give_feedback(pid, verdict, correction=correction)
    except (InvalidInput, NotFound) as exc:
        return refused(request, str(exc.args[0]) if exc.args else str(exc))
    state.wake_index()
    said = {"confirm": "Confirmed. It now counts as certain.",
            "reject": "Rejected. It is retired and will not be proposed again.",
            "correct": "Corrected. Your words replace it."}[verdict]
    if successor is None:
        return _done(request, said, gone=True, fallback="/")
    if field(request, "view") == "detail":
        return go(request, f"/p/{successor.id}", said)
    if not is_htmx(request):
        return go(request, back_to(request), said)
    evidence, counts = await blocking(queries.evidence, state.store, [successor.id])
    item = views.card(successor, utcnow(), evidence.get(successor.id, []), counts.get(successor.id, 0), note=said)
    return render(request, "_card.html", partial=True, c=item, charts=charts)


@changes
async def confirm(request: Request) -> Response:
    return await _verdict(request, "confirm")


@changes
async def reject(request: Request) -> Response:
    return await _verdict(request, "reject")


@changes
async def correct(request: Request) -> Response:
    return await _verdict(request, "correct")


@changes
async def forget_one(request: Request) -> Response:
    state = ui(request)
    pid = int(request.path_params["id"])
    try:
        report = await state.store.aio.forget_proposition(pid, delete_evidence=field(request, "with_evidence") == "1")
    except (InvalidInput, NotFound) as exc:
        return refused(request, str(exc.args[0]) if exc.args else str(exc))
    state.wake_index()
    said = f"Forgotten, for good: {_removed(report)}."
    fallback = "/" if field(request, "view") == "detail" else back_to(request)
    return _done(request, said, gone=True, fallback=fallback)


def _removed(report: Any) -> str:
    parts = [f"{report.propositions_forgotten} belief version{'s' if report.propositions_forgotten != 1 else ''}"]
    if report.observations_deleted:
        parts.append(f"{report.observations_deleted} observation{'s' if report.observations_deleted != 1 else ''}")
    text = " and ".join(parts) + " removed"
    if report.rederive_ids:
        text += (f"; {len(report.rederive_ids)} belief{'s' if len(report.rederive_ids) != 1 else ''} lost part of"
                 " their evidence and will be re-derived from the rest")
    return text


def _done(request: Request, message: str, *, gone: bool, fallback: str) -> Response:
    if field(request, "view") == "detail" or not is_htmx(request):
        return go(request, fallback, message)
    return render(request, "_gone.html", partial=True, message=message)


def go(request: Request, url: str, message: str) -> Response:
    session_of(request).say(message)
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def refused(request: Request, message: str) -> Response:
    if is_htmx(request):
        return render(request, "_notice.html", partial=True, status=200, message=message, kind="error")
    return go(request, back_to(request), message)


# ---------------------------------------------------------------------------------------- forgetting
async def forget_page(request: Request) -> Response:
    """Forget: by description (preview, then confirm), or by source, application or time (count, then confirm)."""
    return await _forget_full(request)


async def _forget_full(request: Request, **context: Any) -> Response:
    sources, apps = await blocking(queries.facets, ui(request).store)
    base = {"preview": None, "count": None, "result": None, "described": "", "error": None, "scope": None,
            "token": None, "fragment": None, "section": None}
    return render(request, "forget.html", sources=sources, apps=apps, **{**base, **context})


@changes
async def forget_preview(request: Request) -> Response:
    """Forget by description, step one: what matches, and why; nothing is removed."""
    state = ui(request)
    described = field(request, "q")[:1000]
    with_evidence = field(request, "with_evidence") == "1"
    try:
        words = content_words(described, state.settings.user_name)
    except InvalidInput as exc:
        return await _answer(request, "_preview.html", error=str(exc.args[0]), preview=None, described=described,
                             section="describe")
    from gum_mcp.retrieval import MAX_K

    result = await state.search(" ".join(words), k=min(MAX_K, 3 * MAX_PREVIEW))
    preview = await blocking(preview_forget, state.store, described, words, result.hits, max_matches=MAX_PREVIEW,
                             with_evidence=with_evidence, note=result.note)
    token = state.sessions.hold_preview(session_of(request), preview.query, preview.versions, preview.with_evidence)
    return await _answer(request, "_preview.html", preview=preview, token=token, described=described, error=None,
                         section="describe")


@changes
async def forget_confirm(request: Request) -> Response:
    """Forget by description, step two: exactly what the preview showed, or nothing if any of it changed."""
    state = ui(request)
    pending = state.sessions.take_preview(session_of(request), field(request, "token"))
    if pending is None:
        return await _answer(request, "_result.html", result=None, section="describe",
                             error="This preview has expired or was already used. Nothing was removed; preview again.")
    try:
        report = await blocking(confirm_forget, state.store, pending.versions, pending.with_evidence)
    except ChangedSincePreview:
        return await _answer(request, "_result.html", result=None, section="describe",
                             error="Something changed since the preview. Nothing was removed; preview again.")
    state.wake_index()
    return await _answer(request, "_result.html", result=f"Forgotten, for good: {_removed(report)}.", error=None,
                         section="describe")


def _scope(request: Request) -> dict[str, Any]:
    kind = field(request, "kind")
    if kind == "source":
        value = field(request, "source")
        if not value:
            raise InvalidInput("choose a source")
        return {"kind": kind, "source": value, "label": f"everything {value} reported"}
    if kind == "app":
        value = field(request, "app")
        if not value:
            raise InvalidInput("choose an application")
        return {"kind": kind, "app": value, "label": f"everything seen in {value}"}
    if kind == "range":
        since, until = _local(field(request, "since"), "from"), _local(field(request, "until"), "to")
        if since is None and until is None:
            raise InvalidInput("give a start, an end or both")
        label = " ".join(filter(None, [f"from {views.local(since)}" if since else None,
                                       f"until {views.local(until)}" if until else None]))
        return {"kind": kind, "since": since, "until": until, "label": f"everything observed {label}",
                "since_text": field(request, "since"), "until_text": field(request, "until")}
    raise InvalidInput("choose what to forget: a source, an application or a time range")


def _local(text: str, name: str) -> datetime | None:
    """A browser's datetime-local value (this machine's time zone)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).astimezone()
    except ValueError:
        raise InvalidInput(f"{name}: not a date and time") from None


@changes
async def forget_count(request: Request) -> Response:
    """Forget by source, application or time: how much that is; nothing is removed."""
    state = ui(request)
    try:
        scope = _scope(request)
        count = await blocking(state.store.forget_count, since=scope.get("since"), until=scope.get("until"),
                               source=scope.get("source"), app=scope.get("app"))
    except InvalidInput as exc:
        return await _answer(request, "_count.html", error=str(exc.args[0]), count=None, scope=None, section="scope")
    return await _answer(request, "_count.html", count=count, scope=scope, error=None, section="scope")


@changes
async def forget_scope(request: Request) -> Response:
    state = ui(request)
    try:
        scope = _scope(request)
        if scope["kind"] == "source":
            report = await state.store.aio.forget_source(scope["source"])
        elif scope["kind"] == "app":
            report = await state.store.aio.forget_app(scope["app"])
        else:
            report = await blocking(forget_range, state.store, scope["since"], scope["until"])
    except InvalidInput as exc:
        return await _answer(request, "_result.html", result=None, error=str(exc.args[0]), section="scope")
    state.wake_index()
    return await _answer(request, "_result.html", result=f"Forgotten, for good: {_removed(report)}.", error=None,
                         section="scope")


async def _answer(request: Request, fragment: str, **context: Any) -> Response:
    """The fragment for htmx, the whole forget page (with the fragment in place) without it."""
    if is_htmx(request):
        return render(request, fragment, partial=True, **context)
    return await _forget_full(request, **context, fragment=fragment)
