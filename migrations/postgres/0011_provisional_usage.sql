-- Write-ahead usage of streams (issue #11): a gateway spools a provisional record when a
-- stream starts; it waits here, off the ledger, until the final record of the same
-- request_id replaces it (and deletes it) or, after a grace period with no final record
-- (the gateway died mid-stream), the sweeper posts it to usage_records as estimated.
-- Same columns as usage_records so settling is a straight copy.
CREATE TABLE provisional_usage (
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
    -- When the control plane received it: the grace period runs from here.
    ingested_at            BIGINT NOT NULL,
    provider_responses     TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX provisional_usage_ingested ON provisional_usage (ingested_at);
