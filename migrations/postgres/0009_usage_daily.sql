-- Daily usage rollup behind the console's overview and usage explorer: one row per org, UTC
-- day (of `started_at`, as the analytics API buckets), key, model and provider. Maintained in
-- the usage-ingestion transaction for rows that were actually inserted (so redelivery never
-- counts twice) and by re-rating (cost includes rating adjustments, as analytics does).
CREATE TABLE usage_daily (
    org_id              TEXT NOT NULL,
    day                 BIGINT NOT NULL,  -- days since the Unix epoch (UTC)
    key_hash            TEXT NOT NULL,
    model               TEXT NOT NULL,
    provider_slug       TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    errors              BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cache_read_tokens   BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    -- The cost posted to the ledger at ingestion (`usage` postings), without re-rating: with
    -- it the credit balance is the few non-usage postings plus this, not a scan of them all.
    posted_nanos        BIGINT NOT NULL,
    PRIMARY KEY (org_id, day, key_hash, model, provider_slug)
);

-- The credit balance reads the non-usage postings of an org's credit account through this.
CREATE INDEX ledger_entries_org_account_kind ON ledger_entries (org_id, account, kind);

-- Backfill from the usage already stored.
INSERT INTO usage_daily (org_id, day, key_hash, model, provider_slug, requests, errors, input_tokens,
                         output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, posted_nanos)
SELECT u.org_id, u.started_at / 86400000, u.key_hash, u.model, u.provider_slug,
       COUNT(*),
       CAST(SUM(CASE WHEN u.http_status >= 400 OR u.error_type <> '' THEN 1 ELSE 0 END) AS BIGINT),
       CAST(SUM(u.input_tokens) AS BIGINT), CAST(SUM(u.output_tokens) AS BIGINT), CAST(SUM(u.cache_read_tokens) AS BIGINT),
       CAST(SUM(u.cache_write_5m_tokens + u.cache_write_1h_tokens) AS BIGINT), CAST(SUM(u.reasoning_tokens) AS BIGINT),
       CAST(SUM(u.cost_nanos + COALESCE(a.delta, 0)) AS BIGINT),
       CAST(SUM(u.cost_nanos) AS BIGINT)
FROM usage_records u
LEFT JOIN (SELECT request_id, SUM(delta_nanos) AS delta FROM rating_adjustments GROUP BY request_id) a
       ON a.request_id = u.request_id
GROUP BY u.org_id, u.started_at / 86400000, u.key_hash, u.model, u.provider_slug;
