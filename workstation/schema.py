"""The workspace schema, as an ordered list of forward migrations.

Each migration moves the schema from version N-1 to N. Never edit a released
migration; append a new one. ``CURRENT_VERSION`` is the last one's number.
"""

from __future__ import annotations

# A meta row a migration writes when the file must be rewritten afresh after
# it (workstation.workspace.Workspace._rewrite), e.g. to drop a secret's bytes.
REWRITE_KEY = "pending_rewrite"

MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        # Source files seen by imports, content-addressed.
        """CREATE TABLE sources (
            sha256 VARCHAR PRIMARY KEY, path VARCHAR, size_bytes BIGINT,
            format VARCHAR, imported_at VARCHAR)""",
        """CREATE TABLE datasets (
            id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE,
            kind VARCHAR NOT NULL CHECK (kind IN ('pairs', 'labels', 'demos')),
            format VARCHAR NOT NULL, source_sha256 VARCHAR NOT NULL,
            source_path VARCHAR, created_at VARCHAR NOT NULL,
            n_examples BIGINT NOT NULL, report JSON)""",
        # One row per example. Pairs use prompt/chosen/rejected (imported
        # preference: chosen is better); labeled responses use
        # prompt/response/label (TRUE = safe)/category; demonstrations use
        # n_steps and keep their steps in demo_steps.
        """CREATE TABLE examples (
            id BIGINT PRIMARY KEY, dataset_id INTEGER NOT NULL,
            source_sha256 VARCHAR NOT NULL, source_index BIGINT NOT NULL,
            source_id VARCHAR, prompt VARCHAR, chosen VARCHAR, rejected VARCHAR,
            response VARCHAR, label BOOLEAN, category VARCHAR, n_steps INTEGER,
            meta JSON)""",
        """CREATE TABLE demo_steps (
            example_id BIGINT NOT NULL, step INTEGER NOT NULL,
            obs FLOAT[] NOT NULL, action DOUBLE[])""",
        # Current review state of edited examples only (sparse): a row holds
        # every reviewable field once any of them was edited. Derived from the
        # import plus the review log; `verify` recomputes it.
        """CREATE TABLE example_state (
            example_id BIGINT PRIMARY KEY, flipped BOOLEAN NOT NULL,
            label BOOLEAN, category VARCHAR, tags VARCHAR[] NOT NULL,
            note VARCHAR, excluded BOOLEAN NOT NULL, last_seq BIGINT NOT NULL)""",
        # Examples as currently reviewed: the import plus the review state.
        """CREATE VIEW current_examples AS
            SELECT e.*,
                coalesce(s.flipped, false) AS flipped,
                CASE WHEN coalesce(s.flipped, false) THEN e.rejected ELSE e.chosen END AS current_chosen,
                CASE WHEN coalesce(s.flipped, false) THEN e.chosen ELSE e.rejected END AS current_rejected,
                CASE WHEN s.example_id IS NULL THEN e.label ELSE s.label END AS current_label,
                CASE WHEN s.example_id IS NULL THEN e.category ELSE s.category END AS current_category,
                coalesce(s.tags, []::VARCHAR[]) AS tags, s.note,
                coalesce(s.excluded, false) AS excluded,
                s.example_id IS NOT NULL AS reviewed
            FROM examples e LEFT JOIN example_state s ON s.example_id = e.id""",
        # Append-only, hash-chained review log.
        """CREATE TABLE review_log (
            seq BIGINT PRIMARY KEY, example_id BIGINT NOT NULL,
            field VARCHAR NOT NULL, old JSON, new JSON, reason VARCHAR NOT NULL,
            analyst VARCHAR NOT NULL, time VARCHAR NOT NULL,
            action VARCHAR NOT NULL CHECK (action IN ('edit', 'undo', 'redo')),
            target_seq BIGINT, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)""",
        # Text embeddings, keyed by encoder and text hash: a text is encoded once.
        """CREATE TABLE embeddings (
            encoder_id VARCHAR NOT NULL, text_sha256 VARCHAR NOT NULL,
            vec FLOAT[] NOT NULL, PRIMARY KEY (encoder_id, text_sha256))""",
        # Content-addressed artifacts (ONNX files, tokenizers).
        """CREATE TABLE blobs (
            sha256 VARCHAR PRIMARY KEY, size_bytes BIGINT NOT NULL, data BLOB NOT NULL)""",
        """CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY, model VARCHAR NOT NULL, version INTEGER NOT NULL,
            sha256 VARCHAR NOT NULL, input_kind VARCHAR NOT NULL,
            parent_id INTEGER, created_by VARCHAR NOT NULL, created_at VARCHAR NOT NULL,
            manifest JSON NOT NULL, UNIQUE (model, version))""",
        """CREATE TABLE audit_runs (
            id INTEGER PRIMARY KEY, kind VARCHAR NOT NULL,
            model_version_id INTEGER NOT NULL, dataset_id INTEGER NOT NULL,
            created_at VARCHAR NOT NULL, created_by VARCHAR NOT NULL,
            threshold DOUBLE, review_head VARCHAR NOT NULL, params JSON,
            metrics JSON, n_examples BIGINT NOT NULL, n_failures BIGINT NOT NULL)""",
        # One row per audited example. `label` is the label at audit time
        # (pairs: TRUE when the imported chosen side is still preferred).
        # `rank` orders failures, 1 = most confident disagreement.
        """CREATE TABLE audit_results (
            run_id INTEGER NOT NULL, example_id BIGINT NOT NULL, score DOUBLE,
            score_chosen DOUBLE, score_rejected DOUBLE, margin DOUBLE,
            label BOOLEAN, passed BOOLEAN NOT NULL, rank BIGINT)""",
        # Probe findings (automated audits): one row per candidate flaw.
        """CREATE TABLE findings (
            run_id INTEGER NOT NULL, id BIGINT NOT NULL, probe VARCHAR NOT NULL,
            probe_version VARCHAR NOT NULL, example_id BIGINT, case_data JSON,
            score_before DOUBLE, score_after DOUBLE, rule VARCHAR NOT NULL,
            severity DOUBLE NOT NULL, triage VARCHAR NOT NULL, details JSON,
            PRIMARY KEY (run_id, id))""",
        # The append-only, hash-chained ledger of flywheel steps (releases,
        # rollbacks, registrations); like the review log, never updated.
        """CREATE TABLE ledger (
            seq BIGINT PRIMARY KEY, time VARCHAR NOT NULL, actor VARCHAR NOT NULL,
            kind VARCHAR NOT NULL, payload JSON NOT NULL,
            prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL)""",
        """CREATE TABLE releases (
            id INTEGER PRIMARY KEY, model VARCHAR NOT NULL,
            model_version_id INTEGER NOT NULL, from_version_id INTEGER,
            batch JSON NOT NULL, signature VARCHAR NOT NULL, key_id VARCHAR NOT NULL,
            created_at VARCHAR NOT NULL, created_by VARCHAR NOT NULL,
            ledger_seq BIGINT NOT NULL)""",
        # Ed25519 signing keys of this workspace (private key as PEM).
        """CREATE TABLE signing_keys (
            key_id VARCHAR PRIMARY KEY, public_pem VARCHAR NOT NULL,
            private_pem VARCHAR, created_at VARCHAR NOT NULL, active BOOLEAN NOT NULL)""",
    ]),
    (2, [
        # The regression suite: failures a released version fixed, which later
        # versions of the model must keep passing (workstation.regression.suite).
        # An 'example' item must pass the audit judge; a 'finding' item's replay
        # spec (finding_ref) must no longer break its probe rule. item_key is
        # 'example:<id>' or 'finding:<run>:<finding>', so recording is idempotent.
        """CREATE TABLE regression_suite (
            model VARCHAR NOT NULL, item_key VARCHAR NOT NULL,
            kind VARCHAR NOT NULL CHECK (kind IN ('example', 'finding')),
            example_id BIGINT, dataset_id INTEGER, finding_ref JSON,
            added_by_version_id INTEGER NOT NULL, release_id INTEGER,
            added_at VARCHAR NOT NULL, PRIMARY KEY (model, item_key))""",
    ]),
    (3, [
        # Audit coverage (workstation.probes.coverage): the points audits and
        # probe runs looked at, per input space ('embedding:<encoder id>' or
        # 'observation:<dim>'), one row per distinct point. Text points keep
        # only the text's SHA-256 (vec NULL: the vector is in `embeddings`);
        # observations keep their vector. coverage_runs marks recorded runs.
        """CREATE TABLE coverage_points (
            space VARCHAR NOT NULL, point_key VARCHAR NOT NULL, run_id INTEGER NOT NULL,
            example_id BIGINT, finding_id BIGINT, vec FLOAT[],
            PRIMARY KEY (space, point_key))""",
        """CREATE TABLE coverage_runs (
            run_id INTEGER PRIMARY KEY, space VARCHAR NOT NULL, n_points BIGINT NOT NULL,
            recorded_at VARCHAR NOT NULL)""",
    ]),
    (4, [
        # Personal identities sign edits, trust changes and releases
        # (workstation.identity, workstation.trust). Review-log rows gain the
        # author's key id, a position-independent row hash (over the example's
        # source ref and the change: workstation.review_rows) that the author
        # signs, and the target row's row hash for undo/redo. Rows written
        # before this migration keep their old hash and stay unsigned; the meta
        # rows review_legacy_end / ledger_legacy_end say where they end.
        "ALTER TABLE review_log ADD COLUMN key_id VARCHAR",
        "ALTER TABLE review_log ADD COLUMN row_hash VARCHAR",
        "ALTER TABLE review_log ADD COLUMN target_hash VARCHAR",
        "ALTER TABLE review_log ADD COLUMN signature VARCHAR",
        # Ledger rows likewise: a row hash over the content, the signer's key
        # id and signature (trust, policy, release and rollback rows).
        "ALTER TABLE ledger ADD COLUMN row_hash VARCHAR",
        "ALTER TABLE ledger ADD COLUMN signer_key_id VARCHAR",
        "ALTER TABLE ledger ADD COLUMN signature VARCHAR",
        """INSERT INTO meta SELECT 'review_legacy_end', CAST(coalesce(max(seq), 0) AS VARCHAR)
           FROM review_log""",
        """INSERT INTO meta SELECT 'ledger_legacy_end', CAST(coalesce(max(seq), 0) AS VARCHAR)
           FROM ledger""",
        # The trust store: which keys may do what in this workspace. Derived
        # from the ledger's trust-* rows (which are the record) and written in
        # their transaction; `verify` checks that the two agree.
        """CREATE TABLE trust (
            key_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, email VARCHAR,
            public_pem VARCHAR NOT NULL, roles VARCHAR[] NOT NULL,
            added_at VARCHAR NOT NULL, added_by VARCHAR NOT NULL,
            revoked_at VARCHAR, revoked_by VARCHAR, revoke_reason VARCHAR)""",
        # The old workspace signing keys become verification-only: releases
        # they signed keep verifying; the private half leaves the file (the
        # rewrite after this migration drops its bytes from free blocks).
        """CREATE TABLE legacy_keys (
            key_id VARCHAR PRIMARY KEY, public_pem VARCHAR NOT NULL, created_at VARCHAR NOT NULL)""",
        "INSERT INTO legacy_keys SELECT key_id, public_pem, created_at FROM signing_keys",
        "DROP TABLE signing_keys",
        f"INSERT INTO meta VALUES ('{REWRITE_KEY}', 'drop the old private signing key')",
    ]),
    (5, [
        # Training membership (workstation.models.membership): each audited
        # example's role for the audited version: 'heldout', 'training',
        # 'validation', or NULL when the version was not trained on it (another
        # dataset, unknown training data, or excluded/unlabeled at training).
        # Runs of older workspaces keep NULL and membership NULL: "not recorded".
        "ALTER TABLE audit_results ADD COLUMN split VARCHAR",
        # The run's metrics on the examples the version was trained on (the
        # `metrics` column holds those on the examples it was not trained on),
        # and what is known of its training set.
        "ALTER TABLE audit_runs ADD COLUMN training_metrics JSON",
        "ALTER TABLE audit_runs ADD COLUMN membership JSON",
    ]),
    (6, [
        # Release requests that wait for approvals (k of n, the policy
        # release.approvals; workstation.release_requests): the request part
        # of the governance batch, and the requester's signature over it.
        # Each has a signed `release-request` ledger row; approvals and
        # rejections are ledger rows only, and a request that takes effect is
        # a `releases` row with the same id.
        """CREATE TABLE release_requests (
            id INTEGER PRIMARY KEY, model VARCHAR NOT NULL,
            model_version_id INTEGER NOT NULL, request JSON NOT NULL,
            signature VARCHAR NOT NULL, key_id VARCHAR NOT NULL,
            requested_at VARCHAR NOT NULL, requested_by VARCHAR NOT NULL,
            ledger_seq BIGINT NOT NULL)""",
    ]),
    (7, [
        # Team review (workstation.review_state): the review log takes
        # adjudications ('adjudicate' rows: an adjudicator settles a field
        # analysts disagree on). DuckDB cannot change a CHECK constraint in
        # place, so the table is rebuilt with the same columns in the same order.
        """CREATE TABLE review_log_v7 (
            seq BIGINT PRIMARY KEY, example_id BIGINT NOT NULL,
            field VARCHAR NOT NULL, old JSON, new JSON, reason VARCHAR NOT NULL,
            analyst VARCHAR NOT NULL, time VARCHAR NOT NULL,
            action VARCHAR NOT NULL CHECK (action IN ('edit', 'undo', 'redo', 'adjudicate')),
            target_seq BIGINT, prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL,
            key_id VARCHAR, row_hash VARCHAR, target_hash VARCHAR, signature VARCHAR)""",
        """INSERT INTO review_log_v7 SELECT seq, example_id, field, old, new, reason, analyst,
            time, action, target_seq, prev_hash, hash, key_id, row_hash, target_hash, signature
            FROM review_log ORDER BY seq""",
        "DROP TABLE review_log",
        "ALTER TABLE review_log_v7 RENAME TO review_log",
        # Derived from the log, like example_state, and written in the same
        # transaction as each row; `verify` recomputes them. Each analyst's own
        # current value of a judgement field (label, flipped, category):
        """CREATE TABLE analyst_labels (
            example_id BIGINT NOT NULL, field VARCHAR NOT NULL, key_id VARCHAR NOT NULL,
            analyst VARCHAR NOT NULL, value JSON, time VARCHAR NOT NULL,
            row_hash VARCHAR NOT NULL, PRIMARY KEY (example_id, field, key_id))""",
        # Per judgement field an analyst or adjudicator touched: is there an
        # open conflict, and the newest adjudication (value, by whom, when).
        """CREATE TABLE label_decisions (
            example_id BIGINT NOT NULL, field VARCHAR NOT NULL, n_analysts INTEGER NOT NULL,
            open_conflict BOOLEAN NOT NULL, adjudicated JSON, adjudicator_key VARCHAR,
            adjudicated_at VARCHAR, settled BOOLEAN NOT NULL, PRIMARY KEY (example_id, field))""",
        # Who an example is assigned to ('assignee' rows of the log; not a
        # review of the example, so not in example_state).
        """CREATE TABLE assignments (
            example_id BIGINT PRIMARY KEY, key_id VARCHAR NOT NULL, assigned_by VARCHAR NOT NULL,
            time VARCHAR NOT NULL)""",
    ]),
]

# Python run after a migration's statements, in its transaction
# ("module:function", called with the Workspace): derived tables that SQL
# alone cannot fill.
AFTER_MIGRATION: dict[int, str] = {7: "workstation.review_state:rebuild"}

CURRENT_VERSION = MIGRATIONS[-1][0]
