-- Budgets, spend leases and budget alerts. Keep in step with ../sqlite.
-- Spend is never stored here: it is summed from usage_records for each window, so it cannot
-- drift from the ledger. Leases and alert deliveries are the only mutable state.

-- An org, team, user (the owner of the calling key) or tag budget over a UTC window.
-- The column is `period` because WINDOW is a reserved word in Postgres.
CREATE TABLE budgets (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('org', 'team', 'user', 'tag')),
    -- The org id, a team id, a user id, or "key=value" for a tag.
    scope_id     TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    limit_nanos  BIGINT NOT NULL CHECK (limit_nanos >= 0),
    period       TEXT NOT NULL CHECK (period IN ('daily', 'weekly', 'monthly', 'lifetime')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (org_id, scope_kind, scope_id, period)
);

-- Per-org budget settings: the alert webhook, the default daily cap of new keys, and the
-- lease policy gateways follow.
CREATE TABLE budget_settings (
    org_id                  TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    alert_webhook_url       TEXT,
    default_key_daily_cap   BIGINT,
    lease_max_per_gateway   BIGINT NOT NULL DEFAULT 0,
    lease_max_per_org       BIGINT NOT NULL DEFAULT 0,
    unreachable_policy      TEXT NOT NULL DEFAULT 'fail_closed' CHECK (unreachable_policy IN ('fail_closed', 'overdraft')),
    overdraft_nanos         BIGINT NOT NULL DEFAULT 0,
    default_output_tokens   BIGINT NOT NULL DEFAULT 1024,
    -- JSON object: catalog model id -> output tokens reserved when max_tokens is absent.
    model_output_tokens     TEXT NOT NULL DEFAULT '{}',
    updated_at              BIGINT NOT NULL
);

-- What each gateway node was granted of a budget in one window, and what it reported as
-- consumed. budget_id is a budgets.id or "key:<hash>" for a key's own limit.
CREATE TABLE budget_leases (
    budget_id       TEXT NOT NULL,
    window_start    BIGINT NOT NULL,
    node_id         TEXT NOT NULL,
    org_id          TEXT NOT NULL,
    granted_nanos   BIGINT NOT NULL,
    consumed_nanos  BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (budget_id, window_start, node_id)
);

-- One row per (budget, window, threshold) alert: inserted before the webhook is called, so
-- an alert is sent at most once per window even across restarts and replicas.
CREATE TABLE budget_alerts (
    budget_id     TEXT NOT NULL,
    window_start  BIGINT NOT NULL,
    threshold     BIGINT NOT NULL,
    org_id        TEXT NOT NULL,
    spent_nanos   BIGINT NOT NULL,
    limit_nanos   BIGINT NOT NULL,
    -- 'pending' until the webhook answered 2xx ('delivered'); 'failed' after the last retry.
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    delivered_at  BIGINT,
    PRIMARY KEY (budget_id, window_start, threshold)
);
CREATE INDEX budget_alerts_pending ON budget_alerts (status, created_at);
