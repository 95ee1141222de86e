-- Switchyard schema, PostgreSQL flavour. Timestamps are unix milliseconds; money is integer
-- nano-USD; prices are nano-USD per million tokens. Keep in step with ../sqlite.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE api_keys (
    hash                   TEXT PRIMARY KEY,
    org_id                 TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    label                  TEXT NOT NULL,
    kind                   TEXT NOT NULL CHECK (kind IN ('inference', 'management')),
    disabled               BOOLEAN NOT NULL DEFAULT FALSE,
    limit_nanos            BIGINT,
    limit_reset            TEXT,
    include_byok_in_limit  BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at             BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);

CREATE TABLE providers (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    slug        TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    api_key     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE models (
    org_id          TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    context_length  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE model_endpoints (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL,
    model_id              TEXT NOT NULL,
    provider_id           TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    upstream_model        TEXT NOT NULL,
    context_length        BIGINT NOT NULL,
    max_output_tokens     BIGINT NOT NULL,
    price_input           BIGINT NOT NULL,
    price_output          BIGINT NOT NULL,
    price_cache_read      BIGINT NOT NULL,
    price_cache_write_5m  BIGINT NOT NULL,
    price_cache_write_1h  BIGINT NOT NULL,
    price_reasoning       BIGINT,
    price_per_request     BIGINT NOT NULL,
    position              BIGINT NOT NULL,
    created_at            BIGINT NOT NULL,
    FOREIGN KEY (org_id, model_id) REFERENCES models(org_id, id) ON DELETE CASCADE
);
CREATE INDEX model_endpoints_model ON model_endpoints (org_id, model_id, position);

-- One row: the config version, bumped in the same transaction as every config change.
CREATE TABLE config_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  BIGINT NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 1);

CREATE TABLE node_tokens (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE gateway_nodes (
    node_id          TEXT PRIMARY KEY,
    applied_version  BIGINT NOT NULL,
    ok               BOOLEAN NOT NULL,
    last_error       TEXT NOT NULL DEFAULT '',
    node_info        TEXT NOT NULL DEFAULT '',
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL
);

-- Raw usage, one row per generation. request_id is unique: redelivery never bills twice.
CREATE TABLE usage_records (
    request_id             TEXT PRIMARY KEY,
    org_id                 TEXT NOT NULL,
    key_hash               TEXT NOT NULL,
    model                  TEXT NOT NULL,
    endpoint_id            TEXT NOT NULL,
    provider_id            TEXT NOT NULL,
    provider_slug          TEXT NOT NULL,
    upstream_model         TEXT NOT NULL,
    node_id                TEXT NOT NULL,
    config_version         BIGINT NOT NULL,
    api                    TEXT NOT NULL,
    started_at             BIGINT NOT NULL,
    finished_at            BIGINT NOT NULL,
    ttft_ms                BIGINT,
    streamed               BOOLEAN NOT NULL,
    cancelled              BOOLEAN NOT NULL,
    estimated              BOOLEAN NOT NULL,
    finish_reason          TEXT NOT NULL,
    native_finish_reason   TEXT NOT NULL,
    http_status            BIGINT NOT NULL,
    error_type             TEXT NOT NULL,
    input_tokens           BIGINT NOT NULL,
    output_tokens          BIGINT NOT NULL,
    cache_read_tokens      BIGINT NOT NULL,
    cache_write_5m_tokens  BIGINT NOT NULL,
    cache_write_1h_tokens  BIGINT NOT NULL,
    reasoning_tokens       BIGINT NOT NULL,
    cost_nanos             BIGINT NOT NULL,
    gateway_cost_nanos     BIGINT NOT NULL,
    upstream_id            TEXT NOT NULL,
    ingested_at            BIGINT NOT NULL
);
CREATE INDEX usage_records_org_time ON usage_records (org_id, finished_at);
CREATE INDEX usage_records_key_time ON usage_records (key_hash, finished_at);

-- Double-entry ledger: immutable rows; balances are sums. Each usage record posts one
-- debit to the org's credit account and one credit to platform revenue.
CREATE TABLE ledger_entries (
    id            BIGSERIAL PRIMARY KEY,
    org_id        TEXT NOT NULL,
    account       TEXT NOT NULL,
    amount_nanos  BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    request_id    TEXT,
    memo          TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    UNIQUE (request_id, account)
);
CREATE INDEX ledger_entries_org ON ledger_entries (org_id, account, created_at);
