#!/usr/bin/env bash
# The GPU path in one go (under 5 minutes): LeNet5 and an LSTM trained on cuda in 32 and mixed precision,
# their loss checked against the CPU's, step times CPU/GPU and 32/mixed, and a grid sharing the GPU.
#   bash bench/gpu_check.sh                              # a CUDA GPU and a CUDA build of torch
#   bash bench/gpu_check.sh --device cpu --episodes 40   # a dry run of the same path on the CPU
# Arguments go to bench/gpu_check.py (--device, --episodes, --mnist DIR, --threads, --no-grid).
# Exit code: 0 passed, 1 a check failed, 2 no such device, 124 it ran past 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec timeout 300 "$PYTHON" bench/gpu_check.py "$@"
