"""One machine's GPUs as file-locked slots, so concurrent jobs get disjoint devices.

WHY: Snakemake's ``--resources gpu=N`` only counts GPUs; it never says which ones a job may use
(snakemake issue #281), so every local GPU job would see, and use, every card. Each device gets
one lock file, taken with ``flock`` through the LLM layer's :class:`SharedSlots` (the API
concurrency slots): the kernel drops the lock of a killed process, so a SIGKILL never leaks a GPU.

A job that needs ``k`` devices takes them all at once or none: under a short allocator lock it
tries every device without blocking and, short of ``k``, gives back what it took and looks again
later. No job ever holds some devices while waiting for others, so two multi-GPU jobs cannot
deadlock, and a waiting job leaves the free devices to jobs that fit.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..llm.limits import SharedSlots

ALLOCATOR_LOCK = "allocator.lock"
#: How often a job waiting for its devices looks again.
POLL_S = 0.05


def slot_name(device: str) -> str:
    """A file-system-safe folder name for a device id (an index, a GPU-/MIG- UUID)."""
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device)


class GpuSlots:
    """The devices ``device_ids`` of this machine, shared by every process using ``directory``.

    Slots are named by device id, not by position, so two runs that see different
    ``CUDA_VISIBLE_DEVICES`` lists still agree on which card is which.
    """

    def __init__(self, directory: str | Path, device_ids: Sequence[str]) -> None:
        if len(set(device_ids)) != len(device_ids):
            raise ValueError(f"device ids repeat: {list(device_ids)}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.device_ids = tuple(device_ids)
        self._slots = {d: SharedSlots(self.directory / slot_name(d), 1) for d in self.device_ids}
        self._allocator = os.open(self.directory / ALLOCATOR_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        self._held: list[str] = []

    def try_take(self, k: int) -> tuple[str, ...] | None:
        """``k`` devices, locked now (in the order of ``device_ids``), or None, holding nothing
        more, when fewer than ``k`` are free."""
        fcntl.flock(self._allocator, fcntl.LOCK_EX)
        try:
            taken: list[str] = []
            for device in self.device_ids:
                if len(taken) == k:
                    break
                if device not in self._held and self._slots[device].try_acquire() is not None:
                    taken.append(device)
            if len(taken) < k:
                for device in taken:
                    self._slots[device].release(0)
                return None
            self._held.extend(taken)
            return tuple(taken)
        finally:
            fcntl.flock(self._allocator, fcntl.LOCK_UN)

    def take(
        self,
        k: int,
        *,
        timeout_s: float | None = None,
        on_wait: Callable[[float], None] | None = None,
        report_every_s: float = 60.0,
    ) -> tuple[str, ...]:
        """``k`` devices together, waiting until that many are free at once.

        ``on_wait(seconds waited)`` is called when the wait starts and every
        ``report_every_s``; past ``timeout_s`` (None: no limit) a TimeoutError is raised.
        """
        if not 1 <= k <= len(self.device_ids):
            raise ValueError(f"asked for {k} of {len(self.device_ids)} devices")
        start = time.monotonic()
        next_report = start
        while (taken := self.try_take(k)) is None:
            now = time.monotonic()
            if timeout_s is not None and now - start > timeout_s:
                raise TimeoutError(f"{k} of devices {list(self.device_ids)} not free together")
            if on_wait is not None and now >= next_report:
                on_wait(now - start)
                next_report = now + report_every_s
            time.sleep(POLL_S)
        return taken

    def filenos(self, devices: Sequence[str]) -> tuple[int, ...]:
        """Lock descriptors of held ``devices``: a child process given them keeps them held."""
        return tuple(self._slots[d].fileno(0) for d in devices)

    def release(self, devices: Sequence[str]) -> None:
        for device in devices:
            self._held.remove(device)
            self._slots[device].release(0)

    def close(self) -> None:
        """Release every device this object holds and close its files."""
        self.release(list(self._held))
        for slots in self._slots.values():
            slots.close()
        os.close(self._allocator)
