"""Screenshots of every page of `gum-mcp ui`, and how long the server takes to render each at 10k propositions.

    .venv/bin/python bench/ui_screens.py [--out ui-screens] [--count 10000] [--runs 21] [--no-screens]

1. Screens: a data dir seeded with a realistic working week (tests/ui_seed.py: beliefs with evidence,
   revisions, a merge, a confirmation, a correction), a real `gum-mcp ui`, headless Chromium
   (tests/ui_browser.py). Every page, whole, at 1280 and at 420 px wide goes to
   --out, a folder a person can open; index.html there shows them all.
2. Render time: the same week plus --count more propositions with evidence; each page requested --runs times
   in-process (the ASGI app, no network, keyword search), median and p90 server time per page printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GUM_MODELS_DIR", str(Path(__file__).resolve().parents[1] / ".models"))

from gum_mcp.forgetting import open_store
from tests.conftest import make_settings
from tests.ui_seed import add_bulk, seed, seed_more

BUDGET_MS = 300.0


def screens(out: Path, only: tuple[str, ...] = ()) -> list[Path]:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.ui_browser import UIProcess, chrome, full_screenshot, quit_chrome, size

    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="gum-ui-screens-"))
    with open_store(make_settings(root / "data", policy_file=root / "data" / "policy.toml")) as store:
        ids = seed_more(store, seed(store))
    (root / "watched").mkdir()
    ui = UIProcess(root / "data", root / "work", GUM_OBSERVE="files", GUM_WATCH_DIRS=str(root / "watched"),
                   GUM_POLICY_FILE=str(root / "data" / "policy.toml"), GUM_DAILY_TOKEN_BUDGET="120000")
    driver = chrome(1280, 800)
    written: list[Path] = []

    def wait(condition, timeout: float = 15) -> None:  # htmx swaps elements: ride out stale ones
        WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                      ).until(condition)

    def wait_for(text: str, selector: str = "body") -> None:
        wait(lambda d: text in d.find_element(By.CSS_SELECTOR, selector).text)

    def capture(name: str) -> None:
        size(driver, 1280, 800)
        driver.execute_script("window.scrollTo(0, 0)")
        wide = out / f"{name}-1280.png"
        full_screenshot(driver, wide, 1280)
        narrow = out / f"{name}-420.png"
        full_screenshot(driver, narrow, 420)
        size(driver, 1280, 800)
        written.extend([wide, narrow])

    try:
        driver.get(ui.link)
        wait_for("What I believe about you")
        pages = [("beliefs", "/"), ("search", "/?q=Lisbon+trip"), ("filtered", "/?app=Excel&order=confidence"),
                 ("belief-revised", f"/p/{ids['marathon']}"), ("belief-merged", f"/p/{ids['forecast']}"),
                 ("belief-corrected", f"/p/{ids['vegetarian']}"), ("forget", "/forget"),
                 ("activity", "/activity"), ("activity-skipped", "/activity?status=skipped"),
                 ("activity-app", "/activity?group=Terminal&days=30"), ("usage", "/usage"),
                 ("usage-400-days", "/usage?days=400"), ("suggestions", "/suggestions"), ("clients", "/clients"),
                 ("access-log", "/clients/access?client=chat-app"), ("controls", "/controls")]
        if only:
            pages = [(n, p) for n, p in pages if n in only]
        for name, path in pages:
            driver.get(ui.base + path)
            capture(name)
        if only:
            return written
        # dark, as the system asks
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        for name, path in [("beliefs", "/"), ("activity", "/activity"), ("usage", "/usage"),
                           ("suggestions", "/suggestions"), ("clients", "/clients"), ("controls", "/controls")]:
            driver.get(ui.base + path)
            dark = out / f"{name}-dark-1280.png"
            full_screenshot(driver, dark, 1280)
            written.append(dark)
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        # part two: a new token shown once, a pause, a dismissal drawer
        driver.get(ui.base + "/clients")
        driver.find_element(By.ID, "token-name").send_keys("laptop-agent")
        driver.find_element(By.CSS_SELECTOR, "form.add-token button").click()
        wait_for("shown only this once", "#tokens")
        capture("token-new")
        driver.get(ui.base + "/controls")
        Select(driver.find_element(By.ID, "pause-for")).select_by_value("4h")
        driver.find_element(By.CSS_SELECTOR, "form[action='/controls/pause'] button").click()
        wait_for("Observing paused for 4 hours", "#observing")
        wait(lambda d: (d.get(ui.base + "/controls") or True)
             and "paused" in d.find_element(By.CSS_SELECTOR, ".observers").text, timeout=30)
        capture("controls-paused")
        driver.get(ui.base + "/suggestions")
        driver.find_element(By.CSS_SELECTOR, "article.suggestion details summary").click()
        capture("suggestion-dismiss")
        # the forget flows, up to (not past) their confirmation
        driver.get(ui.base + "/forget")
        driver.find_element(By.ID, "describe").send_keys("my half marathon training")
        driver.find_element(By.CSS_SELECTOR, "form[action='/forget/preview'] button").click()
        wait_for("Matched because", "#describe-out")
        capture("forget-preview")
        driver.get(ui.base + "/forget")
        Select(driver.find_element(By.ID, "f-app")).select_by_value("Strava")
        driver.find_element(By.ID, "f-app").find_element(By.XPATH, "./following-sibling::button").click()
        wait_for("Forget everything seen in Strava?", "#scope-out")
        capture("forget-count")
        # an inline correction, open
        driver.get(ui.base + "/")
        driver.find_elements(By.CSS_SELECTOR, "article.card details summary")[0].click()
        capture("correct-inline")
        driver.get(ui.link)  # the sign-in link, used twice
        capture("link-used")
        driver.delete_all_cookies()
        driver.get(ui.base + "/")
        capture("signed-out")
    finally:
        quit_chrome(driver)
        ui.stop()
    rows = "\n".join(f'<figure><figcaption>{p.name}</figcaption><img src="{p.name}" alt="{p.stem}"></figure>'
                     for p in written)
    (out / "index.html").write_text(
        "<!doctype html><meta charset=utf-8><title>gum-mcp ui screens</title><style>body{font:14px sans-serif;"
        "background:#ddd;display:flex;flex-wrap:wrap;gap:16px;padding:16px}figure{margin:0}img{max-width:640px;"
        f"display:block;border:1px solid #999}}</style>{rows}\n")
    return written


async def render_times(count: int, runs: int) -> dict[str, list[float]]:
    import anyio.to_thread
    import httpx

    from gum_mcp import retrieval
    from gum_mcp.hosts import policy_for
    from gum_mcp.runtime import SearchResult
    from gum_mcp.ui.app import build_app
    from gum_mcp.ui.sessions import Sessions
    from gum_mcp.ui.state import UIState, template_environment

    root = Path(tempfile.mkdtemp(prefix="gum-ui-bench-"))
    store = open_store(make_settings(root / "data", policy_file=root / "data" / "policy.toml"))
    ids = seed_more(store, seed(store))
    add_bulk(store, count)
    current = store.stats().propositions_current

    async def search(query, **kwargs):
        hits = await anyio.to_thread.run_sync(lambda: retrieval.search(store, None, query, **kwargs))
        return SearchResult(hits, "keyword search only")

    sessions = Sessions()
    state = UIState(settings=store.settings, store=store, search=search, wake_index=lambda: None,
                    sessions=sessions, templates=template_environment())
    app = build_app(state, policy_for("127.0.0.1"))
    pages = {"beliefs": "/", "beliefs, page 50": "/?page=50", "by confidence": "/?order=confidence",
             "filtered by app": "/?app=Excel&when=7d", "search": "/?q=forecast+Jordan",
             "belief (revised)": f"/p/{ids['marathon']}", "belief (merged)": f"/p/{ids['forecast']}",
             "forget": "/forget", "activity": "/activity", "activity, 30 days": "/activity?days=30",
             "activity, skipped": "/activity?status=skipped", "usage": "/usage", "usage, 400 days": "/usage?days=400",
             "suggestions": "/suggestions", "clients": "/clients", "access log": "/clients/access?client=chat-app",
             "controls": "/controls"}
    times: dict[str, list[float]] = {name: [] for name in pages}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8766") as client:
        await client.get("/login", params={"token": sessions.issue_link()})
        for name, path in pages.items():
            for i in range(runs + 1):
                started = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (path, response.status_code)
                if i:  # the first request warms caches
                    times[name].append(elapsed)
    store.close()
    print(f"render time at {current:,} current propositions ({runs} runs each, in-process server time):")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="ui-screens", help="folder for the screenshots (default ./ui-screens)")
    parser.add_argument("--count", type=int, default=10_000, help="propositions to add for the render bench")
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-screens", action="store_true", help="only the render bench")
    parser.add_argument("--only", nargs="*", default=(), help="only these screens (names), then stop")
    args = parser.parse_args()
    if not args.no_screens:
        written = screens(Path(args.out), tuple(args.only))
        print(f"{len(written)} screenshots in {Path(args.out).resolve()} (open index.html)")
        if args.only:
            return 0
    times = asyncio.run(render_times(args.count, args.runs))
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        worst = max(worst, median)
        print(f"  {name:<20} median {median:7.1f} ms   p90 {p90:7.1f} ms")
    print(f"slowest median {worst:.1f} ms (budget {BUDGET_MS:.0f} ms): {'ok' if worst <= BUDGET_MS else 'OVER'}")
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
