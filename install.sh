#!/usr/bin/env bash
# One-command install of empathy-distill into ./.venv (Python >= 3.11).
#
#   bash install.sh          CPU machine: CPU build of torch (small, no CUDA download)
#   bash install.sh --gpu    GPU machine: the default CUDA build of torch from PyPI
#
# Then: . .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")"
export PIP_DISABLE_PIP_VERSION_CHECK=1
gpu=false
[ "${1:-}" = "--gpu" ] && gpu=true

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip install -q --upgrade pip
if $gpu; then
  pip install -q -e ".[dev]"
else
  # CPU build first, then keep it: an unpinned resolve would pull a multi-GB CUDA build.
  pip install -q torch==2.13.0
  pip install -q -c .ci/constraints-cpu.txt -e ".[dev]"
  bash .ci/cpu_torch_fixups.sh
fi
python -c "import empathy_distill, snakemake; print('empathy-distill installed in .venv')"
