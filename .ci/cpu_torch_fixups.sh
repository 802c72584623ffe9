#!/usr/bin/env bash
# On CPU-only machines PyPI's torchvision/torchaudio wheels are CUDA builds that break imports
# next to the CPU torch ("operator torchvision::nms does not exist", "Could not load
# _torchaudio.abi3.so"). Nothing in this workflow needs them (text-only models), and transformers
# and LLaMA-Factory import fine without them, so remove them. GPU machines keep the normal install.
set -euo pipefail
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  pip uninstall -y -q torchvision torchaudio 2>/dev/null || true
fi
