"""The database schema as ordered migrations. Migration N brings `PRAGMA user_version` to N.

Never edit a migration that has shipped: append a new one. Times are Unix seconds (REAL, UTC).

Invariants the schema enforces itself, so no code path can forget them:
- a proposition's content (text, reasoning, confidence, decay) never changes, except that forgetting
  may set its text and reasoning to NULL;
- the FTS tables follow their content tables through triggers (propositions_fts holds only current
  propositions);
- every change the vector index must mirror is appended to index_log by a trigger, in the same
  transaction as the change, so an index that missed something (a crash between commit and
  indexing, a forget done by another process) can catch up from the log.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the foundation
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE observations (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        kind         TEXT NOT NULL CHECK (kind IN ('screen', 'file', 'agent', 'text')),
        source       TEXT NOT NULL,
        content      TEXT,
        observed_at  REAL NOT NULL,
        created_at   REAL NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processed', 'skipped', 'failed')),
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        processed_at REAL,
        redactions   INTEGER NOT NULL DEFAULT 0,
        pruned_at    REAL
    );
    CREATE INDEX observations_status ON observations (status, id);
    CREATE INDEX observations_observed ON observations (observed_at);
    CREATE INDEX observations_source ON observations (source);

    CREATE VIRTUAL TABLE observations_fts USING fts5 (
        content, content = 'observations', content_rowid = 'id',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER observations_fts_insert AFTER INSERT ON observations
    WHEN new.content IS NOT NULL BEGIN
        INSERT INTO observations_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER observations_fts_delete AFTER DELETE ON observations
    WHEN old.content IS NOT NULL BEGIN
        INSERT INTO observations_fts (observations_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER observations_fts_update AFTER UPDATE OF content ON observations BEGIN
        INSERT INTO observations_fts (observations_fts, rowid, content)
        SELECT 'delete', old.id, old.content WHERE old.content IS NOT NULL;
        INSERT INTO observations_fts (rowid, content)
        SELECT new.id, new.content WHERE new.content IS NOT NULL;
    END;

    CREATE TABLE propositions (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        text              TEXT,
        reasoning         TEXT,
        confidence        INTEGER NOT NULL CHECK (confidence BETWEEN 1 AND 10),
        decay             INTEGER NOT NULL CHECK (decay BETWEEN 1 AND 10),
        created_at        REAL NOT NULL,
        last_supported_at REAL NOT NULL,
        support_count     INTEGER NOT NULL DEFAULT 1,
        retired_at        REAL,
        retired_cause     TEXT CHECK (retired_cause IN
                          ('proposed', 'merged', 'split', 'revised', 'feedback', 'forgotten')),
        user_confirmed    INTEGER NOT NULL DEFAULT 0,
        evidence_pruned   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX propositions_current_recent
        ON propositions (last_supported_at DESC, id DESC) WHERE retired_at IS NULL;
    CREATE INDEX propositions_current_confidence
        ON propositions (confidence DESC, last_supported_at DESC, id DESC) WHERE retired_at IS NULL;
    CREATE INDEX propositions_created ON propositions (created_at);

    CREATE TRIGGER propositions_immutable BEFORE UPDATE OF text, reasoning, confidence, decay
    ON propositions
    WHEN new.confidence IS NOT old.confidence OR new.decay IS NOT old.decay
      OR (new.text IS NOT NULL AND new.text IS NOT old.text)
      OR (new.reasoning IS NOT NULL AND new.reasoning IS NOT old.reasoning) BEGIN
        SELECT RAISE(ABORT, 'proposition content is immutable: supersede it instead');
    END;

    CREATE VIRTUAL TABLE propositions_fts USING fts5 (
        text, reasoning, content = 'propositions', content_rowid = 'id',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER propositions_fts_insert AFTER INSERT ON propositions
    WHEN new.retired_at IS NULL AND new.text IS NOT NULL BEGIN
        INSERT INTO propositions_fts (rowid, text, reasoning) VALUES (new.id, new.text, new.reasoning);
    END;
    CREATE TRIGGER propositions_fts_update AFTER UPDATE OF retired_at, text ON propositions BEGIN
        INSERT INTO propositions_fts (propositions_fts, rowid, text, reasoning)
        SELECT 'delete', old.id, old.text, old.reasoning
        WHERE old.retired_at IS NULL AND old.text IS NOT NULL;
        INSERT INTO propositions_fts (rowid, text, reasoning)
        SELECT new.id, new.text, new.reasoning WHERE new.retired_at IS NULL AND new.text IS NOT NULL;
    END;
    CREATE TRIGGER propositions_fts_delete AFTER DELETE ON propositions
    WHEN old.retired_at IS NULL AND old.text IS NOT NULL BEGIN
        INSERT INTO propositions_fts (propositions_fts, rowid, text, reasoning)
        VALUES ('delete', old.id, old.text, old.reasoning);
    END;

    CREATE TABLE lineage (
        parent_id INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        child_id  INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        cause     TEXT NOT NULL
                  CHECK (cause IN ('proposed', 'merged', 'split', 'revised', 'feedback', 'forgotten')),
        note      TEXT,
        at        REAL NOT NULL,
        PRIMARY KEY (parent_id, child_id)
    ) WITHOUT ROWID;
    CREATE INDEX lineage_child ON lineage (child_id, parent_id);

    CREATE TABLE evidence (
        proposition_id INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        observation_id INTEGER NOT NULL REFERENCES observations (id) ON DELETE CASCADE,
        PRIMARY KEY (proposition_id, observation_id)
    ) WITHOUT ROWID;
    CREATE INDEX evidence_observation ON evidence (observation_id, proposition_id);

    CREATE TABLE feedback (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        proposition_id INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        verdict        TEXT NOT NULL CHECK (verdict IN ('confirm', 'reject', 'correct')),
        note           TEXT,
        at             REAL NOT NULL
    );
    CREATE INDEX feedback_proposition ON feedback (proposition_id);

    CREATE TABLE llm_calls (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        at            REAL NOT NULL,
        stage         TEXT NOT NULL,
        provider      TEXT NOT NULL,
        model         TEXT NOT NULL,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        latency_ms    REAL NOT NULL DEFAULT 0,
        outcome       TEXT NOT NULL,
        error         TEXT
    );
    CREATE INDEX llm_calls_at ON llm_calls (at);

    CREATE TABLE index_log (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL CHECK (collection IN ('propositions', 'observations')),
        item_id    INTEGER NOT NULL,
        op         TEXT NOT NULL CHECK (op IN ('upsert', 'delete'))
    );
    CREATE TRIGGER index_log_proposition_insert AFTER INSERT ON propositions
    WHEN new.retired_at IS NULL AND new.text IS NOT NULL BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('propositions', new.id, 'upsert');
    END;
    CREATE TRIGGER index_log_proposition_update AFTER UPDATE OF retired_at, text ON propositions
    WHEN (old.retired_at IS NULL AND old.text IS NOT NULL)
      != (new.retired_at IS NULL AND new.text IS NOT NULL) BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('propositions', new.id,
            CASE WHEN new.retired_at IS NULL AND new.text IS NOT NULL THEN 'upsert' ELSE 'delete' END);
    END;
    CREATE TRIGGER index_log_proposition_delete AFTER DELETE ON propositions BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('propositions', old.id, 'delete');
    END;
    CREATE TRIGGER index_log_observation_insert AFTER INSERT ON observations
    WHEN new.content IS NOT NULL BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('observations', new.id, 'upsert');
    END;
    CREATE TRIGGER index_log_observation_update AFTER UPDATE OF content ON observations
    WHEN new.content IS NULL AND old.content IS NOT NULL BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('observations', new.id, 'delete');
    END;
    CREATE TRIGGER index_log_observation_delete AFTER DELETE ON observations BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('observations', old.id, 'delete');
    END;
    """,
    # 2: proactive suggestions (gum_mcp/store/suggestions.py). A suggestion rests on propositions
    # (suggestion_grounds) and was drawn from the recent observations its prompt showed
    # (suggestion_sources). The triggers make forgetting reach suggestions whatever the code path:
    # a suggestion is deleted, not hidden, when a proposition it rests on is forgotten (text set to
    # NULL) or deleted, or when an observation it was drawn from is deleted.
    """
    CREATE TABLE suggestions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        title        TEXT NOT NULL,
        action       TEXT NOT NULL,
        rationale    TEXT NOT NULL,
        benefit      INTEGER NOT NULL CHECK (benefit BETWEEN 1 AND 10),
        cost         INTEGER NOT NULL CHECK (cost BETWEEN 1 AND 10),
        p_useful     REAL NOT NULL CHECK (p_useful BETWEEN 0 AND 1),
        utility      REAL NOT NULL,
        threshold    REAL NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'accepted', 'dismissed', 'done')),
        created_at   REAL NOT NULL,
        responded_at REAL,
        note         TEXT
    );
    CREATE INDEX suggestions_status ON suggestions (status, created_at);

    CREATE TABLE suggestion_grounds (
        suggestion_id  INTEGER NOT NULL REFERENCES suggestions (id) ON DELETE CASCADE,
        proposition_id INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        PRIMARY KEY (suggestion_id, proposition_id)
    ) WITHOUT ROWID;
    CREATE INDEX suggestion_grounds_proposition ON suggestion_grounds (proposition_id, suggestion_id);

    CREATE TABLE suggestion_sources (
        suggestion_id  INTEGER NOT NULL REFERENCES suggestions (id) ON DELETE CASCADE,
        observation_id INTEGER NOT NULL REFERENCES observations (id) ON DELETE CASCADE,
        PRIMARY KEY (suggestion_id, observation_id)
    ) WITHOUT ROWID;
    CREATE INDEX suggestion_sources_observation ON suggestion_sources (observation_id, suggestion_id);

    CREATE TRIGGER suggestions_forget_proposition AFTER UPDATE OF text ON propositions
    WHEN old.text IS NOT NULL AND new.text IS NULL BEGIN
        DELETE FROM suggestions WHERE id IN
            (SELECT suggestion_id FROM suggestion_grounds WHERE proposition_id = new.id);
    END;
    CREATE TRIGGER suggestions_delete_proposition BEFORE DELETE ON propositions BEGIN
        DELETE FROM suggestions WHERE id IN
            (SELECT suggestion_id FROM suggestion_grounds WHERE proposition_id = old.id);
    END;
    CREATE TRIGGER suggestions_delete_observation BEFORE DELETE ON observations BEGIN
        DELETE FROM suggestions WHERE id IN
            (SELECT suggestion_id FROM suggestion_sources WHERE observation_id = old.id);
    END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
