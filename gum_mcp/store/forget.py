"""Forgetting: data removed from the files, not hidden, and nothing left behind.

Forgetting observations deletes them. Every proposition that rested on them, retired versions
included, has its text and reasoning scrubbed and is retired with cause forgotten: one that rested
only on them is gone; a current one that keeps other evidence may still restate what was forgotten,
so it is re-derived: its remaining evidence (observations whose content is still kept) goes back to
pending for the engine, and the batch that re-derives it gives the new propositions a lineage edge
from it, cause forgotten (`forget_guard.link_rederived`). Until then nothing of it is served.
Forgetting a proposition scrubs its whole lineage (ancestors and descendants) and, if asked,
forgets its evidence too.

A forget is complete across layers, even after a crash: the transaction that changes the database
also records what is left to remove outside it (`pending_deletes`: kept and pending screenshots,
the file observer's cache, the purge of freed text); after COMMIT the work is done and the rows
deleted, and a store opened through `gum_mcp.forgetting.open_store` finishes rows a crash left.
The purge merges the FTS indexes and truncates the WAL, so the words are gone from the database
file and its WAL (secure_delete zeroes freed pages).

A forget wins every race with the engine: see `forget_guard`. Forgetting by description asks
first: `proposition_versions` pins what a preview showed and `forget_propositions(expect=...)`
refuses when any of it changed; `propositions_matching_words` is the preview's keyword rule.

Later layers hook in: `forget_hooks` run inside the transaction with the report, `deleters` do
the pending work of a kind, and `after_forget_hooks` run after it (their errors are logged: the
forget is complete by then). The vector index learns of every removal from index_log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gum_mcp.domain import ForgetReport, InvalidInput, NotFound, to_ts, utcnow
from gum_mcp.store import pending_deletes
from gum_mcp.store.db import Database, crash_point
from gum_mcp.store.inbox import placeholders
from gum_mcp.store.pending_deletes import PURGE, Deleter

log = logging.getLogger("gum_mcp.store")

ForgetHook = Callable[[sqlite3.Connection, ForgetReport], None]
AfterForgetHook = Callable[[ForgetReport], None]

#: Every crash point of a forget, in the order they are passed (tests SIGKILL there).
FORGET_CRASH_POINTS = ("forget:before_commit", "forget:after_commit")

#: The first line of a screen observation stored before observations had an `app` column:
#: "Screen at 09:30 in Firefox — "Title"" (screen.py writes it).
_SCREEN_HEAD = re.compile(r"^Screen at \d{1,2}:\d{2} in (?P<app>.+?)(?: \u2014 \".*)?$")


class ChangedSincePreview(InvalidInput):
    """A proposition a confirmation covers changed after the preview: nothing was removed."""


@dataclass(frozen=True)
class ForgetCount:
    """What a forget by range, source or app would remove: observations, and current propositions resting on them."""

    observations: int
    propositions: int


Select = Callable[[sqlite3.Connection], list[int]]


def _select_range(since: datetime | None, until: datetime | None) -> Select:
    if since is None and until is None:
        raise InvalidInput("give since, until or both: forgetting everything takes `forget --all`")
    if since is not None and until is not None and since >= until:
        raise InvalidInput("since must be before until")
    low = to_ts(since) if since else float("-inf")
    high = to_ts(until) if until else float("inf")

    def select(conn: sqlite3.Connection) -> list[int]:
        rows = conn.execute(
            "SELECT id FROM observations WHERE observed_at >= ? AND observed_at < ?", (low, high)
        ).fetchall()
        return [row[0] for row in rows]

    return select


def _select_source(source: str) -> Select:
    def select(conn: sqlite3.Connection) -> list[int]:
        return [row[0] for row in conn.execute("SELECT id FROM observations WHERE source = ?", (source,))]

    return select


def _select_app(app: str) -> tuple[str, Select]:
    name = " ".join((app or "").split())
    if not name:
        raise InvalidInput("app: give the application's name, as screen observations show it "
                           "(\"Screen at 09:30 in <app>\")")

    def select(conn: sqlite3.Connection) -> list[int]:
        ids = [row[0] for row in conn.execute(
            "SELECT id FROM observations WHERE app = ? COLLATE NOCASE", (name,))]
        # screen observations stored before the app column: the app is in their first line
        for row in conn.execute(
            "SELECT id, content FROM observations WHERE app IS NULL AND kind = 'screen'"
            " AND content LIKE 'Screen at %'"
        ):
            match = _SCREEN_HEAD.match((row[1] or "").split("\n", 1)[0])
            if match and match.group("app").casefold() == name.casefold():
                ids.append(row[0])
        return ids

    return name, select


class Forgetting:
    db: Database
    forget_hooks: list[ForgetHook]
    after_forget_hooks: list[AfterForgetHook]
    deleters: dict[str, Deleter]

    # -- what to forget
    def forget_observations(self, observation_ids: Sequence[int]) -> ForgetReport:
        return self._forget(lambda conn: list(observation_ids))

    def forget_range(self, since: datetime | None, until: datetime | None) -> ForgetReport:
        """Observations observed in [since, until), and screenshots captured then (pending ones too:
        they would otherwise become observations of that time later)."""
        select = _select_range(since, until)
        high = to_ts(until) if until else float("inf")
        files = {"since": to_ts(since) if since else None, "until": min(high, to_ts(utcnow()))}
        return self._forget(select, files=[("range", files)])

    def forget_source(self, source: str) -> ForgetReport:
        """Everything one source reported, and what that source keeps on disk."""
        return self._forget(_select_source(source), files=[("source", {"source": source, "until": to_ts(utcnow())})])

    def forget_app(self, app: str) -> ForgetReport:
        """Screen observations made while `app` had the focus (case-insensitive), and its screenshots."""
        name, select = _select_app(app)
        return self._forget(select, files=[("app", {"app": name, "until": to_ts(utcnow())})])

    def forget_count(self, *, since: datetime | None = None, until: datetime | None = None,
                     source: str | None = None, app: str | None = None) -> ForgetCount:
        """What forget_range (since/until), forget_source or forget_app would remove, counted with the
        same selection, before a person confirms it. Removes nothing."""
        if sum([since is not None or until is not None, source is not None, app is not None]) != 1:
            raise InvalidInput("give exactly one of since/until, source, app")
        if source is not None:
            select = _select_source(source)
        elif app is not None:
            select = _select_app(app)[1]
        else:
            select = _select_range(since, until)
        with self.db.read() as conn:
            observations = sorted(set(select(conn)))
            propositions: set[int] = set()
            for chunk in _chunks(observations):
                propositions.update(row[0] for row in conn.execute(
                    "SELECT DISTINCT e.proposition_id FROM evidence e JOIN propositions p ON p.id = e.proposition_id"
                    f" WHERE p.retired_at IS NULL AND e.observation_id IN ({placeholders(chunk)})", chunk))
        return ForgetCount(observations=len(observations), propositions=len(propositions))

    def forget_everything(self) -> ForgetReport:
        def select(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT id FROM observations")]

        def all_props(conn: sqlite3.Connection) -> list[int]:
            return [row[0] for row in conn.execute("SELECT id FROM propositions WHERE text IS NOT NULL")]

        return self._forget(select, all_props, files=[("everything", {"until": to_ts(utcnow())})])

    def forget_proposition(self, proposition_id: int, *, delete_evidence: bool = False) -> ForgetReport:
        """Scrub a proposition and its lineage; with delete_evidence, forget its evidence too."""
        return self.forget_propositions([proposition_id], delete_evidence=delete_evidence)

    def forget_propositions(
        self, proposition_ids: Sequence[int], *, delete_evidence: bool = False,
        expect: Mapping[int, str] | None = None,
    ) -> ForgetReport:
        """Scrub propositions and their lineages; with delete_evidence, forget their evidence too.

        `expect` (id -> version from `proposition_versions`, e.g. what a preview showed): refuse with
        ChangedSincePreview, changing nothing, if any of them changed since.
        """
        ids = sorted(set(proposition_ids) | set(expect or {}))

        def lineage(conn: sqlite3.Connection) -> list[int]:
            found: set[int] = set()
            for pid in ids:
                if conn.execute("SELECT 1 FROM propositions WHERE id = ?", (pid,)).fetchone() is None:
                    raise NotFound(f"no proposition with id {pid}")
                rows = conn.execute(
                    "WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT l.parent_id FROM lineage l"
                    " JOIN up ON l.child_id = up.id),"
                    " down(id) AS (SELECT ? UNION SELECT l.child_id FROM lineage l JOIN down ON l.parent_id = down.id)"
                    " SELECT id FROM up UNION SELECT id FROM down",
                    (pid, pid),
                ).fetchall()
                found.update(row[0] for row in rows)
            return sorted(found)

        def evidence(conn: sqlite3.Connection) -> list[int]:
            if not delete_evidence:
                return []
            props = lineage(conn)
            found: set[int] = set()
            for chunk in _chunks(props):
                found.update(row[0] for row in conn.execute(
                    f"SELECT DISTINCT observation_id FROM evidence WHERE proposition_id IN ({placeholders(chunk)})",
                    chunk,
                ))
            return sorted(found)

        return self._forget(evidence, lineage, expect=expect)

    # -- what a preview pins
    def proposition_versions(self, proposition_ids: Sequence[int]) -> dict[int, str]:
        """id -> a digest of everything about a proposition that a forget's confirmation covers: whether
        it is current and why not, its text being there, confirmation, support and evidence. Content
        itself never changes (append-only). Ids that do not exist are left out."""
        with self.db.read() as conn:
            return _versions(conn, proposition_ids)

    def propositions_matching_words(self, words: Sequence[str], *, limit: int = 5000) -> dict[int, list[str]]:
        """Current propositions whose text contains each word (the full-text index's stemming), as
        id -> the words it contains, in the order given. Words are letters and digits only."""
        found: dict[int, list[str]] = {}
        with self.db.read() as conn:
            for word in words:
                if not word or not all(ch.isalnum() for ch in word):
                    continue
                rows = conn.execute(
                    "SELECT rowid FROM propositions_fts WHERE propositions_fts MATCH ? LIMIT ?",
                    (f'text : "{word}"', limit),
                ).fetchall()
                for row in rows:
                    found.setdefault(row[0], []).append(word)
        return found

    # -- doing it
    def _forget(
        self,
        select_observations: Callable[[sqlite3.Connection], list[int]],
        select_propositions: Callable[[sqlite3.Connection], list[int]] | Sequence[int] = (),
        *,
        files: Sequence[tuple[str, dict[str, Any]]] = (),
        expect: Mapping[int, str] | None = None,
    ) -> ForgetReport:
        now = to_ts(utcnow())
        with self.db.write() as conn:
            if expect is not None:
                _check_versions(conn, expect)
            props = (
                select_propositions(conn) if callable(select_propositions) else list(select_propositions)
            )
            observations = sorted(set(select_observations(conn)))
            affected: set[int] = set()
            for chunk in _chunks(observations):
                affected.update(
                    row[0] for row in conn.execute(
                        f"SELECT DISTINCT proposition_id FROM evidence WHERE observation_id IN ({placeholders(chunk)})",
                        chunk,
                    )
                )
                conn.execute(f"DELETE FROM observations WHERE id IN ({placeholders(chunk)})", chunk)
            # Every proposition that lost evidence may restate what was forgotten: scrubbed. A current one
            # with evidence left is re-derived from it.
            scrub = sorted(set(props) | affected)
            rederive: dict[int, list[int]] = {}
            for pid in sorted(affected - set(props)):
                row = conn.execute("SELECT retired_at, text FROM propositions WHERE id = ?", (pid,)).fetchone()
                if row is None or row[0] is not None or row[1] is None:
                    continue  # a retired version (history) or already scrubbed: nothing to re-derive
                remaining = [r[0] for r in conn.execute(
                    "SELECT e.observation_id FROM evidence e JOIN observations o ON o.id = e.observation_id"
                    " WHERE e.proposition_id = ? AND o.content IS NOT NULL ORDER BY e.observation_id",
                    (pid,),
                )]
                if remaining:
                    rederive[pid] = remaining
            for chunk in _chunks(scrub):
                marks = placeholders(chunk)
                conn.execute(
                    f"UPDATE propositions SET text = NULL, reasoning = NULL, retired_cause = 'forgotten',"
                    f" retired_at = coalesce(retired_at, ?) WHERE id IN ({marks})",
                    (now, *chunk),
                )
                conn.execute(f"UPDATE feedback SET note = NULL WHERE proposition_id IN ({marks})", chunk)
                conn.execute(f"UPDATE lineage SET note = NULL WHERE child_id IN ({marks})", chunk)
            requeued = sorted({oid for oids in rederive.values() for oid in oids})
            for chunk in _chunks(requeued):
                conn.execute(
                    "UPDATE observations SET status = 'pending', attempts = 0, processed_at = NULL,"
                    f" last_error = NULL WHERE status = 'processed' AND id IN ({placeholders(chunk)})",
                    chunk,
                )
            conn.executemany(
                "INSERT OR IGNORE INTO rederive (observation_id, proposition_id, queued_at) VALUES (?, ?, ?)",
                [(oid, pid, now) for pid, oids in rederive.items() for oid in oids],
            )
            report = ForgetReport(
                observations_deleted=len(observations), propositions_forgotten=len(scrub),
                observation_ids=tuple(observations), proposition_ids=tuple(scrub),
                rederive_ids=tuple(sorted(rederive)), requeued_observation_ids=tuple(requeued),
            )
            if observations:
                pending_deletes.record(conn, "observations", {"ids": observations})
            for kind, spec in files:
                pending_deletes.record(conn, kind, spec)
            if observations or scrub:
                pending_deletes.record(conn, PURGE)
            for hook in self.forget_hooks:
                hook(conn, report)
            crash_point("forget:before_commit")
        crash_point("forget:after_commit")
        self.finish_pending_deletes()
        for after in self.after_forget_hooks:
            try:
                after(report)
            except Exception:
                log.exception("an after-forget hook failed (the forget itself is complete)")
        return report

    def finish_pending_deletes(self) -> int:
        """Do the work forgets left outside SQLite (theirs or an interrupted one's), then purge freed
        text. A kind without a deleter in this process, or whose deleter fails, stays for later.
        Returns how many pending deletes were finished."""
        with self.db.read() as conn:
            work = pending_deletes.pending(conn)
        if not work:
            return 0
        finished: list[int] = []
        purges = [item.id for item in work if item.kind == PURGE]
        for item in work:
            if item.kind == PURGE:
                continue
            deleter = self.deleters.get(item.kind)
            if deleter is None:
                continue
            try:
                deleter(item.spec)
            except Exception as exc:  # e.g. a file we may not delete: keep the row, try again later
                log.warning("forget: could not finish a %s delete (%s); will retry", item.kind, type(exc).__name__)
                continue
            finished.append(item.id)
        if finished:
            with self.db.write() as conn:
                pending_deletes.done(conn, finished)
        if finished or purges:
            self.db.purge_freed_text()
        if purges:
            with self.db.write() as conn:
                pending_deletes.done(conn, purges)
        return len(finished) + len(purges)

    def prune(self, retention_days: int, *, now: datetime | None = None) -> int:
        """Drop the content of processed observations older than the retention period.

        Pending work is never pruned. Propositions keep their evidence links and are marked
        evidence_pruned. Returns how many observations were pruned. 0 days = keep forever.
        """
        if retention_days <= 0:
            return 0
        cutoff = to_ts((now or utcnow()) - timedelta(days=retention_days))
        stamp = to_ts(now or utcnow())
        with self.db.write() as conn:
            ids = [
                row[0] for row in conn.execute(
                    "SELECT id FROM observations WHERE observed_at < ? AND content IS NOT NULL"
                    " AND status != 'pending'",
                    (cutoff,),
                )
            ]
            for chunk in _chunks(ids):
                marks = placeholders(chunk)
                conn.execute(
                    f"UPDATE observations SET content = NULL, pruned_at = ? WHERE id IN ({marks})",
                    (stamp, *chunk),
                )
                conn.execute(
                    "UPDATE propositions SET evidence_pruned = 1 WHERE evidence_pruned = 0 AND id IN"
                    f" (SELECT proposition_id FROM evidence WHERE observation_id IN ({marks}))",
                    chunk,
                )
        if ids:
            self.db.purge_freed_text()
        return len(ids)


def _versions(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(sorted(set(ids))):
        rows = conn.execute(
            "SELECT p.id, p.retired_at, p.retired_cause, p.text IS NULL, p.user_confirmed, p.support_count,"
            " (SELECT group_concat(observation_id) FROM (SELECT observation_id FROM evidence"
            "  WHERE proposition_id = p.id ORDER BY observation_id))"
            f" FROM propositions p WHERE p.id IN ({placeholders(chunk)})",
            chunk,
        ).fetchall()
        for row in rows:
            digest = hashlib.sha256(json.dumps(list(row[1:])).encode()).hexdigest()[:16]
            found[row[0]] = f"{row[0]}:{digest}"
    return found


def _check_versions(conn: sqlite3.Connection, expect: Mapping[int, str]) -> None:
    now = _versions(conn, list(expect))
    changed = sorted(pid for pid, version in expect.items() if now.get(pid) != version)
    if changed:
        raise ChangedSincePreview(
            f"proposition(s) {', '.join(map(str, changed))} changed since the preview (retired, revised, "
            "forgotten or given new evidence); nothing was removed: preview again"
        )


def _chunks(values: Sequence[int], size: int = 500) -> list[list[int]]:
    return [list(values[start : start + size]) for start in range(0, len(values), size)]
