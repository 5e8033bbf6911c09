"""Clients: who may see what (the disclosure policy), the HTTP clients' tokens, and the access log.

- The policy is the file `gum-mcp policy` edits (`Settings.policy_path`, gum_mcp/store/policy.py): read with
  `load_policy` (a file that is not valid is shown with its problem and not overwritten), changed with
  `Policy.with_client` / `with_default`, written with `write_policy` (atomic, 0600). A running server reads it
  again on its next request (`PolicyFile`).
- Tokens are `Store.add_token`, `rotate_token`, `revoke_token`, as `gum-mcp token` uses them; a new secret is
  shown once, in the answer to the request that made it, and never kept by the page.
- The access log is `Store.access_log` and `access_summary`, as `gum-mcp access-log` reads them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gum_mcp.domain import SENSITIVITY_MEANINGS, SENSITIVITY_ORDER, InvalidInput, NotFound, utcnow
from gum_mcp.store.policy import (
    ALL_CLASSES,
    DEFAULT_ALLOWED,
    WITHHELD_BY_DEFAULT,
    Policy,
    PolicyError,
    load_policy,
    read_policy,
    write_policy,
)
from gum_mcp.store.tokens import SCOPES, TokenInfo, check_name
from gum_mcp.ui import queries
from gum_mcp.ui.routes import blocking, changes, field, is_htmx, render, ui
from gum_mcp.ui.state import UIState

ACCESS_PAGE = 50
SCOPE_MEANINGS = {"read": "read what is known about you", "write": "tell gum-mcp things, give verdicts",
                  "forget": "forget things", "admin": "pause observing, read the access log"}
CLASS_SHORT = {"health": "Health", "beliefs-and-identity": "Beliefs & identity", "relationships": "Relationships",
               "finance": "Finance", "location": "Location", "personal": "Personal", "work": "Work",
               "other": "Other"}


@dataclass
class ClientRow:
    name: str  # "" for the default
    allowed: frozenset[str]
    own_entry: bool
    token: TokenInfo | None = None
    calls: int = 0

    @property
    def label(self) -> str:
        return self.name or "Every other client"

    @property
    def slug(self) -> str:
        return "default" if not self.name else "c-" + "".join(ch if ch.isalnum() else "-" for ch in self.name)


def _policy_rows(state: UIState, policy: Policy) -> list[ClientRow]:
    tokens = {t.name: t for t in state.store.tokens()}
    calls = {f.name: f.count for f in queries.access_clients(state.store)}
    names = sorted(set(policy.clients) | set(tokens) | set(calls) | ({state.settings.client} - {None}),
                   key=str.casefold)
    rows = [ClientRow("", policy.default, True)]
    seen: set[str] = set()
    for name in names:
        entry = policy.entry(name)
        key = (entry or name).casefold()
        if key in seen:
            continue
        seen.add(key)
        rows.append(ClientRow(entry or name, policy.allowed(entry or name), entry is not None, tokens.get(name),
                              calls.get(name, 0)))
    return rows


def clients_data(state: UIState, client: str = "") -> dict[str, Any]:
    policy = read_policy(state.settings.policy_path)
    store = state.store
    entries = store.access_log(client=client or None, limit=ACCESS_PAGE)
    since = utcnow() - timedelta(days=28)
    return {
        "policy_problem": policy.problem, "rows": _policy_rows(state, policy), "classes": SENSITIVITY_ORDER,
        "meanings": SENSITIVITY_MEANINGS, "short": CLASS_SHORT, "policy_path": str(state.settings.policy_path),
        "withheld_by_default": WITHHELD_BY_DEFAULT, "tokens": store.tokens(), "scopes": SCOPES,
        "scope_meanings": SCOPE_MEANINGS, "entries": entries, "summary": store.access_summary(since=since),
        "access_client": client, "access_clients": queries.access_clients(store), "all_classes": ALL_CLASSES,
        "default_allowed": DEFAULT_ALLOWED, "class_counts": store.sensitivity_counts(),
    }


async def clients(request: Request, **context: Any) -> Response:
    data = await blocking(clients_data, ui(request))
    base = {"said": {}, "errors": {}, "new_token": None}
    return render(request, "clients.html", **{**base, **data, **context})


async def _section(request: Request, section: str, *, said: str | None = None, error: str | None = None,
                   new_token: dict[str, str] | None = None) -> Response:
    """The changed section for htmx, the whole page otherwise (a new token is shown in this answer only)."""
    context = {"said": {section: said} if said else {}, "errors": {section: error} if error else {},
               "new_token": new_token}
    if not is_htmx(request):
        return await clients(request, **context)
    data = await blocking(clients_data, ui(request))
    return render(request, f"_clients_{section}.html", partial=True, **{**data, **context})


# ---------------------------------------------------------------------------------------- the policy
def _change_policy(state: UIState, client: str, classes: list[str] | None) -> Policy:
    path = state.settings.policy_path
    policy = load_policy(path)  # PolicyError when the file is there but not valid: never overwritten
    policy = policy.with_default(classes or []) if client == "" else policy.with_client(client, classes)
    write_policy(path, policy)
    return policy


@changes
async def set_policy(request: Request) -> Response:
    """One client's classes (or the default's), or a client back on the default."""
    state = ui(request)
    form = request.state.form
    client = field(request, "client")
    action = field(request, "action") or "save"
    classes = [c for c in form.getlist("allow") if isinstance(c, str)]
    if client:
        try:
            check_name(client) if field(request, "new") == "1" else None
        except InvalidInput:
            return await _section(request, "policy", error="A client's name is 1-64 letters, digits, '.', '_' or "
                                  "'-' (as its token or GUM_CLIENT names it).")
    unknown = sorted(set(classes) - ALL_CLASSES)
    if unknown:
        return await _section(request, "policy", error=f"Unknown class {', '.join(unknown)}.")
    try:
        await blocking(_change_policy, state, client, None if action == "default" and client else classes)
    except PolicyError as exc:
        return await _section(request, "policy", error=f"{exc}. Fix the file (or `gum-mcp policy`) first; the page "
                              "does not overwrite a policy it cannot read.")
    who = client or "every client without its own entry"
    if action == "default" and client:
        said = f"{client} now follows the default. Its next request sees that."
    else:
        shown = ", ".join(CLASS_SHORT[c].lower() for c in SENSITIVITY_ORDER if c in classes) or "nothing"
        said = f"Saved: {who} may see {shown}. It applies from the client's next request."
    return await _section(request, "policy", said=said)


# ---------------------------------------------------------------------------------------- tokens
@changes
async def add_token(request: Request) -> Response:
    granted = [s for s in request.state.form.getlist("scope") if isinstance(s, str)]
    return await _token_change(request, lambda store, name: store.aio.add_token(name, granted),
                               lambda name, secret: {"new_token": {"name": name, "secret": secret, "what": "new"}})


@changes
async def rotate_token(request: Request) -> Response:
    return await _token_change(request, lambda store, name: store.aio.rotate_token(name),
                               lambda name, secret: {"new_token": {"name": name, "secret": secret, "what": "rotated"}})


@changes
async def revoke_token(request: Request) -> Response:
    return await _token_change(request, lambda store, name: store.aio.revoke_token(name),
                               lambda name, _: {"said": f"Token {name!r} revoked: a running server refuses it from its "
                                                        "next request."})


async def _token_change(request: Request, change: Callable[[Any, str], Awaitable[Any]],
                        shown: Callable[[str, Any], dict[str, Any]]) -> Response:
    """Apply `change` to the token named in the form; the tokens section again, with what `shown` says or
    the error."""
    name = field(request, "name")
    try:
        result = await change(ui(request).store, name)
    except (InvalidInput, NotFound) as exc:
        return await _section(request, "tokens", error=str(exc.args[0]) if exc.args else str(exc))
    return await _section(request, "tokens", **shown(name, result))


# ---------------------------------------------------------------------------------------- the access log
async def access(request: Request) -> Response:
    """The access log, for one client or all (htmx: only the log's section)."""
    client = request.query_params.get("client", "").strip()[:64]
    state = ui(request)
    data = await blocking(clients_data, state, client)
    if is_htmx(request):
        return render(request, "_clients_access.html", partial=True, **data)
    return render(request, "clients.html", said={}, errors={}, new_token=None, **data)

