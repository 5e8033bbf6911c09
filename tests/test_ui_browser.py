"""The person's page in a real browser: headless Chromium (Debian's, through /usr/bin/chromedriver) against a
real `gum-mcp ui` on a seeded data dir. Each flow is walked as a person would and checked by what they see;
forgets are also checked in the data dir's bytes. Screenshots go to pytest's temp dir (ui-screenshots*)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gum_mcp.forgetting import open_store
from gum_mcp.store import Store
from tests.conftest import make_settings
from tests.ui_browser import (
    UIProcess,
    accessibility_problems,
    chrome,
    full_screenshot,
    load,
    quit_chrome,
    require_chromium,
    too_wide,
)
from tests.ui_seed import seed

pytestmark = pytest.mark.timeout(600)


class Page:
    """The signed-in browser, the server, and the data dir it serves."""

    def __init__(self, driver, ui: UIProcess, data_dir: Path, ids: dict[str, int], shots: Path) -> None:
        self.driver, self.ui, self.data_dir, self.ids, self.shots = driver, ui, data_dir, ids, shots

    def open(self, path: str) -> None:
        load(self.driver, self.ui.base + path)

    def wait(self, condition, timeout: float = 15):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(condition)

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def text_appears(self, text: str, selector: str = "body", timeout: float = 15):
        return self.wait(lambda d: text in self.css(selector).text and self.css(selector), timeout)

    def shot(self, name: str, width: int = 1280) -> Path:
        path = self.shots / f"{name}.png"
        full_screenshot(self.driver, path, width)
        return path

    def store(self) -> Store:
        return open_store(make_settings(self.data_dir))

    def data_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in sorted(self.data_dir.rglob("*")) if p.is_file())

    def card(self, text: str):
        matches = [c for c in self.all("article.card") if text in c.text]
        assert matches, f"no card with {text!r}"
        return matches[0]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    require_chromium()
    root = tmp_path_factory.mktemp("ui")
    data_dir = root / "data"
    with open_store(make_settings(data_dir)) as store:
        ids = seed(store)
    ui = UIProcess(data_dir, root / "work")
    driver = None
    try:
        driver = chrome(1280, 800)
        yield Page(driver, ui, data_dir, ids, tmp_path_factory.mktemp("ui-screenshots"))
    finally:
        if driver is not None:
            quit_chrome(driver)
        ui.stop()


@pytest.fixture(scope="module")
def signed_in(page: Page) -> Page:
    """Signed in: through the link, unless the first test already used it (in this browser)."""
    page.open("/")
    if page.driver.get_cookie("gum_session") is None:
        load(page.driver, page.ui.link)
    page.wait(lambda d: d.title.startswith("What I believe about you"))
    return page


def test_the_sign_in_link_opens_the_page_once(page: Page) -> None:
    assert page.ui.link.startswith("http://127.0.0.1:") and "/login?token=" in page.ui.link  # $BROWSER was asked
    load(page.driver, page.ui.link)
    page.wait(lambda d: d.title.startswith("What I believe about you"))
    [cookie] = [c for c in page.driver.get_cookies() if c["name"] == "gum_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    load(page.driver, page.ui.link)  # the same link again
    assert "This link no longer works" in page.css("h1").text
    page.open("/")  # the session it started goes on
    assert page.css("h1").text == "What I believe about you"


def test_beliefs_show_how_sure_how_fresh_and_why(signed_in: Page) -> None:
    page = signed_in
    page.open("/")
    wedding = page.card("Will attend Anika's wedding in Toronto on December 12")
    assert "confirmed by you" in wedding.text and "10/10" in wedding.text
    assert "% fresh" in wedding.text and "half-life 4 days" in wedding.text
    labels = [svg.get_attribute("aria-label") for svg in wedding.find_elements("css selector", "svg")]
    assert "confidence 10 of 10, confirmed by you" in labels and any(label.endswith("% fresh") for label in labels)
    assert wedding.find_elements("css selector", ".chip")  # evidence: app or source
    assert "Gmail" in wedding.text or "Chrome" in wedding.text or "Google Calendar" in wedding.text
    histogram = page.css(".overview svg").get_attribute("aria-label")
    assert histogram.startswith("Beliefs by confidence")
    assert "Wants a KitchenAid stand mixer" not in page.css("main").text  # rejected in the seed: gone
    page.shot("beliefs")


def test_search_and_filters(signed_in: Page) -> None:
    page = signed_in
    page.open("/")
    box = page.css("#q")
    box.send_keys("Lisbon trip")
    page.text_appears("match “Lisbon trip”", "#results")
    assert "Is planning a trip to Lisbon with Sam, March 14 to 24" in page.css("#results").text
    assert "q=Lisbon" in page.driver.current_url  # htmx pushed the search into the address
    page.shot("search")
    page.open("/?source=cursor")
    results = page.css("#results").text
    assert "Writes the pipeline's Python with Cursor" in results or "Asks Claude" not in results
    assert "Asks Claude to plan training and draft summaries" not in results
    from selenium.webdriver.support.ui import Select

    page.open("/")
    Select(page.css("select[name=app]")).select_by_value("Jira")
    page.wait(lambda d: "app=Jira" in d.current_url)
    page.text_appears("Is fixing DATA-238", "#results")
    assert "Is planning a trip to Lisbon" not in page.css("#results").text
    Select(page.css("select[name=sensitivity]")).select_by_value("untagged")  # the seed tags nothing
    page.wait(lambda d: "sensitivity=untagged" in d.current_url)
    page.text_appears("not tagged yet", "#results")
    Select(page.css("select[name=sensitivity]")).select_by_value("health")
    page.wait(lambda d: "sensitivity=health" in d.current_url)
    page.text_appears("0 beliefs", "#results")


def test_a_belief_with_its_evidence_and_history(signed_in: Page) -> None:
    page = signed_in
    page.open(f"/p/{page.ids['marathon']}")
    assert page.css("h1").text.startswith("Is training for the Porto Half Marathon")
    history = page.css(".timeline").text
    assert "Proposed" in history and "“Has taken up running”" in history
    assert "Revised" in history and "Reinforced by screen in Strava" in history
    evidence = page.all(".evidence li")
    assert evidence and all(e.find_elements("css selector", "time") for e in evidence)
    assert "Strava" in page.css(".evidence").text
    curve = page.css(".curve-chart").get_attribute("aria-label")
    assert "halves every 32 days" in curve
    page.shot("belief")
    page.open(f"/p/{page.ids['forecast']}")
    assert "Merged from 2 beliefs" in page.css(".timeline").text
    page.open(f"/p/{page.ids['wedding']}")
    assert "You confirmed it" in page.css(".timeline").text
    page.open(f"/p/{page.ids['vegetarian']}")
    history = page.css(".timeline").text
    assert "You corrected it" in history and "It said: “Is vegetarian”" in history


def test_confirm_reject_and_correct_in_place(signed_in: Page) -> None:
    page = signed_in
    page.open("/")
    page.card("Is learning Rust").find_element("css selector", "button.ok").click()
    page.text_appears("Confirmed. It now counts as certain.", "#results")
    assert "confirmed by you" in page.card("Is learning Rust").text
    page.card("Prefers a dark editor theme").find_element("css selector", "form[action$=reject] button").click()
    page.text_appears("Rejected. It is retired and will not be proposed again.", "#results")
    assert "Prefers a dark editor theme" not in page.css("#results").text
    card = page.card("Often has lunch with Mei Chen")
    card.find_element("css selector", "details summary").click()
    text = card.find_element("css selector", "textarea")
    text.clear()
    text.send_keys("Has lunch with Mei Chen at Green Bowl on Fridays")
    card.find_element("css selector", "button.primary").click()
    page.text_appears("Corrected. Your words replace it.", "#results")
    assert "Has lunch with Mei Chen at Green Bowl on Fridays" in page.css("#results").text
    page.shot("after-verdicts")
    with page.store() as store:
        current = {p.text: p for p in store.current_propositions(limit=100).items}
        assert current["Is learning Rust in the evenings, reading The Rust Programming Language"].user_confirmed
        assert "Prefers a dark editor theme (Dracula in VS Code)" in store.rejected_texts()
        assert current["Has lunch with Mei Chen at Green Bowl on Fridays"].user_confirmed
    page.open("/")  # it holds after a reload
    assert "Has lunch with Mei Chen at Green Bowl on Fridays" in page.css("#results").text


def test_forget_one_belief_and_its_evidence(signed_in: Page) -> None:
    page = signed_in
    text = b"Is fixing DATA-238, the claims dashboard refresh that fails on Mondays"
    assert text in page.data_bytes()
    with page.store() as store:
        evidence = store.evidence_ids(page.ids["data238"])
    page.open("/")
    card = page.card("Is fixing DATA-238")
    card.find_elements("css selector", "details summary")[1].click()
    card.find_element("css selector", "input[name=with_evidence]").click()
    card.find_element("css selector", "button.danger").click()
    page.text_appears("Forgotten, for good", "#results")
    assert "Is fixing DATA-238" not in page.css("#results").text
    assert text not in page.data_bytes()
    with page.store() as store:
        for oid in evidence:
            with pytest.raises(LookupError):
                store.get_observation(oid)


def test_forget_by_description_previews_then_removes_exactly_that(signed_in: Page) -> None:
    page = signed_in
    belief, earlier = b"running three times a week", b"Has taken up running"
    assert belief in page.data_bytes() and earlier in page.data_bytes()
    page.open("/forget")
    page.css("#describe").send_keys("my half marathon training")
    page.css("form[action='/forget/preview'] button").click()
    preview = page.text_appears("match “my half marathon training”", "#describe-out")
    assert "Is training for the Porto Half Marathon" in preview.text
    assert "Matched because its text contains" in preview.text
    assert belief in page.data_bytes()  # a preview removes nothing
    page.shot("forget-preview")
    page.css("#describe-out button.danger").click()
    page.text_appears("Forgotten, for good", "#describe-out")
    data = page.data_bytes()
    assert belief not in data and earlier not in data  # the belief and its earlier version
    page.open("/")
    assert "Porto Half Marathon" not in page.css("#results").text


def test_forget_by_source_app_and_time_shows_the_count_first(signed_in: Page) -> None:
    page = signed_in
    from selenium.webdriver.support.ui import Select

    with page.store() as store:
        expected = store.forget_count(source="claude-desktop")
    page.open("/forget")
    Select(page.css("#f-source")).select_by_value("claude-desktop")
    page.css("#f-source").find_element("xpath", "./following-sibling::button").click()
    tally = page.text_appears("Forget everything claude-desktop reported?", "#scope-out")
    assert f"{expected.observations} observations" in tally.text
    assert f"{expected.propositions} current belief" in tally.text
    page.shot("forget-count")
    page.css("#scope-out button.danger").click()
    page.text_appears("Forgotten, for good", "#scope-out")
    with page.store() as store:
        assert store.forget_count(source="claude-desktop").observations == 0
    # by application
    page.open("/forget")
    Select(page.css("#f-app")).select_by_value("WhatsApp")
    page.css("#f-app").find_element("xpath", "./following-sibling::button").click()
    page.text_appears("Forget everything seen in WhatsApp?", "#scope-out")
    page.css("#scope-out button.danger").click()
    page.text_appears("Forgotten, for good", "#scope-out")
    with page.store() as store:
        assert store.forget_count(app="WhatsApp").observations == 0
        oldest = store.observations(limit=1, newest_first=False)[0].observed_at
    # by time: the first hour of the week (datetime-local is this machine's time)
    start = oldest.astimezone().strftime("%Y-%m-%dT%H:%M")
    end = (oldest.astimezone().replace(second=0, microsecond=0) + __import__("datetime").timedelta(hours=3))
    page.open("/forget")
    page.driver.execute_script("arguments[0].value = arguments[1]; arguments[2].value = arguments[3];",
                               page.css("#f-since"), start, page.css("#f-until"), end.strftime("%Y-%m-%dT%H:%M"))
    page.css("fieldset").find_element("xpath", "./following-sibling::button").click()
    tally = page.text_appears("Forget everything observed from", "#scope-out")
    assert "observation" in tally.text
    page.css("#scope-out button.danger").click()
    page.text_appears("Forgotten, for good", "#scope-out")
    with page.store() as store:
        assert store.observations(limit=1, newest_first=False)[0].observed_at >= end


def test_keyboard_alone_reaches_everything(signed_in: Page) -> None:
    page = signed_in
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page.open("/")
    active = lambda: page.driver.switch_to.active_element  # noqa: E731
    ActionChains(page.driver).send_keys(Keys.TAB).perform()
    assert active().text == "Skip to content"
    assert active().value_of_css_property("outline-style") != "none" or active().is_displayed()
    active().send_keys(Keys.ENTER)
    page.wait(lambda d: d.current_url.endswith("#main"))
    seen = []
    for _ in range(40):
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
        element = active()
        seen.append((element.tag_name, element.get_attribute("id") or element.text))
        if element.tag_name == "summary":
            break
    tags = [tag for tag, _ in seen]
    assert "input" in tags and "select" in tags and "button" in tags and tags[-1] == "summary", seen
    assert active().value_of_css_property("outline-style") == "solid"  # focus is visible
    active().send_keys(Keys.ENTER)  # opens "Correct"
    ActionChains(page.driver).send_keys(Keys.TAB).perform()
    assert active().tag_name == "textarea"


def test_no_serious_accessibility_violations_light_and_dark(signed_in: Page) -> None:
    page = signed_in
    paths = ["/", f"/p/{page.ids['forecast']}", f"/p/{page.ids['vegetarian']}", "/forget", "/?q=Lisbon"]
    assert accessibility_problems(page, paths, ("beliefs-light-axe", "beliefs-dark")) == {}


def test_readable_in_a_narrow_window(signed_in: Page) -> None:
    page = signed_in
    assert too_wide(page, {"beliefs": "/", "belief": f"/p/{page.ids['forecast']}", "forget": "/forget"}) == {}


def test_the_server_refuses_what_the_gate_refuses(signed_in: Page) -> None:
    page = signed_in
    page.open("/")
    session = page.driver.get_cookie("gum_session")["value"]
    with page.store() as store:
        pid = store.current_propositions(limit=1).items[0].id
    target = f"{page.ui.base}/p/{pid}/reject"

    def post(headers: dict[str, str], body: bytes) -> int:
        request = urllib.request.Request(target, data=body, method="POST", headers={
            "content-type": "application/x-www-form-urlencoded", **headers})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    csrf = page.css("input[name=csrf]").get_attribute("value")
    assert post({}, f"csrf={csrf}".encode()) == 401  # no cookie
    assert post({"cookie": f"gum_session={session}", "origin": "http://evil.example"}, f"csrf={csrf}".encode()) == 403
    assert post({"cookie": f"gum_session={session}"}, b"") == 403  # no CSRF token
    assert post({"cookie": f"gum_session={session}"}, b"csrf=wrong") == 403
    with page.store() as store:
        assert store.get_proposition(pid).current
