"""Images in a request: which turn carries them, and their media type."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def with_images(
    messages: list[dict[str, str]], images: Sequence[bytes], content: Callable[[str, Sequence[bytes]], Any]
) -> list[dict[str, Any]]:
    """The caller's turns, with the images (in the provider's format, built by `content`) on the last
    user message."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    return [{"role": m["role"], "content": content(m["content"], images) if i == last_user else m["content"]}
            for i, m in enumerate(messages)]


def image_media_type(data: bytes) -> str:
    """The media type of an image from its magic bytes; JPEG unless recognised as something else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"
