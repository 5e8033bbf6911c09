"""Pixels: the cheap change signature of a screen grab, downscaling, and image encoding.

The signature is the screen in blocks of `block` x `block` pixels, each the sum of its bytes
(B, G, R and the constant alpha): one pass of numpy over the grab, ~1.5 ms for 1920x1080. Any
colour change inside a block moves its sum, so a single typed character is seen.

Frames for the vision model are downscaled (area averaging) so their longest side is at most
`MAX_SIDE` pixels and encoded as JPEG when Pillow is importable, else as PNG (zlib, no
dependency). Both providers accept either; `frame_format()` says which is in use.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

MAX_SIDE = 1280
JPEG_QUALITY = 80

try:  # Pillow is optional: JPEG is smaller, PNG needs nothing
    from PIL import Image as _PILImage  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _PILImage = None


def frame_format() -> str:
    """The image format frames are encoded in: "jpeg" (Pillow present) or "png"."""
    return "jpeg" if _PILImage is not None else "png"


@dataclass(frozen=True)
class Grab:
    """One monitor's pixels: BGRA bytes, width, height, and where the monitor sits."""

    raw: bytes | bytearray | memoryview
    width: int
    height: int
    left: int = 0
    top: int = 0

    def array(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.uint8).reshape(self.height, self.width, 4)


def signature(grab: Grab, block: int = 8) -> np.ndarray:
    """Block sums (int32) of the grab: shape (height // block, width // block)."""
    hb, wb = grab.height // block, grab.width // block
    if hb == 0 or wb == 0:
        return np.zeros((1, 1), dtype=np.int32)
    a = grab.array()[: hb * block, : wb * block]
    a = a.reshape(hb, block, wb, block * 4)
    return a.sum(axis=1, dtype=np.uint16).sum(axis=2, dtype=np.int32)


def changed_blocks(a: np.ndarray, b: np.ndarray, threshold: int) -> int:
    """How many blocks differ by more than `threshold` (in block-sum units). Shapes differ: all."""
    if a.shape != b.shape:
        return max(a.size, b.size)
    return int(np.count_nonzero(np.abs(a - b) > threshold))


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaging taps: output j = sum_k weight[j, k] * input[index[j, k]], weights in 1/256."""
    scale = n_in / n_out
    count = math.ceil(scale) + 1
    start = np.arange(n_out) * scale
    end = start + scale
    index = np.floor(start).astype(np.int64)[:, None] + np.arange(count)[None, :]
    overlap = np.minimum(index + 1, end[:, None]) - np.maximum(index, start[:, None])
    weight = np.clip(overlap, 0.0, None) / scale
    weight[index >= n_in] = 0.0
    index = np.minimum(index, n_in - 1)
    fixed = np.rint(weight * 256).astype(np.int64)
    # every row sums to exactly 256, so 255 * 256 still fits in uint16
    fixed[np.arange(n_out), fixed.argmax(axis=1)] += 256 - fixed.sum(axis=1)
    return index, fixed.astype(np.uint16)


def _resize_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Area-average uint8 `a` along axis 0 or 1 to `n_out` samples (integer arithmetic)."""
    n_in = a.shape[axis]
    if n_out == n_in:
        return a
    index, weight = _taps(n_in, n_out)
    shape = [1] * a.ndim
    shape[axis] = n_out
    out_shape = list(a.shape)
    out_shape[axis] = n_out
    out = np.zeros(out_shape, dtype=np.uint16)
    for k in range(index.shape[1]):
        taken = a[index[:, k]] if axis == 0 else a[:, index[:, k]]
        out += taken * weight[:, k].reshape(shape)
    return (out >> 8).astype(np.uint8)


def downscale_rgb(grab: Grab, max_side: int = MAX_SIDE) -> np.ndarray:
    """RGB uint8 array (h, w, 3), longest side at most `max_side` (~55 ms for 1920x1080)."""
    bgra = grab.array()
    width, height = target_size(grab.width, grab.height, max_side)
    if (width, height) != (grab.width, grab.height):
        bgra = _resize_axis(_resize_axis(bgra, height, 0), width, 1)
    return np.ascontiguousarray(bgra[:, :, 2::-1])


def encode(rgb: np.ndarray) -> bytes:
    """Encode an RGB array as JPEG (Pillow) or PNG."""
    height, width = rgb.shape[:2]
    if _PILImage is not None:
        buffer = io.BytesIO()
        _PILImage.fromarray(np.ascontiguousarray(rgb), "RGB").save(
            buffer, "JPEG", quality=JPEG_QUALITY, optimize=True
        )
        return buffer.getvalue()
    return _png(np.ascontiguousarray(rgb), width, height)


def _png(rgb: np.ndarray, width: int, height: int) -> bytes:
    """A PNG with the Sub filter on every row (text and flat areas compress well)."""
    import struct
    import zlib

    rows = rgb.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub
    filtered[:, 1:4] = rows[:, :3]
    filtered[:, 4:] = rows[:, 3:] - rows[:, :-3]  # uint8 arithmetic wraps, as PNG wants

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">2I5B", width, height, 8, 2, 0, 0, 0)
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        chunk(b"IHDR", header),
        chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)),
        chunk(b"IEND", b""),
    ])


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or baseline/progressive JPEG, from its header; None if unknown."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            i += 2 + length
    return None


def blocks_for(fraction: float, shape: tuple[int, ...]) -> int:
    return math.ceil(fraction * math.prod(shape))
