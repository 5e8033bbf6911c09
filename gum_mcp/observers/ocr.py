"""Reading a screen on this machine: OCR with Tesseract, words with their boxes and confidence.

Why Tesseract (see README, "Screen text on this machine"): it is packaged by every platform's usual
installer with its English model (Debian/Ubuntu `tesseract-ocr`, Fedora `tesseract`, macOS
`brew install tesseract`, Windows the UB Mannheim installer or `winget install UB-Mannheim.TesseractOCR`),
so nothing is downloaded at run time; we run its command line, so there is no Python binding and
no Python-version limit. On screen text (1280x800, DejaVu at 11-12 px) it reads a screen in about
0.5 s on one core and keeps the spaces of proportional fonts, which the PP-OCR models of
`rapidocr-onnxruntime` (Python < 3.13, opencv-python and libGL) dropped, at 3 s a screen here.

The grey image, upscaled 1.5x, goes to `tesseract stdin stdout tsv` as PNM on stdin; nothing
touches the disk.
`OMP_THREAD_LIMIT=1`: Tesseract's OpenMP threads spin, and on 2 busy cores two threads were 8x
slower than one.

`TesseractOcr.read(rgb)` returns an `OcrResult` (words in reading order with pixel boxes in the
image given, confidence 0-100, grouped into lines); it raises `OcrError` when the engine fails on a
frame. `default_engine()` returns the engine, or an engine whose `problem` says why there is none.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIMEOUT = 20.0  # seconds for one frame; a screen takes well under 2
LANGUAGE = "eng"
# Screen fonts are small for Tesseract (trained on ~300 dpi print): at 1x it lost whole 11 px
# terminal lines; upscaled 1.5x (Lanczos) it read them all, at 1.5x the time of 1x (2x: no better).
SCALE = 1.5
WINDOWS_PATHS = (
    Path(os.environ.get("PROGRAMFILES", r"C:\Program Files")) / "Tesseract-OCR" / "tesseract.exe",
    Path(os.environ.get("LOCALAPPDATA", r"C:\Users\Default\AppData\Local")) / "Programs" / "Tesseract-OCR"
    / "tesseract.exe",
)
MAC_PATHS = (Path("/opt/homebrew/bin/tesseract"), Path("/usr/local/bin/tesseract"))


class OcrError(RuntimeError):
    """OCR failed on a frame (the message names the cause, never the screen's text)."""


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def union(self, other: Box) -> Box:
        left, top = min(self.left, other.left), min(self.top, other.top)
        return Box(left, top, max(self.right, other.right) - left, max(self.bottom, other.bottom) - top)

    def intersects(self, other: Box) -> bool:
        return (self.left < other.right and other.left < self.right
                and self.top < other.bottom and other.top < self.bottom)

    def contains_center_of(self, other: Box) -> bool:
        x, y = other.left + other.width / 2, other.top + other.height / 2
        return self.left <= x < self.right and self.top <= y < self.bottom


@dataclass(frozen=True)
class Word:
    text: str
    conf: float  # 0-100
    box: Box
    block: int
    line: int  # a key unique within the page: (block, paragraph, line) folded


@dataclass
class Line:
    words: list[Word]
    block: int

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)

    @property
    def box(self) -> Box:
        return functools.reduce(Box.union, (word.box for word in self.words))


@dataclass
class OcrResult:
    words: list[Word] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "tesseract"

    def lines(self) -> list[Line]:
        """Words grouped into lines, in reading order."""
        lines: list[Line] = []
        current: tuple[int, int] | None = None
        for word in self.words:
            key = (word.block, word.line)
            if key != current:
                lines.append(Line([], word.block))
                current = key
            lines[-1].words.append(word)
        return lines

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines())


def parse_tsv(tsv: str, *, scale: float = 1.0, offset: tuple[int, int] = (0, 0)) -> list[Word]:
    """Tesseract's TSV (level 5 rows are words) as `Word`s; boxes divided by `scale`, moved by `offset`."""
    words = []
    rows = tsv.splitlines()
    for row in rows[1:]:
        parts = row.split("\t")
        if len(parts) < 12 or parts[0] != "5":
            continue
        text = parts[11].strip()
        if not text:
            continue
        try:
            block, par, line = int(parts[2]), int(parts[3]), int(parts[4])
            left, top, width, height = (int(v) for v in parts[6:10])
            conf = float(parts[10])
        except ValueError:
            continue
        box = Box(round(left / scale) + offset[0], round(top / scale) + offset[1],
                  max(1, round(width / scale)), max(1, round(height / scale)))
        key = (block * 1000 + par) * 1000 + line
        words.append(Word(text=text, conf=max(0.0, conf), box=box, block=block, line=key))
    return words


def gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma of an RGB (h, w, 3) array (integer BT.601 weights)."""
    weights = np.array([77, 150, 29], dtype=np.uint16)
    return ((rgb[:, :, :3].astype(np.uint16) * weights).sum(axis=2, dtype=np.uint32) >> 8).astype(np.uint8)


def pnm(gray_image: np.ndarray) -> bytes:
    height, width = gray_image.shape
    return b"P5\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(gray_image).tobytes()


class OcrEngine:
    """Reads text off an RGB image. `problem` is None when the engine can run."""

    name = "none"
    version: str | None = None
    problem: str | None = "no OCR engine"

    @property
    def available(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if self.problem:
            return f"unavailable: {self.problem}"
        return f"{self.name} {self.version or ''}".strip()

    def read(self, rgb: np.ndarray) -> OcrResult:
        raise OcrError(self.problem or "no OCR engine")


def find_tesseract() -> str | None:
    """tesseract on PATH, or in the usual macOS / Windows folders (GUM_TESSERACT, a setting, names another)."""
    found = shutil.which("tesseract")
    if found:
        return found
    candidates = WINDOWS_PATHS if sys.platform == "win32" else MAC_PATHS if sys.platform == "darwin" else ()
    for path in candidates:
        if path.is_file():
            return str(path)
    return None


def _install_hint() -> str:
    if sys.platform == "darwin":
        return "brew install tesseract"
    if sys.platform == "win32":
        return "winget install UB-Mannheim.TesseractOCR"
    return "apt install tesseract-ocr (Fedora: dnf install tesseract)"


class TesseractOcr(OcrEngine):
    name = "tesseract"

    def __init__(self, binary: str | None = None, *, language: str = LANGUAGE, timeout: float = TIMEOUT,
                 scale: float = SCALE) -> None:
        self.binary = binary or find_tesseract()
        self.language = language
        self.scale = scale
        self.timeout = timeout
        self.problem = None
        self.env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        if self.binary is None:
            self.problem = f"Tesseract is not installed ({_install_hint()})"
            return
        try:
            done = subprocess.run([self.binary, "--version"], capture_output=True, timeout=10, env=self.env,
                                  check=False)
            first = (done.stdout or done.stderr).decode(errors="replace").splitlines()
            self.version = first[0].split()[-1] if first and first[0].startswith("tesseract") else None
            langs = subprocess.run([self.binary, "--list-langs"], capture_output=True, timeout=10, env=self.env,
                                   check=False)
            listed = {line.strip() for line in langs.stdout.decode(errors="replace").splitlines()[1:]}
        except (OSError, subprocess.SubprocessError) as exc:
            self.problem = f"Tesseract at {self.binary} does not run ({type(exc).__name__}: {exc})"
            return
        if language not in listed:
            self.problem = f"Tesseract has no {language!r} language data (install tesseract-ocr-{language})"

    def read(self, rgb: np.ndarray) -> OcrResult:
        if self.problem:
            raise OcrError(self.problem)
        assert self.binary is not None
        started = time.perf_counter()
        luma = gray(rgb)
        if self.scale != 1.0:
            from PIL import Image

            height, width = luma.shape
            size = (round(width * self.scale), round(height * self.scale))
            luma = np.asarray(Image.fromarray(luma, "L").resize(size, Image.Resampling.LANCZOS))
        try:
            done = subprocess.run(
                [self.binary, "stdin", "stdout", "-l", self.language, "--psm", "3", "tsv"],
                input=pnm(luma), capture_output=True, timeout=self.timeout, env=self.env, check=False,
            )
        except subprocess.TimeoutExpired:
            raise OcrError(f"tesseract took longer than {self.timeout:g} s") from None
        except OSError as exc:
            raise OcrError(f"tesseract did not start: {exc}") from None
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise OcrError(f"tesseract failed (exit {done.returncode}): {reason[0][:200]}")
        words = parse_tsv(done.stdout.decode("utf-8", errors="replace"), scale=self.scale)
        return OcrResult(words=words, seconds=time.perf_counter() - started, engine=self.name)


_engines: dict[str | None, OcrEngine] = {}
_engine_lock = threading.Lock()


def default_engine(binary: Path | str | None = None) -> OcrEngine:
    """The OCR engine of this machine: `binary` (the GUM_TESSERACT setting) or the tesseract found; each
    looked at once per process."""
    key = None if binary is None else str(binary)
    with _engine_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = TesseractOcr(key)
        return engine
