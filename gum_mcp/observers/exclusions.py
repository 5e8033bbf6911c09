"""Which screens must never be captured: password managers, private browsing, and the user's own list.

Checked before every grab against the focused window and every other visible window. Patterns
are case-insensitive regular expressions searched in the application name (WM_CLASS class and
instance, process name) and in the window title. `GUM_SCREEN_EXCLUDE` adds patterns matched
against both. With `GUM_SCREEN_UNKNOWN=skip` a focused window whose title cannot be read counts
as excluded too.

The reason returned names the rule, never the title (titles are not logged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from gum_mcp.observers.window import WindowInfo

# Application names (WM_CLASS, process names, macOS app names).
DEFAULT_APPS: tuple[str, ...] = (
    r"1password",
    r"bitwarden",
    r"keepass(xc|x)?",
    r"lastpass",
    r"dashlane",
    r"enpass",
    r"keychain access",
    r"^(pass|gopass|qtpass|passff)$",
    r"seahorse",  # GNOME Passwords and Keys
    r"kwalletmanager",
)

# Window titles: the same managers as they title their windows, and private browsing.
DEFAULT_TITLES: tuple[str, ...] = (
    r"1password",
    r"bitwarden",
    r"keepass(xc|x)?\b",
    r"lastpass",
    r"dashlane",
    r"\benpass\b",
    r"keychain access",
    r"^(pass|gopass)(\s|$)",  # a terminal running `pass show ...` titled by the shell
    r"private browsing",
    r"\bincognito\b",
    r"\binprivate\b",
    r"\bprivate window\b",
    r"passwords and keys",
)


def _compile(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(pattern, re.IGNORECASE) for pattern in patterns]


class Exclusions:
    def __init__(self, extra: Sequence[str] = (), *, unknown: str = "capture") -> None:
        self.apps = _compile(DEFAULT_APPS)
        self.titles = _compile(DEFAULT_TITLES)
        self.extra = _compile(extra)
        self.skip_unknown = unknown == "skip"

    def window_reason(self, window: WindowInfo) -> str | None:
        """Why this window must not be captured, or None."""
        names = [name for name in (window.app, window.instance) if name]
        for pattern in self.apps:
            if any(pattern.search(name) for name in names):
                return f"application matches {pattern.pattern!r}"
        title = window.title or ""
        if title:
            for pattern in self.titles:
                if pattern.search(title):
                    return f"window title matches {pattern.pattern!r}"
        for pattern in self.extra:
            if (title and pattern.search(title)) or any(pattern.search(name) for name in names):
                return f"GUM_SCREEN_EXCLUDE pattern {pattern.pattern!r}"
        return None

    def reason(self, focused: WindowInfo, visible: Iterable[WindowInfo] = ()) -> str | None:
        """Why the screen must not be captured now (focused or any visible window), or None."""
        if self.skip_unknown and not focused.readable:
            return "the focused window's title cannot be read (GUM_SCREEN_UNKNOWN=skip)"
        found = self.window_reason(focused)
        if found:
            return found
        for window in visible:
            found = self.window_reason(window)
            if found:
                return f"a visible window: {found}"
        return None
