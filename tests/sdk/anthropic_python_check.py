"""Drives the gateway with the official `anthropic` Python package and prints what it got.

Usage: anthropic_python_check.py BASE_URL API_KEY PLAIN_MODEL TOOL_MODEL
BASE_URL is what ANTHROPIC_BASE_URL would be (`http://host/api`). TOOL_MODEL must call
the `get_weather` tool on the first turn and think while doing it.
Prints one JSON object; the Rust test asserts on it.
"""

import json
import sys

import anthropic

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


def main() -> None:
    base_url, api_key, plain_model, tool_model = sys.argv[1:5]
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    out = {}

    raw = client.messages.with_raw_response.create(
        model=plain_model, max_tokens=64, messages=[{"role": "user", "content": "hello from python"}]
    )
    plain = raw.parse()
    out["plain"] = {
        "id": plain.id,
        "text": "".join(b.text for b in plain.content if b.type == "text"),
        "stop_reason": plain.stop_reason,
        "model": plain.model,
        "usage": plain.usage.model_dump(),
        "generation_header": raw.headers.get("x-generation-id"),
    }

    # Claude Code's way: the key as a bearer token.
    bearer = anthropic.Anthropic(base_url=base_url, auth_token=api_key, api_key=None, max_retries=0)
    with bearer.messages.stream(
        model=plain_model, max_tokens=64, messages=[{"role": "user", "content": "stream from python"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["stream"] = {
        "text": text,
        "id": final.id,
        "stop_reason": final.stop_reason,
        "usage": final.usage.model_dump(),
    }

    first_turn = [{"role": "user", "content": "weather in Rome"}]
    with client.messages.stream(
        model=tool_model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER],
        messages=first_turn,
    ) as stream:
        called = stream.get_final_message()
    tool_use = next(b for b in called.content if b.type == "tool_use")
    thinking = [b for b in called.content if b.type == "thinking"]
    result = client.messages.create(
        model=tool_model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER],
        messages=first_turn
        + [
            {"role": "assistant", "content": [b.model_dump() for b in called.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "warm"}]},
        ],
    )
    out["tools"] = {
        "stop_reason": called.stop_reason,
        "name": tool_use.name,
        "input": tool_use.input,
        "thinking": [{"thinking": b.thinking, "signature": b.signature} for b in thinking],
        "answer": "".join(b.text for b in result.content if b.type == "text"),
    }

    try:
        client.messages.create(model="nobody/nothing", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        out["not_found"] = None
    except anthropic.BadRequestError as err:
        out["not_found"] = {"status": err.status_code, "type": err.body["error"]["type"]}

    bad = anthropic.Anthropic(base_url=base_url, api_key="sk-sy-v1-" + "0" * 64, max_retries=0)
    try:
        bad.messages.create(model=plain_model, max_tokens=8, messages=[{"role": "user", "content": "x"}])
        out["auth_error"] = None
    except anthropic.AuthenticationError as err:
        out["auth_error"] = {"status": err.status_code, "type": err.body["error"]["type"]}

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
