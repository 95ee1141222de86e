"""Drives the gateway with the official `openai` Python package and prints what it got.

Usage: openai_python_check.py BASE_URL API_KEY MODEL
Prints one JSON object; the Rust test asserts on it.
"""

import json
import sys

import openai


def main() -> None:
    base_url, api_key, model = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

    plain = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hello from python"}],
    )
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "raw headers please"}],
    )

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream from python"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage_chunks, ids, finish = [], [], set(), None
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage_chunks.append(chunk.usage.model_dump())
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason

    try:
        client.chat.completions.create(model="nobody/nothing", messages=[{"role": "user", "content": "x"}])
        not_found = None
    except openai.BadRequestError as err:
        not_found = {"status": err.status_code, "body": err.body}

    bad_key = openai.OpenAI(base_url=base_url, api_key="sk-sy-v1-" + "0" * 64, max_retries=0)
    try:
        bad_key.models.list()
        auth_error = None
    except openai.AuthenticationError as err:
        auth_error = err.status_code

    print(json.dumps({
        "openai_version": openai.__version__,
        "plain": {
            "id": plain.id,
            "model": plain.model,
            "content": plain.choices[0].message.content,
            "finish_reason": plain.choices[0].finish_reason,
            "usage": plain.usage.model_dump(),
        },
        "raw_generation_header": raw.headers.get("x-generation-id"),
        "raw_id": raw.parse().id,
        "stream": {"content": "".join(pieces), "usage_chunks": usage_chunks, "ids": sorted(ids), "finish_reason": finish},
        "models": [m.id for m in client.models.list()],
        "not_found": not_found,
        "auth_error": auth_error,
    }))


if __name__ == "__main__":
    main()
