-- The caching statistics read usage_cache_facts only by request id, joined from a range of
-- usage_records_org_time (SQLite's EXPLAIN QUERY PLAN of both queries: "SEARCH u USING INDEX
-- usage_records_org_time", then "SEARCH f USING INDEX sqlite_autoindex_usage_cache_facts_1"),
-- so these two indexes served no query. The conversation one cost the most: conversation ids are
-- random, so every ingested generation wrote a different leaf page of it. Keep in step with
-- ../sqlite.
DROP INDEX usage_cache_facts_org_conversation;
DROP INDEX usage_cache_facts_org_key_time;
