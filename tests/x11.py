"""A real X display for tests: Xvfb on a free display number, openbox, xterm and xdotool.

`XServer` starts Xvfb with `-displayfd` (the server picks a free display and tells us which), can
start a window manager, open xterms and drive them with xdotool. Everything it starts it stops,
by process id. `require_x()` skips a test when the tools are missing, except under CI=true,
where a missing tool is a failure (scripts/system-packages installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import wait_until

TOOLS = ("Xvfb", "xdotool", "xterm")
WM = "openbox"


def require_x(*extra: str) -> None:
    missing = [tool for tool in (*TOOLS, *extra) if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (run scripts/system-packages)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"X tests cannot run in CI: {message}")
    pytest.skip(message)


@dataclass
class XTerm:
    process: subprocess.Popen[bytes]
    window: int
    title: str


class XServer:
    def __init__(self, width: int = 1024, height: int = 768) -> None:
        self.width, self.height = width, height
        read_fd, write_fd = os.pipe()
        try:
            self.xvfb = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
                 "-noreset"],
                pass_fds=[write_fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            os.close(write_fd)
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        os.close(read_fd)
        if not number.strip():
            self.xvfb.kill()
            raise RuntimeError("Xvfb did not report a display number")
        self.display = f":{number.decode().strip()}"
        self.env = {**os.environ, "DISPLAY": self.display}
        self.env.pop("WAYLAND_DISPLAY", None)
        self.children: list[subprocess.Popen[bytes]] = []
        self.wm: subprocess.Popen[bytes] | None = None

    # -- processes

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(args), env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        self.children.append(process)
        return process

    def run(self, *args: str, timeout: float = 15.0) -> str:
        done = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def xdotool(self, *args: str) -> str:
        return self.run("xdotool", *args)

    def start_wm(self) -> None:
        self.wm = self.spawn(WM, "--sm-disable")
        wait_until(lambda: "_NET_SUPPORTING_WM_CHECK(WINDOW)" in self.run("xprop", "-root", "_NET_SUPPORTING_WM_CHECK"),
                   timeout=15)

    def xterm(self, title: str, *, command: Sequence[str] = ("cat",), geometry: str = "80x24+40+40") -> XTerm:
        """An xterm titled `title` running `command` (cat echoes what is typed), mapped and focused."""
        process = self.spawn("xterm", "-T", title, "-geometry", geometry, "-e", *command)
        out = self.run("xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{title}$", timeout=15)
        window = int(out.split()[-1])
        if self.wm is not None:
            wait_until(lambda: self.active_window() == window, timeout=10)
        return XTerm(process, window, title)

    def active_window(self) -> int | None:
        try:
            return int(self.xdotool("getactivewindow").strip())
        except (RuntimeError, ValueError):
            return None

    def type(self, text: str) -> None:
        self.xdotool("type", "--delay", "2", text)

    def close_window(self, term: XTerm) -> None:
        self._end(term.process)

    def _end(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def close_windows(self) -> None:
        """End every process started here except the window manager."""
        for process in list(self.children):
            if process is not self.wm:
                self._end(process)
                self.children.remove(process)

    def close(self) -> None:
        for process in reversed(self.children):
            self._end(process)
        self.children.clear()
        self._end(self.xvfb)

    # -- pixels

    def grab(self) -> np.ndarray:
        import mss

        with mss.MSS(display=self.display) as sct:
            shot = sct.grab(sct.monitors[1])
            return np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4).copy()

    def settle(self, before: np.ndarray | None = None, timeout: float = 10.0) -> np.ndarray:
        """Wait until the screen differs from `before` (if given) and two grabs 100 ms apart agree."""
        deadline = time.monotonic() + timeout
        last = self.grab()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.grab()
            if np.array_equal(now, last) and (before is None or not np.array_equal(now, before)):
                return now
            last = now
        raise AssertionError("the screen did not settle")


def desktop(width: int = 1024, height: int = 768) -> Iterator[XServer]:
    """A display with a window manager, for the screen tests (they read frames: tesseract too); yields it and
    closes it. A module-scoped fixture yields from it; `cleared` closes a test's windows after it."""
    require_x(WM, "tesseract")
    server = XServer(width, height)
    try:
        server.start_wm()
        yield server
    finally:
        server.close()


def cleared(server: XServer) -> Iterator[XServer]:
    """The shared display for one test, with every window it opened closed after it."""
    yield server
    server.close_windows()
