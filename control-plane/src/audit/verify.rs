//! Walks the whole chain in seq order and checks, for every entry, that seqs are contiguous,
//! that it names the previous entry's hash, and that its own hash matches its content; then
//! that the head row names the last entry. A modified entry fails its hash (or, if the
//! attacker recomputed it, the next entry's link); a deleted entry leaves a gap or a head
//! mismatch. An attacker who rewrites the whole chain and the head is caught only by
//! comparing the head hash with one recorded elsewhere: the report prints it for that.

use crate::store::{AuditStore, StoreError};

const PAGE: i64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub head_seq: i64,
    pub head_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("reading the audit log: {0}")]
    Store(#[from] StoreError),
    #[error("entry {expected} is missing (the next entry is {found}): entries were deleted")]
    Gap { expected: i64, found: i64 },
    #[error("entry {seq} does not link to entry {}: an entry before it was changed or removed", seq - 1)]
    BrokenLink { seq: i64 },
    #[error("entry {seq} does not match its hash: it was modified")]
    Modified { seq: i64 },
    #[error(
        "the log ends at entry {last_seq} but its head names entry {head_seq}: entries were deleted or the head was changed"
    )]
    Head { last_seq: i64, head_seq: i64 },
}

pub async fn verify_chain(store: &dyn AuditStore) -> Result<VerifyReport, ChainError> {
    // Read the head first: entries appended while we walk are beyond it and ignored.
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut last_seq = 0;
    let mut last_hash = String::new();
    let mut entries = 0u64;
    'pages: loop {
        let page = store.audit_chain_page(last_seq, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            if entry.seq > head_seq {
                break 'pages;
            }
            if entry.seq != last_seq + 1 {
                return Err(ChainError::Gap {
                    expected: last_seq + 1,
                    found: entry.seq,
                });
            }
            if entry.prev_hash != last_hash {
                return Err(ChainError::BrokenLink { seq: entry.seq });
            }
            if entry.hash != entry.expected_hash() {
                return Err(ChainError::Modified { seq: entry.seq });
            }
            last_seq = entry.seq;
            last_hash = entry.hash;
            entries += 1;
        }
    }
    if last_seq != head_seq || last_hash != head_hash {
        return Err(ChainError::Head { last_seq, head_seq });
    }
    Ok(VerifyReport {
        entries,
        head_seq,
        head_hash,
    })
}
