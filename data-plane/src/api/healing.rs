//! The `response-healing` plugin: repairs almost-JSON answers to non-streaming
//! `json_object` / `json_schema` requests — markdown fences, prose around the JSON, trailing
//! commas, unquoted keys, unclosed brackets — so clients that parse the content do not fail
//! on a near miss. Answers cut off by `max_tokens` are left alone: closing their brackets
//! would turn a truncated answer into a wrong one.

use serde_json::Value;

/// Whether the request asked for healing and can get it.
pub fn requested(extra: &serde_json::Map<String, Value>, stream: bool) -> bool {
    let json_format = matches!(
        extra
            .get("response_format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str),
        Some("json_object" | "json_schema")
    );
    let plugin = extra
        .get("plugins")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|p| {
            p.get("id").and_then(Value::as_str) == Some("response-healing")
                && p.get("enabled").and_then(Value::as_bool) != Some(false)
        });
    json_format && plugin && !stream
}

/// Heals the first choice's content in place, unless the answer was cut by the length limit.
pub fn heal_completion(completion: &mut Value) {
    let Some(choice) = completion.pointer_mut("/choices/0") else {
        return;
    };
    if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
        return;
    }
    let Some(content) = choice.pointer_mut("/message/content") else {
        return;
    };
    if let Some(healed) = content.as_str().and_then(heal) {
        *content = Value::String(healed);
    }
}

/// The repaired JSON text, or `None` when the text is already JSON or cannot be repaired.
pub fn heal(text: &str) -> Option<String> {
    if serde_json::from_str::<Value>(text).is_ok() {
        return None;
    }
    let candidate = extract(strip_fences(text))?;
    let repaired = close_brackets(&quote_keys(&drop_trailing_commas(candidate)));
    serde_json::from_str::<Value>(&repaired)
        .ok()
        .map(|v| v.to_string())
}

fn strip_fences(text: &str) -> &str {
    let Some(start) = text.find("```") else {
        return text;
    };
    let after = &text[start + 3..];
    // Skip the info string (`json`) up to the end of the line.
    let body = after.find('\n').map_or(after, |n| &after[n + 1..]);
    body.find("```").map_or(body, |end| &body[..end])
}

/// From the first `{` or `[` to the last matching closer, or to the end when unclosed.
fn extract(text: &str) -> Option<&str> {
    let start = text.find(['{', '['])?;
    let closer = if text[start..].starts_with('{') {
        '}'
    } else {
        ']'
    };
    let end = text.rfind(closer).filter(|e| *e > start);
    Some(match end {
        Some(end) => &text[start..=end],
        None => &text[start..],
    })
}

/// Calls `f` for each character with whether it is inside a string literal.
fn scan(text: &str, mut f: impl FnMut(usize, char, bool)) {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        let inside = in_string;
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        f(i, c, inside);
    }
}

fn drop_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut inside = vec![false; chars.len()];
    let mut n = 0;
    scan(text, |_, _, s| {
        inside[n] = s;
        n += 1;
    });
    for (k, (_, c)) in chars.iter().enumerate() {
        if *c == ',' && !inside[k] {
            let next = chars[k + 1..].iter().find(|(_, c)| !c.is_whitespace());
            if matches!(next, Some((_, '}' | ']')) | None) {
                continue;
            }
        }
        out.push(*c);
    }
    out
}

/// `{key: 1}` → `{"key": 1}`, for identifier-like keys outside strings.
fn quote_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut inside = Vec::with_capacity(text.len());
    scan(text, |_, _, s| inside.push(s));
    let chars: Vec<char> = text.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        let after_opener = !inside[k]
            && (c.is_alphabetic() || c == '_')
            && out
                .chars()
                .rev()
                .find(|c: &char| !c.is_whitespace())
                .is_some_and(|p| p == '{' || p == ',');
        if after_opener {
            let start = k;
            while k < chars.len() && (chars[k].is_alphanumeric() || chars[k] == '_') {
                k += 1;
            }
            let rest = chars[k..].iter().find(|c| !c.is_whitespace());
            let word: String = chars[start..k].iter().collect();
            if rest == Some(&':') {
                out.push('"');
                out.push_str(&word);
                out.push('"');
            } else {
                out.push_str(&word);
            }
            continue;
        }
        out.push(c);
        k += 1;
    }
    out
}

/// Closes an unterminated string and every bracket still open at the end.
fn close_brackets(text: &str) -> String {
    let mut stack = Vec::new();
    let mut open_string = false;
    scan(text, |_, c, inside| {
        if inside {
            return;
        }
        match c {
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    });
    scan(text, |_, c, inside| {
        open_string = if c == '"' { !inside } else { open_string };
    });
    let mut out = text.trim_end().to_owned();
    if open_string {
        out.push('"');
    }
    while let Some(closer) = stack.pop() {
        out.push(closer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_the_usual_near_misses() {
        let cases = [
            ("```json\n{\"a\": 1}\n```", r#"{"a":1}"#),
            (
                "Here you go: {\"a\": [1, 2]} hope it helps",
                r#"{"a":[1,2]}"#,
            ),
            ("{\"a\": 1, \"b\": [1, 2,],}", r#"{"a":1,"b":[1,2]}"#),
            ("{a: 1, b_c: \"x: y\"}", r#"{"a":1,"b_c":"x: y"}"#),
            ("{\"a\": {\"b\": [1, 2", r#"{"a":{"b":[1,2]}}"#),
            ("{\"a\": \"unterminated", r#"{"a":"unterminated"}"#),
        ];
        for (input, want) in cases {
            assert_eq!(heal(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(heal(r#"{"ok": true}"#), None, "valid JSON is left alone");
        assert_eq!(heal("no json here"), None);
    }

    #[test]
    fn heals_only_when_asked_and_not_after_truncation() {
        let extra = |v: serde_json::Value| v.as_object().unwrap().clone();
        let asked = extra(
            serde_json::json!({"response_format": {"type": "json_object"}, "plugins": [{"id": "response-healing"}]}),
        );
        assert!(requested(&asked, false));
        assert!(!requested(&asked, true));
        assert!(!requested(
            &extra(serde_json::json!({"plugins": [{"id": "response-healing"}]})),
            false
        ));
        let mut cut = serde_json::json!({"choices": [{"finish_reason": "length", "message": {"content": "{\"a\": [1"}}]});
        heal_completion(&mut cut);
        assert_eq!(cut["choices"][0]["message"]["content"], "{\"a\": [1");
        let mut fenced = serde_json::json!({"choices": [{"finish_reason": "stop", "message": {"content": "```json\n{\"a\": 1,}\n```"}}]});
        heal_completion(&mut fenced);
        assert_eq!(fenced["choices"][0]["message"]["content"], r#"{"a":1}"#);
    }
}
