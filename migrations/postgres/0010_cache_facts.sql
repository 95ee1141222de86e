-- Caching diagnostics per usage record (issue #8): the conversation it belongs to, whether
-- it was a response-cache hit, and why sticky routing left the conversation's cache
-- endpoint. Kept beside usage_records (same request_id) so the ledger table stays as it is.
CREATE TABLE usage_cache_facts (
    request_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    conversation_id TEXT NOT NULL DEFAULT '',
    response_cache_hit BOOLEAN NOT NULL DEFAULT FALSE,
    sticky_fallback_reason TEXT NOT NULL DEFAULT '',
    finished_at BIGINT NOT NULL
);
CREATE INDEX usage_cache_facts_org_conversation ON usage_cache_facts (org_id, conversation_id);
CREATE INDEX usage_cache_facts_org_key_time ON usage_cache_facts (org_id, key_hash, finished_at);
