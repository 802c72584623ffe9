#!/usr/bin/env bash
# On CPU-only machines PyPI's torchvision/torchaudio wheels are CUDA builds that break imports next
# to the CPU torch ("operator torchvision::nms does not exist", "Could not load
# _torchaudio.abi3.so"). This workflow is text-only: torchvision goes; torchaudio must stay
# importable because LLaMA-Factory 0.9.5 imports it unconditionally (llamafactory/data/mm_plugin.py),
# so its native libraries are removed and torchaudio's own loader then imports it as plain Python.
# GPU machines keep the normal install.
set -euo pipefail
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  pip uninstall -y -q torchvision 2>/dev/null || true
  ta=$(python -c "import importlib.util, os; s = importlib.util.find_spec('torchaudio'); print(os.path.dirname(s.origin) if s else '')")
  if [ -n "$ta" ]; then rm -f "$ta"/lib/*.so; fi
  python -c "import torchaudio, llamafactory.data" # fails loudly if still broken
fi
