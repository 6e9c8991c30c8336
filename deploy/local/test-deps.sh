#!/usr/bin/env bash
# What the tests need besides the stack and Rust: Debian's Chromium and ChromeDriver (the web page's
# browser test) and the Python venv of the example Kafka client (the non-Rust client test). Idempotent and
# quick when everything is there; installs with apt when missing and we are root (or have passwordless
# sudo). Waits for the dpkg lock instead of failing, because stack.sh may be installing Redis at the same time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log() { printf '[test-deps] %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root (or passwordless sudo) for: $*"; return 1
  fi
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt=(apt-get -o DPkg::Lock::Timeout=300)
  if ! as_root "${apt[@]}" install -y -q "${missing[@]}" </dev/null >&2; then
    as_root "${apt[@]}" update -q </dev/null >&2 || true
    as_root "${apt[@]}" install -y -q "${missing[@]}" </dev/null >&2
  fi
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null || { log "chromium/chromedriver missing"; exit 1; }
"$ROOT/deploy/local/python-env.sh" >/dev/null
log "ready: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2), python venv"
