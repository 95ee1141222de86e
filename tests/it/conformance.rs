//! The conformance matrix: every ingress skin (OpenAI chat, Anthropic messages, OpenAI
//! responses) against every egress format (OpenAI-compatible, Anthropic, Gemini, and the
//! built-in echo where it means something), for plain text, streaming, a tool-call round
//! trip, image input, a reasoning round trip, usage against the ledger, and upstream errors.
//!
//! Each test walks its slice of the matrix and names the cell in every assertion, so a
//! failure says which skin × format broke. Requests and answers are built and read in each
//! skin's own shape, as its SDKs would.

use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_anthropic::MockAnthropic;
use switchyard_e2e::mock_gemini::MockGemini;
use switchyard_e2e::mock_openai::{MockConfig, MockOpenAi};

use crate::sse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skin {
    Chat,
    Messages,
    Responses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Egress {
    OpenAi,
    Anthropic,
    Gemini,
    Echo,
}

const SKINS: [Skin; 3] = [Skin::Chat, Skin::Messages, Skin::Responses];
const FORMATS: [Egress; 4] = [
    Egress::OpenAi,
    Egress::Anthropic,
    Egress::Gemini,
    Egress::Echo,
];
/// The formats whose mocks can call tools and think.
const SMART: [Egress; 2] = [Egress::Anthropic, Egress::Gemini];

/// Per token: $1/M in, $2/M out, $0.10/M cache read, $1.25/M cache write, $2/M 1h write.
const PRICING: &str = r#"{"prompt": "0.000001", "completion": "0.000002", "input_cache_read": "0.0000001", "input_cache_write": "0.00000125", "input_cache_write_1h": "0.000002"}"#;

const WEATHER_SCHEMA: &str =
    r#"{"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}"#;

struct Bench {
    system: System,
    openai: MockOpenAi,
    anthropic: MockAnthropic,
    gemini: MockGemini,
    slugs: [(Egress, String); 3],
}

impl Bench {
    async fn start() -> Bench {
        let config = MockConfig {
            api_key: Some("sk-upstream".into()),
            ..MockConfig::default()
        };
        let openai = MockOpenAi::start(config.clone()).await.unwrap();
        let anthropic = MockAnthropic::start(config.clone()).await.unwrap();
        let gemini = MockGemini::start(config).await.unwrap();
        let system = System::start().await.unwrap();
        let mut slugs = Vec::new();
        for (egress, kind, base) in [
            (Egress::OpenAi, "openai_compatible", openai.base_url()),
            (Egress::Anthropic, "anthropic", anthropic.base_url()),
            (Egress::Gemini, "gemini", gemini.base_url()),
        ] {
            let slug = format!("conf-{kind}").replace('_', "-");
            let created = system
                .post(
                    "/providers",
                    system.management_key(),
                    &json!({"slug": slug, "kind": kind, "base_url": base, "api_key": "sk-upstream"}),
                )
                .await
                .unwrap();
            assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
            slugs.push((egress, slug));
        }
        let slugs: [(Egress, String); 3] = slugs.try_into().unwrap();
        Bench {
            system,
            openai,
            anthropic,
            gemini,
            slugs,
        }
    }

    /// Registers `conf/<format>-<behaviour>` served by that format's mock with upstream
    /// model `<behaviour>` (the mocks switch on it), or the echo model for `Echo`.
    async fn model(&self, egress: Egress, behaviour: &str) -> String {
        if egress == Egress::Echo {
            return "switchyard/echo".into();
        }
        let slug = &self.slugs.iter().find(|(e, _)| *e == egress).unwrap().1;
        let id = format!("conf/{egress:?}-{behaviour}").to_lowercase();
        let pricing: Value = serde_json::from_str(PRICING).unwrap();
        let created = self
            .system
            .post(
                "/models",
                self.system.management_key(),
                &json!({"id": id, "context_length": 128000, "endpoints": [{
                    "provider": slug, "model": behaviour, "pricing": pricing,
                }]}),
            )
            .await
            .unwrap();
        let status = created.status();
        let text = created.text().await.unwrap();
        assert!(
            status == 201 || text.contains("exists"),
            "creating {id}: {text}"
        );
        let version = self.system.store.config_version().await.unwrap();
        self.system.gateway.wait_for_config(version).await.unwrap();
        id
    }

    /// Sends a request in the skin's own shape, with the skin's own auth header.
    async fn send(&self, skin: Skin, body: &Value) -> Answer {
        let base = format!("http://{}", self.system.gateway.addr);
        let http = &self.system.http;
        let key = self.system.api_key();
        let request = match skin {
            Skin::Chat => http
                .post(format!("{base}/api/v1/chat/completions"))
                .bearer_auth(key),
            Skin::Messages => http
                .post(format!("{base}/api/v1/messages"))
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
            Skin::Responses => http
                .post(format!("{base}/api/v1/responses"))
                .bearer_auth(key),
        };
        let response = request.json(body).send().await.unwrap();
        let status = response.status().as_u16();
        let generation = response
            .headers()
            .get("x-generation-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let streamed = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        let raw = response.text().await.unwrap();
        let body = if streamed {
            Value::Null
        } else {
            serde_json::from_str(&raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"))
        };
        Answer {
            skin,
            status,
            generation,
            streamed,
            body,
            raw,
        }
    }

    async fn ledger(&self, generation: &str) -> Value {
        let row: Value = self
            .system
            .get(
                &format!("/generation?id={generation}"),
                self.system.api_key(),
            )
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        row["data"].clone()
    }
}

/// A one-turn request in the skin's shape; `content` is a string or the skin's parts.
fn ask(skin: Skin, model: &str, content: Value, stream: bool) -> Value {
    let turn = json!([{"role": "user", "content": content}]);
    match skin {
        Skin::Chat => json!({"model": model, "stream": stream, "messages": turn}),
        Skin::Messages => {
            json!({"model": model, "stream": stream, "max_tokens": 256, "messages": turn})
        }
        Skin::Responses => json!({"model": model, "stream": stream, "input": turn}),
    }
}

/// The conversation of a request in the skin's shape.
fn turns(skin: Skin, body: &mut Value) -> &mut Vec<Value> {
    let key = if skin == Skin::Responses {
        "input"
    } else {
        "messages"
    };
    body[key].as_array_mut().unwrap()
}

/// The weather tool in the skin's shape.
fn weather_tool(skin: Skin) -> Value {
    let schema: Value = serde_json::from_str(WEATHER_SCHEMA).unwrap();
    match skin {
        Skin::Chat => {
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": schema}}])
        }
        Skin::Messages => {
            json!([{"name": "get_weather", "description": "Weather in a city", "input_schema": schema}])
        }
        Skin::Responses => {
            json!([{"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": schema}])
        }
    }
}

/// Appends the assistant's tool call — with the reasoning state the client kept, in the
/// skin's own shape — and the tool's result.
fn push_tool_turn(
    skin: Skin,
    body: &mut Value,
    call: &(String, String, Value),
    reasoning: Vec<Value>,
    result: &str,
) {
    let (id, name, args) = call;
    let turns = turns(skin, body);
    match skin {
        Skin::Chat => {
            let mut assistant = json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}]});
            if !reasoning.is_empty() {
                assistant["reasoning_details"] = Value::Array(reasoning);
            }
            turns.push(assistant);
            turns.push(json!({"role": "tool", "tool_call_id": id, "content": result}));
        }
        Skin::Messages => {
            let mut blocks = reasoning;
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
            turns.push(json!({"role": "assistant", "content": blocks}));
            turns.push(json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id, "content": result}]}));
        }
        Skin::Responses => {
            turns.extend(reasoning);
            turns.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": args.to_string()}));
            turns.push(json!({"type": "function_call_output", "call_id": id, "output": result}));
        }
    }
}

struct Answer {
    skin: Skin,
    status: u16,
    generation: Option<String>,
    streamed: bool,
    body: Value,
    raw: String,
}

impl Answer {
    /// SSE events with names, as `(name, data)`.
    fn events(&self) -> Vec<(String, Value)> {
        self.raw
            .split("\n\n")
            .filter(|b| !b.trim().is_empty() && !b.trim_start().starts_with(':'))
            .map(|block| {
                let mut name = String::new();
                let mut data = Value::Null;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(d).unwrap();
                    }
                }
                (name, data)
            })
            .collect()
    }

    fn chunks(&self) -> (Vec<Value>, bool) {
        sse::chunks(&self.raw)
    }

    /// The final `response` object of a Responses answer, however delivered.
    fn response(&self) -> Value {
        if !self.streamed {
            return self.body.clone();
        }
        let terminal: Vec<Value> = self
            .events()
            .into_iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "response.completed" | "response.incomplete" | "response.failed"
                )
            })
            .map(|(_, d)| d["response"].clone())
            .collect();
        assert_eq!(
            terminal.len(),
            1,
            "exactly one terminal event: {}",
            self.raw
        );
        terminal[0].clone()
    }

    /// The answer's text, however it was delivered.
    fn text(&self) -> String {
        match (self.skin, self.streamed) {
            (Skin::Chat, false) => self.body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            (Skin::Chat, true) => self
                .chunks()
                .0
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                })
                .collect(),
            (Skin::Messages, false) => self.body["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "text")
                .map(|b| b["text"].as_str().unwrap().to_owned())
                .collect(),
            (Skin::Messages, true) => self
                .events()
                .iter()
                .filter(|(_, d)| d.pointer("/delta/type") == Some(&json!("text_delta")))
                .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_owned())
                .collect(),
            (Skin::Responses, false) => self.body["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "message")
                .flat_map(|i| i["content"].as_array().unwrap().clone())
                .map(|c| c["text"].as_str().unwrap().to_owned())
                .collect(),
            (Skin::Responses, true) => self
                .events()
                .iter()
                .filter(|(n, _)| n == "response.output_text.delta")
                .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
                .collect(),
        }
    }

    /// Chat `finish_reason`, Anthropic `stop_reason`, or Responses `status`.
    fn finish(&self) -> String {
        let v = match (self.skin, self.streamed) {
            (Skin::Chat, false) => self.body["choices"][0]["finish_reason"].clone(),
            (Skin::Chat, true) => self
                .chunks()
                .0
                .iter()
                .filter_map(|c| c.pointer("/choices/0/finish_reason"))
                .find(|f| !f.is_null())
                .cloned()
                .unwrap_or(Value::Null),
            (Skin::Messages, false) => self.body["stop_reason"].clone(),
            (Skin::Messages, true) => self
                .events()
                .iter()
                .find(|(n, _)| n == "message_delta")
                .map(|(_, d)| d["delta"]["stop_reason"].clone())
                .unwrap_or(Value::Null),
            (Skin::Responses, _) => self.response()["status"].clone(),
        };
        v.as_str().unwrap_or_default().to_owned()
    }

    /// `(prompt tokens incl. cache, completion tokens, cache read, cost)` as the client saw them.
    fn usage(&self) -> (u64, u64, u64, f64) {
        let usage = match (self.skin, self.streamed) {
            (Skin::Chat, false) | (Skin::Messages, false) => self.body["usage"].clone(),
            (Skin::Chat, true) => {
                let (chunks, _) = self.chunks();
                let with_usage: Vec<&Value> =
                    chunks.iter().filter(|c| c.get("usage").is_some()).collect();
                assert_eq!(with_usage.len(), 1, "exactly one usage chunk: {}", self.raw);
                with_usage[0]["usage"].clone()
            }
            (Skin::Messages, true) => {
                let deltas: Vec<Value> = self
                    .events()
                    .into_iter()
                    .filter(|(n, _)| n == "message_delta")
                    .map(|(_, d)| d)
                    .collect();
                assert_eq!(deltas.len(), 1, "exactly one message_delta: {}", self.raw);
                deltas[0]["usage"].clone()
            }
            (Skin::Responses, _) => self.response()["usage"].clone(),
        };
        let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        let cost = usage["cost"].as_f64().unwrap();
        match self.skin {
            Skin::Chat => (
                n("/prompt_tokens"),
                n("/completion_tokens"),
                n("/prompt_tokens_details/cached_tokens"),
                cost,
            ),
            Skin::Messages => (
                n("/input_tokens")
                    + n("/cache_read_input_tokens")
                    + n("/cache_creation_input_tokens"),
                n("/output_tokens"),
                n("/cache_read_input_tokens"),
                cost,
            ),
            Skin::Responses => (
                n("/input_tokens"),
                n("/output_tokens"),
                n("/input_tokens_details/cached_tokens"),
                cost,
            ),
        }
    }

    /// Checks the envelope every successful answer of the skin has.
    fn assert_shape(&self, cell: &str) {
        assert_eq!(self.status, 200, "{cell}: {}", self.raw);
        let generation = self.generation.as_deref().unwrap();
        assert!(generation.starts_with("gen-"), "{cell}");
        match (self.skin, self.streamed) {
            (Skin::Chat, false) => {
                assert_eq!(self.body["object"], "chat.completion", "{cell}");
                assert_eq!(self.body["id"], generation, "{cell}");
            }
            (Skin::Chat, true) => {
                let (chunks, done) = self.chunks();
                assert!(done, "{cell}: stream ends with [DONE]: {}", self.raw);
                assert!(
                    chunks.iter().all(|c| c["id"] == generation),
                    "{cell}: one id"
                );
            }
            (Skin::Messages, false) => {
                assert_eq!(self.body["type"], "message", "{cell}");
                assert_eq!(self.body["role"], "assistant", "{cell}");
                assert_eq!(self.body["id"], generation, "{cell}");
            }
            (Skin::Messages, true) => {
                let events = self.events();
                let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names.first(), Some(&"message_start"), "{cell}: {names:?}");
                assert_eq!(names.last(), Some(&"message_stop"), "{cell}: {names:?}");
                assert_eq!(events[0].1["message"]["id"], generation, "{cell}");
                // Every block that starts also stops.
                let starts = names
                    .iter()
                    .filter(|n| **n == "content_block_start")
                    .count();
                let stops = names.iter().filter(|n| **n == "content_block_stop").count();
                assert_eq!(starts, stops, "{cell}: {names:?}");
            }
            (Skin::Responses, false) => {
                assert_eq!(self.body["object"], "response", "{cell}");
                assert_eq!(self.body["id"], generation, "{cell}");
            }
            (Skin::Responses, true) => {
                let events = self.events();
                let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(
                    names.first(),
                    Some(&"response.created"),
                    "{cell}: {names:?}"
                );
                assert!(
                    names.last().is_some_and(|n| *n == "response.completed"),
                    "{cell}: {names:?}"
                );
                assert!(
                    events
                        .iter()
                        .enumerate()
                        .all(|(i, (n, d))| d["sequence_number"] == i && d["type"] == *n),
                    "{cell}: events are typed and numbered in order"
                );
                let added = names
                    .iter()
                    .filter(|n| **n == "response.output_item.added")
                    .count();
                let done = names
                    .iter()
                    .filter(|n| **n == "response.output_item.done")
                    .count();
                assert_eq!(added, done, "{cell}: {names:?}");
                assert_eq!(events[0].1["response"]["id"], generation, "{cell}");
                assert_eq!(self.response()["id"], generation, "{cell}");
            }
        }
    }

    /// `(id, name, parsed arguments)` of the answer's first tool call, however delivered.
    fn tool_call(&self) -> (String, String, Value) {
        match (self.skin, self.streamed) {
            (Skin::Chat, false) => {
                let call = &self.body["choices"][0]["message"]["tool_calls"][0];
                (
                    call["id"].as_str().unwrap().to_owned(),
                    call["function"]["name"].as_str().unwrap().to_owned(),
                    serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap(),
                )
            }
            (Skin::Chat, true) => {
                let (chunks, _) = self.chunks();
                let (mut id, mut name, mut args) = (String::new(), String::new(), String::new());
                for call in chunks
                    .iter()
                    .filter_map(|c| c.pointer("/choices/0/delta/tool_calls"))
                    .flat_map(|t| t.as_array().unwrap().clone())
                {
                    assert_eq!(call["index"], 0);
                    if let Some(i) = call["id"].as_str() {
                        id = i.to_owned();
                    }
                    if let Some(n) = call["function"]["name"].as_str() {
                        name = n.to_owned();
                    }
                    args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                }
                (id, name, serde_json::from_str(&args).unwrap())
            }
            (Skin::Messages, false) => {
                let block = self.body["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| b["type"] == "tool_use")
                    .unwrap()
                    .clone();
                (
                    block["id"].as_str().unwrap().to_owned(),
                    block["name"].as_str().unwrap().to_owned(),
                    block["input"].clone(),
                )
            }
            (Skin::Messages, true) => {
                let events = self.events();
                let start = events
                    .iter()
                    .find(|(_, d)| d.pointer("/content_block/type") == Some(&json!("tool_use")))
                    .unwrap();
                let index = &start.1["index"];
                let args: String = events
                    .iter()
                    .filter(|(_, d)| {
                        &d["index"] == index && d["delta"]["type"] == "input_json_delta"
                    })
                    .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
                    .collect();
                (
                    start.1["content_block"]["id"].as_str().unwrap().to_owned(),
                    start.1["content_block"]["name"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    serde_json::from_str(&args).unwrap(),
                )
            }
            (Skin::Responses, streamed) => {
                let response = self.response();
                let item = response["output"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|i| i["type"] == "function_call")
                    .unwrap()
                    .clone();
                let mut arguments = item["arguments"].as_str().unwrap().to_owned();
                if streamed {
                    // What a client assembling the deltas would have.
                    arguments = self
                        .events()
                        .iter()
                        .filter(|(n, _)| n == "response.function_call_arguments.delta")
                        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
                        .collect();
                }
                (
                    item["call_id"].as_str().unwrap().to_owned(),
                    item["name"].as_str().unwrap().to_owned(),
                    serde_json::from_str(&arguments).unwrap(),
                )
            }
        }
    }

    /// The reasoning text the client was shown.
    fn reasoning_text(&self) -> String {
        match (self.skin, self.streamed) {
            (Skin::Chat, false) => self.body["choices"][0]["message"]["reasoning"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            (Skin::Chat, true) => self
                .chunks()
                .0
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/reasoning")
                        .and_then(Value::as_str)
                })
                .collect(),
            (Skin::Messages, _) => self
                .reasoning_to_keep()
                .iter()
                .filter_map(|b| b["thinking"].as_str())
                .collect(),
            (Skin::Responses, _) => self.response()["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "reasoning")
                .flat_map(|i| i["summary"].as_array().unwrap().clone())
                .filter_map(|s| s["text"].as_str().map(str::to_owned))
                .collect(),
        }
    }

    /// What a client of the skin keeps and sends back: chat `reasoning_details` (every
    /// streamed piece, in order), Anthropic thinking blocks (streamed ones accumulated), or
    /// Responses `reasoning` items.
    fn reasoning_to_keep(&self) -> Vec<Value> {
        match (self.skin, self.streamed) {
            (Skin::Chat, false) => self.body["choices"][0]["message"]["reasoning_details"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            (Skin::Chat, true) => self
                .chunks()
                .0
                .iter()
                .filter_map(|c| c.pointer("/choices/0/delta/reasoning_details"))
                .flat_map(|d| d.as_array().unwrap().clone())
                .collect(),
            (Skin::Messages, false) => self.body["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "thinking" || b["type"] == "redacted_thinking")
                .cloned()
                .collect(),
            (Skin::Messages, true) => {
                let mut blocks: Vec<(Value, Value)> = Vec::new();
                for (name, data) in self.events() {
                    match name.as_str() {
                        "content_block_start" if data["content_block"]["type"] == "thinking" => {
                            blocks.push((data["index"].clone(), data["content_block"].clone()));
                        }
                        "content_block_delta" => {
                            let Some((_, block)) =
                                blocks.iter_mut().find(|(i, _)| *i == data["index"])
                            else {
                                continue;
                            };
                            for key in ["thinking", "signature"] {
                                if let Some(piece) = data["delta"][key].as_str() {
                                    let joined = format!(
                                        "{}{piece}",
                                        block[key].as_str().unwrap_or_default()
                                    );
                                    block[key] = json!(joined);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                blocks.into_iter().map(|(_, b)| b).collect()
            }
            (Skin::Responses, _) => self.response()["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "reasoning")
                .cloned()
                .collect(),
        }
    }
}

fn expected_reply(egress: Egress, words: &str) -> String {
    match egress {
        Egress::Echo => words.to_owned(),
        _ => format!("mock reply to: {words}"),
    }
}

fn finish_for(skin: Skin, tool_call: bool) -> &'static str {
    match (skin, tool_call) {
        (Skin::Chat, false) => "stop",
        (Skin::Chat, true) => "tool_calls",
        (Skin::Messages, false) => "end_turn",
        (Skin::Messages, true) => "tool_use",
        (Skin::Responses, _) => "completed",
    }
}

#[tokio::test]
async fn plain_and_streaming_text_in_every_cell() {
    let bench = Bench::start().await;
    for egress in FORMATS {
        let model = bench.model(egress, "plain").await;
        for skin in SKINS {
            for stream in [false, true] {
                let cell = format!("{skin:?} × {egress:?} stream={stream}");
                let body = ask(skin, &model, json!("hello matrix world"), stream);
                let answer = bench.send(skin, &body).await;
                answer.assert_shape(&cell);
                assert_eq!(answer.streamed, stream, "{cell}");
                assert_eq!(
                    answer.text(),
                    expected_reply(egress, "hello matrix world"),
                    "{cell}"
                );
                assert_eq!(answer.finish(), finish_for(skin, false), "{cell}");
            }
        }
    }
    // Each provider received its own wire format, with its own credential header.
    let a = bench.anthropic.last_request().unwrap();
    assert_eq!(a.path, "/v1/messages");
    assert_eq!(a.header("x-api-key"), Some("sk-upstream"));
    assert_eq!(a.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(a.body["model"], "plain");
    let g = bench.gemini.last_request().unwrap();
    assert_eq!(g.path, "/v1beta/models/plain:streamGenerateContent");
    assert_eq!(g.header("x-goog-api-key"), Some("sk-upstream"));
    assert_eq!(
        g.body["contents"][0]["parts"][0]["text"],
        "hello matrix world"
    );
    let o = bench.openai.last_request().unwrap();
    assert_eq!(o.header("authorization"), Some("Bearer sk-upstream"));
}

#[tokio::test]
async fn the_anthropic_skin_also_answers_on_the_bare_v1_path() {
    let bench = Bench::start().await;
    let response = bench
        .system
        .http
        .post(format!("http://{}/v1/messages", bench.system.gateway.addr))
        .bearer_auth(bench.system.api_key())
        .json(&ask(
            Skin::Messages,
            "switchyard/echo",
            json!("bare path"),
            false,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "bare path");
}

#[tokio::test]
async fn the_responses_skin_is_stateless() {
    let bench = Bench::start().await;
    for extra in [
        json!({"store": true}),
        json!({"previous_response_id": "resp_123"}),
    ] {
        let mut body = ask(Skin::Responses, "switchyard/echo", json!("hi"), false);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let answer = bench.send(Skin::Responses, &body).await;
        assert_eq!(answer.status, 400, "{extra}: {}", answer.raw);
        assert_eq!(
            answer.body["error"]["metadata"]["error_type"],
            "invalid_request"
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stateless")
        );
    }
}

/// Turn one asks for the weather; the model calls the tool; turn two sends the result.
#[tokio::test]
async fn tool_call_round_trip() {
    let bench = Bench::start().await;
    for egress in SMART {
        let model = bench.model(egress, "tool").await;
        for skin in SKINS {
            for stream in [false, true] {
                let cell = format!("{skin:?} × {egress:?} stream={stream}");
                let mut first = ask(skin, &model, json!("weather in Paris"), stream);
                first["tools"] = weather_tool(skin);
                let answer = bench.send(skin, &first).await;
                answer.assert_shape(&cell);
                assert_eq!(answer.finish(), finish_for(skin, true), "{cell}");
                let call = answer.tool_call();
                assert_eq!(call.1, "get_weather", "{cell}");
                assert_eq!(call.2, json!({"q": "weather in Paris"}), "{cell}");
                assert!(!call.0.is_empty(), "{cell}");

                let mut second = first.clone();
                second["stream"] = json!(false);
                push_tool_turn(skin, &mut second, &call, Vec::new(), "sunny");
                let answer = bench.send(skin, &second).await;
                answer.assert_shape(&cell);
                assert!(
                    answer.text().starts_with("tool said:"),
                    "{cell}: {}",
                    answer.text()
                );
                assert!(answer.text().contains("sunny"), "{cell}: {}", answer.text());
                match egress {
                    Egress::Anthropic => {
                        let up = bench.anthropic.last_request().unwrap().body;
                        let last =
                            &up["messages"].as_array().unwrap().last().unwrap()["content"][0];
                        assert_eq!(last["type"], "tool_result", "{cell}");
                        assert_eq!(last["tool_use_id"], json!(call.0), "{cell}");
                    }
                    _ => {
                        let up = bench.gemini.last_request().unwrap().body;
                        let last = &up["contents"].as_array().unwrap().last().unwrap()["parts"][0];
                        assert_eq!(last["functionResponse"]["name"], "get_weather", "{cell}");
                    }
                }
            }
        }
    }

    // The OpenAI-format mock cannot call tools; the request side must still arrive intact.
    let model = bench.model(Egress::OpenAi, "plain").await;
    for skin in SKINS {
        let mut body = ask(skin, &model, json!("weather?"), false);
        body["tools"] = weather_tool(skin);
        let call = (
            "call_1".to_owned(),
            "get_weather".to_owned(),
            json!({"q": "x"}),
        );
        push_tool_turn(skin, &mut body, &call, Vec::new(), "sunny");
        let answer = bench.send(skin, &body).await;
        assert_eq!(answer.status, 200, "{skin:?} × OpenAi: {}", answer.raw);
        let up = bench.openai.last_request().unwrap().body;
        assert_eq!(
            up["tools"][0]["function"]["name"], "get_weather",
            "{skin:?}"
        );
        assert_eq!(
            up["messages"][1]["tool_calls"][0]["id"], "call_1",
            "{skin:?}"
        );
        assert_eq!(
            up["messages"][2],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
            "{skin:?}"
        );
    }
}

#[tokio::test]
async fn image_input_reaches_every_format_natively() {
    let bench = Bench::start().await;
    const PNG: &str = "iVBORw0KGgoAAAANSUhEUg==";
    let url = format!("data:image/png;base64,{PNG}");
    for egress in [Egress::OpenAi, Egress::Anthropic, Egress::Gemini] {
        let model = bench.model(egress, "plain").await;
        for skin in SKINS {
            let cell = format!("{skin:?} × {egress:?}");
            let content = match skin {
                Skin::Chat => json!([{"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": url}}]),
                Skin::Messages => json!([{"type": "text", "text": "what is this"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]),
                Skin::Responses => json!([{"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": url}]),
            };
            let answer = bench.send(skin, &ask(skin, &model, content, false)).await;
            answer.assert_shape(&cell);
            match egress {
                Egress::Anthropic => {
                    assert_eq!(
                        answer.text(),
                        "mock reply to: what is this [1 images]",
                        "{cell}"
                    );
                    let up = bench.anthropic.last_request().unwrap().body;
                    assert_eq!(
                        up["messages"][0]["content"][1],
                        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}),
                        "{cell}"
                    );
                }
                Egress::Gemini => {
                    assert_eq!(
                        answer.text(),
                        "mock reply to: what is this [1 images]",
                        "{cell}"
                    );
                    let up = bench.gemini.last_request().unwrap().body;
                    assert_eq!(
                        up["contents"][0]["parts"][1],
                        json!({"inlineData": {"mimeType": "image/png", "data": PNG}}),
                        "{cell}"
                    );
                }
                _ => {
                    let up = bench.openai.last_request().unwrap().body;
                    assert_eq!(
                        up["messages"][0]["content"][1]["image_url"]["url"], url,
                        "{cell}"
                    );
                }
            }
        }
    }
}

/// Reasoning state from turn one (Claude thinking signature, Gemini thought signature) goes
/// back on turn two through every skin; the mocks refuse a tool turn without it, as the
/// real providers do.
#[tokio::test]
async fn reasoning_round_trip() {
    let bench = Bench::start().await;
    for egress in SMART {
        let model = bench.model(egress, "think-tool").await;
        for skin in SKINS {
            for stream in [false, true] {
                let cell = format!("{skin:?} × {egress:?} stream={stream}");
                let mut first = ask(skin, &model, json!("weather in Oslo"), stream);
                first["tools"] = weather_tool(skin);
                // Each skin's way of asking for a 2048-token thinking budget.
                match skin {
                    Skin::Chat => first["reasoning"] = json!({"max_tokens": 2048}),
                    Skin::Messages => {
                        first["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
                        first["max_tokens"] = json!(4096);
                    }
                    Skin::Responses => {
                        first["reasoning"] = json!({"effort": "medium"});
                        first["max_output_tokens"] = json!(4096);
                    }
                }
                let answer = bench.send(skin, &first).await;
                answer.assert_shape(&cell);
                assert_eq!(answer.reasoning_text(), "mock thinking", "{cell}");
                let kept = answer.reasoning_to_keep();
                assert!(!kept.is_empty(), "{cell}: nothing to keep: {}", answer.raw);
                let call = answer.tool_call();

                let mut second = first.clone();
                second["stream"] = json!(false);
                push_tool_turn(skin, &mut second, &call, kept, "snow");
                let answer = bench.send(skin, &second).await;
                answer.assert_shape(&cell);
                assert!(answer.text().contains("snow"), "{cell}: {}", answer.text());
                match egress {
                    Egress::Anthropic => {
                        let up = bench.anthropic.last_request().unwrap().body;
                        let turn = &up["messages"][1]["content"];
                        assert_eq!(turn[0]["type"], "thinking", "{cell}: {up}");
                        assert_eq!(turn[0]["thinking"], "mock thinking", "{cell}");
                        assert!(
                            turn[0]["signature"]
                                .as_str()
                                .unwrap()
                                .starts_with("sig-anthropic-"),
                            "{cell}"
                        );
                        assert_eq!(up["thinking"]["budget_tokens"], 2048, "{cell}");
                    }
                    _ => {
                        let up = bench.gemini.last_request().unwrap().body;
                        let part = &up["contents"][1]["parts"][0];
                        assert!(part["functionCall"].is_object(), "{cell}: {up}");
                        assert!(
                            part["thoughtSignature"]
                                .as_str()
                                .unwrap()
                                .starts_with("sig-gemini-"),
                            "{cell}"
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn usage_and_cost_match_the_ledger() {
    let bench = Bench::start().await;
    for egress in FORMATS {
        let model = bench.model(egress, "cache").await;
        for skin in SKINS {
            for stream in [false, true] {
                let cell = format!("{skin:?} × {egress:?} stream={stream}");
                let body = ask(skin, &model, json!("count these four words"), stream);
                let answer = bench.send(skin, &body).await;
                answer.assert_shape(&cell);
                let (prompt, completion, cached, cost) = answer.usage();
                let row = bench.ledger(answer.generation.as_deref().unwrap()).await;
                assert_eq!(row["tokens_prompt"], prompt, "{cell}: {row}");
                assert_eq!(row["tokens_completion"], completion, "{cell}: {row}");
                assert_eq!(row["native_tokens_cached"], cached, "{cell}: {row}");
                assert!(
                    (row["total_cost"].as_f64().unwrap() - cost).abs() < 1e-12,
                    "{cell}: {row} vs {cost}"
                );
                assert_eq!(row["usage_estimated"], false, "{cell}");
                assert_eq!(row["streamed"], stream, "{cell}");
                let api = match skin {
                    Skin::Chat => "chat",
                    Skin::Messages => "messages",
                    Skin::Responses => "responses",
                };
                assert_eq!(row["api_type"], api, "{cell}");
                if egress == Egress::Anthropic {
                    // 4 words in, 100 read, 50 written (20 of them for 1h); 7 words out.
                    assert_eq!((prompt, completion, cached), (154, 7, 100), "{cell}");
                    let nanos = 4 * 1000 + 100 * 100 + 30 * 1250 + 20 * 2000 + 7 * 2000;
                    assert!(
                        (cost - f64::from(nanos) / 1e9).abs() < 1e-12,
                        "{cell}: {cost}"
                    );
                }
                if egress == Egress::Gemini {
                    assert_eq!((prompt, completion, cached), (104, 7, 100), "{cell}");
                }
            }
        }
    }
}

#[tokio::test]
async fn upstream_errors_in_each_skins_shape() {
    let bench = Bench::start().await;
    for egress in [Egress::OpenAi, Egress::Anthropic, Egress::Gemini] {
        for (behaviour, status, error_type, anthropic_type) in [
            ("error-429", 429, "rate_limit_exceeded", "rate_limit_error"),
            ("error-500", 502, "provider_unavailable", "api_error"),
            ("error-400", 400, "invalid_request", "invalid_request_error"),
        ] {
            let model = bench.model(egress, behaviour).await;
            for skin in SKINS {
                let cell = format!("{skin:?} × {egress:?} {behaviour}");
                let answer = bench
                    .send(skin, &ask(skin, &model, json!("hi"), false))
                    .await;
                assert_eq!(answer.status, status, "{cell}: {}", answer.raw);
                match skin {
                    Skin::Chat | Skin::Responses => {
                        assert_eq!(answer.body["error"]["code"], status, "{cell}");
                        assert_eq!(
                            answer.body["error"]["metadata"]["error_type"], error_type,
                            "{cell}"
                        );
                    }
                    Skin::Messages => {
                        assert_eq!(answer.body["type"], "error", "{cell}");
                        assert_eq!(answer.body["error"]["type"], anthropic_type, "{cell}");
                        assert_eq!(answer.body["error"]["error_type"], error_type, "{cell}");
                        assert!(answer.body["error"]["message"].as_str().is_some(), "{cell}");
                    }
                }
            }
        }
        // A failure after the first byte ends the stream with an error, never a clean end.
        let behaviour = if egress == Egress::OpenAi {
            "cut-stream"
        } else {
            "stream-error"
        };
        let model = bench.model(egress, behaviour).await;
        for skin in SKINS {
            let cell = format!("{skin:?} × {egress:?} {behaviour}");
            let answer = bench
                .send(skin, &ask(skin, &model, json!("a b c d"), true))
                .await;
            assert_eq!(answer.status, 200, "{cell}");
            assert!(
                !answer.text().is_empty(),
                "{cell}: partial output is relayed"
            );
            match skin {
                Skin::Chat => {
                    let (chunks, _) = answer.chunks();
                    let error = chunks
                        .iter()
                        .find(|c| c.get("error").is_some())
                        .unwrap_or_else(|| panic!("{cell}: {}", answer.raw));
                    assert_eq!(error["choices"][0]["finish_reason"], "error", "{cell}");
                }
                Skin::Messages => {
                    let events = answer.events();
                    let (name, data) = events.last().unwrap();
                    assert_eq!(name, "error", "{cell}: {}", answer.raw);
                    assert_eq!(data["type"], "error", "{cell}");
                    assert!(events.iter().all(|(n, _)| n != "message_stop"), "{cell}");
                }
                Skin::Responses => {
                    let events = answer.events();
                    let (name, data) = events.last().unwrap();
                    assert_eq!(name, "response.failed", "{cell}: {}", answer.raw);
                    assert_eq!(data["response"]["status"], "failed", "{cell}");
                    assert!(data["response"]["error"]["message"].is_string(), "{cell}");
                    assert!(
                        events.iter().all(|(n, _)| n != "response.completed"),
                        "{cell}"
                    );
                }
            }
            let row = bench.ledger(answer.generation.as_deref().unwrap()).await;
            assert_eq!(row["finish_reason"], "error", "{cell}: {row}");
            assert!(
                row["tokens_completion"].as_u64().unwrap() > 0,
                "{cell}: what was generated is billed"
            );
        }
    }
    // Errors before any upstream call use the skin's shape too.
    let answer = bench
        .system
        .http
        .post(format!(
            "http://{}/api/v1/messages",
            bench.system.gateway.addr
        ))
        .header("x-api-key", "sk-sy-v1-nope")
        .json(&ask(Skin::Messages, "switchyard/echo", json!("hi"), false))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
}

/// An OpenAI-compatible upstream that answers 200 with an error inside the choice, as
/// OpenRouter itself does after partial output.
async fn error_in_200_upstream() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(json!({
            "id": "up-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "partial"},
                "finish_reason": "error",
                "error": {"code": 503, "message": "upstream overloaded", "metadata": {"error_type": "provider_overloaded"}}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, task)
}

#[tokio::test]
async fn strict_mode_turns_an_error_inside_200_into_an_http_error() {
    let (addr, server) = error_in_200_upstream().await;
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &format!("http://{addr}/v1"),
            "conf/err200",
            "m",
            "0.000001",
            "0.000002",
        )
        .await
        .unwrap();
    let body = ask(Skin::Chat, "conf/err200", json!("hi"), false);

    // Without the header: OpenRouter's behaviour, a 200 whose choice carries the error.
    let lenient = system
        .post("/chat/completions", system.api_key(), &body)
        .await
        .unwrap();
    assert_eq!(lenient.status(), 200);
    let lenient: Value = lenient.json().await.unwrap();
    assert_eq!(lenient["choices"][0]["finish_reason"], "error");
    assert_eq!(lenient["choices"][0]["message"]["content"], "partial");

    for (skin, path) in [
        (Skin::Chat, "chat/completions"),
        (Skin::Messages, "messages"),
        (Skin::Responses, "responses"),
    ] {
        let response = system
            .http
            .post(format!("{}/{path}", system.base_url()))
            .bearer_auth(system.api_key())
            .header("x-switchyard-strict", "true")
            .json(&ask(skin, "conf/err200", json!("hi"), false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "{skin:?}");
        let generation = response.headers()["x-generation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let error: Value = response.json().await.unwrap();
        match skin {
            Skin::Chat | Skin::Responses => assert_eq!(
                error["error"]["metadata"]["error_type"],
                "provider_overloaded"
            ),
            Skin::Messages => assert_eq!(error["error"]["type"], "overloaded_error"),
        }
        // What was generated is still billed, and the ledger shows the error status.
        let row: Value = system
            .get(&format!("/generation?id={generation}"), system.api_key())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(row["data"]["http_status"], 503, "{skin:?}: {row}");
        assert_eq!(row["data"]["tokens_completion"], 1, "{skin:?}");
        assert_eq!(row["data"]["finish_reason"], "error", "{skin:?}");
    }
    server.abort();
}

#[tokio::test]
async fn legacy_completions_plain_and_streaming() {
    let system = System::start().await.unwrap();
    let response = system
        .post(
            "/completions",
            system.api_key(),
            &json!({"model": "switchyard/echo", "prompt": "say these words"}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let generation = response.headers()["x-generation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["id"], generation);
    assert_eq!(body["choices"][0]["text"], "say these words");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let response = system
        .post(
            "/completions",
            system.api_key(),
            &json!({"model": "switchyard/echo", "prompt": "stream these words", "stream": true}),
        )
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let (chunks, done) = sse::chunks(&text);
    assert!(done);
    let joined: String = chunks
        .iter()
        .filter_map(|c| c.pointer("/choices/0/text").and_then(Value::as_str))
        .collect();
    assert_eq!(joined, "stream these words");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(
        chunks.iter().filter(|c| c.get("usage").is_some()).count(),
        1
    );

    let response = system
        .post(
            "/completions",
            system.api_key(),
            &json!({"model": "switchyard/echo", "prompt": "x", "echo": true}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn embeddings_through_openai_and_gemini_formats() {
    let bench = Bench::start().await;
    for egress in [Egress::OpenAi, Egress::Gemini] {
        let model = bench.model(egress, "text-embedding-3-small").await;
        for format in ["float", "base64"] {
            let cell = format!("{egress:?} {format}");
            let response = bench
                .system
                .post(
                    "/embeddings",
                    bench.system.api_key(),
                    &json!({"model": model, "input": ["one two", "three"], "encoding_format": format}),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{cell}");
            let generation = response.headers()["x-generation-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["object"], "list", "{cell}");
            assert_eq!(body["id"], generation, "{cell}");
            assert_eq!(body["model"], model, "{cell}");
            let data = body["data"].as_array().unwrap();
            assert_eq!(data.len(), 2, "{cell}");
            assert_eq!(data[1]["index"], 1, "{cell}");
            match format {
                "float" => assert!(data[0]["embedding"].is_array(), "{cell}"),
                _ => assert!(data[0]["embedding"].is_string(), "{cell}"),
            }
            if egress == Egress::Gemini && format == "float" {
                assert_eq!(data[0]["embedding"], json!([2.0, 7.0]), "{cell}");
            }
            if egress == Egress::Gemini && format == "base64" {
                // [1.0, 5.0] as little-endian f32s.
                assert_eq!(data[1]["embedding"], "AACAPwAAoEA=", "{cell}");
            }
            let row = bench.ledger(&generation).await;
            assert_eq!(row["api_type"], "embeddings", "{cell}");
            assert_eq!(
                row["tokens_prompt"], body["usage"]["prompt_tokens"],
                "{cell}"
            );
            assert!(
                (row["total_cost"].as_f64().unwrap() - body["usage"]["cost"].as_f64().unwrap())
                    .abs()
                    < 1e-12,
                "{cell}"
            );
            // OpenAI counts embedding tokens; Gemini does not, so the gateway estimates.
            assert_eq!(row["usage_estimated"], egress == Egress::Gemini, "{cell}");
        }
    }
    let up = bench.gemini.last_request().unwrap();
    assert_eq!(
        up.path,
        "/v1beta/models/text-embedding-3-small:batchEmbedContents"
    );
    assert_eq!(
        up.body["requests"][0]["content"]["parts"][0]["text"],
        "one two"
    );

    // A model whose providers have no embeddings API says so.
    let model = bench.model(Egress::Anthropic, "plain").await;
    let response = bench
        .system
        .post(
            "/embeddings",
            bench.system.api_key(),
            &json!({"model": model, "input": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// Claude Code sizes its context with `count_tokens`: Claude's own count for Anthropic
/// endpoints, Switchyard's estimate elsewhere, in Anthropic's error shape on failure.
#[tokio::test]
async fn anthropic_count_tokens() {
    let bench = Bench::start().await;
    let claude = bench.model(Egress::Anthropic, "plain").await;
    let count = |model: String| {
        let bench = &bench;
        async move {
            let response = bench
                .system
                .http
                .post(format!(
                    "http://{}/api/v1/messages/count_tokens",
                    bench.system.gateway.addr
                ))
                .header("x-api-key", bench.system.api_key())
                .json(&json!({"model": model, "system": "be brief",
                    "messages": [{"role": "user", "content": "count these four words"}]}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = count(claude).await;
    assert_eq!(status, 200);
    assert_eq!(body["input_tokens"], 1006);
    let up = bench.anthropic.last_request().unwrap();
    assert_eq!(up.path, "/v1/messages/count_tokens");
    assert_eq!(up.body["model"], "plain");

    let (status, body) = count("switchyard/echo".into()).await;
    assert_eq!(status, 200);
    // "be brief" + "count these four words": 30 characters, four to a token.
    assert_eq!(body["input_tokens"], 8);

    let (status, body) = count("nobody/nothing".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// A client that goes away mid-stream cancels the provider request, and what was generated
/// is still billed — once — in every skin.
#[tokio::test]
async fn a_client_disconnect_is_billed_in_every_skin() {
    let mock = MockAnthropic::start(MockConfig {
        chunk_delay: std::time::Duration::from_millis(100),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let system = System::start().await.unwrap();
    let created = system
        .post(
            "/providers",
            system.management_key(),
            &json!({"slug": "slow-claude", "kind": "anthropic", "base_url": mock.base_url()}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let pricing: Value = serde_json::from_str(PRICING).unwrap();
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": "conf/slow", "endpoints": [{"provider": "slow-claude", "model": "plain", "pricing": pricing}]}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();

    for (skin, path, marker) in [
        (Skin::Chat, "chat/completions", "\"content\":\"mock"),
        (Skin::Messages, "messages", "text_delta"),
        (Skin::Responses, "responses", "response.output_text.delta"),
    ] {
        let body = ask(
            skin,
            "conf/slow",
            json!("a long answer with many words please"),
            true,
        );
        let mut response = system
            .http
            .post(format!("{}/{path}", system.base_url()))
            .bearer_auth(system.api_key())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{skin:?}");
        let generation = response.headers()["x-generation-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let mut seen = String::new();
        while !seen.contains(marker) {
            let chunk = response.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(response);

        let row: Value = system
            .get(&format!("/generation?id={generation}"), system.api_key())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let row = &row["data"];
        assert_eq!(row["cancelled"], true, "{skin:?}: {row}");
        assert_eq!(row["finish_reason"], "cancelled", "{skin:?}");
        assert_eq!(row["usage_estimated"], true, "{skin:?}");
        assert!(
            row["tokens_completion"].as_u64().unwrap() > 0,
            "{skin:?}: {row}"
        );
        assert!(row["total_cost"].as_f64().unwrap() > 0.0, "{skin:?}");
    }
}

#[tokio::test]
async fn response_healing_repairs_json_answers_when_asked() {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(json!({
            "id": "up-2", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Sure!\n```json\n{\"city\": \"Oslo\", \"temp\": -3,}\n```"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12},
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let system = System::start().await.unwrap();
    system
        .add_openai_model(
            &format!("http://{addr}/v1"),
            "conf/fenced",
            "m",
            "0.000001",
            "0.000002",
        )
        .await
        .unwrap();
    let mut body = ask(Skin::Chat, "conf/fenced", json!("weather as JSON"), false);
    body["response_format"] = json!({"type": "json_object"});

    let plain: Value = system
        .post("/chat/completions", system.api_key(), &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = plain["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Sure!"),
        "untouched without the plugin: {content}"
    );

    body["plugins"] = json!([{"id": "response-healing"}]);
    let healed: Value = system
        .post("/chat/completions", system.api_key(), &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = healed["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap();
    assert_eq!(parsed, json!({"city": "Oslo", "temp": -3}));
    server.abort();
}
