#!/usr/bin/env bash
# The packaged Gemma-3-270M pruned on the GPU (float32 and bfloat16, SparseGPT and Wanda) against the
# same configs on the CPU: time per phase, peak device memory vs the estimate, mask IoU, perplexity.
# About 10 minutes on an H200 with 16 CPU cores (the CPU reference runs take most of it); prints a
# Markdown table and writes benchmarks/results/<timestamp>-gpu-check/. Options go to gpu_check.py
# (e.g. --nsamples 8 --eval-windows 2 to make it shorter; python benchmarks/gpu_check.py --help).
# Needs lp_prune installed (pip install -e .) with a CUDA build of torch. Without a CUDA device it
# says so in one line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device on this machine (torch.cuda.is_available() is false); nothing to check"
    exit 0
fi
exec "$PYTHON" benchmarks/gpu_check.py all "$@"
