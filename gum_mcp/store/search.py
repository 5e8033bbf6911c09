"""Full-text search (FTS5 BM25) over current propositions and observations, with filters.

User text never reaches FTS5 as syntax: `fts_query` cuts it into words (letters and digits of any
script), drops stop-words, quotes every word and ORs them, so quotes, `*`, `-`, `NEAR`, `AND`/`OR`/
`NOT`, parentheses, `:`, `^`, emoji or any other unicode cannot raise an FTS syntax error. A quoted
word that the tokenizer splits (e.g. `foo_bar`) becomes a phrase, which is still valid.

Scores are returned as positive numbers (FTS5's bm25() is negative, lower is better): higher is
better. Filters: `since` (inclusive) and `until` (exclusive) on last_supported_at for propositions
and on observed_at for observations, `min_confidence` for propositions.

Speed at scale (`_top`): bm25() costs about a microsecond per matching row (it reads the row's
positions and its size), so a query word found in tens of thousands of rows costs tens of
milliseconds however small the LIMIT. A query whose words match more than SCORED_ROWS rows is
split, as Lucene's common-terms query does: its rarest words (E, at most SCORED_ROWS rows together,
at least one word) and its common words (C). Two queries, `E AND C` and `E NOT C`, score every row
matching a rare word with every query word (each word once in the expression, so bm25() is that of
the whole query); rows matching only common words are left out, unless fewer than `limit` rows
match a rare word (then the whole query runs, exactly as before). The scores are those the whole
query gives; only rows holding nothing but the query's most common words can be missed, and with
the vector side beside it such a row is found by meaning if it matters. Each word's document
frequency is one FTS5 count (no scoring), kept for later queries. Whether a query matches more than
SCORED_ROWS rows is read off those frequencies when they decide it (one word above it: yes; all of them
together at most it: no), and counted over the whole query only in between: that count walks every
word's rows again. Skipping it took BM25's p50 at 100,000 propositions (bench/retrieval.py's collection and
queries, both versions alternating in one process) from 7.7 to 5.3 ms, with the same hits.
Indexes of at most SCORED_ROWS rows are never split.

The ranking of the empty query (`recent_propositions`) is computed here in SQL because it must see
every current proposition; `gum_mcp.retrieval` owns the formula and passes its constants.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from gum_mcp.domain import InvalidInput, Observation, to_ts
from gum_mcp.store.db import Database
from gum_mcp.store.inbox import OBSERVATION_COLUMNS, observation_from_row, placeholders

#: Words that carry no topic: dropped from the query unless nothing else is left. Short on purpose
#: (English function words and question words); the porter tokenizer stems the rest.
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through to
    too under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves s t don doesn didn isn wasn
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())

#: At most this many distinct words of a query are searched (bounds the cost of very long queries).
MAX_QUERY_TERMS = 32

#: bm25() column weights of propositions_fts (text, reasoning): the claim counts more than the why.
PROPOSITION_WEIGHTS = (1.0, 0.4)

#: A query whose words match more rows than this is scored on its rarer words' rows (see the module).
SCORED_ROWS = 2000

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(text: str | None, *, drop_stop_words: bool = True) -> list[str]:
    """The distinct words of `text`, lower-cased, in order; stop-words dropped unless only they remain."""
    if not text:
        return []
    words: list[str] = []
    seen: set[str] = set()
    for match in _WORD.finditer(text.casefold()):
        word = match.group(0)
        if word not in seen:
            seen.add(word)
            words.append(word)
    if drop_stop_words:
        kept = [word for word in words if word not in STOP_WORDS]
        words = kept or words
    return words[:MAX_QUERY_TERMS]


def fts_query(text: str | None, *, drop_stop_words: bool = True) -> str | None:
    """An FTS5 MATCH expression for user text (each word quoted, ORed), or None if it has no words."""
    words = query_terms(text, drop_stop_words=drop_stop_words)
    if not words:
        return None
    return _any(words)


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _any(words: Sequence[str]) -> str:
    return " OR ".join(_quoted(word) for word in words)


def _top(conn: sqlite3.Connection, table: str, words: list[str], select: str, tail: str, params: Sequence[object],
         limit: int) -> list[tuple[int, float]]:
    """(rowid, bm25 > 0) of the best `limit` rows of `table` matching any of `words`, best first.

    `select` is "SELECT <rowid>, <bm25> AS s FROM ... WHERE <table> MATCH ?" and `tail` the rest of the
    WHERE clause (filters), whose `params` follow the MATCH expression. Splits common words off (see the
    module) when the query matches more than SCORED_ROWS rows.
    """
    sql = f"{select}{tail} ORDER BY s LIMIT ?"

    def run(match: str, n: int) -> list[tuple[int, float]]:
        return [(row[0], -row[1]) for row in conn.execute(sql, (match, *params, n)).fetchall()]

    whole = _any(words)
    if len(words) < 2 or _text_index_rows(conn, table) <= SCORED_ROWS:
        return run(whole, limit)
    count = f"SELECT count(*) FROM {table} WHERE {table} MATCH ?"
    frequency = {word: _frequency(conn, table, word, count) for word in words}
    # the rows matching any word: at least the commonest word's, at most the sum; counted only in between
    if sum(frequency.values()) <= SCORED_ROWS or (
            max(frequency.values()) <= SCORED_ROWS and conn.execute(count, (whole,)).fetchone()[0] <= SCORED_ROWS):
        return run(whole, limit)
    present = sorted((w for w in words if frequency[w] > 0), key=lambda w: (frequency[w], words.index(w)))
    rare: list[str] = []
    rows = 0
    for word in present:
        if rare and rows + frequency[word] > SCORED_ROWS:
            break
        rare.append(word)
        rows += frequency[word]
    common = present[len(rare):]
    if not common:
        return run(whole, limit)
    e, c = _any(rare), _any(common)
    found = run(f"({e}) AND ({c})", limit) + run(f"({e}) NOT ({c})", limit)
    if len(found) < limit:  # fewer rows hold a rare word than asked: the common words' rows count too
        return run(whole, limit)
    found.sort(key=lambda hit: (-hit[1], hit[0]))
    return found[:limit]


#: Document frequencies of words recently searched: (database file, table, word) -> (rows holding it, rows in
#: the index then). They only choose which words count as common, so one is reused while the index has not
#: grown or shrunk by more than a twentieth since it was counted.
_FREQUENCIES: dict[tuple[str, str, str], tuple[int, int]] = {}
_FREQUENCIES_MAX = 4096


def _frequency(conn: sqlite3.Connection, table: str, word: str, count: str) -> int:
    """How many rows of `table` hold `word` (one FTS5 count, no scoring; recent answers reused)."""
    key = (_database_file(conn), table, word)
    rows = _text_index_rows(conn, table)
    known = _FREQUENCIES.get(key)
    if known is not None and abs(rows - known[1]) * 20 <= known[1]:
        return known[0]
    found = conn.execute(count, (_quoted(word),)).fetchone()[0]
    if len(_FREQUENCIES) >= _FREQUENCIES_MAX:
        _FREQUENCIES.clear()
    _FREQUENCIES[key] = (found, rows)
    return found


def _database_file(conn: sqlite3.Connection) -> str:
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2])
    return ""


def _text_index_rows(conn: sqlite3.Connection, table: str) -> int:
    """Rows in an FTS5 index, from its averages record (O(1)); 0 when it cannot be read."""
    row = conn.execute(f"SELECT block FROM {table}_data WHERE id = 1").fetchone()
    if row is not None and row[0]:
        try:
            return _varint(bytes(row[0]))
        except IndexError:
            pass
    return 0


def _time_clauses(column: str, since: datetime | None, until: datetime | None) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(to_ts(since))
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(to_ts(until))
    return clauses, params


def _check_filters(limit: int, min_confidence: int | None) -> None:
    if limit < 1:
        raise InvalidInput("limit: must be at least 1")
    if min_confidence is not None and not 1 <= min_confidence <= 10:
        raise InvalidInput("min_confidence: must be between 1 and 10")


class Search:
    db: Database

    # -- BM25
    def search_propositions_text(
        self,
        text: str | None,
        *,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
        min_confidence: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """(proposition id, bm25 score > 0) of current propositions matching `text`, best first.

        `ids` restricts the search to those propositions (to score candidates found otherwise).
        """
        _check_filters(limit, min_confidence)
        words = query_terms(text)
        if not words or (ids is not None and not ids):
            return []
        weights = ", ".join(str(w) for w in PROPOSITION_WEIGHTS)
        score = f"bm25(propositions_fts, {weights})"
        clauses, params = _time_clauses("p.last_supported_at", since, until)
        if min_confidence is not None:
            clauses.append("p.confidence >= ?")
            params.append(min_confidence)
        id_clause, id_params = "", []
        if ids is not None:
            id_clause = f" AND propositions_fts.rowid IN ({placeholders(ids)})"
            id_params = list(ids)
        # propositions_fts holds only current propositions; the join is only for the filters.
        join = " JOIN propositions p ON p.id = propositions_fts.rowid" if clauses else ""
        select = (f"SELECT propositions_fts.rowid, {score} AS s FROM propositions_fts{join}"
                  " WHERE propositions_fts MATCH ?")
        tail = id_clause + "".join(f" AND {clause}" for clause in clauses)
        with self.db.read() as conn:
            return _top(conn, "propositions_fts", words, select, tail, (*id_params, *params), limit)

    def search_observations_text(
        self,
        text: str | None,
        *,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """(observation id, bm25 score > 0) of observations whose content matches `text`, best first."""
        _check_filters(limit, None)
        words = query_terms(text)
        if not words or (ids is not None and not ids):
            return []
        clauses, params = _time_clauses("o.observed_at", since, until)
        id_clause, id_params = "", []
        if ids is not None:
            id_clause = f" AND observations_fts.rowid IN ({placeholders(ids)})"
            id_params = list(ids)
        join = " JOIN observations o ON o.id = observations_fts.rowid" if clauses else ""
        select = (f"SELECT observations_fts.rowid, bm25(observations_fts) AS s FROM observations_fts{join}"
                  " WHERE observations_fts MATCH ?")
        tail = id_clause + "".join(f" AND {clause}" for clause in clauses)
        with self.db.read() as conn:
            return _top(conn, "observations_fts", words, select, tail, (*id_params, *params), limit)

    def text_index_size(self, collection: str) -> int:
        """How many documents the FTS5 index of `collection` ("propositions" or "observations") holds:
        the N of its BM25 idf. O(1): read from FTS5's averages record, where bm25() reads it."""
        table = {"propositions": "propositions_fts", "observations": "observations_fts"}[collection]
        with self.db.read() as conn:
            rows = _text_index_rows(conn, table)
            if rows:
                return rows
            source = "propositions WHERE retired_at IS NULL AND text IS NOT NULL"
            if collection == "observations":
                source = "observations WHERE content IS NOT NULL"
            return conn.execute(f"SELECT count(*) FROM {source}").fetchone()[0]

    def get_observations(self, ids: Sequence[int]) -> dict[int, Observation]:
        """The observations among `ids` that exist (pruned ones included, with content None)."""
        found: dict[int, Observation] = {}
        ids = list(ids)
        with self.db.read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT {OBSERVATION_COLUMNS} FROM observations WHERE id IN ({placeholders(chunk)})", chunk
                ).fetchall()
                found.update((row["id"], observation_from_row(row)) for row in rows)
        return found

    # -- filters, for the vector side
    def count_current_propositions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_confidence: int | None = None,
    ) -> int:
        clauses, params = self._proposition_filter(since, until, min_confidence)
        with self.db.read() as conn:
            return conn.execute(f"SELECT count(*) FROM propositions WHERE {clauses}", params).fetchone()[0]

    def current_proposition_ids(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        min_confidence: int | None = None,
        limit: int = 10_000,
    ) -> list[int]:
        """Ids of current propositions passing the filters (most recently supported first)."""
        clauses, params = self._proposition_filter(since, until, min_confidence)
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT id FROM propositions WHERE {clauses} ORDER BY last_supported_at DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [row[0] for row in rows]

    def count_observations_with_content(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        clauses, params = _time_clauses("observed_at", since, until)
        where = " AND ".join(["content IS NOT NULL", *clauses])
        with self.db.read() as conn:
            return conn.execute(f"SELECT count(*) FROM observations WHERE {where}", params).fetchone()[0]

    def observation_ids_with_content(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 10_000
    ) -> list[int]:
        clauses, params = _time_clauses("observed_at", since, until)
        where = " AND ".join(["content IS NOT NULL", *clauses])
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT id FROM observations WHERE {where} ORDER BY observed_at DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [row[0] for row in rows]

    @staticmethod
    def _proposition_filter(
        since: datetime | None, until: datetime | None, min_confidence: int | None
    ) -> tuple[str, list[object]]:
        _check_filters(1, min_confidence)
        clauses, params = _time_clauses("last_supported_at", since, until)
        clauses = ["retired_at IS NULL", "text IS NOT NULL", *clauses]
        if min_confidence is not None:
            clauses.append("confidence >= ?")
            params.append(min_confidence)
        return " AND ".join(clauses), params

    # -- the empty query
    def recent_propositions(
        self,
        *,
        now: datetime,
        limit: int,
        half_life_base_days: float,
        recency_floor: float,
        confidence_floor: float,
        since: datetime | None = None,
        until: datetime | None = None,
        min_confidence: int | None = None,
    ) -> list[tuple[int, float]]:
        """(id, weight) of the current propositions with the highest recency x confidence weight:

            half_life_days = half_life_base_days * 2 ** (decay - 1)
            recency    = recency_floor + (1 - recency_floor) * 2 ** (-age_days / half_life_days)
            confidence = confidence_floor + (1 - confidence_floor) * confidence / 10
            weight     = recency * confidence          (age counted from last_supported_at)

        Exact over every current proposition (one scan; SQLite's math functions, or Python ones).
        """
        _check_filters(limit, min_confidence)
        where, params = self._proposition_filter(since, until, min_confidence)
        weight = (
            "(? + (1 - ?) * exp(-0.6931471805599453 * max(0.0, ? - last_supported_at) / 86400.0"
            " / (? * exp(0.6931471805599453 * (decay - 1)))))"
            " * (? + (1 - ?) * confidence / 10.0)"
        )
        weight_params = (
            recency_floor, recency_floor, to_ts(now), half_life_base_days, confidence_floor, confidence_floor,
        )
        select = f"SELECT id, {weight} AS w FROM propositions WHERE {where}"
        with self.db.read() as conn:
            _ensure_math(conn)
            # Exact pruning: the limit-th best weight among the most recent rows is a lower bound for the
            # limit-th best overall; a row too old to reach it at full confidence and the longest
            # half-life (decay 10) cannot be in the answer, so only the recent end of the index is read.
            probe = conn.execute(
                f"{select} ORDER BY last_supported_at DESC, id DESC LIMIT ?", (*weight_params, *params, limit * 4)
            ).fetchall()
            bound = sorted((row[1] for row in probe), reverse=True)[limit - 1] if len(probe) >= limit else 0.0
            fresh = (bound - recency_floor) / (1.0 - recency_floor) if recency_floor < 1.0 else 0.0
            extra, extra_params = "", []
            if 0.0 < fresh < 1.0:
                longest = half_life_base_days * 2.0 ** 9
                max_age_s = -math.log2(fresh) * longest * 86400.0 * (1 + 1e-9) + 1.0
                extra, extra_params = " AND last_supported_at >= ?", [to_ts(now) - max_age_s]
            rows = conn.execute(
                f"{select}{extra} ORDER BY w DESC, last_supported_at DESC, id DESC LIMIT ?",
                (*weight_params, *params, *extra_params, limit),
            ).fetchall()
        return [(row[0], row[1]) for row in rows]


def _varint(data: bytes) -> int:
    """An SQLite varint (big-endian, 7 bits a byte, the 9th byte whole), as FTS5 writes them."""
    value = 0
    for n in range(9):
        byte = data[n]
        if n == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value
    return value


def _ensure_math(conn: sqlite3.Connection) -> None:
    """SQLite builds without SQLITE_ENABLE_MATH_FUNCTIONS lack exp(): provide it from Python."""
    try:
        conn.execute("SELECT exp(0.0)").fetchone()
    except sqlite3.OperationalError:
        conn.create_function("exp", 1, math.exp, deterministic=True)
