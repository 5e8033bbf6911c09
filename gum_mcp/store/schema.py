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
    # 3: forget that is complete (gum_mcp/store/forget.py, pending_deletes.py, forget_guard.py).
    # observations.app: the focused window's application of a screen observation (forget by app).
    # pending_deletes: what a forget must still remove outside SQLite (screenshots, the file
    # observer's cache) and the purge of freed text, written in the forget's own transaction and
    # deleted once done, so a restart finishes what a crash interrupted. Specs hold ids, times and
    # an app name, never content. rederive: observations queued again because a proposition they
    # supported lost part of its evidence to a forget; the batch that re-derives it links lineage.
    """
    ALTER TABLE observations ADD COLUMN app TEXT;
    CREATE INDEX observations_app ON observations (app COLLATE NOCASE) WHERE app IS NOT NULL;

    CREATE TABLE pending_deletes (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT NOT NULL,
        spec       TEXT NOT NULL,
        created_at REAL NOT NULL
    );

    CREATE TABLE rederive (
        observation_id INTEGER NOT NULL REFERENCES observations (id) ON DELETE CASCADE,
        proposition_id INTEGER NOT NULL REFERENCES propositions (id) ON DELETE CASCADE,
        queued_at      REAL NOT NULL,
        PRIMARY KEY (observation_id, proposition_id)
    ) WITHOUT ROWID;
    CREATE INDEX rederive_proposition ON rederive (proposition_id);
    """,
    # 4: bounded growth (gum_mcp/store/retention.py). llm_usage holds one row per UTC day, provider
    # and model (calls, tokens, failed attempts), kept up to date with every llm_calls row, so the
    # per-call rows can be deleted after GUM_LLM_CALLS_DAYS while the daily totals stay 400 days.
    # Filled here from the calls already recorded.
    """
    CREATE TABLE llm_usage (
        day           TEXT NOT NULL,
        provider      TEXT NOT NULL,
        model         TEXT NOT NULL,
        calls         INTEGER NOT NULL DEFAULT 0,
        failures      INTEGER NOT NULL DEFAULT 0,
        input_tokens  INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (day, provider, model)
    ) WITHOUT ROWID;
    INSERT INTO llm_usage (day, provider, model, calls, failures, input_tokens, output_tokens)
    SELECT date(at, 'unixepoch'), provider, model, count(*), count(*) FILTER (WHERE outcome != 'ok'),
           sum(input_tokens), sum(output_tokens)
    FROM llm_calls GROUP BY 1, 2, 3;
    CREATE INDEX suggestions_last_step ON suggestions (coalesce(responded_at, created_at));
    """,
    # 5: clients (gum_mcp/store/tokens.py, access_log.py). tokens: one bearer token per HTTP client,
    # its sha256 only, with its scopes (comma-separated). access_log: one row per tool, resource or
    # prompt call: when, which client, what, the outcome, and the ids of the propositions and
    # observations the result carried (JSON arrays of ids; never text). Retention prunes it.
    """
    CREATE TABLE tokens (
        name         TEXT PRIMARY KEY,
        hash         TEXT NOT NULL UNIQUE,
        scopes       TEXT NOT NULL,
        created_at   REAL NOT NULL,
        rotated_at   REAL,
        last_used_at REAL
    );

    CREATE TABLE access_log (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        at              REAL NOT NULL,
        client          TEXT NOT NULL,
        transport       TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('tool', 'resource', 'prompt')),
        name            TEXT NOT NULL,
        outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'denied')),
        proposition_ids TEXT NOT NULL DEFAULT '[]',
        observation_ids TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX access_log_at ON access_log (at);
    CREATE INDEX access_log_client ON access_log (client, at);
    """,
    # 6: privacy (gum_mcp/store/skipped.py, reredact.py). audit_released: the person released an
    # observation the audit skipped (`gum-mcp audit --release`); the engine then uses it without asking
    # the audit again. The vector index never holds what the audit skipped: a skip logs a delete and a
    # release an upsert (index_items leaves skipped observations out), and those skipped before now
    # leave the index. Re-redaction with a newer redactor (reredact.py) may rewrite a proposition's text
    # and reasoning: the immutability trigger allows it while meta holds a `redacting` row, which only
    # that job's own write transaction ever holds (so no other connection ever sees it).
    """
    ALTER TABLE observations ADD COLUMN audit_released INTEGER NOT NULL DEFAULT 0;

    CREATE TRIGGER index_log_observation_skipped AFTER UPDATE OF status ON observations
    WHEN new.status = 'skipped' AND old.status != 'skipped' BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('observations', new.id, 'delete');
    END;
    CREATE TRIGGER index_log_observation_unskipped AFTER UPDATE OF status ON observations
    WHEN old.status = 'skipped' AND new.status != 'skipped' AND new.content IS NOT NULL BEGIN
        INSERT INTO index_log (collection, item_id, op) VALUES ('observations', new.id, 'upsert');
    END;
    INSERT INTO index_log (collection, item_id, op)
    SELECT 'observations', id, 'delete' FROM observations WHERE status = 'skipped';

    DROP TRIGGER propositions_immutable;
    CREATE TRIGGER propositions_immutable BEFORE UPDATE OF text, reasoning, confidence, decay
    ON propositions
    WHEN new.confidence IS NOT old.confidence OR new.decay IS NOT old.decay
      OR (((new.text IS NOT NULL AND new.text IS NOT old.text)
           OR (new.reasoning IS NOT NULL AND new.reasoning IS NOT old.reasoning))
          AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'redacting')) BEGIN
        SELECT RAISE(ABORT, 'proposition content is immutable: supersede it instead');
    END;
    """,
    # 7: the LLM layer's memory (gum_mcp/store/llm_state.py). llm_methods: the structured-output method
    # an OpenAI-compatible server accepted (json_schema, json_object, tool), per base URL and model, and
    # when that was learnt. engine_pause: at most one row, the engine paused because the provider kept
    # failing the same way: why, and the configuration it happened under (a fingerprint; keys only hashed).
    """
    CREATE TABLE llm_methods (
        base_url  TEXT NOT NULL,
        model     TEXT NOT NULL,
        method    TEXT NOT NULL,
        learnt_at REAL NOT NULL,
        PRIMARY KEY (base_url, model)
    ) WITHOUT ROWID;

    CREATE TABLE engine_pause (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        reason    TEXT NOT NULL,
        config    TEXT NOT NULL,
        paused_at REAL NOT NULL
    );
    """,
    # 8: who may see what (gum_mcp/domain.py SENSITIVITY_ORDER, gum_mcp/store/sensitivity.py, policy.py).
    # propositions.sensitivity: the class of knowledge a proposition is; NULL until tagged (new propositions
    # get it from the engine, or from what they supersede; older ones from the tagging job,
    # gum_mcp/engine/tagging.py), and withheld until then from every client a disclosure policy restricts.
    # Bookkeeping, like retired_at: the immutability trigger does not cover it.
    """
    ALTER TABLE propositions ADD COLUMN sensitivity TEXT CHECK (sensitivity IN ('health', 'beliefs-and-identity',
        'relationships', 'finance', 'location', 'personal', 'work', 'other'));
    CREATE INDEX propositions_untagged ON propositions (id) WHERE sensitivity IS NULL;
    """,
    # 9: standing instructions and preferences (issue 27; gum_mcp/domain.py PropositionKind). propositions.kind:
    # belief (inferred), preference, or instruction (a rule the person stated); applies_to: the situation an
    # instruction or preference applies to. Content, like the text: set once, never changed, except that
    # forgetting (text set to NULL) takes applies_to with it.
    """
    ALTER TABLE propositions ADD COLUMN kind TEXT NOT NULL DEFAULT 'belief'
        CHECK (kind IN ('belief', 'preference', 'instruction'));
    ALTER TABLE propositions ADD COLUMN applies_to TEXT;
    CREATE INDEX propositions_current_kind ON propositions (kind, confidence DESC) WHERE retired_at IS NULL;
    CREATE TRIGGER propositions_kind_immutable BEFORE UPDATE OF kind, applies_to ON propositions
    WHEN new.kind IS NOT old.kind OR (new.applies_to IS NOT NULL AND new.applies_to IS NOT old.applies_to) BEGIN
        SELECT RAISE(ABORT, 'proposition content is immutable: supersede it instead');
    END;
    CREATE TRIGGER propositions_forget_applies_to AFTER UPDATE OF text ON propositions
    WHEN new.text IS NULL AND old.text IS NOT NULL AND new.applies_to IS NOT NULL BEGIN
        UPDATE propositions SET applies_to = NULL WHERE id = new.id;
    END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
