"""The person's page, part two, without a browser: activity, usage, suggestions, clients and controls. Every
change needs the CSRF token and goes through what the CLI and the MCP tools use (the store's suggestion and
token functions, pause.json, policy.toml, `<data dir>/.env`), so running processes follow it on their next poll
or request. tests/test_ui_activity_browser.py walks the same flows in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio.to_thread
import pytest
from starlette.testclient import TestClient

from gum_mcp import retrieval
from gum_mcp.config import LiveSettings, load_settings
from gum_mcp.domain import utcnow
from gum_mcp.forgetting import open_store
from gum_mcp.hosts import policy_for
from gum_mcp.observers import paused_until
from gum_mcp.observers.pause import PauseState
from gum_mcp.runtime import SearchResult, apply_retention
from gum_mcp.store.policy import DEFAULT_ALLOWED, PolicyFile, read_policy
from gum_mcp.ui import prices
from gum_mcp.ui.app import build_app
from gum_mcp.ui.guard import CSP
from gum_mcp.ui.sessions import Sessions
from gum_mcp.ui.state import UIState, template_environment
from tests.conftest import make_settings
from tests.ui_seed import SECRETS, seed, seed_more

BASE = "http://127.0.0.1:8766"
PAGES = ("/activity", "/activity?status=skipped", "/activity?group=Terminal&days=30", "/usage", "/usage?days=400",
         "/suggestions", "/clients", "/clients/access?client=chat-app", "/controls")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One seeded data dir per module (seeding 200 days of model calls takes seconds); each test copies it."""
    data_dir = tmp_path_factory.mktemp("ui-seeded") / "data"
    with open_store(make_settings(data_dir, policy_file=data_dir / "policy.toml")) as store:
        ids = seed_more(store, seed(store))
    return data_dir, ids


@pytest.fixture
def page(tmp_path: Path, seeded) -> Iterator[tuple[TestClient, UIState, dict[str, int]]]:
    template, ids = seeded
    data_dir = tmp_path / "data"
    shutil.copytree(template, data_dir)
    store = open_store(make_settings(data_dir, policy_file=data_dir / "policy.toml"))

    async def search(query, **kwargs):
        hits = await anyio.to_thread.run_sync(lambda: retrieval.search(store, None, query, **kwargs))
        return SearchResult(hits, "keyword search only")

    def status() -> dict:
        return {"role": "owner", "observing": {"paused_until": None, "observers": [
            {"name": "files", "state": "paused" if paused_until(store.settings) else "running"}]}}

    state = UIState(settings=store.settings, store=store, search=search, wake_index=lambda: None,
                    sessions=Sessions(), templates=template_environment(), status=status)
    with TestClient(build_app(state, policy_for("127.0.0.1")), base_url=BASE, follow_redirects=False) as client:
        yield client, state, ids
    store.close()


def sign_in(client: TestClient, state: UIState) -> str:
    assert client.get("/login", params={"token": state.sessions.issue_link()}).status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/controls").text).group(1)


HX = {"hx-request": "true"}


# ------------------------------------------------------------------------------------------------ the pages
def test_the_new_pages_keep_the_first_pages_standards(page) -> None:
    client, state, _ = page
    for path in PAGES:
        assert client.get(path).status_code == 401, path  # no session: nothing
    sign_in(client, state)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        assert re.findall(r"<script(?![^>]*\bsrc=)", html) == [], path
        assert " style=" not in html and "<style" not in html, path
        assert not re.search(r"\son[a-z]+=", html), path
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path
        for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, flags=re.S):
            assert 'name="csrf"' in form, (path, form[:200])  # every change carries the token


def test_every_change_needs_the_csrf_token(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    store, settings = state.store, state.settings
    changes = [("/controls/pause", {"for": "1h"}), ("/controls/resume", {}),
               ("/controls/screen", {"mode": "local", "exclude": "Signal"}), ("/controls/retention", {"days": "3"}),
               ("/clients/policy", {"client": "cursor", "allow": "work"}),
               ("/clients/tokens/add", {"name": "sneaky", "scope": "admin"}),
               ("/clients/tokens/rotate", {"name": "chat-app"}), ("/clients/tokens/revoke", {"name": "cursor"}),
               (f"/suggestions/{ids['s0']}/dismiss", {})]
    tokens = [(t.name, t.rotated_at) for t in store.tokens()]
    for path, data in changes:
        for bad in ({}, {"csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}):
            assert client.post(path, data={**data, **bad}).status_code == 403, path
    assert paused_until(settings) is None
    assert not (settings.data_dir / ".env").exists() and not settings.policy_path.exists()
    assert [(t.name, t.rotated_at) for t in store.tokens()] == tokens
    assert store.get_suggestion(ids["s0"]).status == "pending"
    assert client.post("/controls/pause", data={"for": "1h"}, headers={"x-csrf-token": csrf}).status_code == 303


def test_activity_shows_counts_never_secrets(page) -> None:
    client, state, ids = page
    sign_in(client, state)
    html = client.get("/activity?days=30").text
    assert re.search(r"<dt>Skipped by the audit</dt><dd>3</dd>", html)
    redacted = sum(o.redactions for o in state.store.observations(limit=100000) if o.redactions)
    assert redacted >= len(SECRETS) and re.search(rf"<dt>Secrets redacted</dt><dd>{redacted} ", html)
    assert 'class="days-chart"' in html and "Observations per day" in html
    for secret in ("sk-proj-Zx8Qp2", "Tr0ub4dor", "wJalrXUtnFEMI", "jordan.lee@northwind", "555 0142"):
        assert secret not in html
    skipped = client.get("/activity?status=skipped&days=30").text
    assert "3 observations" in skipped and "audit: a private family conversation about health" in skipped
    slack = client.get(f"/activity?days=30&group=Slack#o{ids['secret2']}").text
    item = re.search(rf'<li class="obs obs-processed" id="o{ids["secret2"]}">.*?</li>\s*</ul>', slack, re.S).group(0)
    assert "2 secrets redacted" in item and "[REDACTED:email]" in item
    assert f'href="/p/{ids["forecast"]}"' in item  # the belief inferred from it


def test_usage_sums_the_daily_totals_and_prices_what_it_knows(page) -> None:
    client, state, _ = page
    sign_in(client, state)
    day0 = utcnow().date() - timedelta(days=399)
    usage = state.store.usage_by_day(since=day0)
    html = client.get("/usage?days=400").text
    for model in ("gpt-5-mini", "claude-sonnet-4-6", "llama3.2:3b"):
        rows = [u for u in usage if u.model == model]
        tokens_in = sum(u.input_tokens for u in rows)
        row = re.search(rf"<th scope=\"row\">{re.escape(model)}</th>(.*?)</tr>", html, re.S).group(1)
        assert f"{tokens_in:,}" in row, model
        expected = prices.cost(rows[0].provider, model, tokens_in, sum(u.output_tokens for u in rows))
        assert (f"${expected:.2f}" in row) if expected is not None else ("price unknown" in row), model
    assert prices.price_of("openai", "llama3.2:3b") is None
    assert prices.price_of("openai", "gpt-5-mini-2025-08-07") == prices.PRICES[("openai", "gpt-5-mini")]
    assert prices.price_of("anthropic", "claude-sonnet-4-6") == prices.PRICES[("anthropic", "claude-sonnet-4")]
    assert "No price is known for llama3.2:3b" in html


# ------------------------------------------------------------------------------------------------ suggestions
def test_suggestion_verdicts_are_the_mcp_tools_verdicts(page) -> None:
    client, state, ids = page
    csrf = sign_in(client, state)
    store = state.store
    html = client.get("/suggestions").text
    assert "Send Jordan the Q4 draft before Thursday" in html and "it needed a chance of at least" in html
    s = store.get_suggestion(ids["s1"])
    assert f"{s.p_useful:.2f} × {s.benefit} − {s.cost} = {s.utility:.2f}" in html
    answer = client.post(f"/suggestions/{ids['s1']}/accept", data={"csrf": csrf}, headers=HX)
    assert "Accepted" in answer.text and store.get_suggestion(ids["s1"]).status == "accepted"
    answer = client.post(f"/suggestions/{ids['s0']}/dismiss", data={"csrf": csrf, "note": "I run on Sundays"},
                         headers=HX)
    dismissed = store.get_suggestion(ids["s0"])
    assert dismissed.status == "dismissed" and dismissed.note == "I run on Sundays"
    assert ids["s0"] in {x.id for x in store.blocking_suggestions()}  # keeps similar ones away, as the tool's does
    assert client.post(f"/suggestions/{ids['s1']}/done", data={"csrf": csrf}).status_code == 303
    assert store.get_suggestion(ids["s1"]).status == "done"
    history = client.get("/suggestions").text.split('id="h-past"', 1)[1]
    assert "Block a long run on Saturday morning" in history and "“I run on Sundays”" in history
    missing = client.post("/suggestions/99999/done", data={"csrf": csrf}, headers=HX)
    assert "no suggestion with id 99999" in missing.text


# ------------------------------------------------------------------------------------------------ clients
def test_tokens_are_made_rotated_and_revoked_by_the_stores_functions(page) -> None:
    client, state, _ = page
    csrf = sign_in(client, state)
    store = state.store
    made = client.post("/clients/tokens/add", data={"csrf": csrf, "name": "laptop-agent", "scope": ["read", "write"]},
                       headers=HX)
    secret = re.search(r'id="secret-value"[^>]*value="(gum_[^"]+)"', made.text).group(1)
    assert store.authenticate_token(secret).scopes == ("read", "write")
    assert secret not in client.get("/clients").text  # shown once
    again = client.post("/clients/tokens/add", data={"csrf": csrf, "name": "laptop-agent", "scope": "read"},
                        headers=HX)
    assert "exists" in again.text and 'id="secret-value"' not in again.text
    rotated = client.post("/clients/tokens/rotate", data={"csrf": csrf, "name": "laptop-agent"}, headers=HX)
    fresh = re.search(r'id="secret-value"[^>]*value="(gum_[^"]+)"', rotated.text).group(1)
    assert store.authenticate_token(secret) is None and store.authenticate_token(fresh).name == "laptop-agent"
    client.post("/clients/tokens/revoke", data={"csrf": csrf, "name": "laptop-agent"}, headers=HX)
    assert store.authenticate_token(fresh) is None and "laptop-agent" not in {t.name for t in store.tokens()}


def test_the_policy_is_the_file_gum_mcp_policy_edits(page) -> None:
    client, state, _ = page
    csrf = sign_in(client, state)
    path = state.settings.policy_path
    follower = PolicyFile(path)  # what a running server reads on every request
    assert follower.current().allowed("claude-desktop") == DEFAULT_ALLOWED
    answer = client.post("/clients/policy", data={"csrf": csrf, "client": "claude-desktop",
                                                  "allow": ["work", "personal"]}, headers=HX)
    assert "Saved: claude-desktop may see personal, work" in answer.text
    assert follower.current().allowed("claude-desktop") == {"work", "personal"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".policy-")]  # no temporary file left
    client.post("/clients/policy", data={"csrf": csrf, "client": "", "allow": ["work"]}, headers=HX)
    client.post("/clients/policy", data={"csrf": csrf, "client": "nightly-bot", "new": "1", "allow": ["other"]},
                headers=HX)
    policy = read_policy(path)
    assert policy.default == {"work"} and policy.allowed("nightly-bot") == {"other"}
    client.post("/clients/policy", data={"csrf": csrf, "client": "claude-desktop", "action": "default"}, headers=HX)
    assert read_policy(path).entry("claude-desktop") is None
    assert follower.current().allowed("claude-desktop") == {"work"}
    path.write_text("[default]\nallow = [\"wrok\"]\n")  # a typo by hand: shown, never overwritten
    refused = client.post("/clients/policy", data={"csrf": csrf, "client": "cursor", "allow": "work"}, headers=HX)
    assert "unknown class" in refused.text and path.read_text() == "[default]\nallow = [\"wrok\"]\n"
    assert "no client is shown anything" in client.get("/clients").text


def test_the_access_log_shows_what_each_client_read(page) -> None:
    client, state, ids = page
    sign_in(client, state)
    html = client.get("/clients/access?client=chat-app").text
    table = html.split('class="data compact access-table"', 1)[1]
    assert "chat-app" in table and "claude-desktop" not in table
    assert "refused" in table and f'href="/p/{ids["vegetarian"]}"' in table


# ------------------------------------------------------------------------------------------------ controls
def test_pause_and_resume_are_the_shared_pause(page) -> None:
    client, state, _ = page
    csrf = sign_in(client, state)
    observer_view = PauseState(state.settings)  # what every observer re-reads on its next loop
    before = utcnow()
    answer = client.post("/controls/pause", data={"csrf": csrf, "for": "4h"}, headers=HX)
    assert "Observing paused for 4 hours" in answer.text and "st-paused" in answer.text
    until = observer_view.get()
    assert before + timedelta(hours=4) <= until <= utcnow() + timedelta(hours=4)
    client.post("/controls/pause", data={"csrf": csrf, "for": ""}, headers=HX)
    assert observer_view.get() == "indefinitely"
    assert "until you resume" in client.get("/controls").text
    answer = client.post("/controls/resume", data={"csrf": csrf}, headers=HX)
    assert "Observing resumed" in answer.text and observer_view.get() is None


def test_screen_and_retention_settings_reach_running_processes_through_the_data_dirs_env(page) -> None:
    from gum_mcp.observers.screen import ScreenObserver

    client, state, _ = page
    csrf = sign_in(client, state)
    env = state.settings.data_dir / ".env"
    env.write_text("# my settings\nOPENAI_API_KEY=sk-mine\nGUM_SCREEN_MODE=text\nGUM_USER_NAME='Priya'\n")
    env.chmod(0o600)
    running = ScreenObserver(state.settings, state.store, source=object(), windows=object(), transcribe=False)
    live = LiveSettings(state.settings, env={})
    assert running.mode == "text"
    answer = client.post("/controls/screen", data={"csrf": csrf, "mode": "local",
                                                   "exclude": "Signal\n  \nOnline Banking #2\n"}, headers=HX)
    assert "Saved: screen mode local, 2 exclusions" in answer.text
    text = env.read_text()
    assert text.startswith("# my settings\nOPENAI_API_KEY=sk-mine\n") and "GUM_USER_NAME='Priya'" in text
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    reread = load_settings(env={}, data_dir=state.settings.data_dir)  # a new process reads the same
    assert reread.screen_mode == "local" and reread.screen_exclude == ["Signal", "Online Banking #2"]
    assert live.current().screen_mode == "local"
    running.follow_settings()  # the observer's next sample
    assert running.mode == "local" and running.exclusions.extra[1].pattern == "Online Banking #2"
    refused = client.post("/controls/screen", data={"csrf": csrf, "mode": "vision", "exclude": "Signal\n(unclosed"},
                          headers=HX)
    assert "Line 2" in refused.text and "Nothing was saved" in refused.text and env.read_text() == text
    answer = client.post("/controls/retention", data={"csrf": csrf, "days": "7"}, headers=HX)
    assert "kept 7 days" in answer.text and "GUM_RETENTION_DAYS='7'" in env.read_text()
    assert "-1" not in env.read_text()
    assert "Nothing was saved" in client.post("/controls/retention", data={"csrf": csrf, "days": "-1"},
                                              headers=HX).text
    report = apply_retention(state.store)  # the owner's next retention run
    assert report.retention_days == 7
    html = client.get("/controls").text
    assert 'value="local" checked' in html and "Online Banking #2" in html and 'value="7"' in html
    assert json.loads(re.search(r"GUM_SCREEN_EXCLUDE='(.*)'", env.read_text()).group(1)) == ["Signal",
                                                                                              "Online Banking #2"]
