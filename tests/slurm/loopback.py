"""A one-node Slurm cluster on 127.0.0.1 with a fake GPU, for testing the SLURM profile.

Why: the SLURM profile (`workflow/profiles/slurm`) can only be trusted if Snakemake's slurm
executor plugin really submits through `sbatch`, really polls job states and really asks for
GPUs. Debian ships Slurm, so the test installs it (`slurmctld slurmd slurm-client munge`, a few
seconds), writes a private `slurm.conf` for ONE node on the loopback address with one fake
`gpu:tesla` (gres.conf `File=/dev/null`), and starts `munged`, `slurmctld -i` and `slurmd` as
daemons. Everything (config, keys, sockets, state, logs) lives in one temporary directory and
every daemon is stopped by the PID it wrote, so nothing on the host is touched except the
installed packages.

Facts this harness is built on (Slurm 22.05 on Debian 12, plugin 2.8.0):

- No accounting daemon runs, so `sacct` fails; the plugin must poll with `squeue`
  (`slurm-status-command: squeue`), which only sees finished jobs for `MinJobAge` seconds:
  MinJobAge must be >= 3 x `slurm-init-seconds-before-status-checks` or the plugin falls back
  to `sacct` and the run never ends.
- No cgroups in a container: `ProctrackType=proctrack/linuxproc`, `TaskPlugin=task/none`.
- `DefMemPerCPU` so a job without `--mem` does not take the whole node.

Usage without pytest (as root)::

    python tests/slurm/loopback.py start --dir /tmp/slurm   # prints `export SLURM_CONF=...`
    python tests/slurm/loopback.py stop --dir /tmp/slurm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = ["munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol"]
MIN_JOB_AGE_S = 300
DEFAULT_PARTITIONS = ("cpu", "gpu")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here (not root, no apt, daemons refuse to start)."""


def missing_binaries() -> list[str]:
    """Names of the Slurm/munge executables not on PATH (incl. /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def ensure_installed(timeout_s: float = 300) -> None:
    """Install Debian's Slurm and munge packages if any binary is missing.

    Why apt: the packages exist on Debian/Ubuntu runners and install in ~5-15 s; building Slurm
    would take minutes. Runs `apt-get update` once first because a fresh container has no lists.
    """
    if not missing_binaries():
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"Slurm is not installed ({missing_binaries()}) and not root")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("Slurm is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")
    if missing_binaries():
        raise SlurmUnavailable(f"still missing after install: {missing_binaries()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _total_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


def _sbin(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        raise SlurmUnavailable(f"{name} not found")
    return found


@dataclass
class LoopbackSlurm:
    """One Slurm node on 127.0.0.1; use as a context manager (stops its daemons on exit)."""

    root: Path
    # CPUs this process may use (what `nproc` prints): never more than slurmd will detect.
    cpus: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    # Leave headroom: slurmd drains a node whose RealMemory exceeds what it detects.
    memory_mb: int = field(default_factory=lambda: int(_total_memory_mb() * 0.8))
    def_mem_per_cpu_mb: int = 512
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    # Partitions to create, all on the one node (the first is the default): lets a profile's
    # partition names be used verbatim.
    partitions: tuple[str, ...] = DEFAULT_PARTITIONS
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm clients (and Snakemake): points them at this cluster."""
        path = os.environ.get("PATH", "")
        if "/usr/sbin" not in path.split(os.pathsep):
            path = f"{path}{os.pathsep}/usr/sbin"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def write_config(self) -> None:
        """Write slurm.conf, gres.conf and a munge key under `root`."""
        for sub in ("state", "spool", "log", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Only the key must be private; munged wants the socket's directory searchable.
        os.chmod(self.root / "munge", 0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=loopback",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={r}/munge/munge.socket",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool",
                    f"SlurmctldPidFile={r}/slurmctld.pid",
                    f"SlurmdPidFile={r}/slurmd.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd.log",
                    f"PlugStackConfig={r}/plugstack.conf",
                    # Containers have no usable cgroups.
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    # No slurmdbd: sacct cannot work, so the profile polls with squeue.
                    "AccountingStorageType=accounting_storage/none",
                    "MpiDefault=none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    f"DefMemPerCPU={self.def_mem_per_cpu_mb}",
                    # squeue must still list a finished job at the plugin's first status check.
                    f"MinJobAge={MIN_JOB_AGE_S}",
                    "ReturnToService=2",
                    "SlurmdTimeout=60",
                    "GresTypes=gpu",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} Gres=gpu:tesla:1 State=UNKNOWN",
                    *(
                        f"PartitionName={p} Nodes={self.node} "
                        f"Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE State=UP"
                        for i, p in enumerate(self.partitions)
                    ),
                    "",
                ]
            )
        )
        # A fake GPU: slurmd accepts any existing file as the device node.
        (r / "gres.conf").write_text(f"NodeName={self.node} Name=gpu Type=tesla File=/dev/null\n")
        (r / "plugstack.conf").write_text("")

    def _start(self, name: str, cmd: list[str], pidfile: Path) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise SlurmUnavailable(
                f"{name} failed to start ({proc.returncode}): {proc.stderr.strip()}\n{self.logs()}"
            )
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids[name] = int(pidfile.read_text().split()[0])
                (self.root / "pids.json").write_text(json.dumps(self.pids))
                return
            time.sleep(0.1)
        raise SlurmUnavailable(f"{name} wrote no pid file {pidfile}\n{self.logs()}")

    def start(self, timeout_s: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle."""
        self.write_config()
        r = self.root
        env_conf = ["-f", str(self.conf)]
        self._start(
            "munged",
            [
                _sbin("munged"),
                "--force",  # allow running as root
                f"--socket={r}/munge/munge.socket",
                f"--key-file={r}/munge/munge.key",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/log/munged.log",
                f"--seed-file={r}/munge/munged.seed",
            ],
            r / "munge" / "munged.pid",
        )
        # -i: ignore (absent) saved state.
        self._start("slurmctld", [_sbin("slurmctld"), "-i", *env_conf], r / "slurmctld.pid")
        self._start("slurmd", [_sbin("slurmd"), *env_conf, "-N", self.node], r / "slurmd.pid")
        self.wait_idle(timeout_s)

    def wait_idle(self, timeout_s: float) -> None:
        """Poll `sinfo` until the node reports idle (slurmd registered with its GPU)."""
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(
                ["sinfo", "-h", "-N", "-n", self.node, "-o", "%t"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=20,
            )
            state = proc.stdout.strip() or proc.stderr.strip()
            # One line per partition the node is in.
            if set(state.split()) == {"idle"}:
                return
            dead = [name for name, pid in self.pids.items() if not is_alive(pid)]
            if dead:
                raise SlurmUnavailable(f"{dead} exited during start-up\n{self.logs()}")
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"node {self.node} not idle after {timeout_s}s: {state!r}\n{self.logs()}"
        )

    def logs(self, tail: int = 20) -> str:
        """Last lines of each daemon log, for error messages."""
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every daemon this object started, by PID (slurmd first, munged last)."""
        stop_pids(self.root, self.pids)
        self.pids.clear()

    def __enter__(self) -> LoopbackSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_pids(root: Path, pids: dict[str, int], timeout_s: float = 15) -> None:
    """SIGTERM each recorded daemon, wait, then SIGKILL the stragglers."""
    for name in ("slurmd", "slurmctld", "munged"):
        pid = pids.get(name)
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and is_alive(pid):
            time.sleep(0.1)
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile = root / "pids.json"
    if pidfile.exists():
        pidfile.unlink()


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of a daemon we double-forked is reaped by init; treat "Z" as dead.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def main(argv: list[str] | None = None) -> int:
    """`start` / `stop` a loopback cluster whose files live in --dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True, help="state directory")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.action == "start":
        ensure_installed()
        cluster = LoopbackSlurm(root)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    pidfile = root / "pids.json"
    if not pidfile.exists():
        print(f"no {pidfile}: nothing to stop")
        return 0
    stop_pids(root, {k: int(v) for k, v in json.loads(pidfile.read_text()).items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
