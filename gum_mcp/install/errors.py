"""The one error `gum-mcp install` raises: the install cannot go ahead and nothing was written."""

from __future__ import annotations


class InstallError(Exception):
    """The install cannot go ahead; nothing was written. The message is for a person; `snippet` (when
    set) is the configuration to paste by hand."""

    def __init__(self, message: str, *, snippet: str | None = None) -> None:
        super().__init__(message if snippet is None else f"{message}\n\nAdd this by hand instead:\n{snippet}")
        self.snippet = snippet
