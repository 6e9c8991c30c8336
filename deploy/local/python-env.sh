#!/usr/bin/env bash
# The Python environment of the example Kafka client (clients/python): a venv with the pinned
# confluent-kafka + Avro + schema registry packages of clients/python/requirements.txt.
#
#   deploy/local/python-env.sh        create or update the venv, then print its python's path on stdout
#
# Venv: $TURNPIKE_PYTHON_VENV, default ${TURNPIKE_STACK_DIR:-<repo>/.stack}/venv (git-ignored; a fresh CI
# clone builds it once per run, `stack.sh clean` removes it). It is rebuilt only when requirements.txt or the
# base interpreter changed (a stamp file records both), so a warm call only checks and prints. Progress goes
# to stderr. Base interpreter: $PYTHON, default python3 (3.9+). On Debian, python3 -m venv needs the
# python3-venv package: installed with apt-get when missing and we are root (or have passwordless sudo).
# The test crates/turnpike/tests/e2e/python_client.rs finds the venv at the same default place, or takes the
# interpreter from $TURNPIKE_PYTHON:   export TURNPIKE_PYTHON=$(deploy/local/python-env.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_DIR=$(realpath -m "${TURNPIKE_STACK_DIR:-$ROOT/.stack}")
VENV=$(realpath -m "${TURNPIKE_PYTHON_VENV:-$STACK_DIR/venv}")
REQ="$ROOT/clients/python/requirements.txt"
PYTHON=${PYTHON:-python3}

log() { printf '[python-env] %s\n' "$*" >&2; }
die() { printf '[python-env] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or passwordless sudo) for: $*"
  fi
}

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (install python3 3.9+ or set PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$PYTHON is older than 3.9"
[ -f "$REQ" ] || die "missing $REQ"

# What the venv was built from: a change of either means rebuild.
base=$("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')
stamp=$( { cat "$REQ"; echo "$base"; } | sha256sum | cut -d' ' -f1)

mkdir -p "$(dirname "$VENV")"
# Two callers at once (e.g. two test runs) must not build into the same folder.
exec 9>"$VENV.lock"
flock 9

if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.turnpike-stamp" 2>/dev/null)" = "$stamp" ] \
  && "$VENV/bin/python" -c 'import confluent_kafka, fastavro, confluent_kafka.schema_registry.avro' 2>/dev/null; then
  printf '%s\n' "$VENV/bin/python"
  exit 0
fi

# Debian splits venv/ensurepip out of python3 into python3-venv.
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  command -v apt-get >/dev/null 2>&1 || die "$PYTHON has no venv/ensurepip module and apt-get is not available"
  log "installing python3-venv (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -q python3-venv </dev/null >&2; then
    as_root apt-get update -q </dev/null >&2 || true
    as_root apt-get install -y -q python3-venv </dev/null >&2 || die "apt-get install python3-venv failed"
  fi
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON still has no venv/ensurepip after installing python3-venv"
fi

started=$(date +%s.%N)
log "building $VENV from $REQ ($base)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2 || die "$PYTHON -m venv $VENV failed"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" >&2 \
  || die "pip install -r $REQ failed (PyPI reachable?)"
"$VENV/bin/python" -c 'import confluent_kafka, fastavro, confluent_kafka.schema_registry.avro' \
  || die "the venv does not import confluent_kafka with its Avro serializer"
# Written last: an interrupted build has no stamp and is rebuilt next time.
printf '%s\n' "$stamp" > "$VENV/.turnpike-stamp"
log "ready in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s: confluent-kafka $("$VENV/bin/python" -c 'import confluent_kafka; print(confluent_kafka.__version__, "with librdkafka", confluent_kafka.libversion()[0])')"
printf '%s\n' "$VENV/bin/python"
