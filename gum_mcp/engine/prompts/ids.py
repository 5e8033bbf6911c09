"""Typed ids in prompts and replies: `o12` an observation, `p34` a proposition, `d3` a draft.

A bare number could be any of the three, so a swapped id that happens to be valid as another kind would
pass; a typed one cannot. Replies are read with `parse`: an id of the wrong kind (or a bare number) is
no id at all, counted and ignored like an unknown one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

Kind = Literal["o", "p", "d"]
OBSERVATION: Kind = "o"
PROPOSITION: Kind = "p"
DRAFT: Kind = "d"
KIND_NAMES = {"o": "observation", "p": "proposition", "d": "draft"}

_ID = re.compile(r"\s*([opd])(\d{1,18})\s*")


def typed(kind: Kind, number: int) -> str:
    return f"{kind}{number}"


def typed_all(kind: Kind, numbers: Iterable[int]) -> list[str]:
    return [typed(kind, n) for n in numbers]


def parse(value: str, kind: Kind) -> int | None:
    """The number of a typed id of `kind` ("o12" -> 12), or None for any other value."""
    match = _ID.fullmatch(value)
    if match is None or match.group(1) != kind:
        return None
    return int(match.group(2))


def _as_text(value: Any) -> Any:
    # A bare number is not rejected by validation (which would discard the whole reply for one id):
    # it arrives as text and `parse` finds it is no typed id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: An id field in a reply model: text; the id of the right kind or nothing (see `parse`).
TypedId = Annotated[str, BeforeValidator(_as_text)]
