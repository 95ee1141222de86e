-- Billing: postings in the ledger, the effective-dated price book, re-rating adjustments,
-- Stripe top-ups and usage tags. Keep in step with ../postgres.

-- Every non-usage posting (grant, refund, top-up, adjustment) names its group of entries, so
-- "each posting sums to zero" can be checked; usage postings are grouped by request_id.
ALTER TABLE ledger_entries ADD COLUMN posting_id TEXT;
-- What a posting refers to: a generation a refund or adjustment is for, a Checkout Session.
ALTER TABLE ledger_entries ADD COLUMN ref_id TEXT;
-- A posting id is used once (it doubles as the idempotency key of grants and top-ups).
CREATE UNIQUE INDEX ledger_entries_posting ON ledger_entries (posting_id, account);
CREATE INDEX ledger_entries_org_id ON ledger_entries (org_id, id);

-- Prices of one model's endpoint at one provider from `effective_from` until the next version.
-- Keyed by (model, provider) rather than endpoint id: endpoint rows are replaced on edits.
CREATE TABLE price_versions (
    id                       TEXT PRIMARY KEY,
    org_id                   TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    model_id                 TEXT NOT NULL,
    provider_id              TEXT NOT NULL,
    effective_from           INTEGER NOT NULL,
    price_input              INTEGER NOT NULL,
    price_output             INTEGER NOT NULL,
    price_cache_read         INTEGER NOT NULL,
    price_cache_write_5m     INTEGER NOT NULL,
    price_cache_write_1h     INTEGER NOT NULL,
    price_reasoning          INTEGER,
    price_per_request        INTEGER NOT NULL,
    -- Prompts above this many input tokens are priced entirely with the lc_* prices; 0 = no tier.
    long_context_threshold   INTEGER NOT NULL DEFAULT 0,
    lc_price_input           INTEGER NOT NULL DEFAULT 0,
    lc_price_output          INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_read      INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_write_5m  INTEGER NOT NULL DEFAULT 0,
    lc_price_cache_write_1h  INTEGER NOT NULL DEFAULT 0,
    lc_price_reasoning       INTEGER,
    lc_price_per_request     INTEGER NOT NULL DEFAULT 0,
    note                     TEXT NOT NULL DEFAULT '',
    created_by               TEXT NOT NULL DEFAULT '',
    created_at               INTEGER NOT NULL,
    UNIQUE (org_id, model_id, provider_id, effective_from)
);

-- Re-rated cost of a generation; usage_records keep the cost first posted.
CREATE TABLE rating_adjustments (
    id                   TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL,
    request_id           TEXT NOT NULL,
    price_version_id     TEXT NOT NULL,
    previous_cost_nanos  INTEGER NOT NULL,
    new_cost_nanos       INTEGER NOT NULL,
    delta_nanos          INTEGER NOT NULL,
    created_at           INTEGER NOT NULL
);
CREATE INDEX rating_adjustments_request ON rating_adjustments (request_id);

CREATE TABLE checkout_sessions (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    amount_nanos  INTEGER NOT NULL,
    url           TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER
);

-- Stripe events already processed: redelivered or replayed events change nothing.
CREATE TABLE stripe_events (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);

-- Chargeback tags of a generation: request metadata, `user`, `session_id`, header tags.
CREATE TABLE usage_tags (
    request_id  TEXT NOT NULL,
    org_id      TEXT NOT NULL,
    tag_key     TEXT NOT NULL,
    tag_value   TEXT NOT NULL,
    PRIMARY KEY (request_id, tag_key)
);
CREATE INDEX usage_tags_org_key ON usage_tags (org_id, tag_key, tag_value);
