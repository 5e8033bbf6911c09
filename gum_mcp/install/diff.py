"""The diff `install` shows: changed lines only, with secret-looking values masked."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

# The value of a key whose name looks secret (api_key, token, Authorization...).
_SECRET_VALUE = re.compile(r'("[^"\n]*(?:key|token|secret|password|passwd|auth)[^"\n]*"\s*:\s*)"(?:[^"\\\n]|\\.)*"',
                           re.I)


def masked_diff(old: str | None, new: str, path: Path) -> str:
    """A unified diff without context lines (the lines around ours may hold other servers' secrets),
    with values of secret-looking keys masked anyway."""
    lines = difflib.unified_diff(
        [] if old is None else old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else str(path), tofile=str(path), n=0)
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return _SECRET_VALUE.sub(lambda m: m.group(1) + '"***"', text)
