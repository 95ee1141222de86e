-- Routing attributes: provider data policy and timeouts, endpoint quantization and the
-- request parameters an endpoint honours (comma-separated; empty = unrestricted).
ALTER TABLE providers ADD COLUMN zero_data_retention BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE providers ADD COLUMN trains_on_prompts BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE providers ADD COLUMN connect_timeout_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN first_byte_timeout_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE providers ADD COLUMN stream_idle_timeout_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE model_endpoints ADD COLUMN quantization TEXT NOT NULL DEFAULT '';
ALTER TABLE model_endpoints ADD COLUMN supported_parameters TEXT NOT NULL DEFAULT '';

-- Rate limits per key or org ("key" | "org"); 0 = unlimited. Enforced by the gateways, each
-- holding its share of the limit.
CREATE TABLE rate_limits (
    org_id               TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    scope_kind           TEXT NOT NULL CHECK (scope_kind IN ('key', 'org')),
    scope_id             TEXT NOT NULL,
    requests_per_minute  INTEGER NOT NULL DEFAULT 0,
    tokens_per_minute    INTEGER NOT NULL DEFAULT 0,
    concurrent_requests  INTEGER NOT NULL DEFAULT 0,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (scope_kind, scope_id)
);
