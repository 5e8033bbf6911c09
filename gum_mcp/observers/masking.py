"""One privacy boundary for screen text and pixels: what OCR read is redacted, what it flags is painted over.

- `redact_screen_text(lines, redactor)`: the page text (lines joined) through the store's redactor
  (`Redactor.redact`, its public entry point), then every high-entropy token left is replaced by
  `[REDACTED:high_entropy]` (an OCR misread can break a key's known format, not its randomness).
- `regions_to_mask(lines, redactor)`: the boxes of the words the redactor flags (its spans are
  recovered by aligning its output with its input), of words read with low confidence, and of
  high-entropy words, merged per line.
- `paint(rgb, boxes)`: fills boxes with flat grey, in place.
- `window_frames(reader, windows)`: the on-screen rectangles of windows (the window manager's
  frame, title bar included), or None when a rectangle cannot be read (the caller then skips the
  screen, as before).
"""

from __future__ import annotations

import ctypes
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from gum_mcp.observers.ocr import Box, Line, Word
from gum_mcp.observers.window import WindowInfo, WindowReader, X11Windows, _XWindowAttributes

if TYPE_CHECKING:
    from gum_mcp.store.redaction import Redactor

MIN_CONFIDENCE = 50.0  # words read below this (0-100) are painted over in vision mode
ENTROPY_MIN_LENGTH = 16
ENTROPY_MIN_BITS = 3.0  # Shannon bits per character
PAD = 3  # pixels added around a masked box
FILL = (128, 128, 128)
HIGH_ENTROPY = "[REDACTED:high_entropy]"

_TOKEN = re.compile(r"\[REDACTED:[a-z_]+\]")
_EDGE_PUNCT = "\"'`()[]{}<>,.;:!?"


def _core(token: str) -> str:
    return token.strip(_EDGE_PUNCT)


def looks_high_entropy(token: str) -> bool:
    """A random-looking string: long, letters mixed with digits (or all three cases), varied."""
    core = _core(token)
    if len(core) < ENTROPY_MIN_LENGTH or "REDACTED:" in core:
        return False
    upper = any(c.isupper() for c in core)
    lower = any(c.islower() for c in core)
    digit = any(c.isdigit() for c in core)
    if not ((digit and (upper or lower)) or (upper and lower and sum(c.isdigit() or c in "+/=_-" for c in core))):
        return False
    counts = Counter(core)
    bits = -sum(n / len(core) * math.log2(n / len(core)) for n in counts.values())
    return bits >= ENTROPY_MIN_BITS


def page_text(lines: Sequence[Line]) -> tuple[str, list[tuple[Word, int, int]]]:
    """The lines joined ("\\n" between lines, " " between words) and each word's character span."""
    parts: list[str] = []
    spans: list[tuple[Word, int, int]] = []
    pos = 0
    for i, line in enumerate(lines):
        if i:
            parts.append("\n")
            pos += 1
        for j, word in enumerate(line.words):
            if j:
                parts.append(" ")
                pos += 1
            parts.append(word.text)
            spans.append((word, pos, pos + len(word.text)))
            pos += len(word.text)
    return "".join(parts), spans


def redacted_spans(original: str, redacted: str) -> list[tuple[int, int]]:
    """The spans of `original` that the redactor replaced to give `redacted`.

    The redactor keeps everything outside its `[REDACTED:kind]` tokens, so the literal pieces
    between tokens are matched in order; when they cannot be aligned, the whole text counts."""
    pieces = _TOKEN.split(redacted)
    if len(pieces) == 1:
        return []
    pattern = "".join(
        re.escape(piece) + ("(.+?)" if i < len(pieces) - 1 else "") for i, piece in enumerate(pieces)
    )
    match = re.fullmatch(pattern, original, re.DOTALL)
    if match is None:
        return [(0, len(original))]
    return [match.span(g) for g in range(1, len(pieces))]


def redact_screen_text(text: str, redactor: Redactor) -> tuple[str, int]:
    """`text` through the store's redactor, then high-entropy tokens replaced. (text, replacements)."""
    result = redactor.redact(text)
    count = result.count

    def entropy(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if looks_high_entropy(token):
            count += 1
            core = _core(token)
            return token.replace(core, HIGH_ENTROPY)
        return token

    return re.sub(r"\S+", entropy, result.text), count


def regions_to_mask(
    lines: Sequence[Line], redactor: Redactor, *, min_confidence: float = MIN_CONFIDENCE
) -> list[tuple[Box, str]]:
    """Boxes to paint over: (box, reason) with reason secret, low_confidence or high_entropy.
    Neighbouring flagged words of one line become one box."""
    text, spans = page_text(lines)
    secret = redacted_spans(text, redactor.redact(text).text) if text else []
    flagged: dict[int, str] = {}
    for index, (word, start, end) in enumerate(spans):
        if any(start < s_end and s_start < end for s_start, s_end in secret):
            flagged[index] = "secret"
        elif looks_high_entropy(word.text):
            flagged[index] = "high_entropy"
        elif word.conf < min_confidence:
            flagged[index] = "low_confidence"
    regions: list[tuple[Box, str]] = []
    previous: int | None = None
    for index in sorted(flagged):
        word = spans[index][0]
        if previous is not None and previous == index - 1 and spans[previous][0].line == word.line:
            box, reason = regions[-1]
            regions[-1] = (box.union(word.box), reason if reason == "secret" else flagged[index])
        else:
            regions.append((word.box, flagged[index]))
        previous = index
    return regions


def paint(rgb: np.ndarray, boxes: Iterable[Box], *, pad: int = PAD) -> int:
    """Fill each box (grown by `pad`) with flat grey, in place. Returns how many boxes touched the image."""
    height, width = rgb.shape[:2]
    painted = 0
    for box in boxes:
        top, bottom = max(0, box.top - pad), min(height, box.bottom + pad)
        left, right = max(0, box.left - pad), min(width, box.right + pad)
        if top >= bottom or left >= right:
            continue
        rgb[top:bottom, left:right, :3] = FILL
        painted += 1
    return painted


def words_outside(lines: Sequence[Line], boxes: Sequence[Box]) -> list[Line]:
    """The lines without the words whose centre lies in one of `boxes`."""
    if not boxes:
        return list(lines)
    kept = []
    for line in lines:
        words = [w for w in line.words if not any(b.contains_center_of(w.box) for b in boxes)]
        if words:
            kept.append(Line(words, line.block))
    return kept


# ------------------------------------------------------------------------------------ window frames


def window_frames(reader: WindowReader | None, windows: Iterable[WindowInfo]) -> list[Box] | None:
    """Screen rectangles of `windows` with their window-manager frame, or None when one cannot be read.

    X11 only: the top-level ancestor of the client window (the frame a reparenting window manager
    draws the title bar in) and its geometry relative to the root."""
    windows = list(windows)
    if not windows:
        return []
    if not isinstance(reader, X11Windows) or reader.broken:
        return None
    boxes = []
    for window in windows:
        box = _x11_frame(reader, window.window_id) if window.window_id else None
        if box is None:
            return None
        boxes.append(box)
    return boxes


def _x11_frame(reader: X11Windows, window: int) -> Box | None:
    top = window
    for _ in range(32):
        tree = reader._tree(top)
        if tree is None:
            return None
        parent = tree[0]
        if parent in (0, reader._root):
            break
        top = parent
    else:
        return None
    attrs = _XWindowAttributes()
    dpy = reader._check()
    if not reader._x.XGetWindowAttributes(dpy, top, ctypes.byref(attrs)) or reader.broken:
        return None
    border = attrs.border_width
    return Box(attrs.x, attrs.y, attrs.width + 2 * border, attrs.height + 2 * border)


def boxes_on_monitor(boxes: Iterable[Box], left: int, top: int, width: int, height: int) -> list[Box]:
    """Screen boxes moved into one monitor's pixel coordinates, clipped to it (those off it dropped)."""
    found = []
    for box in boxes:
        x0, y0 = max(box.left - left, 0), max(box.top - top, 0)
        x1, y1 = min(box.right - left, width), min(box.bottom - top, height)
        if x0 < x1 and y0 < y1:
            found.append(Box(x0, y0, x1 - x0, y1 - y0))
    return found
