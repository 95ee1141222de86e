-- Every upstream attempt of a generation (JSON array of {model, endpoint_id, provider,
-- status, error_type, latency_ms}), so failovers are visible on the request log.
ALTER TABLE usage_records ADD COLUMN provider_responses TEXT NOT NULL DEFAULT '[]';

-- Fair sharing of a provider credential's capacity between orgs.
ALTER TABLE providers ADD COLUMN max_concurrency INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rate_limits ADD COLUMN capacity_weight INTEGER NOT NULL DEFAULT 0;
