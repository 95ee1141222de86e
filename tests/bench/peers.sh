#!/usr/bin/env bash
# Installs and starts the peer gateways the benchmark compares Switchyard with, from the public
# registries, into a scratch directory. Nothing of theirs is committed to this repository.
#
#   peers.sh install  <litellm|portkey> DIR        idempotent; exit status != 0 when it cannot install
#   peers.sh start    litellm DIR MOCK_BASE_URL PORT   runs in the foreground until killed
#   peers.sh start    portkey DIR MOCK_BASE_URL PORT
#
# MOCK_BASE_URL is the mock's OpenAI base URL, e.g. http://127.0.0.1:18001/v1.
# LiteLLM gets the local cost map (no download at start) and the master key from
# LITELLM_MASTER_KEY (recent releases refuse to start without one); Portkey is pointed at the mock
# per request with x-portkey-* headers.
set -euo pipefail

usage() {
    sed -n '2,10p' "$0" >&2
    exit 2
}

[ $# -ge 3 ] || usage
cmd=$1 peer=$2 dir=$3
mkdir -p "$dir"

install_litellm() {
    local venv="$dir/litellm-venv"
    if [ -x "$venv/bin/litellm" ] && [ -f "$venv/.installed" ]; then
        return 0
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]'
    touch "$venv/.installed"
}

install_portkey() {
    local root="$dir/portkey"
    if [ -f "$root/.installed" ]; then
        return 0
    fi
    mkdir -p "$root"
    (cd "$root" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error @portkey-ai/gateway)
    touch "$root/.installed"
}

start_litellm() {
    local base=$1 port=$2 venv="$dir/litellm-venv"
    [ -x "$venv/bin/litellm" ] || { echo "litellm is not installed in $venv" >&2; exit 3; }
    # Recent releases refuse to start without a strong master key; clients send it as the bearer.
    : "${LITELLM_MASTER_KEY:?set LITELLM_MASTER_KEY (sk-… , 32+ random characters)}"
    local config="$dir/litellm-config.yaml"
    cat >"$config" <<EOF
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: $base
      api_key: sk-mock
  - model_name: bench-slow
    litellm_params:
      model: openai/bench-slow
      api_base: $base
      api_key: sk-mock
general_settings:
  master_key: $LITELLM_MASTER_KEY
litellm_settings:
  telemetry: false
  set_verbose: false
  drop_params: true
EOF
    export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR DISABLE_SCHEMA_UPDATE=True
    # Two workers: one per core, as the Rust arms get a two-thread runtime.
    exec "$venv/bin/litellm" --config "$config" --host 127.0.0.1 --port "$port" \
        --num_workers "${LITELLM_WORKERS:-2}"
}

start_portkey() {
    local port=$2 root="$dir/portkey/node_modules/@portkey-ai/gateway"
    [ -d "$root" ] || { echo "portkey is not installed in $dir/portkey" >&2; exit 3; }
    local entry
    entry=$(ls "$root"/build/start-server.js 2>/dev/null || true)
    [ -n "$entry" ] || { echo "no build/start-server.js in $root" >&2; exit 3; }
    NODE_ENV=production exec node "$entry" --port="$port" --headless
}

case "$cmd:$peer" in
    install:litellm) install_litellm ;;
    install:portkey) install_portkey ;;
    start:litellm) [ $# -eq 5 ] || usage; start_litellm "$4" "$5" ;;
    start:portkey) [ $# -eq 5 ] || usage; start_portkey "$4" "$5" ;;
    *) usage ;;
esac
