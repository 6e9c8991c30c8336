#!/usr/bin/env bash
# The README's main command: starts the local stack and prepares it (topics, schemas, migrations).
# Once the pipeline stages land, this also starts the whole pipeline with the mock LLM and a terminal chat.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
deploy/local/stack.sh start
eval "$(deploy/local/stack.sh env)"
cargo build --release -p turnpike --bin turnpike
target/release/turnpike setup
deploy/local/stack.sh status
