"""A real browser and a real `gum-mcp ui` for the page's tests and screenshots.

`chrome()` drives Debian's headless Chromium through /usr/bin/chromedriver, given explicitly, so
Selenium Manager never downloads anything; `--no-sandbox` only as root, a new empty profile each time,
and the flags that keep Chromium off the network. `UIProcess` runs `gum-mcp ui` on a data dir with
$BROWSER set to a script that records the sign-in link it is asked to open. `require_chromium()` skips
a test when Chromium or Selenium is missing, except under CI=true, where that is a failure
(scripts/system-packages installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.conftest import PYTHON, gum_env, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (run scripts/system-packages)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {message}")
    pytest.skip(message)


def chrome(width: int = 1280, height: int = 800, *, dark: bool = False):
    """A headless Chromium of this size (the viewport: the window is sized so that the page gets it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gum-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.gum_profile = profile
    if dark:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    size(driver, width, height)
    return driver


def size(driver, width: int, height: int) -> None:
    """Make the page's viewport exactly width x height (a narrow window: 420 wide)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def quit_chrome(driver) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "gum_profile", ""), ignore_errors=True)


def load(driver, url: str, *, timeout: float = 30) -> None:
    """Open `url` and wait until the new document has loaded, its stylesheet applied. chromedriver's `get` can
    return while the new page is still "interactive", before app.css applies: a layout measured then is the
    unstyled page's (a narrow-window check once saw 629 px). The old document is marked first, so that its own
    "complete" is never taken for the new one's."""
    driver.execute_script("window.gumLeaving = true")
    driver.get(url)
    wait_until(lambda: driver.execute_script("return !window.gumLeaving && document.readyState === 'complete'"),
               timeout=timeout)


def too_wide(page, paths: Mapping[str, str], width: int = 420) -> dict[str, dict]:
    """Each of `paths` (screenshot name -> path) opened in a window `width` px wide and shot (`page` opens and
    shoots, as for `accessibility_problems`); the ones wider than the window, keyed by path, with the page's
    scroll width and the innermost elements past the edge (tag#id.class, its parent's, the right edge, the
    start of the text; ones a scroll container clips too), so that a failure names what is too wide."""
    problems = {}
    try:
        for name, path in paths.items():
            size(page.driver, width, 800)
            page.open(path)
            found = page.driver.execute_script(_PAST_THE_EDGE, width)
            if found:
                problems[path] = found
            page.shot(f"{name}-{width}", width=width)
    finally:
        size(page.driver, 1280, 800)
    return problems


_PAST_THE_EDGE = """
    const width = arguments[0], scrollWidth = document.documentElement.scrollWidth, wide = [];
    if (scrollWidth <= width) return null;
    for (const el of document.body.querySelectorAll('*')) {
      const right = el.getBoundingClientRect().right + window.scrollX;
      if (right > width + 0.5) wide.push({el, right});
    }
    const out = wide.filter(o => !wide.some(w => w.el !== o.el && o.el.contains(w.el)));
    const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
    return {scrollWidth, elements: out.slice(0, 8).map(o => ({
      element: name(o.el), parent: o.el.parentElement ? name(o.el.parentElement) : '',
      right: Math.round(o.right), text: (o.el.textContent || '').trim().slice(0, 80)}))};
"""


def full_screenshot(driver, path: Path, width: int) -> None:
    """The whole page (not only the viewport) at `width`, as a PNG (its height measured at that width)."""
    size(driver, width, 800)
    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    size(driver, width, min(max(height, 400), 6000))
    try:
        driver.save_screenshot(str(path))
    finally:
        size(driver, width, 800)


def axe_violations(driver, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """axe-core's violations of these impacts on the current page (axe injected through WebDriver, which the
    page's CSP does not govern)."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n.get("target") for n in v.get("nodes", [])][:5]}
            for v in result if v.get("impact") in impacts]


class UIProcess:
    """`gum-mcp ui --port 0` on `data_dir`; `link` is the sign-in link it asked $BROWSER to open."""

    def __init__(self, data_dir: Path, work: Path, **env: str) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.opened = work / "opened.txt"
        browser = work / "record-url"
        browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{self.opened}"\n')
        browser.chmod(0o755)
        self.stderr = open(work / "ui.stderr", "w+b")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [PYTHON, "-m", "gum_mcp", "ui", "--port", "0"],
            env=gum_env(data_dir, BROWSER=str(browser), GUM_EMBEDDING="none", **env),
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        try:
            self.link = str(wait_until(self._opened, timeout=60))
        except AssertionError:
            self.stop()
            raise AssertionError("gum-mcp ui did not open a link: " + self.log()) from None
        self.base = self.link.split("/login", 1)[0]

    def _opened(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"gum-mcp ui exited with {self.process.returncode}: {self.log()}")
        text = self.opened.read_text() if self.opened.exists() else ""
        return text.splitlines()[0] if text.endswith("\n") else None

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.stderr.close()


def accessibility_problems(page, paths: Sequence[str], shots: tuple[str, str]) -> dict[str, list[dict]]:
    """axe's serious and critical violations of each path in light and in dark mode (prefers-color-scheme),
    keyed "path mode"; `page` opens paths and takes screenshots (`shots`: names of the last light and dark)."""
    problems = {}
    for mode, shot in zip(("light", "dark"), shots, strict=True):
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": mode}]})
        for path in paths:
            page.open(path)
            found = axe_violations(page.driver)
            if found:
                problems[f"{path} {mode}"] = found
        page.shot(shot)
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    return problems
