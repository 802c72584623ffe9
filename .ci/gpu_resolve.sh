#!/usr/bin/env bash
# What `bash install.sh --gpu --vllm` would install, resolved without downloading a wheel:
# `pip install --dry-run --report` reads the packages' metadata from the index (PEP 658) and
# writes the resolution as JSON. tests/test_gpu_install.py checks it: one torch / torchvision /
# torchaudio release, LLaMA-Factory's and vLLM's own pins, envs/constraints-gpu.txt.
# The vllm extra only adds requirements, so this resolve also proves the plain --gpu install.
#
#   bash .ci/gpu_resolve.sh [REPORT]    default results/ci/gpu_resolve.json
set -euo pipefail
cd "$(dirname "$0")/.."
report="${1:-results/ci/gpu_resolve.json}"
mkdir -p "$(dirname "$report")"
started=$(date +%s)
# --ignore-installed: resolve from scratch, not against this (CPU) venv.
pip install --dry-run --ignore-installed --quiet --report "$report" \
  -c envs/constraints-gpu.txt -e ".[dev,vllm]"
echo "GPU resolve: $(python -c "import json, sys; print(len(json.load(open(sys.argv[1]))['install']))" "$report") packages in $(( $(date +%s) - started ))s -> $report"
