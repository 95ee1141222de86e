//! The official `anthropic` Python package against the gateway's Anthropic skin: plain,
//! streaming (with a bearer token, as Claude Code sends it), a streamed tool call with
//! thinking and its round trip, and errors. Needs a Python with `anthropic` installed:
//! `SWITCHYARD_PYTHON` (set by `.ci/run`), else `python3` if it can import `anthropic`.
//! Skipped with a message when neither works, except under `CI=true`, where it must run.

use std::io::Write;
use std::process::Command;

use serde_json::{Value, json};
use switchyard_e2e::harness::System;
use switchyard_e2e::mock_anthropic::MockAnthropic;
use switchyard_e2e::mock_openai::MockConfig;

pub fn python_with(module: &str) -> Option<String> {
    let candidates = std::env::var("SWITCHYARD_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_owned()]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    None
}

/// A system whose catalog has `sdk/claude` on a mock Anthropic provider (the model that
/// thinks and calls tools).
async fn claude_system() -> (MockAnthropic, System) {
    let mock = MockAnthropic::start(MockConfig::default()).await.unwrap();
    let system = System::start().await.unwrap();
    let created = system
        .post(
            "/providers",
            system.management_key(),
            &json!({"slug": "claude", "kind": "anthropic", "base_url": mock.base_url(), "api_key": "sk-ant"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": "sdk/claude", "endpoints": [{"provider": "claude", "model": "think-tool",
                "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();
    (mock, system)
}

#[tokio::test]
async fn official_anthropic_python_sdk() {
    let Some(python) = python_with("anthropic") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with the `anthropic` package: .ci/run must install it and set SWITCHYARD_PYTHON"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (anthropic python sdk): no Python with `anthropic`; run `pip install anthropic` or set SWITCHYARD_PYTHON"
        );
        return;
    };
    let (_mock, system) = claude_system().await;

    let script = switchyard_e2e::crate_dir().join("sdk/anthropic_python_check.py");
    let script = script.to_str().expect("a UTF-8 checkout path");
    // What ANTHROPIC_BASE_URL would be: the SDK appends `/v1/messages`.
    let base = format!("http://{}/api", system.gateway.addr);
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            &base,
            system.api_key(),
            "switchyard/echo",
            "sdk/claude",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(got["plain"]["text"], "hello from python");
    assert_eq!(got["plain"]["stop_reason"], "end_turn");
    assert_eq!(got["plain"]["model"], "switchyard/echo");
    assert!(got["plain"]["id"].as_str().unwrap().starts_with("gen-"));
    assert_eq!(got["plain"]["generation_header"], got["plain"]["id"]);
    assert_eq!(got["plain"]["usage"]["input_tokens"], 3);
    assert_eq!(got["plain"]["usage"]["output_tokens"], 3);

    assert_eq!(got["stream"]["text"], "stream from python");
    assert_eq!(got["stream"]["stop_reason"], "end_turn");
    assert_eq!(got["stream"]["usage"]["output_tokens"], 3);
    assert_eq!(got["stream"]["usage"]["input_tokens"], 3);

    assert_eq!(got["tools"]["stop_reason"], "tool_use");
    assert_eq!(got["tools"]["name"], "get_weather");
    assert_eq!(got["tools"]["input"], json!({"q": "weather in Rome"}));
    assert_eq!(got["tools"]["thinking"][0]["thinking"], "mock thinking");
    assert!(
        got["tools"]["thinking"][0]["signature"]
            .as_str()
            .unwrap()
            .starts_with("sig-anthropic-")
    );
    // The mock refuses the second turn unless the signed thinking block came back.
    assert_eq!(got["tools"]["answer"], "tool said: warm");

    assert_eq!(got["not_found"]["status"], 400);
    assert_eq!(got["not_found"]["type"], "invalid_request_error");
    assert_eq!(got["auth_error"]["status"], 401);
    assert_eq!(got["auth_error"]["type"], "authentication_error");
}

/// The official `openai` Python package against the Responses skin: plain, streamed with
/// the SDK's event parser, a streamed tool call with reasoning whose items go back on the
/// next turn, and the stateless refusal.
#[tokio::test]
async fn official_openai_python_sdk_responses() {
    let Some(python) = python_with("openai") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with the `openai` package: .ci/run must install it and set SWITCHYARD_PYTHON"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (openai python sdk, responses): no Python with `openai`; run `pip install openai` or set SWITCHYARD_PYTHON"
        );
        return;
    };
    let mock = switchyard_e2e::mock_gemini::MockGemini::start(MockConfig::default())
        .await
        .unwrap();
    let system = System::start().await.unwrap();
    let created = system
        .post(
            "/providers",
            system.management_key(),
            &json!({"slug": "gemini", "kind": "gemini", "base_url": mock.base_url(), "api_key": "g-key"}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = system
        .post(
            "/models",
            system.management_key(),
            &json!({"id": "sdk/gemini", "endpoints": [{"provider": "gemini", "model": "think-tool",
                "pricing": {"prompt": "0.000001", "completion": "0.000002"}}]}),
        )
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let version = system.store.config_version().await.unwrap();
    system.gateway.wait_for_config(version).await.unwrap();

    let script = switchyard_e2e::crate_dir().join("sdk/openai_responses_check.py");
    let script = script.to_str().expect("a UTF-8 checkout path");
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            &system.base_url(),
            system.api_key(),
            "switchyard/echo",
            "sdk/gemini",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(got["plain"]["text"], "hello from python");
    assert_eq!(got["plain"]["status"], "completed");
    assert!(got["plain"]["id"].as_str().unwrap().starts_with("gen-"));
    assert_eq!(got["plain"]["usage"]["input_tokens"], 3);
    assert_eq!(got["plain"]["usage"]["output_tokens"], 3);

    assert_eq!(got["stream"]["text"], "stream from python");
    assert_eq!(got["stream"]["deltas"].as_array().unwrap().len(), 3);
    assert_eq!(got["stream"]["usage"]["output_tokens"], 3);

    assert_eq!(got["tools"]["name"], "get_weather");
    assert_eq!(got["tools"]["arguments"], json!({"q": "weather in Lima"}));
    assert_eq!(got["tools"]["kinds"], json!(["reasoning", "function_call"]));
    // The mock refuses the second turn unless the thought signature came back.
    assert!(
        got["tools"]["answer"]
            .as_str()
            .unwrap()
            .starts_with("tool said:")
    );
    assert_eq!(got["stateful"]["status"], 400);
}

/// Where the TypeScript SDKs are installed: `SWITCHYARD_NODE_MODULES`, else
/// `~/.cache/switchyard/node/node_modules`, if it holds both packages and `node` runs.
fn node_modules() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SWITCHYARD_NODE_MODULES")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/switchyard/node/node_modules"))
        })?;
    let complete = dir.join("openai").is_dir() && dir.join("@anthropic-ai/sdk").is_dir();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    (complete && node).then_some(dir)
}

/// The official TypeScript SDKs (`openai`, `@anthropic-ai/sdk`) under Node: plain,
/// streaming, and tool calls through both skins, to a Claude-format provider.
#[tokio::test]
async fn official_typescript_sdks() {
    let Some(modules) = node_modules() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no node_modules with `openai` and `@anthropic-ai/sdk`: .ci/run must install them and set SWITCHYARD_NODE_MODULES"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (typescript sdks): run `npm install openai @anthropic-ai/sdk` in ~/.cache/switchyard/node or set SWITCHYARD_NODE_MODULES"
        );
        return;
    };
    let (_mock, system) = claude_system().await;

    let script = switchyard_e2e::crate_dir().join("sdk/ts_sdk_check.cjs");
    let script = script.to_str().expect("a UTF-8 checkout path");
    let root = format!("http://{}", system.gateway.addr);
    let output = tokio::process::Command::new("node")
        .env("NODE_PATH", &modules)
        .args([
            script,
            &root,
            system.api_key(),
            "switchyard/echo",
            "sdk/claude",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(got["openai"]["plain"], "hello from typescript");
    assert!(got["openai"]["id"].as_str().unwrap().starts_with("gen-"));
    assert_eq!(got["openai"]["stream"], "stream from typescript");
    assert_eq!(got["openai"]["usageChunks"], 1);
    assert_eq!(got["openai"]["toolName"], "get_weather");
    assert_eq!(got["openai"]["toolArgs"], json!({"q": "weather in Quito"}));
    assert_eq!(got["openai"]["finish"], "tool_calls");

    assert_eq!(got["anthropic"]["plain"], "hello from typescript");
    assert_eq!(got["anthropic"]["stopReason"], "end_turn");
    assert_eq!(got["anthropic"]["stream"], "stream from typescript");
    assert_eq!(got["anthropic"]["streamUsage"]["output_tokens"], 3);
    assert_eq!(got["anthropic"]["toolName"], "get_weather");
    assert_eq!(
        got["anthropic"]["toolInput"],
        json!({"q": "weather in Quito"})
    );
    assert_eq!(
        got["anthropic"]["thinkingKinds"],
        json!(["thinking", "tool_use"])
    );
    assert_eq!(got["anthropic"]["answer"], "tool said: cool");
    assert_eq!(got["anthropic"]["authError"]["status"], 401);
    assert_eq!(
        got["anthropic"]["authError"]["type"],
        "authentication_error"
    );
}
