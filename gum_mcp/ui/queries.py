"""What the page reads from the store that the store's own API does not offer: current propositions
filtered by where their evidence came from and by their class, evidence with its application, the lineage
around one proposition, and the facets (sources, applications, sensitivity classes) to filter by. Read-only:
every change goes through the store's and gum_mcp.forgetting's functions, as the MCP tools do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from gum_mcp.domain import SENSITIVITY_ORDER, LineageEdge, Proposition, from_ts, to_ts
from gum_mcp.store.inbox import placeholders
from gum_mcp.store.propositions import PROPOSITION_COLUMNS, proposition_from_row

if TYPE_CHECKING:
    from gum_mcp.store import Store

#: The class filter's value for propositions not tagged yet (sensitivity NULL)
UNTAGGED = "untagged"

P_COLUMNS = ", ".join(f"p.{c.strip()}" for c in PROPOSITION_COLUMNS.split(","))


@dataclass(frozen=True)
class Filters:
    source: str | None = None
    app: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sensitivity: str | None = None  # a class of SENSITIVITY_ORDER, or UNTAGGED: not tagged yet (NULL)

    @property
    def by_evidence(self) -> bool:
        return bool(self.source or self.app)

    @property
    def narrows(self) -> bool:
        """Whether a search's hits must be checked against these filters (beyond the time, which search applies)."""
        return self.by_evidence or self.sensitivity is not None


@dataclass(frozen=True)
class EvidenceItem:
    observation_id: int
    kind: str
    source: str
    app: str | None
    observed_at: datetime
    snippet: str | None
    proposition_id: int = 0


@dataclass(frozen=True)
class Facet:
    name: str
    count: int


def _evidence_clause(filters: Filters) -> tuple[str, list[object]]:
    clauses, params = [], []
    if filters.source:
        clauses.append("o.source = ?")
        params.append(filters.source)
    if filters.app:
        clauses.append("o.app = ? COLLATE NOCASE")
        params.append(filters.app)
    if not clauses:
        return "", []
    return (" AND EXISTS (SELECT 1 FROM evidence e JOIN observations o ON o.id = e.observation_id"
            f" WHERE e.proposition_id = p.id AND {' AND '.join(clauses)})"), params


def _class_clause(filters: Filters) -> tuple[str, list[object]]:
    if filters.sensitivity is None:
        return "", []
    if filters.sensitivity == UNTAGGED:
        return " AND p.sensitivity IS NULL", []
    return " AND p.sensitivity = ?", [filters.sensitivity]


def _where(filters: Filters) -> tuple[str, list[object]]:
    where = "p.retired_at IS NULL AND p.text IS NOT NULL"
    params: list[object] = []
    if filters.since is not None:
        where += " AND p.last_supported_at >= ?"
        params.append(to_ts(filters.since))
    if filters.until is not None:
        where += " AND p.last_supported_at < ?"
        params.append(to_ts(filters.until))
    extra, more = _evidence_clause(filters)
    cls, cls_params = _class_clause(filters)
    return where + extra + cls, params + more + cls_params


def current(store: Store, filters: Filters, *, order: str = "recent", offset: int = 0, limit: int = 30
            ) -> tuple[list[Proposition], int]:
    """A page of current propositions matching `filters`, and how many match in all."""
    where, params = _where(filters)
    order_by = ("p.last_supported_at DESC, p.id DESC" if order == "recent"
                else "p.confidence DESC, p.last_supported_at DESC, p.id DESC")
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT {P_COLUMNS} FROM propositions p WHERE {where} ORDER BY {order_by}"
                            " LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        total = conn.execute(f"SELECT count(*) FROM propositions p WHERE {where}", params).fetchone()[0]
    return [proposition_from_row(r) for r in rows], total


def keep_matching(store: Store, ids: Sequence[int], filters: Filters) -> set[int]:
    """Of `ids` (search hits), those whose evidence matches the source and app filters and whose class
    matches the class filter."""
    if not ids or not filters.narrows:
        return set(ids)
    extra, params = _evidence_clause(filters)
    cls, cls_params = _class_clause(filters)
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT p.id FROM propositions p WHERE p.id IN ({placeholders(ids)}){extra}{cls}",
                            (*ids, *params, *cls_params)).fetchall()
    return {r[0] for r in rows}


def evidence(store: Store, proposition_ids: Sequence[int], *, per: int = 3, chars: int = 220
             ) -> tuple[dict[int, list[EvidenceItem]], dict[int, int]]:
    """The newest `per` evidence observations of each proposition (snippet cut to `chars`), and how many each has."""
    found: dict[int, list[EvidenceItem]] = {}
    counts: dict[int, int] = {}
    for row in store.evidence_rows(proposition_ids, per=per, chars=chars):
        found.setdefault(row["proposition_id"], []).append(_item(row))
        counts[row["proposition_id"]] = row["n"]
    return found, counts


def _item(row) -> EvidenceItem:
    return EvidenceItem(observation_id=row["id"], kind=row["kind"], source=row["source"], app=row["app"],
                        observed_at=from_ts(row["observed_at"]), snippet=row["snippet"],
                        proposition_id=row["proposition_id"])


def lineage_around(store: Store, ids: Sequence[int]) -> list[LineageEdge]:
    """The lineage edges whose child is one of `ids` (a proposition and its ancestors)."""
    if not ids:
        return []
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT * FROM lineage WHERE child_id IN ({placeholders(ids)}) ORDER BY at, child_id,"
                            " parent_id", tuple(ids)).fetchall()
    return [LineageEdge(parent_id=r["parent_id"], child_id=r["child_id"], cause=r["cause"], note=r["note"],
                        at=from_ts(r["at"])) for r in rows]


def evidence_of_versions(store: Store, ids: Sequence[int], *, chars: int = 220) -> list[EvidenceItem]:
    """Every evidence link of the versions `ids`, oldest observation first (for the timeline)."""
    if not ids:
        return []
    with store.db.read() as conn:
        rows = conn.execute(
            "SELECT e.proposition_id, o.id, o.kind, o.source, o.app, o.observed_at, substr(o.content, 1, ?) AS snippet"
            f" FROM evidence e JOIN observations o ON o.id = e.observation_id WHERE e.proposition_id IN"
            f" ({placeholders(ids)}) ORDER BY o.observed_at, o.id", (chars, *ids)).fetchall()
    return [_item(r) for r in rows]


def facets(store: Store) -> tuple[list[Facet], list[Facet]]:
    """The sources and applications observations came from, most frequent first."""
    with store.db.read() as conn:
        sources = conn.execute("SELECT source, count(*) FROM observations GROUP BY source"
                               " ORDER BY 2 DESC, 1").fetchall()
        apps = conn.execute("SELECT app, count(*) FROM observations WHERE app IS NOT NULL GROUP BY app COLLATE NOCASE"
                            " ORDER BY 2 DESC, 1 LIMIT 200").fetchall()
    return [Facet(r[0], r[1]) for r in sources], [Facet(r[0], r[1]) for r in apps]


def class_facets(store: Store) -> list[Facet]:
    """Current propositions per sensitivity class, every class, most sensitive first, then how many are not
    tagged yet (`UNTAGGED`)."""
    with store.db.read() as conn:
        rows = dict(conn.execute("SELECT sensitivity, count(*) FROM propositions p WHERE p.retired_at IS NULL"
                                 " AND p.text IS NOT NULL GROUP BY sensitivity").fetchall())
    return [*(Facet(c, rows.get(c, 0)) for c in SENSITIVITY_ORDER), Facet(UNTAGGED, rows.get(None, 0))]


def confidence_histogram(store: Store, filters: Filters) -> list[int]:
    """How many matching current propositions have each confidence, 1 to 10."""
    where, params = _where(filters)
    counts = [0] * 10
    with store.db.read() as conn:
        for conf, n in conn.execute(f"SELECT p.confidence, count(*) FROM propositions p WHERE {where}"
                                    " GROUP BY p.confidence", params):
            counts[int(conf) - 1] = n
    return counts


# ---------------------------------------------------------------------------------------- activity
@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD, this machine's time zone
    group: str  # the application, else the source
    observations: int
    skipped: int
    redactions: int


@dataclass(frozen=True)
class Totals:
    observations: int = 0
    processed: int = 0
    pending: int = 0
    skipped: int = 0
    failed: int = 0
    redactions: int = 0
    redacted_observations: int = 0


@dataclass(frozen=True)
class Inferred:
    id: int
    text: str
    current: bool


@dataclass(frozen=True)
class ObservationRow:
    id: int
    kind: str
    source: str
    app: str | None
    observed_at: datetime
    status: str
    reason: str | None
    redactions: int
    content: str | None
    truncated: bool
    inferred: list[Inferred]


_DAY = "date(o.observed_at, 'unixepoch', 'localtime')"
_GROUP = "coalesce(o.app, o.source)"


def _activity_where(since: datetime | None, group: str | None, day: str | None, status: str | None = None
                    ) -> tuple[str, list[object]]:
    clauses, params = ["1"], []
    if since is not None:
        clauses.append("o.observed_at >= ?")
        params.append(to_ts(since))
    if group:
        clauses.append(f"{_GROUP} = ? COLLATE NOCASE")
        params.append(group)
    if day:
        clauses.append(f"{_DAY} = ?")
        params.append(day)
    if status:
        clauses.append("o.status = ?")
        params.append(status)
    return " AND ".join(clauses), params


def activity_by_day(store: Store, since: datetime) -> list[DayCount]:
    """Observations per local day and application (else source) since `since`: how many, how many the audit
    skipped, how many secrets were redacted from them."""
    where, params = _activity_where(since, None, None)
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT {_DAY} AS day, {_GROUP} AS grp, count(*), sum(o.status = 'skipped'),"
                            f" sum(o.redactions) FROM observations o WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
                            params).fetchall()
    return [DayCount(r[0], r[1], r[2], r[3] or 0, r[4] or 0) for r in rows]


def activity_totals(store: Store, since: datetime | None = None, group: str | None = None, day: str | None = None
                    ) -> Totals:
    where, params = _activity_where(since, group, day)
    with store.db.read() as conn:
        row = conn.execute(
            "SELECT count(*), sum(o.status = 'processed'), sum(o.status = 'pending'), sum(o.status = 'skipped'),"
            f" sum(o.status = 'failed'), sum(o.redactions), sum(o.redactions > 0) FROM observations o WHERE {where}",
            params).fetchone()
    return Totals(*(int(v or 0) for v in row))


def observation_rows(store: Store, *, since: datetime | None = None, group: str | None = None,
                     day: str | None = None, status: str | None = None, offset: int = 0, limit: int = 40,
                     chars: int = 600, per: int = 5) -> tuple[list[ObservationRow], int]:
    """A page of observations, newest first (text cut to `chars`), each with up to `per` of the propositions
    inferred from it (current ones first), and how many match in all."""
    where, params = _activity_where(since, group, day, status)
    with store.db.read() as conn:
        rows = conn.execute(
            "SELECT o.id, o.kind, o.source, o.app, o.observed_at, o.status, o.last_error, o.redactions,"
            f" substr(o.content, 1, ?) AS text, length(o.content) AS n FROM observations o WHERE {where}"
            " ORDER BY o.observed_at DESC, o.id DESC LIMIT ? OFFSET ?", (chars + 1, *params, limit, offset)).fetchall()
        total = conn.execute(f"SELECT count(*) FROM observations o WHERE {where}", params).fetchone()[0]
        ids = [r[0] for r in rows]
        links: dict[int, list[Inferred]] = {}
        if ids:
            for oid, pid, text, retired in conn.execute(
                    "SELECT e.observation_id, p.id, p.text, p.retired_at FROM evidence e JOIN propositions p"
                    f" ON p.id = e.proposition_id WHERE e.observation_id IN ({placeholders(ids)})"
                    " AND p.text IS NOT NULL ORDER BY e.observation_id, p.retired_at IS NOT NULL, p.id DESC", ids):
                found = links.setdefault(oid, [])
                if len(found) < per:
                    found.append(Inferred(pid, text, retired is None))
    out = []
    for r in rows:
        text = r["text"]
        cut = text is not None and len(text) > chars
        out.append(ObservationRow(
            id=r["id"], kind=r["kind"], source=r["source"], app=r["app"], observed_at=from_ts(r["observed_at"]),
            status=r["status"], reason=r["last_error"] if r["status"] in ("skipped", "failed") else None,
            redactions=r["redactions"] or 0, content=(text[:chars].rstrip() + "…") if cut else text, truncated=cut,
            inferred=links.get(r["id"], [])))
    return out, total


def activity_groups(store: Store, since: datetime | None = None) -> list[Facet]:
    """The applications (else sources) observations came from since `since`, most frequent first."""
    where, params = _activity_where(since, None, None)
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT {_GROUP}, count(*) FROM observations o WHERE {where} GROUP BY 1 COLLATE NOCASE"
                            " ORDER BY 2 DESC, 1 LIMIT 200", params).fetchall()
    return [Facet(r[0], r[1]) for r in rows]


# ---------------------------------------------------------------------------------------- suggestions
def proposition_texts(store: Store, ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
    """The text of each of `ids` that still has one, and whether it is current."""
    if not ids:
        return {}
    with store.db.read() as conn:
        rows = conn.execute(f"SELECT id, text, retired_at FROM propositions WHERE id IN ({placeholders(ids)})"
                            " AND text IS NOT NULL", tuple(ids)).fetchall()
    return {r[0]: (r[1], r[2] is None) for r in rows}


# ---------------------------------------------------------------------------------------- clients
def access_clients(store: Store) -> list[Facet]:
    """The clients the access log names, with their number of calls, most active first."""
    with store.db.read() as conn:
        rows = conn.execute("SELECT client, count(*) FROM access_log GROUP BY client ORDER BY 2 DESC, 1"
                            " LIMIT 200").fetchall()
    return [Facet(r[0], r[1]) for r in rows]
