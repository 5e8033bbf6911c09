"""The person's page, part two, in a real browser: headless Chromium against a real `gum-mcp ui` (which also
runs the engine and the files observer) on a data dir seeded with a week, its audit skips and redactions,
suggestions, 200 days of model usage, tokens and an access log. Each flow is walked as a person would and
checked by what they see, and by what other processes then see: a policy change hides a class from an MCP
client's next read over stdio, and a pause stops the running observer (its status says so)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import anyio
import pytest
from mcp import Client, StdioServerParameters

from gum_mcp.forgetting import open_store
from gum_mcp.store import Store
from tests.conftest import PYTHON, REPO, gum_env, make_settings
from tests.test_ui_browser import Page
from tests.ui_browser import (
    UIProcess,
    accessibility_problems,
    chrome,
    load,
    quit_chrome,
    require_chromium,
    too_wide,
)
from tests.ui_seed import seed, seed_more

pytestmark = pytest.mark.timeout(600)
BUDGET = "120000"
NEW_PAGES = ("/activity", "/activity?status=skipped", "/usage", "/suggestions", "/clients", "/controls")


class Page2(Page):
    def store(self) -> Store:
        return open_store(make_settings(self.data_dir, policy_file=self.data_dir / "policy.toml"))

    def wait(self, condition, timeout: float = 15):
        """WebDriverWait that also rides out an element htmx just swapped (stale) or has not put in yet."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(self.driver, timeout, ignored_exceptions=ignored).until(condition)

    def select(self, selector: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.css(selector)).select_by_value(value)

    def reload_until(self, path: str, condition, timeout: float = 30):
        """Open `path` again until `condition(driver)` holds (another process is changing what it shows)."""
        def check(driver):
            self.open(path)
            return condition(driver)
        return self.wait(check, timeout)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page2]:
    require_chromium()
    root = tmp_path_factory.mktemp("ui2")
    data_dir, watched = root / "data", root / "watched"
    watched.mkdir()
    with open_store(make_settings(data_dir, policy_file=data_dir / "policy.toml")) as store:
        ids = seed_more(store, seed(store))
    ui = UIProcess(data_dir, root / "work", GUM_OBSERVE="files", GUM_WATCH_DIRS=str(watched),
                   GUM_POLICY_FILE=str(data_dir / "policy.toml"), GUM_DAILY_TOKEN_BUDGET=BUDGET)
    driver = None
    try:
        driver = chrome(1280, 800)
        page = Page2(driver, ui, data_dir, ids, tmp_path_factory.mktemp("ui2-screenshots"))
        load(driver, ui.link)
        page.wait(lambda d: d.title.startswith("What I believe about you"))
        yield page
    finally:
        if driver is not None:
            quit_chrome(driver)
        ui.stop()


def mcp_client(page: Page2, client: str) -> Client:
    """A stdio MCP client (`gum-mcp serve`, a second process beside the page's) named `client`."""
    env = gum_env(page.data_dir, GUM_CLIENT=client, GUM_EMBEDDING="none", GUM_INDEX_WAIT="0",
                  GUM_POLICY_FILE=str(page.data_dir / "policy.toml"))
    return Client(StdioServerParameters(command=PYTHON, args=["-m", "gum_mcp", "serve"], env=env, cwd=REPO),
                  mode="legacy")


# ------------------------------------------------------------------------------------------------ activity
def test_activity_timeline_counts_and_the_observations(page: Page2) -> None:
    page.open("/activity")
    chart = page.css(".days-chart").get_attribute("aria-label")
    assert chart.startswith("Observations per day")
    stats = page.css(".stats").text
    assert "SKIPPED BY THE AUDIT\n3" in stats and "SECRETS REDACTED\n" in stats
    assert "sk-proj-Zx8Qp2" not in page.css("main").text and "Tr0ub4dor" not in page.css("main").text
    page.shot("activity")
    page.select("select[name=status]", "skipped")  # htmx: only the list changes, the address follows
    page.wait(lambda d: "status=skipped" in d.current_url)
    page.text_appears("3 observations", "#observations")
    first = page.all(".obs-skipped")[0]
    assert "skipped by the audit" in first.text and "Why: audit:" in first.text
    first.find_element("css selector", "details summary").click()
    page.wait(lambda d: first.find_element("css selector", "details .obs-text").is_displayed())
    page.open("/activity?group=Terminal")
    terminal = page.css("#observations").text
    assert "[REDACTED" in terminal and "secret redacted" in terminal and "sk-proj" not in terminal
    page.open("/activity?group=Strava")
    link = page.all("#observations .inferred a")[0]
    belief = link.text
    link.click()
    page.wait(lambda d: "/p/" in d.current_url)
    assert page.css("h1").text == belief


def test_usage_against_the_daily_budget(page: Page2) -> None:
    page.open("/usage")
    chart = page.css(".usage-chart")
    assert f"against a daily budget of {int(BUDGET):,}" in chart.get_attribute("aria-label")
    assert chart.find_elements("css selector", "line.budget")
    table = page.css("table.data").text
    assert "gpt-5-mini" in table and "$" in table
    page.select("#span", "400")
    page.css("form.inline-filters button").click()
    page.wait(lambda d: "days=400" in d.current_url)
    table = page.css("table.data").text
    assert "claude-sonnet-4-6" in table and "llama3.2:3b" in table and "price unknown" in table
    page.shot("usage-400")


# ------------------------------------------------------------------------------------------------ suggestions
def test_suggestions_accept_dismiss_and_done(page: Page2) -> None:
    page.open("/suggestions")
    card = page.css(f"#s{page.ids['s1']}")
    shown = card.text.lower()  # the labels are upper-cased by the stylesheet
    assert "utility" in shown and "threshold" in shown and "it needed a chance of at least" in shown
    card.find_element("css selector", "form[action$=accept] button").click()
    page.text_appears("Accepted. It stays open", f"#s{page.ids['s1']}")
    card = page.css(f"#s{page.ids['s0']}")
    card.find_element("css selector", "details summary").click()
    card.find_element("css selector", "input[name=note]").send_keys("I run on Sundays")
    card.find_element("css selector", "button.danger").click()
    page.text_appears("Dismissed.", f"#s{page.ids['s0']}")
    page.css(f"#s{page.ids['s1']} form[action$=done] button").click()
    page.text_appears("Marked done.", f"#s{page.ids['s1']}")
    with page.store() as store:
        assert store.get_suggestion(page.ids["s0"]).status == "dismissed"
        assert store.get_suggestion(page.ids["s0"]).note == "I run on Sundays"
        assert store.get_suggestion(page.ids["s1"]).status == "done"
    page.open("/suggestions")
    history = page.css(".history").text
    assert "Block a long run on Saturday morning" in history and "“I run on Sundays”" in history
    assert f"s{page.ids['s0']}" not in [a.get_attribute("id") for a in page.all("article.suggestion")]


# ------------------------------------------------------------------------------------------------ controls
def test_pause_on_the_page_stops_the_observers_and_status_says_so(page: Page2) -> None:
    from selenium.webdriver.common.keys import Keys

    running = page.reload_until("/controls", lambda d: "files running" in page.css(".observers").text)
    assert running
    page.select("#pause-for", "15m")
    page.css("#pause-for").send_keys(Keys.TAB)  # the keyboard reaches the button; Enter presses it
    button = page.driver.switch_to.active_element
    assert button.text == "Pause observing"
    button.send_keys(Keys.ENTER)
    page.text_appears("Observing paused for 15 minutes", "#observing")
    # the observer thread of the running `gum-mcp ui` sees pause.json at its next loop
    page.reload_until("/controls", lambda d: "files paused" in page.css(".observers").text)
    assert "Paused until" in page.css("#observing-state").text
    page.shot("controls-paused")

    async def status() -> dict:
        async with mcp_client(page, "status-check") as client:
            return (await client.call_tool("status", {})).structured_content

    assert anyio.run(status)["observing"]["paused_until"]  # what an assistant's status tool says
    page.css("form[action='/controls/resume'] button").click()
    page.text_appears("Observing resumed", "#observing")
    page.reload_until("/controls", lambda d: "files running" in page.css(".observers").text)
    assert anyio.run(status)["observing"]["paused_until"] is None


def test_screen_mode_exclusions_and_retention_are_saved_for_every_process(page: Page2) -> None:
    page.open("/controls")
    page.css("input[name=mode][value=local]").click()
    box = page.css("#exclude")
    box.clear()
    box.send_keys("Signal\n(unclosed")
    page.css("#screen button[type=submit]").click()
    page.text_appears("is not a valid pattern", "#screen")
    assert not (page.data_dir / ".env").exists()
    assert page.css("input[name=mode][value=local]").is_selected()  # what was typed is kept to fix
    box = page.css("#exclude")
    box.clear()
    box.send_keys("Signal\nOnline Banking")
    page.css("#screen button[type=submit]").click()
    page.text_appears("Saved: screen mode local, 2 exclusions", "#screen")
    days = page.css("#days")
    days.clear()
    days.send_keys("14")
    page.css("#retention button").click()
    page.text_appears("kept 14 days", "#retention")
    text = (page.data_dir / ".env").read_text()
    assert "GUM_SCREEN_MODE='local'" in text and "GUM_RETENTION_DAYS='14'" in text
    assert 'GUM_SCREEN_EXCLUDE=\'["Signal", "Online Banking"]\'' in text
    page.open("/controls")
    assert page.css("input[name=mode][value=local]").is_selected()
    assert page.css("#exclude").get_attribute("value") == "Signal\nOnline Banking"
    page.shot("controls")


# ------------------------------------------------------------------------------------------------ clients
def test_a_policy_change_on_the_page_hides_a_class_from_the_clients_next_read(page: Page2) -> None:
    lisbon = "Is planning a trip to Lisbon with Sam, March 14 to 24"

    def untick_location() -> None:
        page.open("/clients")
        row = page.css("#c-claude-desktop")
        box = row.find_element("css selector", "input[value=location]")
        assert box.is_selected()  # the default allows location
        box.click()
        row.find_element("css selector", "button[value=save]").click()
        page.text_appears("Saved: claude-desktop may see", "#policy")

    async def reads() -> tuple[dict, dict]:
        async with mcp_client(page, "claude-desktop") as client:
            before = (await client.call_tool("query_user", {"query": "Lisbon trip with Sam"})).structured_content
            await anyio.to_thread.run_sync(untick_location)  # the same server process, its next request
            after = (await client.call_tool("query_user", {"query": "Lisbon trip with Sam"})).structured_content
            return before, after

    before, after = anyio.run(reads)
    assert lisbon in [p["text"] for p in before["propositions"]]
    assert lisbon not in [p["text"] for p in after["propositions"]] and after["withheld"] >= 1
    with page.store() as store:
        from gum_mcp.store.policy import read_policy

        allowed = read_policy(store.settings.policy_path).allowed("claude-desktop")
    assert "location" not in allowed and "work" in allowed
    page.open("/clients")
    assert not page.css("#c-claude-desktop input[value=location]").is_selected()
    page.shot("clients-policy")


def test_tokens_made_rotated_and_revoked_with_the_secret_shown_once(page: Page2) -> None:
    page.open("/clients")
    page.css("#token-name").send_keys("laptop-agent")
    page.css("form.add-token input[value=write]").click()
    page.css("form.add-token button").click()
    page.text_appears("shown only this once", "#tokens")
    secret = page.css("#secret-value").get_attribute("value")
    assert re.fullmatch(r"gum_[A-Za-z0-9_-]{43}", secret)
    page.shot("token-new")
    with page.store() as store:
        assert store.authenticate_token(secret).scopes == ("read", "write")
    page.open("/clients")
    assert secret not in page.driver.page_source
    row = page.css("#t-laptop-agent")
    row.find_element("css selector", "summary").click()
    row.find_element("css selector", "form[action$=rotate] button").click()
    page.text_appears("the old one no longer works", "#tokens")
    fresh = page.css("#secret-value").get_attribute("value")
    with page.store() as store:
        assert store.authenticate_token(secret) is None and store.authenticate_token(fresh).name == "laptop-agent"
    row = page.css("#t-laptop-agent")
    row.find_elements("css selector", "summary")[1].click()
    row.find_element("css selector", "form[action$=revoke] button").click()
    page.text_appears("revoked", "#tokens")
    assert not page.all("#t-laptop-agent")
    with page.store() as store:
        assert store.authenticate_token(fresh) is None


def test_the_access_log_per_client(page: Page2) -> None:
    page.open("/clients")
    page.select("#access-client", "chat-app")
    page.wait(lambda d: "client=chat-app" in d.current_url)
    page.wait(lambda d: {r.find_elements("css selector", "td")[1].text for r in page.all(".access-table tbody tr")}
              == {"chat-app"})
    assert "refused" in page.css(".access-table").text
    page.shot("access-log")


# ------------------------------------------------------------------------------------------------ standards
def test_no_serious_accessibility_violations_light_and_dark(page: Page2) -> None:
    problems = accessibility_problems(page, NEW_PAGES, ("activity-light", "activity-dark"))
    assert problems == {}, json.dumps(problems, indent=1)


def test_readable_in_a_narrow_window(page: Page2) -> None:
    assert too_wide(page, {re.sub(r"\W+", "-", path.strip("/")): path for path in NEW_PAGES}) == {}
