//! The dynamic-prompt warning. Provider prompt caches match prefixes, so a system prompt
//! that changes between turns of one conversation (a timestamp, a request id) silently
//! turns every turn into a full-price cache write. The gateway keeps a small, bounded
//! fingerprint — the first few KiB of the system prompt — per conversation and, when it
//! changes, names what changed in `X-Switchyard-Cache-Warning`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;

/// Characters of a system prompt remembered per conversation.
const FINGERPRINT_CHARS: usize = 4096;
/// Bytes of fingerprints a node keeps (least recently used are forgotten first).
const BUDGET_BYTES: u64 = 32 * 1024 * 1024;
/// A conversation idle this long is forgotten (the longest provider cache TTL).
const IDLE: Duration = Duration::from_secs(3600);
/// Characters of changed text quoted in the warning.
const QUOTE_CHARS: usize = 48;

static TIMESTAMP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?|\b\d{1,2}:\d{2}:\d{2}\b").ok()
});
static UUID: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").ok()
});
static LONG_NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\d{6,}").ok());

pub struct PromptWatch {
    seen: moka::future::Cache<String, Arc<str>>,
}

impl Default for PromptWatch {
    fn default() -> Self {
        Self {
            seen: moka::future::Cache::builder()
                .max_capacity(BUDGET_BYTES)
                .weigher(|k: &String, v: &Arc<str>| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl PromptWatch {
    /// Remembers the conversation's system prompt; returns a warning when it differs from
    /// the one seen on the conversation's previous turn.
    pub async fn observe(&self, conversation: &str, system_prompt: &str) -> Option<String> {
        let now = match system_prompt.char_indices().nth(FINGERPRINT_CHARS) {
            Some((end, _)) => &system_prompt[..end],
            None => system_prompt,
        };
        let before = self.seen.get(conversation).await;
        // The get refreshed the idle timer; an unchanged prompt needs no write, which is
        // every turn of a well-behaved conversation (and every request of a benchmark).
        if before.as_deref() == Some(now) {
            return None;
        }
        self.seen
            .insert(conversation.to_owned(), Arc::from(now))
            .await;
        let before = before?;
        Some(describe_change(&before, now))
    }
}

/// "system prompt changed at char 112: timestamp-like text '…' -> '…'".
pub fn describe_change(before: &str, after: &str) -> String {
    let a: Vec<char> = before.chars().collect();
    let b: Vec<char> = after.chars().collect();
    let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (old, new) = (token_around(&a, at), token_around(&b, at));
    let kind = classify(&old).or_else(|| classify(&new)).unwrap_or("text");
    format!(
        "system prompt changed at char {at}: {kind} '{}' -> '{}'; dynamic content in the system prompt defeats provider prompt caching",
        quote(&old),
        quote(&new)
    )
}

/// The run of id-like characters (letters, digits, `-:._+`) around `at`.
fn token_around(chars: &[char], at: usize) -> String {
    let is_token = |c: &char| c.is_alphanumeric() || "-:._+".contains(*c);
    let at = at.min(chars.len());
    let start = chars[..at]
        .iter()
        .rposition(|c| !is_token(c))
        .map_or(0, |i| i + 1);
    let end = chars[at..]
        .iter()
        .position(|c| !is_token(c))
        .map_or(chars.len(), |i| at + i);
    let token: String = chars[start..end].iter().collect();
    // Sentence punctuation next to a value is not part of it.
    token.trim_matches(|c: char| ".:-_+".contains(c)).to_owned()
}

fn classify(token: &str) -> Option<&'static str> {
    let found = |re: &LazyLock<Option<Regex>>| re.as_ref().is_some_and(|r| r.is_match(token));
    if found(&UUID) {
        Some("UUID-like text")
    } else if found(&TIMESTAMP) {
        Some("timestamp-like text")
    } else if found(&LONG_NUMBER) {
        Some("long number")
    } else {
        None
    }
}

/// Header-safe (visible ASCII), short quotation.
fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(QUOTE_CHARS)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .filter(|c| *c != '\'')
        .collect();
    if text.chars().count() > QUOTE_CHARS {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_timestamps_uuids_and_numbers() {
        let w = describe_change(
            "You are helpful. Now: 2026-12-06T07:01:02Z. Be brief.",
            "You are helpful. Now: 2026-12-06T07:01:09Z. Be brief.",
        );
        assert!(w.starts_with("system prompt changed at char 40: timestamp-like text '2026-12-06T07:01:02Z' -> '2026-12-06T07:01:09Z'"), "{w}");
        let w = describe_change(
            "trace 0191e4a2-7f3b-7c11-9a2e-5b1c2d3e4f50 ok",
            "trace 0191e4a2-7f3b-7c11-9a2e-5b1c2d3e4f51 ok",
        );
        assert!(w.contains("UUID-like text"), "{w}");
        let w = describe_change("req 12345678 go", "req 12345699 go");
        assert!(w.contains("long number '12345678' -> '12345699'"), "{w}");
        let w = describe_change("Be brief.", "Be verbose.");
        assert!(w.contains("text 'brief' -> 'verbose'"), "{w}");
    }

    #[tokio::test]
    async fn warns_only_when_the_prompt_changes_within_a_conversation() {
        let watch = PromptWatch::default();
        assert_eq!(watch.observe("c1", "time 10:00:00").await, None);
        assert_eq!(watch.observe("c1", "time 10:00:00").await, None);
        assert_eq!(watch.observe("c2", "other").await, None);
        let w = watch.observe("c1", "time 10:00:05").await.unwrap();
        assert!(
            w.contains("timestamp-like text '10:00:00' -> '10:00:05'"),
            "{w}"
        );
        let value = axum::http::HeaderValue::from_str(&w);
        assert!(value.is_ok(), "the warning must be a valid header value");
    }
}
