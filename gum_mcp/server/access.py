"""Which proposition and observation ids a result carried: what the access log records for a call.

One place reads every result, in its wire form (what the client actually received):
- tools: the structured content (or the JSON text when a tool has none);
- resources: each JSON content; the profile's markdown names its propositions as `#id` at the end
  of each line;
- prompts: the propositions of a portrait in their text (`#id` at the end of a line, as in the
  profile); other text carries no ids.

It also serves the log itself to admin clients: the resource gum://access-log.

In JSON, ids are recognised by where they stand, the convention every output model follows:
- a proposition: `id` of an object under `proposition`, `successor`, `propositions`, `history`,
  `grounds` or `matches` (forget's preview); any `proposition_id`, `proposition_ids`,
  `superseded_by`, `rederiving`;
- an observation: `id` of an object under `observations`; any `observation_id`, `observation_ids`.
A new output that shows propositions or observations under other keys must follow it (or add its
key here), and tests/test_access_log.py checks every reading tool, resource and prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from gum_mcp.domain import utcnow
from gum_mcp.server import disclosure
from gum_mcp.server.context import GumState
from gum_mcp.server.shaping import bounded
from gum_mcp.store.access_log import AccessEntry, WeeklyAccess

PROPOSITION_OBJECTS = frozenset({"proposition", "successor", "propositions", "history", "grounds", "matches",
                                 "rests_on"})
OBSERVATION_OBJECTS = frozenset({"observations"})
PROPOSITION_IDS = frozenset({"proposition_id", "proposition_ids", "superseded_by", "rederiving", "applicable_ids"})
OBSERVATION_IDS = frozenset({"observation_id", "observation_ids"})

#: resources whose text names no propositions or observations even where it holds ids (the access log itself)
NO_IDS = frozenset({"gum://access-log"})  # = ACCESS_LOG_URI
#: the profile portrait: "- text (confidence 9/10, decay 6/10, 3h ago, #12)"
PORTRAIT_ID = re.compile(r", #(\d+)\)$", re.MULTILINE)


@dataclass
class Ids:
    propositions: set[int] = field(default_factory=set)
    observations: set[int] = field(default_factory=set)

    def add(self, other: Ids) -> None:
        self.propositions |= other.propositions
        self.observations |= other.observations


def ids_in(value: Any, ids: Ids | None = None, into: set[int] | None = None) -> Ids:
    """The ids a JSON value names (see the module docstring). `into`: the set an object's own `id` belongs to."""
    ids = ids if ids is not None else Ids()
    if isinstance(value, list):
        for item in value:
            ids_in(item, ids, into)
    elif isinstance(value, Mapping):
        if into is not None and _is_id(value.get("id")):
            into.add(value["id"])
        for key, item in value.items():
            if key in PROPOSITION_IDS:
                ids.propositions.update(_ints(item))
            elif key in OBSERVATION_IDS:
                ids.observations.update(_ints(item))
            elif key in PROPOSITION_OBJECTS:
                ids_in(item, ids, ids.propositions)
            elif key in OBSERVATION_OBJECTS:
                ids_in(item, ids, ids.observations)
            else:
                ids_in(item, ids, None)
    return ids


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if _is_id(v)]


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def tool_ids(result: Mapping[str, Any]) -> Ids:
    """The ids in a `tools/call` result."""
    structured = result.get("structuredContent")
    if structured is not None:
        return ids_in(structured)
    ids = Ids()
    for item in result.get("content") or []:
        if isinstance(item, Mapping) and item.get("type") == "text":
            ids_in(_json(item.get("text")), ids)
    return ids


def prompt_ids(result: Mapping[str, Any]) -> Ids:
    """The ids in a `prompts/get` result: a portrait's propositions."""
    ids = Ids()
    for message in result.get("messages") or []:
        content = message.get("content") if isinstance(message, Mapping) else None
        text = content.get("text") if isinstance(content, Mapping) else None
        if isinstance(text, str):
            ids.propositions.update(int(n) for n in PORTRAIT_ID.findall(text))
    return ids


def resource_ids(uri: str, result: Mapping[str, Any]) -> Ids:
    """The ids in a `resources/read` result."""
    ids = Ids()
    if uri in NO_IDS:
        return ids
    for item in result.get("contents") or []:
        if not isinstance(item, Mapping):
            continue
        text = item.get("text")
        if item.get("mimeType") == "text/markdown" and isinstance(text, str):
            ids.propositions.update(int(n) for n in PORTRAIT_ID.findall(text))
        else:
            ids_in(_json(text), ids)
    return ids


# ---------------------------------------------------------------------------------------- gum://access-log
ACCESS_LOG_URI = "gum://access-log"
RECENT_ENTRIES = 100
SUMMARY_WEEKS = 8


class AccessLogOut(BaseModel):
    weekly: list[WeeklyAccess] = Field(description="per client and week (Monday, UTC), newest first")
    entries: list[AccessEntry] = Field(description=f"the latest {RECENT_ENTRIES} calls, newest first")
    truncated: bool = False
    note: str | None = None
    withheld: int = Field(0, description=disclosure.WITHHELD)


async def access_log(state: GumState) -> str:
    store = state.store
    since = utcnow() - timedelta(weeks=SUMMARY_WEEKS)
    entries = await store.aio.access_log(limit=RECENT_ENTRIES)
    entries = await disclosure.access_entries(store, entries)  # no ids of what this client may not see
    result = AccessLogOut(weekly=await store.aio.access_summary(since=since), entries=entries,
                          note=disclosure.note(None), withheld=disclosure.withheld())
    return bounded(result, "entries").model_dump_json(indent=2)


def register(server: MCPServer, state: GumState) -> None:
    from gum_mcp.server.resources import StateResource

    server.add_resource(StateResource(
        uri=ACCESS_LOG_URI, name="access-log", title="Access log", mime_type="application/json",
        description="Which client read what: a weekly summary per client and the latest calls, with the ids "
                    "of the propositions and observations each returned (admin scope).",
        state=state, reader=access_log))
