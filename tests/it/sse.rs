//! A small SSE reader for assertions: splits a body into `data:` payloads and comments.

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data(String),
    Comment(String),
}

pub fn frames(body: &str) -> Vec<Frame> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let block = block.trim_start_matches('\n');
            if let Some(c) = block.strip_prefix(':') {
                Frame::Comment(c.trim().to_owned())
            } else {
                Frame::Data(block.strip_prefix("data: ").unwrap_or(block).to_owned())
            }
        })
        .collect()
}

/// The JSON chunks of a chat stream, and whether it ended with `[DONE]`.
pub fn chunks(body: &str) -> (Vec<serde_json::Value>, bool) {
    let mut done = false;
    let mut out = Vec::new();
    for frame in frames(body) {
        match frame {
            Frame::Data(d) if d == "[DONE]" => done = true,
            Frame::Data(d) => out.push(
                serde_json::from_str(&d).unwrap_or_else(|e| panic!("chunk is not JSON ({e}): {d}")),
            ),
            Frame::Comment(_) => {}
        }
    }
    (out, done)
}
