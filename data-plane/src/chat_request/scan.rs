//! A well-formed chat request read from the members `json_scan` locates, each value handed
//! to serde_json on its own. The conversation's text, most of a long request, is passed over
//! by the scanner's vector search and its plain strings copied as they are, where serde_json
//! reads it a byte at a time; the scan also gives the written form of `messages` for free.
//! Anything unusual (escaped or repeated member names, a value serde_json would refuse, a
//! message that is not an object) returns `None`, and `ChatRequest::parse_bytes` reads the
//! body with serde_json instead: what this accepts, serde_json's derived reader accepts with
//! the same result (a differential test below holds the two together).

use std::ops::Range;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{ChatRequest, Message, Messages};
use crate::providers::json_scan::{self, Member, Scanner};

pub(super) fn read(body: &Bytes) -> Option<ChatRequest> {
    let mut request = ChatRequest {
        model: None,
        messages: None,
        prompt: None,
        stream: false,
        max_tokens: None,
        max_completion_tokens: None,
        extra: Map::new(),
        auto_cache_breakpoints: false,
    };
    let mut names: Vec<Range<usize>> = Vec::with_capacity(8);
    let mut scanner = Scanner::from_bytes(body);
    scanner.object(0, |s, key| {
        let name = &body[key.clone()];
        if names.iter().any(|seen| body[seen.clone()] == *name) {
            return None;
        }
        names.push(key);
        // The conversation is read as it is scanned, in one pass.
        if name == b"messages" && s.peek() == Some(b'[') {
            request.messages = Some(messages(body, s)?);
            return Some(());
        }
        let value = &body[s.value(1)?];
        match name {
            b"model" => request.model = typed(value)?,
            b"messages" if value == b"null" => request.messages = None,
            b"prompt" => request.prompt = typed(value)?,
            b"stream" => request.stream = typed(value)?,
            b"max_tokens" => request.max_tokens = typed(value)?,
            b"max_completion_tokens" => request.max_completion_tokens = typed(value)?,
            // Anything else as `messages` is serde_json's to refuse, in its words.
            b"messages" => return None,
            name => {
                let name = std::str::from_utf8(name).ok()?;
                request.extra.insert(name.to_owned(), typed(value)?);
            }
        }
        Some(())
    })?;
    scanner.at_end().then_some(request)
}

/// The `messages` array at the scanner, each message read from its located members.
fn messages(body: &Bytes, scanner: &mut Scanner<'_>) -> Option<Messages> {
    let mut list = Vec::new();
    // Depth 1: the array is a member of the body's object (the nesting limit is
    // serde_json's, counted from the body).
    let range = scanner.array(1, |s| {
        let members = json_scan::members(s, 2)?;
        list.push(message(body, &members)?);
        Some(())
    })?;
    Some(Messages {
        list,
        written: Some(body.slice(range)),
    })
}

fn message(text: &[u8], members: &[Member]) -> Option<Message> {
    let (mut role, mut content) = (None, Value::Null);
    let mut extra = Map::new();
    for Member { key, value } in members {
        let value = &text[value.clone()];
        match &text[key.clone()] {
            b"role" => role = Some(typed::<String>(value)?),
            b"content" => content = plain_string(value).map_or_else(|| typed(value), Some)?,
            name => {
                let name = std::str::from_utf8(name).ok()?;
                extra.insert(name.to_owned(), typed(value)?);
            }
        }
    }
    Some(Message {
        role: role?,
        content,
        extra,
    })
}

/// A string value without escapes, taken as the text between its quotes (the scanner has
/// checked it holds no control characters; UTF-8 is checked here).
fn plain_string(value: &[u8]) -> Option<Value> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if memchr::memchr(b'\\', inner).is_some() {
        return None;
    }
    let text = std::str::from_utf8(inner).ok()?;
    Some(Value::String(text.to_owned()))
}

fn typed<T: DeserializeOwned>(value: &[u8]) -> Option<T> {
    serde_json::from_slice(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Bodies shaped like chat requests, right and wrong in the ways clients get them wrong.
    fn generate(rng: &mut Rng) -> Vec<u8> {
        const STRINGS: [&str; 7] = [
            r#""hi""#,
            r#""the quick brown fox jumps over the lazy dog, twice over and more""#,
            r#""caf\u00e9 \"quoted\" \\ line\nbreak""#,
            r#""déjà vu""#,
            r#""""#,
            "null",
            "7",
        ];
        const CONTENTS: [&str; 5] = [
            r#"[{"type":"text","text":"part"},{"type":"image_url","image_url":{"url":"data:,"}}]"#,
            r#"{"not":"a list"}"#,
            "true",
            r#""plain content""#,
            r#""escaped \t content""#,
        ];
        const ROLES: [&str; 5] = [r#""user""#, r#""system""#, r#""assistant""#, "null", "3"];
        const OTHERS: [(&str, &str); 9] = [
            (r#""temperature""#, "0.5"),
            (
                r#""tools""#,
                r#"[{"type":"function","function":{"name":"f"}}]"#,
            ),
            (r#""stream""#, "true"),
            (r#""stream""#, "null"),
            (r#""max_tokens""#, "32"),
            (r#""max_tokens""#, "1e2"),
            (r#""max_completion_tokens""#, "-1"),
            (r#""prompt""#, r#""legacy""#),
            (r#""m\u006fdel""#, r#""escaped/name""#),
        ];
        let pick = |rng: &mut Rng, from: &[&'static str]| from[rng.below(from.len())];
        let mut members = Vec::new();
        if rng.below(5) > 0 {
            members.push(format!(r#""model":{}"#, pick(rng, &STRINGS)));
        }
        match rng.below(6) {
            0 => {}
            1 => members.push(r#""messages":null"#.to_owned()),
            2 => members.push(r#""messages":"not a list""#.to_owned()),
            _ => {
                let mut list = Vec::new();
                for _ in 0..rng.below(4) {
                    let mut fields = Vec::new();
                    if rng.below(6) > 0 {
                        fields.push(format!(r#""role":{}"#, pick(rng, &ROLES)));
                    }
                    match rng.below(4) {
                        0 => {}
                        1 => fields.push(format!(r#""content":{}"#, pick(rng, &STRINGS))),
                        _ => fields.push(format!(r#""content":{}"#, pick(rng, &CONTENTS))),
                    }
                    for _ in 0..rng.below(3) {
                        let name = [
                            "\"name\"",
                            "\"tool_call_id\"",
                            "\"role\"",
                            "\"c\\u006ftent\"",
                        ][rng.below(4)];
                        fields.push(format!("{name}:{}", pick(rng, &STRINGS)));
                    }
                    // Members in any order, with or without spaces.
                    let sep = [",", " , ", ",\n"][rng.below(3)];
                    let element = if rng.below(12) == 0 {
                        pick(rng, &STRINGS).to_owned()
                    } else {
                        format!("{{{}}}", fields.join(sep))
                    };
                    list.push(element);
                }
                members.push(format!(r#""messages": [ {} ]"#, list.join(",")));
            }
        }
        for _ in 0..rng.below(4) {
            let (name, value) = OTHERS[rng.below(OTHERS.len())];
            members.push(format!("{name}:{value}"));
        }
        for i in (1..members.len()).rev() {
            members.swap(i, rng.below(i + 1));
        }
        let body = format!("{{{}}}", members.join(","));
        match rng.below(10) {
            // Cut anywhere, inside a character too.
            0 => body.as_bytes()[..rng.below(body.len())].to_vec(),
            1 => format!("{body} trailing").into_bytes(),
            _ => body.into_bytes(),
        }
    }

    #[test]
    fn reads_what_serde_json_reads_and_leaves_the_rest_to_it() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let (mut read_here, mut left) = (0, 0);
        for _ in 0..20_000 {
            let bytes = Bytes::from(generate(&mut rng));
            let body = String::from_utf8_lossy(&bytes);
            let derived = serde_json::from_slice::<ChatRequest>(&bytes);
            let Some(ours) = read(&bytes) else {
                left += 1;
                continue;
            };
            read_here += 1;
            let derived =
                derived.unwrap_or_else(|e| panic!("{body}: read here, refused by serde: {e}"));
            assert_eq!(ours.model, derived.model, "{body}");
            assert_eq!(ours.prompt, derived.prompt, "{body}");
            assert_eq!(ours.stream, derived.stream, "{body}");
            assert_eq!(ours.max_tokens, derived.max_tokens, "{body}");
            assert_eq!(
                ours.max_completion_tokens, derived.max_completion_tokens,
                "{body}"
            );
            assert_eq!(ours.extra, derived.extra, "{body}");
            match (&ours.messages, &derived.messages) {
                (None, None) => {}
                (Some(ours), Some(derived)) => {
                    assert_eq!(ours.len(), derived.len(), "{body}");
                    for (a, b) in ours.iter().zip(derived.iter()) {
                        assert_eq!(
                            (&a.role, &a.content, &a.extra),
                            (&b.role, &b.content, &b.extra)
                        );
                    }
                    // The written form is the array's text in the body.
                    let written =
                        String::from_utf8(ours.written.clone().unwrap().to_vec()).unwrap();
                    assert_eq!(
                        serde_json::from_str::<Value>(&written).unwrap(),
                        serde_json::from_str::<Value>(&body).unwrap()["messages"],
                        "{body}"
                    );
                }
                _ => panic!("{body}: messages differ"),
            }
        }
        // Both sides are exercised.
        assert!(
            read_here > 2_000 && left > 2_000,
            "{read_here} read, {left} left"
        );
    }
}
