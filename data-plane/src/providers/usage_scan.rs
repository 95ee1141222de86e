//! An OpenAI-format `usage` object's counts, read while the answer's scan passes over it:
//! parsing the object again afterwards (a serde struct skipping the members it does not
//! keep) cost ~4 k instructions an answer, a quarter of reading the whole answer. Anything
//! unusual — a count that is not a non-negative integer, a member given twice, details
//! that are neither an object nor `null` — is left to the tree path, whose lenient rules
//! (`openai::parse_usage`) apply; on everything else the two agree (test below).

use std::ops::Range;

use switchyard_proto::UsageDims;

use super::json_scan::Scanner;

/// The counts read, each at most once.
#[derive(Default)]
struct Counts {
    prompt: Option<u64>,
    completion: Option<u64>,
    cached: Option<u64>,
    writes: Option<u64>,
    writes_1h: Option<u64>,
    reasoning: Option<u64>,
}

impl Counts {
    fn dims(&self) -> UsageDims {
        let writes = self.writes.unwrap_or(0);
        let writes_1h = self.writes_1h.unwrap_or(0).min(writes);
        UsageDims {
            input_tokens: self.prompt.unwrap_or(0),
            output_tokens: self.completion.unwrap_or(0),
            cache_read_tokens: self.cached.unwrap_or(0),
            cache_write_5m_tokens: writes - writes_1h,
            cache_write_1h_tokens: writes_1h,
            reasoning_tokens: self.reasoning.unwrap_or(0),
        }
    }
}

/// Skips the object at the scanner, which starts with `{`, reading its counts on the way.
/// `None` when the text breaks the grammar; otherwise the object's range, with its counts
/// unless it is unusual (see the module docs).
pub(super) fn scan(
    s: &mut Scanner<'_>,
    depth: usize,
    text: &str,
) -> Option<(Range<usize>, Option<UsageDims>)> {
    let bytes = text.as_bytes();
    let mut counts = Counts::default();
    let mut usual = true;
    let (mut prompt_details, mut completion_details) = (false, false);
    let range = s.object(depth, |s, key| {
        let slot = match &bytes[key] {
            b"prompt_tokens" => &mut counts.prompt,
            b"completion_tokens" => &mut counts.completion,
            b"prompt_tokens_details" => {
                usual &= !std::mem::replace(&mut prompt_details, true);
                let mut slots = [
                    (&b"cached_tokens"[..], &mut counts.cached),
                    (b"cache_write_tokens", &mut counts.writes),
                    (b"cache_write_1h_tokens", &mut counts.writes_1h),
                ];
                return details(s, depth + 1, bytes, &mut slots, &mut usual);
            }
            b"completion_tokens_details" => {
                usual &= !std::mem::replace(&mut completion_details, true);
                let mut slots = [(&b"reasoning_tokens"[..], &mut counts.reasoning)];
                return details(s, depth + 1, bytes, &mut slots, &mut usual);
            }
            _ => return s.value(depth + 1).map(drop),
        };
        let value = s.value(depth + 1)?;
        usual &= set(slot, &bytes[value]);
        Some(())
    })?;
    Some((range, usual.then(|| counts.dims())))
}

/// A details member: `null`, or an object whose `slots` members are counts.
fn details(
    s: &mut Scanner<'_>,
    depth: usize,
    bytes: &[u8],
    slots: &mut [(&[u8], &mut Option<u64>)],
    usual: &mut bool,
) -> Option<()> {
    if s.peek()? != b'{' {
        let value = s.value(depth)?;
        *usual &= &bytes[value] == b"null";
        return Some(());
    }
    s.object(depth, |s, key| {
        let value = s.value(depth + 1)?;
        if let Some((_, slot)) = slots
            .iter_mut()
            .find(|(name, _)| *name == &bytes[key.clone()])
        {
            *usual &= set(slot, &bytes[value]);
        }
        Some(())
    })
    .map(drop)
}

/// Fills an empty slot with a non-negative integer; `false` for anything else.
fn set(slot: &mut Option<u64>, value: &[u8]) -> bool {
    // JSON has no `+` or leading zeros, so `parse` takes exactly the non-negative integers.
    let count = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
    match (&slot, count) {
        (None, Some(count)) => {
            *slot = Some(count);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::providers::openai;
    use crate::test_rng::Rng;

    /// Mostly counts this reads; one in `odd` anything else a count can be.
    fn count(rng: &mut Rng, odd: usize) -> &'static str {
        const COUNTS: [&str; 9] = [
            "0",
            "7",
            "18446744073709551615",
            "18446744073709551616",
            "2.5",
            "-1",
            "null",
            r#""3""#,
            "1e2",
        ];
        let kinds = if rng.below(odd) == 0 { 9 } else { 3 };
        COUNTS[rng.below(kinds)]
    }

    /// Usage objects of every shape the members allow, some given twice: where this reads
    /// the counts, the tree path reads the same.
    #[test]
    fn counts_read_as_the_tree_path_reads_them() {
        let mut rng = Rng(0x0005_a6e5_eed0_0001);
        let mut usual = 0;
        for _ in 0..5_000 {
            let mut members = Vec::new();
            for key in [
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "prompt_tokens_details",
                "completion_tokens_details",
                "other",
            ] {
                for _ in 0..[1, 1, 1, 1, 1, 2][rng.below(6)] {
                    if rng.below(5) == 0 {
                        continue;
                    }
                    let value = if !key.ends_with("details") && key != "other" {
                        count(&mut rng, 3).to_owned()
                    } else {
                        match rng.below(4) {
                            0 => "null".to_owned(),
                            1 => "[]".to_owned(),
                            _ => {
                                let mut inner = Vec::new();
                                for k in [
                                    "cached_tokens",
                                    "cache_write_tokens",
                                    "cache_write_1h_tokens",
                                    "reasoning_tokens",
                                    "audio_tokens",
                                    "cached_tokens",
                                ] {
                                    if rng.below(2) == 0 {
                                        inner.push(format!(r#""{k}":{}"#, count(&mut rng, 4)));
                                    }
                                }
                                format!("{{{}}}", inner.join(","))
                            }
                        }
                    };
                    members.push(format!(r#""{key}":{value}"#));
                }
            }
            let raw = format!("{{{}}}", members.join(","));
            let mut scanner = Scanner::new(&raw);
            let (range, dims) = scan(&mut scanner, 0, &raw).unwrap();
            assert_eq!(range, 0..raw.len());
            if let Some(dims) = dims {
                let tree: Value = serde_json::from_str(&raw).unwrap();
                assert_eq!(Some(dims), openai::parse_usage(&tree), "{raw}");
                usual += 1;
            }
        }
        assert!(usual > 500, "{usual} read while scanning");
    }

    #[test]
    fn unusual_objects_are_left_to_the_tree_path() {
        for raw in [
            r#"{"prompt_tokens":1,"prompt_tokens":2}"#,
            r#"{"prompt_tokens":2.5}"#,
            r#"{"completion_tokens":null}"#,
            r#"{"prompt_tokens_details":[]}"#,
            r#"{"prompt_tokens_details":{},"prompt_tokens_details":null}"#,
            r#"{"completion_tokens_details":{"reasoning_tokens":"3"}}"#,
        ] {
            let (_, dims) = scan(&mut Scanner::new(raw), 0, raw).unwrap();
            assert_eq!(dims, None, "{raw}");
        }
        let raw = r#"{"prompt_tokens":3,"prompt_tokens_details":null,"x":[1,{"y":2}]}"#;
        let (_, dims) = scan(&mut Scanner::new(raw), 0, raw).unwrap();
        assert_eq!(dims.map(|d| d.input_tokens), Some(3));
        assert!(scan(&mut Scanner::new(r#"{"a":}"#), 0, r#"{"a":}"#).is_none());
    }
}
