-- Per-org routing policy (JSON, validated by the API): default fallback models, allowed and
-- ignored providers, default sort, per-model overrides.
CREATE TABLE routing_policies (
    org_id      TEXT PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
