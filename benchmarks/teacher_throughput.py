"""Teacher throughput: our concurrent real-time backend vs a one-request-at-a-time loop.

The paper's reference code calls the API one request at a time. Against the local
OpenAI-compatible test server (run in its own process) with a fixed latency per request, this
measures N requests through ``LLMClient.complete`` at a concurrency of C (cache, retries, rate
limiter and progress bar included) and the same N through a plain loop of the openai client, and
compares them with the ideal bound N x latency / C.

Both sides are warmed up first (one untimed request each): the first call of a process pays
one-off imports and TLS set-up (printed separately), which is not a cost per request. The
two sides alternate, ``--repeats`` runs each (default 3; the concurrent side with a fresh cache
each time, so nothing is served from it), and the best run of each side counts, since the machine
may be shared; the load averages are printed.

    python benchmarks/teacher_throughput.py [--n 2000] [--latency 0.05] [--concurrency 32]

The last line is machine-readable: ``ratio=<x> bound_fraction=<y>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workflow"), str(REPO)]

import openai  # noqa: E402

from empathy_distill.llm import ChatRequest, Message, make_client  # noqa: E402

SERVER = (
    "import sys; from tests.servers.openai_server import OpenAIServer; "
    "s = OpenAIServer(latency=float(sys.argv[1])).start(); print(s.url, flush=True); "
    "sys.stdin.read()"
)


def concurrent_run(endpoint: dict, n: int, repeat: int) -> tuple[float, float]:
    """(wall s, client CPU s) of ``n`` requests through ``LLMClient.complete``, fresh cache."""
    with tempfile.TemporaryDirectory() as cache_dir:
        client = make_client(endpoint, cache_dir=cache_dir, show_progress=True)
        requests = [
            ChatRequest("bench", (Message("user", f"concurrent {repeat} {i}"),)) for i in range(n)
        ]
        start, cpu = time.perf_counter(), time.process_time()
        answers = client.complete(requests, desc="benchmark")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert len(answers) == n and not any(a.cached for a in answers)
    return seconds, cpu


def serial_run(plain: openai.OpenAI, n: int, repeat: int) -> float:
    """Wall s of ``n`` requests one at a time through the plain openai client."""
    start = time.perf_counter()
    for i in range(n):
        plain.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": f"serial {repeat} {i}"}]
        )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs, on both sides")
    args = parser.parse_args(argv)
    if min(args.n, args.concurrency, args.repeats) < 1 or args.latency < 0:
        parser.error("--n, --concurrency and --repeats must be at least 1, --latency >= 0")
    load_before = os.getloadavg()

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.latency)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        endpoint = {
            "backend": "openai_compatible",
            "model": "bench",
            "base_url": url,
            "concurrency": args.concurrency,
            "max_retries": 3,
        }
        with tempfile.TemporaryDirectory() as cache_dir:
            warm = make_client(endpoint, cache_dir=cache_dir, show_progress=False)
            start = time.perf_counter()
            warm.complete([ChatRequest("bench", (Message("user", "warm-up"),))])
            setup_s = time.perf_counter() - start
        plain = openai.OpenAI(api_key="EMPTY", base_url=url, max_retries=0)
        plain.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": "warm-up"}]
        )
        concurrent_s, serial_s, cpu_s = float("inf"), float("inf"), 0.0
        for repeat in range(args.repeats):  # the sides alternate: load bursts hit runs, not sides
            seconds, cpu = concurrent_run(endpoint, args.n, repeat)
            if seconds < concurrent_s:
                concurrent_s, cpu_s = seconds, cpu
            serial = serial_run(plain, args.n, repeat)
            serial_s = min(serial_s, serial)
            print(
                f"  run {repeat + 1}: concurrent {seconds:.2f} s, one-at-a-time {serial:.2f} s"
                f" (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    finally:
        server.stdin.close()
        server.wait(timeout=10)

    bound = args.n * args.latency / args.concurrency
    ratio = serial_s / concurrent_s
    fraction = bound / concurrent_s
    print(f"requests={args.n} latency={args.latency * 1000:.0f}ms concurrency={args.concurrency}")
    print(
        f"one-at-a-time loop: {serial_s:.2f} s ({args.n / serial_s:.1f} req/s; best of"
        f" {args.repeats})"
    )
    print(
        f"LLMClient realtime: {concurrent_s:.2f} s ({args.n / concurrent_s:.1f} req/s; best of"
        f" {args.repeats}; client CPU {cpu_s / args.n * 1000:.2f} ms/request)"
    )
    print(f"first call of the process (imports, TLS set-up; not timed above): {setup_s:.2f} s")
    print("load average before (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*load_before))
    print("load average after (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"ideal bound N x latency / concurrency: {bound:.2f} s")
    print(f"ratio={ratio:.2f} bound_fraction={fraction:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
