"""Private screen understanding on a real X display (Xvfb + openbox + xterm + a Tk window, xdotool).

Every settled screen is read on this machine (Tesseract); what reaches the loopback fake provider
is checked in the very request bodies it recorded:

- `text` mode: no secret shown on screen is in any request body, nor in the data directory;
- `vision` mode: the pixels of those secrets are painted over in the image the fake received,
  while ordinary text elsewhere on the same screen is unchanged;
- a password manager's window (excluded by title) beside a normal one: masked in `vision`, absent
  in `text`;
- a text-only model (the fake refuses images) works in `text` and `local` modes;
- OCR runs with the network unreachable (a new network namespace), and reads known text in pinned
  fonts with 1 - CER >= 0.95.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gum_mcp.observers.ocr import TesseractOcr
from tests.fake_provider import OPENAI_PATH, FakeLLMServer, Fault
from tests.test_observer_screen import Rig, data_dir_contains, images_in
from tests.x11 import XServer, cleared, desktop

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent
FONT = "DejaVu Sans Mono"
FONT_SIZE = "11"

AWS_KEY = "AKIA4Q7XZ2M9BKR3TPLW"
PASSWORD = "hunter2-Sesame-77"
CARD = "4111 1111 1111 1111"
ORDINARY = "ordinary words stay readable here"
TERMINAL = [
    "Deploy notes for the staging cluster",
    f"aws_access_key_id {AWS_KEY}",
    f"password: {PASSWORD}",
    f"card {CARD} expires soon",
    ORDINARY,
]
SECRETS = (AWS_KEY, PASSWORD, CARD, CARD.replace(" ", ""), "Sesame")
SUMMARY = "Reading deploy notes in a terminal."

VAULT_TITLE = "KeePassXC - zebravault.kdbx"
VAULT_TEXT = "zebra-vault-entry github zebrapass"


@pytest.fixture(scope="module")
def xserver() -> Iterator[XServer]:
    yield from desktop(1280, 800)


@pytest.fixture
def desk(xserver: XServer) -> Iterator[XServer]:
    yield from cleared(xserver)


@pytest.fixture
def rigs(fake_provider: FakeLLMServer, tmp_path: Path) -> Iterator[Any]:
    fake_provider.default = reply_by_schema
    made: list[Rig] = []

    def make(display: str, mode: str, **kwargs: Any) -> Rig:
        rig = Rig(fake_provider, tmp_path / f"data{len(made)}", display, screen_mode=mode, **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def reply_by_schema(body: Any, path: str) -> Any:
    """The summary-only reply for text mode, summary and text for vision."""
    schema = json.dumps(body.get("response_format") or body.get("tools") or {})
    if '"text"' in schema:
        return {"summary": SUMMARY, "text": "deploy notes"}
    return {"summary": SUMMARY}


def refuse_images(body: Any, path: str) -> Any:
    """A text-only model: any request carrying an image is refused (HTTP 400)."""
    if "image_url" in json.dumps(body) or '"type": "image"' in json.dumps(body):
        return Fault("500", status=400)
    return reply_by_schema(body, path)


@dataclass
class Term:
    window: int
    x: int  # the client window's position on the screen
    y: int
    cell_w: float
    cell_h: float

    def cell_rect(self, row: int, col: int, n: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of `n` character cells from (row, col), inside xterm's 2 px border."""
        left = self.x + 2 + col * self.cell_w
        top = self.y + 2 + row * self.cell_h
        return round(left), round(top), round(left + n * self.cell_w), round(top + self.cell_h)


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def terminal(desk: XServer, title: str, lines: list[str], *, cols: int = 70, rows: int = 12,
             at: str = "+20+40") -> Term:
    """An xterm in a pinned font showing `lines` (then `cat`), mapped and focused."""
    script = "printf '%s\\n' " + " ".join(shell_quote(line) for line in lines) + "; exec cat"
    desk.spawn("xterm", "-fa", FONT, "-fs", FONT_SIZE, "-T", title, "-geometry", f"{cols}x{rows}{at}",
               "-e", "sh", "-c", script)
    window = int(desk.run("xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{title}$").split()[-1])
    info = dict(line.strip().split(": ", 1) for line in desk.run("xwininfo", "-id", str(window)).splitlines()
                if ": " in line)
    x, y, width, height = (int(info[k]) for k in ("Absolute upper-left X", "Absolute upper-left Y", "Width", "Height"))
    return Term(window, x, y, (width - 4) / cols, (height - 4) / rows)


def tk_window(desk: XServer, title: str, lines: list[str], at: str = "+700+420") -> None:
    """A GUI app: a Tk window showing `lines` in DejaVu Sans 12 on white."""
    code = (
        "import sys, tkinter as t\n"
        "r = t.Tk(); r.title(sys.argv[1]); r.geometry(sys.argv[2])\n"
        "t.Label(r, text='\\n'.join(sys.argv[3:]), font=('DejaVu Sans', 12), justify='left', bg='white')"
        ".pack(padx=12, pady=12)\n"
        "r.mainloop()\n"
    )
    desk.spawn(sys.executable, "-c", code, title, at, *lines)
    desk.run("xdotool", "search", "--sync", "--onlyvisible", "--name", f"^{title}$")


def capture(desk: XServer, rig: Rig, change: Any) -> np.ndarray:
    """Baseline the current screen, make `change`, and capture the settled result once."""
    before = desk.settle()
    assert "baseline" in rig.ticks(4)
    change()
    screen = desk.settle(before)
    outcomes = rig.ticks(5)
    assert outcomes.count("captured") == 1, outcomes
    return screen


def bodies(rig: Rig) -> str:
    return "\n".join(json.dumps(r.body) for r in rig.fake.requests)


def decode(image: bytes) -> np.ndarray:
    from PIL import Image


    return np.asarray(Image.open(io.BytesIO(image)).convert("RGB")).astype(np.int16)


def region(rgb: np.ndarray, rect: tuple[int, int, int, int], shrink: int = 2) -> np.ndarray:
    left, top, right, bottom = rect
    return rgb[top + shrink : bottom - shrink, left + shrink : right - shrink]


def middle_band(rect: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The middle half of a text cell row, where glyphs are."""
    left, top, right, bottom = rect
    quarter = (bottom - top) // 4
    return left, top + quarter, right, bottom - quarter


def assert_painted(rgb: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    patch = region(rgb, rect)
    assert patch.size, rect
    assert patch.std() < 6, (rect, float(patch.std()))  # one flat fill (JPEG noise aside)
    assert abs(float(patch.mean()) - 128) < 8, (rect, float(patch.mean()))


def assert_unchanged(received: np.ndarray, screen_bgra: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    original = region(screen_bgra[:, :, 2::-1].astype(np.int16), rect)
    patch = region(received, rect)
    assert original.std() > 20  # there is text there
    assert float(np.abs(patch - original).mean()) < 10, rect  # JPEG at quality 80, nothing painted


# ------------------------------------------------------------------------------ secrets in a terminal


def test_text_mode_sends_no_secret(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "text")
    capture(desk, rig, lambda: terminal(desk, "deploy", TERMINAL))
    assert rig.observer.transcribe_pending() == 1
    requests = rig.fake.requests
    assert len(requests) == 1  # one call for one settled screen
    sent = bodies(rig)
    assert "image_url" not in sent and "base64" not in sent
    for secret in SECRETS:
        assert secret not in sent, secret
    assert ORDINARY in sent and "[REDACTED:api_key]" in sent and "[REDACTED:password]" in sent
    assert "[REDACTED:card_number]" in sent
    observation = rig.store.observations()[0]
    assert "[screen mode text;" in observation.content and SUMMARY in observation.content
    assert ORDINARY in observation.content
    for secret in SECRETS:
        assert data_dir_contains(rig.settings.data_dir, secret.encode()) == [], secret
    assert rig.files() == []  # nothing of the screen stays on disk
    health = rig.observer.health()
    assert health["screen"]["mode"] == "text" and health["screen"]["ocr"].startswith("tesseract")


def test_unchanged_text_makes_no_call(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "text")
    term = terminal(desk, "same-text", ["one line of text that stays"])
    before = desk.settle()
    rig.ticks(4)
    desk.type("more words typed here")  # a change of pixels and text...
    typed = desk.settle(before)
    assert rig.ticks(5).count("captured") == 1
    desk.xdotool("key", "ctrl+u")  # ...then the typed words are erased: other pixels, no new text
    desk.settle(typed)
    outcomes = rig.ticks(5)
    assert "captured" not in outcomes and "same" in outcomes, outcomes
    assert rig.observer.transcribe_pending() == 1
    assert len(rig.fake.requests) == 1
    assert term.window


def test_vision_mode_paints_secrets_over(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "vision")
    holder: dict[str, Term] = {}
    screen = capture(desk, rig, lambda: holder.setdefault("term", terminal(desk, "deploy-vision", TERMINAL)))
    term = holder["term"]
    assert rig.observer.transcribe_pending() == 1
    (request,) = [r for r in rig.fake.requests if r.path == OPENAI_PATH]
    (image,) = images_in(request.body, OPENAI_PATH)
    received = decode(image)
    assert received.shape[:2] == (800, 1280)

    key_col = TERMINAL[1].index(AWS_KEY)
    pw_col = TERMINAL[2].index(PASSWORD)
    card_col = TERMINAL[3].index(CARD)
    assert_painted(received, middle_band(term.cell_rect(1, key_col, len(AWS_KEY))))
    assert_painted(received, middle_band(term.cell_rect(2, pw_col, len(PASSWORD))))
    assert_painted(received, middle_band(term.cell_rect(3, card_col, len(CARD))))
    # ordinary text on the same screen, and the keys of the pairs, reach the model as they are
    assert_unchanged(received, screen, term.cell_rect(4, 0, len(ORDINARY)))
    assert_unchanged(received, screen, term.cell_rect(0, 0, len(TERMINAL[0])))
    assert_unchanged(received, screen, term.cell_rect(2, 0, len("password")))

    observation = rig.store.observations()[0]
    masked = int(observation.content.split("[screen mode vision; ", 1)[1].split(" region", 1)[0])
    assert masked >= 3
    assert rig.observer.counts()["masked_regions"] == masked


def test_vision_mode_sends_nothing_when_ocr_fails(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "vision")
    broken = TesseractOcr(binary=str(REPO / "tests" / "no-such-tesseract"))
    broken.problem = None  # it looks installed, then fails on the frame
    rig.observer.ocr = broken
    before = desk.settle()
    rig.ticks(4)
    terminal(desk, "ocr-fails", TERMINAL)
    desk.settle(before)
    outcomes = rig.ticks(5)
    assert "captured" not in outcomes and "error" in outcomes, outcomes
    assert rig.observer.transcribe_pending() == 0
    assert rig.fake.requests == []
    assert rig.files() == []
    assert "not sent" in rig.observer.health()["last_error"]


# ------------------------------------------------------------------------------ an excluded window beside


def vault_and_notes(desk: XServer) -> tuple[Term, Term]:
    vault = terminal(desk, VAULT_TITLE, [VAULT_TEXT, "zebra entries: 42"], cols=40, rows=8, at="+700+60")
    notes = terminal(desk, "notes", ["meeting notes for Friday", ORDINARY], cols=50, rows=8, at="+20+60")
    return vault, notes


def test_excluded_window_masked_in_vision(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "vision")
    holder: dict[str, tuple[Term, Term]] = {}
    screen = capture(desk, rig, lambda: holder.setdefault("w", vault_and_notes(desk)))
    vault, notes = holder["w"]
    assert rig.observer.transcribe_pending() == 1
    (image,) = images_in(rig.fake.requests[0].body, OPENAI_PATH)
    received = decode(image)
    # the vault's whole client area and its title bar (above it) are one grey rectangle
    assert_painted(received, (vault.x, vault.y, vault.x + round(40 * vault.cell_w), vault.y + round(8 * vault.cell_h)))
    assert_painted(received, (vault.x, vault.y - 16, vault.x + round(40 * vault.cell_w), vault.y - 4))
    assert_unchanged(received, screen, notes.cell_rect(1, 0, len(ORDINARY)))
    assert "zebra" not in bodies(rig).lower() and "keepass" not in bodies(rig).lower()
    assert data_dir_contains(rig.settings.data_dir, b"zebra") == []


def test_excluded_window_absent_in_text(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "text")
    capture(desk, rig, lambda: vault_and_notes(desk))
    assert rig.observer.transcribe_pending() == 1
    sent = bodies(rig)
    assert ORDINARY in sent
    assert "zebra" not in sent.lower() and "keepass" not in sent.lower()
    assert data_dir_contains(rig.settings.data_dir, b"zebra") == []
    assert data_dir_contains(rig.settings.data_dir, b"keepass") == []
    observation = rig.store.observations()[0]
    assert "1 region masked" in observation.content or "regions masked" in observation.content


def test_focused_excluded_window_is_not_captured(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "text")
    terminal(desk, "notes-first", ["meeting notes"], cols=40, rows=6, at="+20+60")
    before = desk.settle()
    rig.ticks(4)
    terminal(desk, VAULT_TITLE, [VAULT_TEXT], cols=40, rows=6, at="+700+60")  # focused now
    desk.settle(before)
    assert set(rig.ticks(5)) == {"excluded"}
    assert rig.observer.transcribe_pending() == 0
    assert rig.fake.requests == []


# ------------------------------------------------------------------------------ a text-only model


@pytest.mark.parametrize("mode", ["text", "local"])
def test_text_only_model(desk: XServer, rigs: Any, mode: str) -> None:
    rig = rigs(desk.display, mode)
    rig.fake.default = refuse_images
    capture(desk, rig, lambda: terminal(desk, f"text-only-{mode}", TERMINAL))
    assert rig.observer.transcribe_pending() == 1
    observation = rig.store.observations()[0]
    assert ORDINARY in observation.content and f"[screen mode {mode};" in observation.content
    if mode == "local":
        assert rig.fake.requests == []  # no model call at capture
        assert "[REDACTED:password]" in observation.content
    else:
        assert len(rig.fake.requests) == 1 and SUMMARY in observation.content
    for secret in SECRETS:
        assert secret not in observation.content


def test_without_ocr_text_mode_records_title_only(desk: XServer, rigs: Any) -> None:
    rig = rigs(desk.display, "text")
    rig.observer.ocr = TesseractOcr(binary=None)
    rig.observer.ocr.problem = "Tesseract is not installed"
    capture(desk, rig, lambda: terminal(desk, "no-ocr", TERMINAL))
    assert rig.observer.transcribe_pending() == 1
    assert rig.fake.requests == []  # no text: nothing worth a call, and never the image
    observation = rig.store.observations()[0]
    assert '"no-ocr"' in observation.content and "OCR unavailable" in observation.content
    assert ORDINARY not in observation.content
    health = rig.observer.health()
    assert any("title and application only" in w for w in health["warnings"])
    assert health["screen"]["ocr"].startswith("unavailable")


# ------------------------------------------------------------------------------ OCR itself


def cer(expected: list[str], read: str) -> float:
    """Character error rate of the expected lines against what was read: each line's edit distance to
    the best-matching stretch of a line read (OCR may join lines of windows side by side), with runs
    of white space as one space (OCR reads text, not indentation)."""
    got = [" ".join(line.split()) for line in read.splitlines() if line.strip()]
    errors = total = 0
    for line in (" ".join(line.split()) for line in expected):
        errors += min((substring_distance(line, other) for other in got), default=len(line))
        total += len(line)
    return errors / total


def substring_distance(needle: str, hay: str) -> int:
    """The least edit distance between `needle` and any stretch of `hay` (Sellers' algorithm)."""
    previous = [0] * (len(hay) + 1)
    for i, ca in enumerate(needle, 1):
        current = [i]
        for j, cb in enumerate(hay, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return min(previous)


GUI_LINES = ["Quarterly budget review with Jordan", "Draft due on Friday at noon", "Room 4B, second floor"]


def test_ocr_quality_on_terminal_and_gui(desk: XServer) -> None:
    terminal(desk, "quality", TERMINAL, at="+20+40")
    tk_window(desk, "gui-notes", GUI_LINES)
    screen = desk.settle()
    result = TesseractOcr().read(np.ascontiguousarray(screen[:, :, 2::-1]))
    assert 1 - cer(TERMINAL + GUI_LINES, result.text) >= 0.95, result.text


def test_ocr_with_the_network_unreachable(desk: XServer, tmp_path: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("unshare -n is not available in CI")
        pytest.skip("no network namespace here (unshare -n needs root)")
    terminal(desk, "offline", TERMINAL)
    screen = desk.settle()
    np.save(tmp_path / "screen.npy", np.ascontiguousarray(screen[:, :, 2::-1]))
    code = (
        "import socket, sys, numpy as np\n"
        "from gum_mcp.observers.ocr import TesseractOcr\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
        "    print('NETWORK')\n"
        "except OSError:\n"
        "    pass\n"
        "print(TesseractOcr().read(np.load(sys.argv[1])).text)\n"
    )
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", code, str(tmp_path / "screen.npy")],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "NETWORK" not in done.stdout  # not even loopback is up in the new namespace
    assert ORDINARY in done.stdout


def test_observer_default_mode_is_text(fake_provider: FakeLLMServer, tmp_path: Path) -> None:
    settings = fake_provider.settings("openai", tmp_path / "d")
    assert settings.screen_mode == "text"
