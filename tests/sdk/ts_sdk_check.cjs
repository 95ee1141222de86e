// Drives the gateway with the official TypeScript SDKs (`openai`, `@anthropic-ai/sdk`) and
// prints what they got as one JSON object; the Rust test asserts on it.
//
// Usage: NODE_PATH=<dir with node_modules> node ts_sdk_check.cjs ROOT_URL API_KEY PLAIN_MODEL TOOL_MODEL
// ROOT_URL is the gateway without a path; TOOL_MODEL must call `get_weather` on the first turn.

const OpenAI = require("openai");
const Anthropic = require("@anthropic-ai/sdk");

const schema = { type: "object", properties: { q: { type: "string" } }, required: ["q"] };

async function main() {
  const [root, apiKey, plainModel, toolModel] = process.argv.slice(2);
  const out = {};

  const openai = new OpenAI({ baseURL: `${root}/api/v1`, apiKey, maxRetries: 0 });
  const plain = await openai.chat.completions.create({
    model: plainModel,
    messages: [{ role: "user", content: "hello from typescript" }],
  });
  const pieces = [];
  let usageChunks = 0;
  const stream = await openai.chat.completions.create({
    model: plainModel,
    stream: true,
    messages: [{ role: "user", content: "stream from typescript" }],
  });
  for await (const chunk of stream) {
    if (chunk.usage) usageChunks += 1;
    for (const choice of chunk.choices) if (choice.delta?.content) pieces.push(choice.delta.content);
  }
  const tools = [{ type: "function", function: { name: "get_weather", parameters: schema } }];
  const runner = openai.chat.completions.stream({
    model: toolModel,
    messages: [{ role: "user", content: "weather in Quito" }],
    tools,
  });
  const called = await runner.finalChatCompletion();
  const call = called.choices[0].message.tool_calls[0];
  out.openai = {
    plain: plain.choices[0].message.content,
    id: plain.id,
    stream: pieces.join(""),
    usageChunks,
    toolName: call.function.name,
    toolArgs: JSON.parse(call.function.arguments),
    finish: called.choices[0].finish_reason,
  };

  const anthropic = new Anthropic({ baseURL: `${root}/api`, apiKey, maxRetries: 0 });
  const message = await anthropic.messages.create({
    model: plainModel,
    max_tokens: 64,
    messages: [{ role: "user", content: "hello from typescript" }],
  });
  const aStream = anthropic.messages.stream({
    model: plainModel,
    max_tokens: 64,
    messages: [{ role: "user", content: "stream from typescript" }],
  });
  const aPieces = [];
  aStream.on("text", (t) => aPieces.push(t));
  const aFinal = await aStream.finalMessage();
  const toolStream = anthropic.messages.stream({
    model: toolModel,
    max_tokens: 4096,
    thinking: { type: "enabled", budget_tokens: 2048 },
    tools: [{ name: "get_weather", input_schema: schema }],
    messages: [{ role: "user", content: "weather in Quito" }],
  });
  const toolMessage = await toolStream.finalMessage();
  const toolUse = toolMessage.content.find((b) => b.type === "tool_use");
  const second = await anthropic.messages.create({
    model: toolModel,
    max_tokens: 4096,
    thinking: { type: "enabled", budget_tokens: 2048 },
    tools: [{ name: "get_weather", input_schema: schema }],
    messages: [
      { role: "user", content: "weather in Quito" },
      { role: "assistant", content: toolMessage.content },
      { role: "user", content: [{ type: "tool_result", tool_use_id: toolUse.id, content: "cool" }] },
    ],
  });
  let authError = null;
  try {
    await new Anthropic({ baseURL: `${root}/api`, apiKey: "sk-sy-v1-" + "0".repeat(64), maxRetries: 0 }).messages.create({
      model: plainModel,
      max_tokens: 8,
      messages: [{ role: "user", content: "x" }],
    });
  } catch (err) {
    authError = { status: err.status, type: err.error?.error?.type };
  }
  out.anthropic = {
    plain: message.content[0].text,
    stopReason: message.stop_reason,
    stream: aPieces.join(""),
    streamUsage: aFinal.usage,
    toolName: toolUse.name,
    toolInput: toolUse.input,
    thinkingKinds: toolMessage.content.map((b) => b.type),
    answer: second.content.filter((b) => b.type === "text").map((b) => b.text).join(""),
    authError,
  };
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
