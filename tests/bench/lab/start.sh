#!/bin/bash
# Starts the profiling lab: the bench mock, a control plane and a gateway on fixed loopback
# ports (18080/18081/18090), one model on the mock, and wrk scripts that POST the bench
# body (and variants: streamed, Anthropic-shaped, a long conversation) with an API key.
# Usage: start.sh [BIN_DIR]  (default: target/release)
set -euo pipefail
B=${1:-${CARGO_TARGET_DIR:-target}/release}; D=${LAB:-/tmp/switchyard-lab}
pkill -f "$B/switchyard" || true; sleep 0.5; rm -rf "$D"; mkdir -p "$D"
"$B/switchyard-bench" mock > "$D/mock.out" 2> "$D/mock.err" &
for _ in $(seq 50); do [ -s "$D/mock.out" ] && break; sleep 0.1; done
MOCK=http://$(head -1 "$D/mock.out")/v1; echo "mock=$MOCK"
MK=sk-sy-v1-$(printf "a%.0s" $(seq 64)); AK=sk-sy-v1-$(printf "b%.0s" $(seq 64))
SWITCHYARD_BOOTSTRAP_MANAGEMENT_KEY=$MK SWITCHYARD_BOOTSTRAP_API_KEY=$AK SWITCHYARD_LOG=warn SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS=true \
  "$B/switchyard" control-plane --data-dir "$D/data" --http-listen 127.0.0.1:18080 --grpc-listen 127.0.0.1:18081 --node-token nodetoken-0123456789 > "$D/cp.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18080/ && break; sleep 0.1; done
SWITCHYARD_LOG=warn "$B/switchyard-gateway" --listen 127.0.0.1:18090 --control-plane http://127.0.0.1:18081 --control-plane-http http://127.0.0.1:18080 \
  --node-token nodetoken-0123456789 --node-id lab --spool-dir "$D/spool" > "$D/gw.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18090/ && break; sleep 0.1; done
curl -sf -H "authorization: Bearer $MK" -H 'content-type: application/json' 127.0.0.1:18080/api/v1/providers \
  -d "{\"slug\":\"bench-mock\",\"kind\":\"openai_compatible\",\"base_url\":\"$MOCK\",\"api_key\":\"sk-mock\"}" > /dev/null
curl -sf -H "authorization: Bearer $MK" -H 'content-type: application/json' 127.0.0.1:18080/api/v1/models \
  -d '{"id":"bench/model","context_length":128000,"endpoints":[{"provider":"bench-mock","model":"bench-model","pricing":{"prompt":"0.00000015","completion":"0.0000006"}}]}' > /dev/null
BODY='{"model":"bench/model","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello to the benchmark in one short sentence."}],"max_tokens":32}'
echo "$BODY" > "$D/body.json"
code=000
for _ in $(seq 100); do
  code=$(curl -s -o "$D/first.json" -w '%{http_code}' -H "authorization: Bearer $AK" -H 'content-type: application/json' \
    127.0.0.1:18090/api/v1/chat/completions -d "$BODY"); [ "$code" = 200 ] && break; sleep 0.1
done
echo "first answer: HTTP $code"
# A 45 KB conversation (system prompt and eight exchanges of ~2.6 KB each, then
# the bench's question), for costs that grow with the prompt.
LONG=$(python3 -c 'import json
w = "the quick brown fox jumps over the lazy dog while a patient gateway meters every token " * 30
m = [{"role": "system", "content": "You are a terse assistant. " + w}]
for i in range(8):
    m += [{"role": "user", "content": f"Question {i}: " + w}, {"role": "assistant", "content": f"Answer {i}: " + w}]
m.append({"role": "user", "content": "Say hello to the benchmark in one short sentence."})
print(json.dumps({"model": "bench/model", "messages": m, "max_tokens": 32}))')
# post.lua: the body as it is; post-stream.lua: the same with "stream":true (20 content chunks);
# post-messages.lua: the same request in Anthropic's shape, for /api/v1/messages; post-long.lua:
# the long conversation.
MESSAGES='{"model":"bench/model","system":"You are a terse assistant.","messages":[{"role":"user","content":"Say hello to the benchmark in one short sentence."}],"max_tokens":32}'
for variant in post:"$BODY" post-stream:"${BODY%\}},\"stream\":true}" post-messages:"$MESSAGES" post-long:"$LONG"; do
  cat > "$D/${variant%%:*}.lua" <<LUA
wrk.method = "POST"
wrk.body = '${variant#*:}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $AK"
LUA
done
