"""Pack a DAG of GPU jobs onto the N GPUs of one machine: a list-scheduling simulation.

WHY: GPU hours alone do not say whether a grid fits a night; its dependencies (DPO after SFT,
answers after training) and its multi-GPU jobs (the Llama student's PRIDE with a 70B teacher
holds 4) decide the wall time. The rule is the one a Snakemake run on one machine roughly
follows: whenever GPUs free up, the ready jobs (every dependency finished) are tried longest
first (LPT) and each one that fits in the free GPUs starts; a job that does not fit waits
while shorter ones fill the gap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from .core.errors import ConfigError


@dataclass(frozen=True)
class GpuJob:
    """One job: ``gpus`` held together for ``seconds``, after every job in ``after``."""

    name: str
    gpus: int
    seconds: float
    part: str = ""
    after: tuple[str, ...] = ()


@dataclass
class Schedule:
    gpus: int
    makespan_s: float = 0.0
    #: job name -> (start, end) in seconds
    times: dict[str, tuple[float, float]] = field(default_factory=dict)

    def gpu_hours(self, jobs: Iterable[GpuJob]) -> float:
        return sum(j.gpus * j.seconds for j in jobs) / 3600.0


def _check(jobs: list[GpuJob], gpus: int) -> dict[str, GpuJob]:
    by_name = {j.name: j for j in jobs}
    if len(by_name) != len(jobs):
        raise ConfigError("GPU jobs: two jobs share a name")
    for job in jobs:
        if job.gpus > gpus:
            raise ConfigError(f"job {job.name} needs {job.gpus} GPUs; the machine has {gpus}")
        if job.gpus < 1:
            raise ConfigError(f"job {job.name} asks for {job.gpus} GPUs: not a GPU job")
        missing = [d for d in job.after if d not in by_name]
        if missing:
            raise ConfigError(f"job {job.name} waits for unknown job(s) {missing}")
    return by_name


def pack(jobs: Iterable[GpuJob], gpus: int) -> Schedule:
    """Simulate the run on ``gpus`` GPUs; every job gets start and end times."""
    jobs = list(jobs)
    if gpus < 1:
        raise ConfigError(f"--gpus must be at least 1, got {gpus}")
    by_name = _check(jobs, gpus)
    waiting = {j.name: set(j.after) for j in jobs}
    dependants: dict[str, list[str]] = {j.name: [] for j in jobs}
    for job in jobs:
        for dep in job.after:
            dependants[dep].append(job.name)
    ready = [name for name, deps in waiting.items() if not deps]
    running: list[tuple[float, str]] = []  # (end, name) heap
    schedule = Schedule(gpus)
    free, now = gpus, 0.0
    while ready or running:
        ready.sort(key=lambda n: (-by_name[n].seconds, n))  # longest first, then by name
        for name in list(ready):
            job = by_name[name]
            if job.gpus <= free:
                free -= job.gpus
                ready.remove(name)
                schedule.times[name] = (now, now + job.seconds)
                heapq.heappush(running, (now + job.seconds, name))
        # something runs now: with every GPU free, the longest ready job always fits
        now, name = heapq.heappop(running)
        finished = [name]
        while running and running[0][0] == now:  # every job ending at the same moment
            finished.append(heapq.heappop(running)[1])
        for done in finished:
            free += by_name[done].gpus
            for nxt in dependants[done]:
                waiting[nxt].discard(done)
                if not waiting[nxt]:
                    ready.append(nxt)
    unscheduled = [j.name for j in jobs if j.name not in schedule.times]
    if unscheduled:
        raise ConfigError(f"GPU jobs: dependency cycle among {sorted(unscheduled)}")
    schedule.makespan_s = max((end for _, end in schedule.times.values()), default=0.0)
    return schedule
