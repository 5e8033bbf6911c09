"""The person's page without a browser: its gate (sign-in link, cookie, Host, Origin, CSRF), its headers, the
assets it ships, and that its changes are the MCP tools' changes (tests/test_ui_browser.py walks the flows
in Chromium)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import pytest
from starlette.testclient import TestClient

from gum_mcp import retrieval
from gum_mcp.forgetting import open_store
from gum_mcp.hosts import policy_for
from gum_mcp.runtime import SearchResult
from gum_mcp.store import Store
from gum_mcp.ui.app import STATIC, build_app
from gum_mcp.ui.guard import CSP
from gum_mcp.ui.sessions import COOKIE, LOGIN_TTL, SESSION_TTL, Sessions
from gum_mcp.ui.state import UIState, template_environment
from tests.conftest import make_settings
from tests.ui_seed import seed

BASE = "http://127.0.0.1:8766"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def page(tmp_path: Path) -> Iterator[tuple[TestClient, UIState, dict[str, int]]]:
    store = open_store(make_settings(tmp_path / "data"))
    ids = seed(store)

    async def search(query, **kwargs):
        hits = await anyio.to_thread.run_sync(lambda: retrieval.search(store, None, query, **kwargs))
        return SearchResult(hits, "keyword search only")

    state = UIState(settings=store.settings, store=store, search=search, wake_index=lambda: None,
                    sessions=Sessions(clock=Clock()), templates=template_environment())
    with TestClient(build_app(state, policy_for("127.0.0.1")), base_url=BASE, follow_redirects=False) as client:
        yield client, state, ids
    store.close()


def sign_in(client: TestClient, state: UIState) -> str:
    response = client.get("/login", params={"token": state.sessions.issue_link()})
    assert response.status_code == 303, response.text
    page = client.get("/")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_login_link_works_once_and_sets_a_strict_session_cookie(page) -> None:
    client, state, _ = page
    secret = state.sessions.issue_link()
    first = client.get("/login", params={"token": secret})
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert f"Max-Age={int(SESSION_TTL)}" in cookie
    assert client.get("/").status_code == 200
    client.cookies.clear()
    again = client.get("/login", params={"token": secret})
    assert again.status_code == 403 and "no longer works" in again.text
    assert "set-cookie" not in again.headers
    assert client.get("/").status_code == 401


def test_links_and_sessions_expire(page) -> None:
    client, state, _ = page
    clock = state.sessions.clock
    stale = state.sessions.issue_link()
    clock.now += LOGIN_TTL + 1
    assert client.get("/login", params={"token": stale}).status_code == 403
    sign_in(client, state)
    clock.now += SESSION_TTL + 1
    assert client.get("/").status_code == 401


def test_requests_without_a_session_are_refused(page) -> None:
    client, state, ids = page
    assert client.get("/").status_code == 401
    assert client.get(f"/p/{ids['rust']}").status_code == 401
    refused = client.post(f"/p/{ids['rust']}/reject", data={"csrf": "x"})
    assert refused.status_code == 401
    assert "gum-mcp ui" in refused.text
    assert client.get("/static/app.css").status_code == 200  # assets need no session
    assert state.store.get_proposition(ids["rust"]).current


def test_foreign_host_origin_and_cross_site_changes_are_refused(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    assert client.get("/", headers={"host": "evil.example"}).status_code == 421
    for origin in ("http://evil.example", "http://127.0.0.1:3000", "null"):
        response = client.post(f"/p/{ids['rust']}/reject", data={"csrf": csrf}, headers={"origin": origin})
        assert response.status_code == 403, origin
    cross = client.post(f"/p/{ids['rust']}/reject", data={"csrf": csrf}, headers={"sec-fetch-site": "same-site"})
    assert cross.status_code == 403
    assert state.store.get_proposition(ids["rust"]).current
    ok = client.post(f"/p/{ids['rust']}/reject", data={"csrf": csrf},
                     headers={"origin": BASE, "sec-fetch-site": "same-origin"})
    assert ok.status_code == 303
    assert not state.store.get_proposition(ids["rust"]).current


def test_changes_without_the_csrf_token_are_refused(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    for data in ({}, {"csrf": ""}, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}):
        assert client.post(f"/p/{ids['theme']}/confirm", data=data).status_code == 403
        assert client.post("/forget/scope", data={**data, "kind": "source", "source": "cursor"}).status_code == 403
    assert state.store.get_proposition(ids["theme"]).current
    assert state.store.forget_count(source="cursor").observations > 0
    assert client.post(f"/p/{ids['theme']}/confirm", headers={"x-csrf-token": csrf}).status_code == 303


def test_every_answer_carries_a_strict_csp_and_no_inline_script(page) -> None:
    client, state, ids = page
    sign_in(client, state)
    assert "script-src 'self'" in CSP and "unsafe" not in CSP and "default-src 'none'" in CSP
    for path in ("/", f"/p/{ids['marathon']}", "/forget", "/login?token=nope"):
        response = client.get(path)
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path  # no inline script
        assert " style=" not in html and "<style" not in html, path  # no inline style
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path  # nothing from elsewhere
        config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'', html).group(1)
        assert '"allowEval": false' in config and '"allowScriptTags": false' in config
        assert '"includeIndicatorStyles": false' in config and '"historyCacheSize": 0' in config


def test_vendored_assets_are_served_with_their_licences(page) -> None:
    client, _, _ = page
    htmx = client.get("/static/vendor/htmx.min.js")
    assert htmx.status_code == 200 and "javascript" in htmx.headers["content-type"]
    recorded = (STATIC / "vendor" / "README.md").read_text()
    assert hashlib.sha256(htmx.content).hexdigest() in recorded
    assert "htmx.org@2.0.11" in recorded
    assert "Zero-Clause BSD" in (STATIC / "vendor" / "htmx.LICENSE").read_text()
    axe = Path(__file__).parent / "vendor" / "axe-core"
    assert hashlib.sha256((axe / "axe.min.js").read_bytes()).hexdigest() in recorded
    assert "Mozilla Public License" in (axe / "LICENSE").read_text()
    for asset in ("app.css", "icon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200


def test_verdicts_are_the_mcp_tools_verdicts(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    store: Store = state.store
    answer = client.post(f"/p/{ids['pydata']}/confirm", data={"csrf": csrf}, headers={"hx-request": "true"})
    assert answer.status_code == 200 and "Confirmed" in answer.text
    [successor] = store.successors(ids["pydata"])
    assert store.get_proposition(successor).user_confirmed and store.get_proposition(successor).confidence == 10
    assert f'id="p{successor}"' in answer.text
    answer = client.post(f"/p/{ids['mei']}/correct", data={"csrf": csrf, "text": "Has lunch with Mei Chen on Fridays"},
                         headers={"hx-request": "true"})
    [fixed] = store.successors(ids["mei"])
    assert store.get_proposition(fixed).text == "Has lunch with Mei Chen on Fridays"
    assert "Has lunch with Mei Chen on Fridays" in answer.text
    answer = client.post(f"/p/{ids['cursor']}/reject", data={"csrf": csrf},
                         headers={"hx-request": "true"})
    assert "Rejected" in answer.text
    assert "Writes the pipeline's Python with Cursor" in store.rejected_texts()
    # a verdict on a retired belief says why, and changes nothing
    answer = client.post(f"/p/{ids['mei']}/confirm", data={"csrf": csrf}, headers={"hx-request": "true"})
    assert "retired" in answer.text and store.successors(ids["mei"]) == [fixed]


def test_beliefs_filter_by_sensitivity_class_and_show_it(page) -> None:
    client, state, ids = page
    sign_in(client, state)
    state.store.tag_propositions({ids["lisbon"]: "location", ids["wedding"]: "relationships"})
    answer = client.get("/", params={"sensitivity": "location"})
    assert answer.status_code == 200
    assert f'id="p{ids["lisbon"]}"' in answer.text and f'id="p{ids["wedding"]}"' not in answer.text
    assert answer.text.count("<article class=\"card") == 1
    assert '<option value="location" selected>' in answer.text and ">location</span>" in answer.text
    untagged = client.get("/", params={"sensitivity": "untagged"}, headers={"hx-request": "true"}).text
    assert f'id="p{ids["etl"]}"' in untagged and ">not tagged yet</span>" in untagged
    assert f'id="p{ids["lisbon"]}"' not in untagged and f'id="p{ids["wedding"]}"' not in untagged
    searched = client.get("/", params={"q": "Lisbon", "sensitivity": "relationships"}).text
    assert f'id="p{ids["lisbon"]}"' not in searched
    assert f'id="p{ids["lisbon"]}"' in client.get("/", params={"sensitivity": "no-such-class"}).text  # ignored


def test_forget_count_is_what_forgetting_removes(page) -> None:
    client, state, _ = page
    csrf = sign_in(client, state)
    store: Store = state.store
    count = store.forget_count(app="Strava")
    assert count.observations > 0 and count.propositions > 0
    answer = client.post("/forget/count", data={"csrf": csrf, "kind": "app", "app": "Strava"},
                         headers={"hx-request": "true"})
    assert f"<strong>{count.observations}</strong> observation" in answer.text
    assert f"<strong>{count.propositions}</strong> current belief" in answer.text
    done = client.post("/forget/scope", data={"csrf": csrf, "kind": "app", "app": "Strava"},
                       headers={"hx-request": "true"})
    assert f"{count.observations} observations" in done.text
    assert store.forget_count(app="Strava").observations == 0


def test_a_forget_preview_removes_nothing_and_its_token_works_once(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    store: Store = state.store
    preview = client.post("/forget/preview", data={"csrf": csrf, "q": "Lisbon trip with Sam"},
                          headers={"hx-request": "true"})
    assert "Is planning a trip to Lisbon with Sam" in preview.text and "Matched because" in preview.text
    assert store.get_proposition(ids["lisbon"]).current  # nothing removed yet
    token = re.search(r'name="token" value="([^"]+)"', preview.text).group(1)
    done = client.post("/forget/confirm", data={"csrf": csrf, "token": token}, headers={"hx-request": "true"})
    assert "Forgotten, for good" in done.text
    assert store.get_proposition(ids["lisbon"]).text is None
    again = client.post("/forget/confirm", data={"csrf": csrf, "token": token}, headers={"hx-request": "true"})
    assert "already used" in again.text
