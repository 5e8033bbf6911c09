"""What the page's routes reach: the store, the runtime's search, index and status, the sessions, the templates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from gum_mcp.config import Settings
from gum_mcp.ui import charts, views
from gum_mcp.ui.sessions import Sessions

if TYPE_CHECKING:
    from gum_mcp.store import Store

Search = Callable[..., Awaitable[Any]]  # Runtime.search: (query, *, k, since, ...) -> SearchResult


@dataclass
class UIState:
    settings: Settings
    store: Store
    search: Search
    wake_index: Callable[[], None]
    sessions: Sessions
    templates: jinja2.Environment
    status: Callable[[], dict[str, Any]] | None = None  # Runtime.status: the engine and observers of this process


def template_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("gum_mcp.ui", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(local=views.local, snippet=views.snippet, charts=charts, ago=views.ago_now,
                       without_app=views.without_app,
                       number=views.number)
    return env
