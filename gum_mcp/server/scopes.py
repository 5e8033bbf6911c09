"""What each tool, resource and prompt needs: the one scope map. Adding a tool, resource or prompt
means adding its line here; until then every client is refused it, and tests/test_scopes.py (which
lists what the server offers at run time) fails.

The scopes (gum_mcp/store/tokens.py):
- read: what gum-mcp knows about the user (propositions, observations, suggestions, status);
- write: telling it something (record_observation) and the user's verdicts (give_feedback,
  respond_to_suggestion), and suggest_actions, which stores the suggestions it makes and spends LLM
  tokens, so it changes the user model's state like the other writes;
- forget: removing data for good;
- admin: running gum-mcp itself: pausing and resuming the observers, the access log.

A call needs every scope in its set. A write or forget whose result shows what is known about the
user needs read too (the successor of a verdict, a suggestion with the propositions it rests on,
the propositions `forget(query=...)` previews), so a client without read (a script that only
records observations) cannot read the model by way of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from gum_mcp.store.tokens import SCOPES

Kind = Literal["tool", "resource", "prompt"]

READ = frozenset({"read"})
WRITE = frozenset({"write"})
READ_WRITE = frozenset({"read", "write"})
READ_FORGET = frozenset({"read", "forget"})
ADMIN = frozenset({"admin"})
ALL = frozenset(SCOPES)

TOOLS: Mapping[str, frozenset[str]] = {
    "query_user": READ,
    "list_propositions": READ,
    "get_proposition": READ,
    "get_recent_activity": READ,
    "status": READ,
    "record_observation": WRITE,
    "give_feedback": READ_WRITE,
    "suggest_actions": READ_WRITE,
    "respond_to_suggestion": READ_WRITE,
    "forget": READ_FORGET,
    "pause_observing": ADMIN,
    "resume_observing": ADMIN,
    "record_edit": WRITE,
    "decide_or_ask": READ,
}

#: by URI, or URI template for templated resources
RESOURCES: Mapping[str, frozenset[str]] = {
    "gum://profile": READ,
    "gum://propositions/{id}": READ,
    "gum://activity/recent": READ,
    "gum://suggestions": READ,
    "gum://access-log": ADMIN,
}

PROMPTS: Mapping[str, frozenset[str]] = {
    "personalize": READ,
    "what_am_i_doing": READ,
}

MAPS: Mapping[Kind, Mapping[str, frozenset[str]]] = {"tool": TOOLS, "resource": RESOURCES, "prompt": PROMPTS}


def template(pattern: str) -> re.Pattern[str]:
    """A URI template as a pattern matching the URIs it stands for."""
    parts = re.split(r"(\{[^}]+\})", pattern)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


TEMPLATES = [(template(uri), scopes) for uri, scopes in RESOURCES.items() if "{" in uri]


def required(kind: Kind, name: str) -> frozenset[str] | None:
    """The scopes a call of this tool, resource (a URI, or a URI template as listed) or prompt needs;
    None when the map does not name it (then nobody may call it)."""
    found = MAPS[kind].get(name)
    if found is None and kind == "resource":
        found = next((scopes for pattern, scopes in TEMPLATES if pattern.fullmatch(name)), None)
    return found


def refusal(kind: Kind, name: str, client: str, granted: frozenset[str]) -> str | None:
    """Why `client` (holding `granted`) may not call it, in one line; None when it may."""
    needed = required(kind, name)
    if needed is None:
        return (f"permission denied: {kind} {name!r} has no scope in gum-mcp's scope map "
                "(gum_mcp/server/scopes.py), so no client may use it")
    missing = needed - granted
    if not missing:
        return None
    held = ", ".join(s for s in SCOPES if s in granted) or "none"
    return (f"permission denied: {kind} {name!r} needs the {' and '.join(s for s in SCOPES if s in missing)} "
            f"scope{'s' if len(missing) > 1 else ''}; client {client!r} has {held}. Give it more with "
            "GUM_SCOPES in its config entry (stdio) or a token with those scopes (`gum-mcp token add`)")
