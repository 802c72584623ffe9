#!/usr/bin/env bash
# What `bash install.sh --gpu --vllm` installs, resolved without downloading a wheel:
# `pip install --dry-run --report` writes the resolution as JSON. tests/test_gpu_install.py
# checks it: one torch / torchvision / torchaudio release, LLaMA-Factory's and vLLM's own pins,
# envs/constraints-gpu.txt and envs/lock-gpu.txt. The vllm extra only adds requirements, so this
# resolve also proves the plain --gpu install.
#
#   bash .ci/gpu_resolve.sh [REPORT]            under the lock (CI); default
#                                               results/ci/gpu_resolve.json
#   bash .ci/gpu_resolve.sh --relock [REPORT]   open resolve (slow: minutes of backtracking),
#                                               then rewrite envs/lock-gpu.txt from it
set -euo pipefail
cd "$(dirname "$0")/.."
relock=false
if [ "${1:-}" = "--relock" ]; then relock=true; shift; fi
report="${1:-results/ci/gpu_resolve.json}"
mkdir -p "$(dirname "$report")"
lock=(-c envs/lock-gpu.txt)
if $relock; then lock=(); fi
started=$(date +%s)
# --ignore-installed: resolve from scratch, not against this (CPU) venv.
pip install --dry-run --ignore-installed --quiet --report "$report" \
  -c envs/constraints-gpu.txt "${lock[@]}" -e ".[dev,vllm]"
if $relock; then python .ci/gpu_lock.py "$report" envs/lock-gpu.txt; fi
echo "GPU resolve: $(python -c "import json, sys; print(len(json.load(open(sys.argv[1]))['install']))" "$report") packages in $(( $(date +%s) - started ))s -> $report"
