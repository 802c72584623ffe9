#!/usr/bin/env bash
# One-command install of empathy-distill into ./.venv (Python >= 3.11).
#
#   bash install.sh                     CPU machine: CPU build of torch (small, no CUDA download)
#   bash install.sh --gpu               GPU machine: torch 2.11.0 from PyPI, a CUDA 13.0 build
#                                       (NVIDIA driver >= 580); versions from
#                                       envs/constraints-gpu.txt and envs/lock-gpu.txt
#   bash install.sh --gpu --cuda cu128  the same torch release as a CUDA 12.8 build from
#                                       download.pytorch.org (drivers 525-579); any tag that
#                                       index has for torch 2.11.0 works (cu126, cu128, ...)
#   bash install.sh --gpu --vllm        also vLLM (generation.engine: vllm), CUDA 13 builds only
#
# TORCH_INDEX_URL=<url> replaces the download.pytorch.org index of --cuda (a mirror).
# Then: . .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")"
export PIP_DISABLE_PIP_VERSION_CHECK=1
gpu=false vllm=false cuda=""
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) gpu=true ;;
    --vllm) vllm=true ;;
    --cuda) cuda="${2:?--cuda needs a tag such as cu128}"; shift ;;
    *) echo "install.sh: unknown option $1 (see the header of install.sh)" >&2; exit 2 ;;
  esac
  shift
done
if ! $gpu && { $vllm || [ -n "$cuda" ]; }; then
  echo "install.sh: --cuda and --vllm need --gpu" >&2; exit 2
fi
if $vllm && [ -n "$cuda" ]; then
  # vLLM's PyPI wheels need CUDA 13 libraries (nvidia-cutlass-dsl[cu13]): no CUDA 12 build here.
  echo "install.sh: --vllm needs PyPI's CUDA 13 torch (driver >= 580); drop --cuda or --vllm" >&2
  exit 2
fi

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
pip install -q --upgrade pip
if $gpu; then
  # One torch / torchvision / torchaudio release inside LLaMA-Factory 0.9.5's window and the
  # training stack of envs/train.yaml (an unpinned resolve pairs the newest torch with a
  # torchaudio built for an older one, and LLaMA-Factory imports torchaudio); the lock pins
  # everything else to the resolution CI checks (.ci/gpu_resolve.sh).
  constraints=(-c envs/constraints-gpu.txt -c envs/lock-gpu.txt)
  if [ -n "$cuda" ]; then
    index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$cuda}"
    # 2.11.0+cu128 satisfies torch==2.11.0, so the install below keeps it (and replaces any of
    # torch's plain dependencies that the lock pins otherwise; that index hosts few versions).
    pip install -q -c envs/constraints-gpu.txt --index-url "$index" torch torchvision torchaudio
  fi
  extras=dev
  if $vllm; then extras=dev,vllm; fi
  pip install -q "${constraints[@]}" -e ".[$extras]"
  python -m empathy_distill.install_check --gpu
else
  # CPU build first, then keep it: an unpinned resolve would pull a multi-GB CUDA build.
  pip install -q torch==2.13.0
  pip install -q -c .ci/constraints-cpu.txt -e ".[dev]"
  bash .ci/cpu_torch_fixups.sh
  python -m empathy_distill.install_check
fi
echo "empathy-distill installed in .venv"
