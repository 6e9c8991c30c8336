#!/usr/bin/env bash
# Gateway load cases, each against release builds on a fresh topic prefix of the running local stack:
#   loadtest/gateway.sh idle [ws_idle args]   idle WebSocket connections one gateway holds, and its KiB each
#   loadtest/gateway.sh ttft [ws_ttft args]   time to first token as WebSocket clients see it, at 58 turns/s
#                                             through the whole pipeline and a mock LLM (200 ms, 50 tokens/s)
# Starts what the case needs (gateway; for ttft also the mock and `turnpike run`), with a throwaway HS256
# secret, runs the tool, and stops what it started. Env: GW_ADDR (127.0.0.1:18480), MOCK_ADDR
# (127.0.0.1:18490), MOCK_TTFT_MS (200), MOCK_TPS (50). Needs the stack started and set up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case_name=${1:?usage: loadtest/gateway.sh idle|ttft [tool arguments]}
shift
GW_ADDR=${GW_ADDR:-127.0.0.1:18480}
MOCK_ADDR=${MOCK_ADDR:-127.0.0.1:18490}
MOCK_TTFT_MS=${MOCK_TTFT_MS:-200}
MOCK_TPS=${MOCK_TPS:-50}
eval "$(deploy/local/stack.sh env)"

cargo build --release -q -p turnpike --bin turnpike -p turnpike-llm --bin turnpike-mock-llm \
    -p turnpike-gateway --bin turnpike-gateway -p turnpike-loadtest --bin ws_idle --bin ws_ttft
bin=target/release
prefix="lg$(date +%s)"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# Connections are file descriptors: as many as this shell may have, for the gateway and the tool alike.
ulimit -n "$(ulimit -Hn)"
TURNPIKE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
export TURNPIKE_JWT_SECRET

RUST_LOG=warn "$bin/turnpike" --topic-prefix "$prefix" topology apply >/dev/null
cat >"$work/gateway.toml" <<EOF
listen = "$GW_ADDR"
[[auth.jwt.keys]]
alg = "HS256"
secret_env = "TURNPIKE_JWT_SECRET"
EOF
TURNPIKE_GATEWAY_CONFIG="$work/gateway.toml" RUST_LOG=warn \
    "$bin/turnpike-gateway" --topic-prefix "$prefix" --metrics-addr 127.0.0.1:0 >"$work/gateway.log" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")
for _ in $(seq 300); do
    curl -fsS "http://$GW_ADDR/healthz" >/dev/null 2>&1 && break
    kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log" >&2; exit 1; }
    sleep 0.1
done
echo "== $(date -u +%FT%TZ) $(uptime)"

case "$case_name" in
idle)
    "$bin/ws_idle" --gateway "$GW_ADDR" --gateway-pid "$gateway_pid" "$@"
    ;;
ttft)
    "$bin/turnpike-mock-llm" --addr "$MOCK_ADDR" --ttft-ms "$MOCK_TTFT_MS" --tokens-per-sec "$MOCK_TPS" \
        >"$work/mock.log" 2>&1 &
    pids+=("$!")
    RUST_LOG=warn "$bin/turnpike" --topic-prefix "$prefix" run --llm-base-url "http://$MOCK_ADDR/v1" \
        --metrics-addr 127.0.0.1:0 >"$work/pipeline.log" 2>&1 &
    pids+=("$!")
    # Warm-up (consumer groups formed, connections and caches made); its figures are not reported.
    "$bin/ws_ttft" --gateway "$GW_ADDR" --rate 10 --turns 100 --conversations 40 --connections 8 \
        --tenants lt1,lt2,lt3,lt4 --drain-secs 120 >/dev/null
    # Four tenants: at 58 turns/s one tenant would spend most of its default 200,000 tokens a minute.
    "$bin/ws_ttft" --gateway "$GW_ADDR" --tenants lt1,lt2,lt3,lt4 --mock-ttft-ms "$MOCK_TTFT_MS" "$@"
    ;;
*)
    echo "unknown case $case_name (idle or ttft)" >&2
    exit 2
    ;;
esac
