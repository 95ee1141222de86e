//! Entry points for the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`); not a stable
//! API. Each takes arbitrary bytes and must never panic, whatever it returns. A short
//! deterministic run of all of them is a unit test here, so plain `cargo test` (stable, no
//! cargo-fuzz) covers the same code paths on every build.

use bytes::Bytes;
use eventsource_stream2::Eventsource;
use futures_util::{FutureExt, StreamExt};
use prost::Message;
use switchyard_proto::pb;

use crate::providers::Wire;

const WIRES: [Wire; 3] = [Wire::OpenAi, Wire::Anthropic, Wire::Gemini];

/// The OpenAI/OpenRouter chat-completions request parser.
pub fn chat_request(body: &[u8]) {
    let _ = crate::chat_request::ChatRequest::parse(body);
}

/// The Anthropic `/messages` request parser.
pub fn messages_request(body: &[u8]) {
    let _ = crate::api::messages_request::parse(body);
}

/// The OpenAI `/responses` request parser.
pub fn responses_request(body: &[u8]) {
    let _ = crate::api::responses_request::parse(body);
}

/// Snapshot validation: protobuf decoding, then `TryFrom<pb::ConfigSnapshot>`.
pub fn snapshot(bytes: &[u8]) {
    if let Ok(message) = pb::ConfigSnapshot::decode(bytes) {
        let _ = crate::Snapshot::try_from(message);
    }
}

/// Every provider's non-streaming response parser.
pub fn provider_response(body: &[u8]) {
    for wire in WIRES {
        let _ = wire.parse_response(body, "fuzz");
    }
}

/// SSE decoding (split at an input-chosen boundary) into every provider's stream parser.
pub fn sse_stream(body: &[u8]) {
    let split = body.first().map_or(0, |b| usize::from(*b)).min(body.len());
    let chunks = [
        Bytes::copy_from_slice(&body[..split]),
        Bytes::copy_from_slice(&body[split..]),
    ];
    let mut events =
        futures_util::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>)).eventsource();
    let mut parsers: Vec<_> = WIRES
        .iter()
        .flat_map(|w| {
            [
                w.stream_parser("fuzz", true),
                w.stream_parser("fuzz", false),
            ]
        })
        .collect();
    // The input stream is always ready, so every poll completes at once. A decoding error
    // ends the stream, as it does in `upstream::decode_sse`.
    while let Some(Some(Ok(event))) = events.next().now_or_never() {
        for parser in &mut parsers {
            let _ = parser.event(&event.event, &event.data);
        }
    }
    for parser in &mut parsers {
        let _ = parser.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut out = seed.to_vec();
        const TOKENS: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b"\"",
            b":",
            b",",
            b"null",
            b"-1",
            b"1e999",
            b"\"\\u0000\"",
            b"\n\n",
            b"data: ",
            b"event: ",
            b"[DONE]",
            b"\xff",
            b"18446744073709551616",
        ];
        for _ in 0..=rng.below(4) {
            let at = rng.below(out.len() + 1);
            match rng.below(3) {
                0 if !out.is_empty() => {
                    let end = (at + rng.below(8)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                1 => {
                    let token = TOKENS[rng.below(TOKENS.len())];
                    out.splice(at..at, token.iter().copied());
                }
                _ => {
                    if let Some(b) = out.get_mut(at) {
                        *b = u8::try_from(rng.next() & 0xff).unwrap_or(0);
                    }
                }
            }
        }
        out
    }

    const CHAT: &[u8] = br#"{"model":"openai/gpt-4o","stream":true,"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto","max_tokens":10,"temperature":0.5,"models":["a/b"],"provider":{"order":["x"],"sort":"price"},"reasoning":{"effort":"high"},"response_format":{"type":"json_object"}}"#;
    const OPENAI_RESPONSE: &[u8] = br#"{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    const ANTHROPIC_RESPONSE: &[u8] = br#"{"id":"msg","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t","name":"f","input":{}},{"type":"thinking","thinking":"x","signature":"s"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2,"cache_read_input_tokens":3,"cache_creation_input_tokens":4}}"#;
    const GEMINI_RESPONSE: &[u8] = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi"},{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2,"thoughtsTokenCount":1}}"#;
    const SSE: &[u8] = b"\x10event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"}]}}]}\n\n: comment\n\ndata: [DONE]\n\n";

    #[test]
    fn entry_points_survive_mutated_inputs() {
        let mut rng = Rng(0x5eed_cafe_f00d_d00d);
        for seed in [CHAT, OPENAI_RESPONSE, ANTHROPIC_RESPONSE, GEMINI_RESPONSE] {
            for _ in 0..400 {
                let input = mutate(seed, &mut rng);
                chat_request(&input);
                messages_request(&input);
                responses_request(&input);
                provider_response(&input);
                sse_stream(&input);
            }
        }
        for _ in 0..1500 {
            sse_stream(&mutate(SSE, &mut rng));
        }
        for _ in 0..1500 {
            let len = rng.below(256);
            let bytes: Vec<u8> = (0..len)
                .map(|_| u8::try_from(rng.next() & 0xff).unwrap_or(0))
                .collect();
            snapshot(&bytes);
            sse_stream(&bytes);
            chat_request(&bytes);
        }
    }

    /// The CI-bounded fuzz run (cargo-fuzz needs nightly): every entry point, fed from a
    /// corpus that keeps growing with mutants of mutants, for `SWITCHYARD_FUZZ_SECONDS`
    /// (default 10) from a seed in `SWITCHYARD_FUZZ_SEED` (default: the clock; printed, so a
    /// failure is reproducible). Any panic fails the test with the input in the message.
    #[test]
    fn time_bounded_fuzz_smoke() {
        let seconds = std::env::var("SWITCHYARD_FUZZ_SECONDS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(10);
        let seed = std::env::var("SWITCHYARD_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            | 1;
        println!("fuzz smoke: seed {seed}, {seconds} s");
        let mut rng = Rng(seed);
        let mut corpus: Vec<Vec<u8>> = [
            CHAT,
            OPENAI_RESPONSE,
            ANTHROPIC_RESPONSE,
            GEMINI_RESPONSE,
            SSE,
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect();
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 6] = [
            ("chat_request", chat_request),
            ("messages_request", messages_request),
            ("responses_request", responses_request),
            ("provider_response", provider_response),
            ("sse_stream", sse_stream),
            ("snapshot", snapshot),
        ];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        let mut runs = [0u64; 6];
        while std::time::Instant::now() < deadline {
            for _ in 0..64 {
                let parent = &corpus[rng.below(corpus.len())];
                let input = mutate(parent, &mut rng);
                let which = rng.below(targets.len());
                let (name, target) = targets[which];
                if std::panic::catch_unwind(|| target(&input)).is_err() {
                    panic!(
                        "{name} panicked on {:?} (seed {seed})",
                        String::from_utf8_lossy(&input)
                    );
                }
                runs[which] += 1;
                // Keep some mutants as parents, so mutations stack up over the run; the
                // corpus stays bounded by replacing at random once it is full.
                if rng.below(8) == 0 {
                    if corpus.len() < 4096 {
                        corpus.push(input);
                    } else {
                        let slot = 5 + rng.below(corpus.len() - 5);
                        corpus[slot] = input;
                    }
                }
            }
        }
        let total: u64 = runs.iter().sum();
        for ((name, _), n) in targets.iter().zip(runs) {
            println!("fuzz smoke: {name}: {n} inputs");
        }
        println!("fuzz smoke: {total} inputs in {seconds} s, no panics");
        assert!(runs.iter().all(|n| *n > 0), "every target ran: {runs:?}");
    }

    #[test]
    fn seeds_parse() {
        assert!(crate::chat_request::ChatRequest::parse(CHAT).is_ok());
        assert!(
            Wire::Anthropic
                .parse_response(ANTHROPIC_RESPONSE, "p")
                .is_ok()
        );
        assert!(Wire::Gemini.parse_response(GEMINI_RESPONSE, "p").is_ok());
    }
}
