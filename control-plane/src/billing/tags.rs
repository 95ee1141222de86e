//! Chargeback tags of ingested usage: the gateway's validated `tags` map plus the request's
//! `user` and `session_id`, stored as the tags `user` / `session_id` so analytics can group
//! by them like any other tag key.

use std::collections::HashSet;

use switchyard_proto::pb;

use crate::store::UsageRow;

/// `(request_id, org_id, tags)`, as `BillingStore::add_usage_tags` takes them.
pub type TagRow = (String, String, Vec<(String, String)>);

/// The tag rows of the records the rater kept (well-formed request ids).
pub fn tag_rows(records: &[pb::UsageRecord], rated: &[UsageRow]) -> Vec<TagRow> {
    // Most batches carry no tags at all: skip hashing every request id for nothing.
    if records
        .iter()
        .all(|r| r.tags.is_empty() && r.user.is_empty() && r.session_id.is_empty())
    {
        return Vec::new();
    }
    let kept: HashSet<&str> = rated.iter().map(|r| r.request_id.as_str()).collect();
    records
        .iter()
        .filter(|r| kept.contains(r.request_id.as_str()))
        .filter_map(|r| {
            let mut tags: Vec<(String, String)> = r
                .tags
                .iter()
                .filter(|(k, _)| k.as_str() != "user" && k.as_str() != "session_id")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in [("user", &r.user), ("session_id", &r.session_id)] {
                if !v.is_empty() {
                    tags.push((k.to_owned(), v.clone()));
                }
            }
            (!tags.is_empty()).then(|| (r.request_id.clone(), r.org_id.clone(), tags))
        })
        .collect()
}
