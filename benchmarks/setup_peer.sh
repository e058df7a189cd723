#!/usr/bin/env bash
# Create the peer tool's virtual environment: benchmarks/.venv-llmc with llm-compressor.
#
# llm-compressor pins its own transformers range (0.14.x: transformers>=5.15,<=5.17), which differs
# from lp_prune's, so it lives in a venv of its own; lp_prune is NOT installed there.
# torch==2.13.0 is installed first so pip takes the CPU wheel (and the same torch as lp_prune's).
# Idempotent: a venv whose python already imports llmcompressor is left as it is (--force rebuilds).
#
#   bash benchmarks/setup_peer.sh [--force]
#   LLMC_VERSION=0.14.0.1 bash benchmarks/setup_peer.sh     # pin a version (default: newest 0.14.x)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LLMC_VENV:-$HERE/.venv-llmc}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
LLMC_SPEC="llmcompressor${LLMC_VERSION:+==$LLMC_VERSION}"
[[ -z "${LLMC_VERSION:-}" ]] && LLMC_SPEC="llmcompressor>=0.14,<0.15"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
fi

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import llmcompressor" 2>/dev/null; then
    echo "peer venv ready: $VENV ($("$VENV/bin/python" -c 'import llmcompressor; print("llmcompressor", llmcompressor.__version__)'))"
    exit 0
fi

echo "creating $VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install "$LLMC_SPEC" "torch==$TORCH_VERSION"
"$VENV/bin/python" - <<'PY'
import llmcompressor, torch, transformers
print(f"peer venv ready: llmcompressor {llmcompressor.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}")
PY
