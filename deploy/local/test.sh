#!/usr/bin/env bash
# The README's test command. On a fresh machine it installs and starts the local stack (Kafka, Cassandra,
# schema registry, Redis) and the test tools (Chromium, a Python venv), prepares the stack (topics, schemas,
# migrations) and runs every test of the workspace.
# Extra arguments go to `cargo test` (e.g. `deploy/local/test.sh -p turnpike-topology`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
STATE=${TURNPIKE_STACK_DIR:-$ROOT/.stack}
mkdir -p "$STATE/logs"

# The encoder and ONNX Runtime for the model checks' tests (pinned, sha256-checked, cached: ~3 s cold, instant
# warm). The tests that need them find them in models.sh's cache and fail without them rather than skip. Not
# exported: the other pipeline tests keep guard-in's pattern checks only, as they were written for (their
# scripted messages such as "[[mock:tokens=20]]" are not what the heads were trained to pass).
deploy/local/models.sh > /dev/null

# Start the stack in the background while the tests compile: both take minutes on a fresh machine, and the
# JVMs mostly wait on I/O while rustc uses the cores.
deploy/local/stack.sh start > "$STATE/logs/stack-start.out" 2>&1 &
STACK_PID=$!
# Chromium + ChromeDriver (browser test) and the Python venv (Kafka client test), also in the background.
deploy/local/test-deps.sh > "$STATE/logs/test-deps.out" 2>&1 &
DEPS_PID=$!

cargo test --workspace --no-run "$@"
# The stack tests start these as processes of their own (a stage; the gateway in desk_gateway.rs).
cargo build -p turnpike --bin turnpike -p turnpike-gateway --bin turnpike-gateway

if ! wait "$STACK_PID"; then
    echo "The local stack did not start:" >&2
    cat "$STATE/logs/stack-start.out" >&2
    exit 1
fi
cat "$STATE/logs/stack-start.out"
if ! wait "$DEPS_PID"; then
    echo "The test dependencies (chromium, python venv) could not be installed:" >&2
    cat "$STATE/logs/test-deps.out" >&2
    exit 1
fi
cat "$STATE/logs/test-deps.out"
eval "$(deploy/local/stack.sh env)"

target/debug/turnpike setup
cargo test --workspace --no-fail-fast "$@"
