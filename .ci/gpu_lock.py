"""Write envs/lock-gpu.txt, every distribution of a GPU resolve pinned, from pip's report.

Why: the open resolve of the GPU install backtracks for minutes whenever a new release of a
starlette/fastapi package conflicts with LLaMA-Factory's gradio (seen: > 10 min, 15 starlette
wheels tried), and what it settles on changes from day to day. `install.sh --gpu` and CI install
under this lock instead: one resolution, the same everywhere, checked by tests/test_gpu_install.py.

    bash .ci/gpu_resolve.sh --relock     # resolve without the lock, then rewrite it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = """\
# Every distribution of the GPU install (`bash install.sh --gpu [--vllm]`), pinned: written by
# .ci/gpu_lock.py from a resolve of `-c envs/constraints-gpu.txt -e ".[dev,vllm]"` on CPython
# {python} / {machine}. Refresh with `bash .ci/gpu_resolve.sh --relock`; do not edit by hand
# (the hand-kept pins live in envs/constraints-gpu.txt).
"""


def lock_lines(report: dict) -> list[str]:
    """``name==version`` of every distribution pip would install, but the project itself."""
    pins = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in report["install"]
        if "dir_info" not in item["download_info"]  # the editable project
    }
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def main(report_path: str, out_path: str) -> None:
    report = json.loads(Path(report_path).read_text())
    environment = report["environment"]
    header = HEADER.format(
        python=environment["python_full_version"], machine=environment["platform_machine"]
    )
    Path(out_path).write_text(header + "\n".join(lock_lines(report)) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
