#!/usr/bin/env bash
# What the tests need besides the stack and Rust: Debian's Chromium and ChromeDriver (the web page's
# browser test), the Python venv of the example Kafka client (the non-Rust client test) and Debian's
# Prometheus (`prometheus` and `promtool`: the alert rules' unit tests and the scrape test). The tests run
# their own Prometheus with a config, data folder and port of their own; the package's service is never
# started here (a machine without an init system does not start it on install either). Idempotent and
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

# Installs Debian packages (extra apt options first, then `--`, then the packages), updating the package lists
# once if the first try fails.
apt_install() {
  local opts=()
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  log "installing $* (apt)"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -o DPkg::Lock::Timeout=300)
  if ! as_root "${apt[@]}" install -y -q "${opts[@]}" "$@" </dev/null >&2; then
    as_root "${apt[@]}" update -q </dev/null >&2 || true
    as_root "${apt[@]}" install -y -q "${opts[@]}" "$@" </dev/null >&2
  fi
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] || apt_install -- "${missing[@]}"
# Without recommends: prometheus-node-exporter is a second service nobody here needs. A machine that does run
# services starts the package's own Prometheus (port 9090, which the tests do not use); leave it be.
command -v promtool >/dev/null 2>&1 || apt_install --no-install-recommends -- prometheus
command -v chromium >/dev/null && command -v chromedriver >/dev/null || { log "chromium/chromedriver missing"; exit 1; }
command -v prometheus >/dev/null && command -v promtool >/dev/null || { log "prometheus/promtool missing"; exit 1; }
"$ROOT/deploy/local/python-env.sh" >/dev/null
prom_version=$(prometheus --version 2>&1 || true)
log "ready: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2), ${prom_version%%$'\n'*}, python venv"
