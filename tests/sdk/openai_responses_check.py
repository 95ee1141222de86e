"""Drives the gateway's Responses API with the official `openai` Python package.

Usage: openai_responses_check.py BASE_URL API_KEY PLAIN_MODEL TOOL_MODEL
TOOL_MODEL must call the `get_weather` tool on the first turn, thinking while doing it.
Prints one JSON object; the Rust test asserts on it.
"""

import json
import sys

import openai

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


def main() -> None:
    base_url, api_key, plain_model, tool_model = sys.argv[1:5]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    out = {}

    plain = client.responses.create(model=plain_model, input="hello from python", store=False)
    out["plain"] = {"id": plain.id, "text": plain.output_text, "status": plain.status,
                    "usage": plain.usage.model_dump() if plain.usage else None}

    with client.responses.stream(model=plain_model, input="stream from python", store=False) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    out["stream"] = {"deltas": deltas, "text": final.output_text, "status": final.status,
                     "usage": final.usage.model_dump() if final.usage else None}

    first = [{"role": "user", "content": "weather in Lima"}]
    with client.responses.stream(model=tool_model, input=first, tools=[WEATHER], store=False,
                                 reasoning={"effort": "medium"}, max_output_tokens=4096) as stream:
        called = stream.get_final_response()
    call = next(i for i in called.output if i.type == "function_call")
    kept = [i.model_dump(exclude_none=True) for i in called.output]
    second = client.responses.create(
        model=tool_model, tools=[WEATHER], store=False, reasoning={"effort": "medium"}, max_output_tokens=4096,
        input=first + kept + [{"type": "function_call_output", "call_id": call.call_id, "output": "mild"}],
    )
    out["tools"] = {"name": call.name, "arguments": json.loads(call.arguments),
                    "kinds": [i.type for i in called.output], "answer": second.output_text}

    try:
        client.responses.create(model=plain_model, input="x", previous_response_id="resp_1")
        out["stateful"] = None
    except openai.BadRequestError as err:
        out["stateful"] = {"status": err.status_code}

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
