//! Chargeback tags of a generation, collected from the request before routing: OpenRouter's
//! `metadata` pairs, `user`, `session_id` (or the `x-session-id` header), `trace` fields, and
//! Switchyard's `X-Switchyard-Tags: k=v,k2=v2` header. They ride on the usage record so
//! analytics can group spend by any tag key.
//!
//! Bad input is a 400 that names the field; the caps keep one request from writing an
//! unbounded number of rows into the control plane's tag table.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use crate::error::ApiError;

// `HeaderName`s, not `&str`s: a `&str` name is parsed again on every lookup.
pub const TAGS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-tags");
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("x-session-id");
/// OpenRouter's limits on `metadata`.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_VALUE: usize = 512;
const MAX_HEADER_TAGS: usize = 32;
const MAX_HEADER_VALUE: usize = 256;
const MAX_TRACE_FIELDS: usize = 16;
const MAX_KEY: usize = 64;
const MAX_USER: usize = 128;
const MAX_SESSION: usize = 256;

/// The tags, end user and session of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTags {
    pub tags: BTreeMap<String, String>,
    pub user: String,
    pub session_id: String,
}

/// The characters analytics accepts in a `tag:<key>` dimension.
fn valid_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.:".contains(&b)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(valid_key_byte)
}

/// `metadata` keys are free text at OpenAI and OpenRouter; other characters become `_` so the
/// key can be named in a group-by.
fn normalize_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii() && valid_key_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// Parses `k=v,k2=v2` (one or more header lines); keys are unique.
fn header_tags(headers: &HeaderMap) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for value in headers.get_all(&TAGS_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| bad("X-Switchyard-Tags must be visible ASCII (k=v,k2=v2)".into()))?;
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                bad(format!(
                    "X-Switchyard-Tags: `{pair}` is not key=value (expected k=v,k2=v2)"
                ))
            })?;
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) {
                return Err(bad(format!(
                    "X-Switchyard-Tags: key `{k}` must be 1-{MAX_KEY} characters of A-Z, a-z, 0-9, -, _, . and :"
                )));
            }
            if v.chars().count() > MAX_HEADER_VALUE {
                return Err(bad(format!(
                    "X-Switchyard-Tags: the value of `{k}` is longer than {MAX_HEADER_VALUE} characters"
                )));
            }
            if out.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(bad(format!("X-Switchyard-Tags: key `{k}` appears twice")));
            }
            if out.len() > MAX_HEADER_TAGS {
                return Err(bad(format!(
                    "X-Switchyard-Tags: at most {MAX_HEADER_TAGS} tags"
                )));
            }
        }
    }
    Ok(out)
}

fn metadata_tags(extra: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(metadata) = extra.get("metadata").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Some(pairs) = metadata.as_object() else {
        return Err(bad("`metadata` must be an object of string values".into()));
    };
    if pairs.len() > MAX_METADATA_PAIRS {
        return Err(bad(format!(
            "`metadata` has {} pairs; at most {MAX_METADATA_PAIRS}",
            pairs.len()
        )));
    }
    for (k, v) in pairs {
        if k.is_empty() || k.chars().count() > MAX_KEY {
            return Err(bad(format!(
                "`metadata` keys must be 1-{MAX_KEY} characters; `{k}` is not"
            )));
        }
        let Value::String(text) = v else {
            return Err(bad(format!("`metadata.{k}` must be a string")));
        };
        if text.chars().count() > MAX_METADATA_VALUE {
            return Err(bad(format!(
                "`metadata.{k}` is longer than {MAX_METADATA_VALUE} characters"
            )));
        }
        out.insert(normalize_key(k), text.clone());
    }
    Ok(out)
}

/// OpenRouter's `trace {trace_id, trace_name, span_name, generation_name, parent_span_id, …}`:
/// scalar fields become `trace.<key>` tags; nested objects are not tags.
fn trace_tags(extra: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    let Some(trace) = extra.get("trace").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Some(fields) = trace.as_object() else {
        return Err(bad("`trace` must be an object".into()));
    };
    for (k, v) in fields {
        let Some(text) = scalar_text(v) else { continue };
        let key = format!("trace.{}", normalize_key(k));
        if key.len() > MAX_KEY || k.is_empty() {
            return Err(bad(format!(
                "`trace` keys must be 1-{} characters; `{k}` is not",
                MAX_KEY - "trace.".len()
            )));
        }
        if text.chars().count() > MAX_METADATA_VALUE {
            return Err(bad(format!(
                "`trace.{k}` is longer than {MAX_METADATA_VALUE} characters"
            )));
        }
        out.insert(key, text);
        if out.len() > MAX_TRACE_FIELDS {
            return Err(bad(format!(
                "`trace` has more than {MAX_TRACE_FIELDS} fields"
            )));
        }
    }
    Ok(out)
}

fn bounded_string(
    extra: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match extra.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!(
            "`{field}` must be a string of at most {max} characters"
        ))),
    }
}

/// Collects and validates the tags of a request. The header wins over `metadata`, which wins
/// over `trace`, when they name the same key.
pub fn collect(headers: &HeaderMap, extra: &Map<String, Value>) -> Result<RequestTags, ApiError> {
    let mut tags = trace_tags(extra)?;
    tags.extend(metadata_tags(extra)?);
    tags.extend(header_tags(headers)?);
    let user = bounded_string(extra, "user", MAX_USER)?.unwrap_or_default();
    let session_id = match bounded_string(extra, "session_id", MAX_SESSION)? {
        Some(s) => s,
        // OpenRouter: the body field wins over the header.
        None => match headers.get(&SESSION_HEADER) {
            None => String::new(),
            Some(v) => v
                .to_str()
                .ok()
                .filter(|s| s.chars().count() <= MAX_SESSION)
                .map(str::to_owned)
                .ok_or_else(|| {
                    bad(format!(
                        "x-session-id must be visible ASCII of at most {MAX_SESSION} characters"
                    ))
                })?,
        },
    };
    Ok(RequestTags {
        tags,
        user,
        session_id,
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn extra(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn merges_all_sources_with_header_precedence() {
        let t = collect(
            &headers(&[
                (TAGS_HEADER, "team=search, env=prod"),
                (SESSION_HEADER, "hdr"),
            ]),
            &extra(json!({
                "metadata": {"team": "ads", "customer id": "c-42"},
                "trace": {"trace_id": "t1", "nested": {"a": 1}, "n": 3},
                "user": "u-7",
                "session_id": "s-1",
            })),
        )
        .unwrap();
        let expect: BTreeMap<String, String> = [
            ("team", "search"),
            ("env", "prod"),
            ("customer_id", "c-42"),
            ("trace.trace_id", "t1"),
            ("trace.n", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(t.tags, expect);
        assert_eq!(t.user, "u-7");
        assert_eq!(t.session_id, "s-1", "the body wins over x-session-id");
        let t = collect(&headers(&[(SESSION_HEADER, "hdr")]), &Map::new()).unwrap();
        assert_eq!(t.session_id, "hdr");
    }

    #[test]
    fn rejects_bad_input_with_a_message_naming_it() {
        let cases: Vec<(HeaderMap, Value, &str)> = vec![
            (
                headers(&[(TAGS_HEADER, "novalue")]),
                json!({}),
                "not key=value",
            ),
            (
                headers(&[(TAGS_HEADER, "bad key=1")]),
                json!({}),
                "key `bad key`",
            ),
            (
                headers(&[(TAGS_HEADER, "a=1,a=2")]),
                json!({}),
                "appears twice",
            ),
            (
                headers(&[(TAGS_HEADER, &format!("a={}", "x".repeat(257)))]),
                json!({}),
                "longer than 256",
            ),
            (
                headers(&[(
                    TAGS_HEADER,
                    &(0..33)
                        .map(|i| format!("k{i}=v"))
                        .collect::<Vec<_>>()
                        .join(","),
                )]),
                json!({}),
                "at most 32 tags",
            ),
            (
                HeaderMap::new(),
                json!({"metadata": "x"}),
                "`metadata` must be an object",
            ),
            (
                HeaderMap::new(),
                json!({"metadata": {"a": 1}}),
                "`metadata.a` must be a string",
            ),
            (
                HeaderMap::new(),
                json!({"metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>()}),
                "at most 16",
            ),
            (
                HeaderMap::new(),
                json!({"user": 5}),
                "`user` must be a string",
            ),
            (
                HeaderMap::new(),
                json!({"session_id": "s".repeat(257)}),
                "`session_id` must be a string of at most 256",
            ),
            (
                HeaderMap::new(),
                json!({"trace": [1]}),
                "`trace` must be an object",
            ),
        ];
        for (h, body, needle) in cases {
            let err = collect(&h, &extra(body.clone())).unwrap_err();
            let ApiError::BadRequest(message) = err else {
                panic!("not a 400 for {body}");
            };
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
    }

    #[test]
    fn nothing_sent_means_no_tags() {
        assert_eq!(
            collect(&HeaderMap::new(), &Map::new()).unwrap(),
            RequestTags::default()
        );
    }
}
