-- Fewer index entries per usage posting (two per generation; ingestion writes them for every
-- request). Keep in step with ../sqlite.
--
-- (posting_id, account) is unique among the postings that have an id (grants, top-ups,
-- refunds, fees, chargebacks); usage postings have none and were indexed under NULL for
-- nothing. Lookups by `posting_id = $1` imply `posting_id IS NOT NULL`, so they still use it.
DROP INDEX ledger_entries_posting;
CREATE UNIQUE INDEX ledger_entries_posting ON ledger_entries (posting_id, account)
    WHERE posting_id IS NOT NULL;

-- The credit balance reads the credit account's postings other than usage through this
-- (usage comes from usage_daily.posted_nanos), so usage postings need not be in it.
DROP INDEX ledger_entries_org_account_kind;
CREATE INDEX ledger_entries_org_account_kind ON ledger_entries (org_id, account, kind)
    WHERE kind <> 'usage';
