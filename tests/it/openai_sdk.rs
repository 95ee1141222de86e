//! The official `openai` Python package against the gateway: plain, streaming, errors.
//! Needs a Python with `openai` installed: `SWITCHYARD_PYTHON` (set by `.ci/run`), else
//! `python3` if it can import `openai`. Skipped with a message when neither works, except
//! under `CI=true`, where it must run.

use std::io::Write;

use serde_json::Value;
use switchyard_e2e::harness::System;

#[tokio::test]
async fn official_openai_python_sdk_plain_and_streaming() {
    let Some(python) = crate::sdks::python_with("openai") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no Python with the `openai` package: .ci/run must install it and set SWITCHYARD_PYTHON"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (openai python sdk): no Python with `openai`; run `pip install openai` or set SWITCHYARD_PYTHON"
        );
        return;
    };
    let system = System::start().await.unwrap();
    let script = switchyard_e2e::crate_dir().join("sdk/openai_python_check.py");
    let script = script.to_str().expect("a UTF-8 checkout path");
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            &system.base_url(),
            system.api_key(),
            "switchyard/echo",
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

    assert_eq!(got["plain"]["content"], "hello from python");
    assert_eq!(got["plain"]["model"], "switchyard/echo");
    assert_eq!(got["plain"]["finish_reason"], "stop");
    assert!(got["plain"]["id"].as_str().unwrap().starts_with("gen-"));
    assert_eq!(got["plain"]["usage"]["prompt_tokens"], 3);
    assert_eq!(got["plain"]["usage"]["completion_tokens"], 3);
    // Extra usage fields survive the SDK's models (pydantic keeps unknown fields).
    assert!((got["plain"]["usage"]["cost"].as_f64().unwrap() - 6e-6).abs() < 1e-15);
    assert_eq!(got["raw_generation_header"], got["raw_id"]);

    assert_eq!(got["stream"]["content"], "stream from python");
    assert_eq!(got["stream"]["finish_reason"], "stop");
    assert_eq!(
        got["stream"]["ids"].as_array().unwrap().len(),
        1,
        "one id across the stream"
    );
    let usage = got["stream"]["usage_chunks"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "exactly one usage chunk");
    assert_eq!(usage[0]["completion_tokens"], 3);

    assert!(
        got["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "switchyard/echo")
    );
    assert_eq!(got["not_found"]["status"], 400);
    assert_eq!(got["auth_error"], 401);
}
