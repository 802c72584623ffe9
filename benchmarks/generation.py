"""Benchmark: batched vs one-at-a-time generation of test-dialogue answers.

Default: the tiny student (``results/students/tiny`` when built, else a tiny random Llama built
on the spot) on CPU, greedy. ``--model-path`` benchmarks any model (e.g. a real student on a GPU).
Both ways answer the same prompts with the same settings; the default length cap is the
workflow's (``generation.max_new_tokens``: 160). Prints tokens/s of both ways and their ratio;
the last line is machine-readable: ``ratio=<x> identical=<true|false>`` (identical: the greedy
answers are the same).

Run it on an idle machine and read the load averages it prints: when other processes hold the
cores, torch's intra-op threads wait for each other and the one-at-a-time loop (thousands of tiny
parallel ops) slows far more than the batched run, which inflates the ratio. ``--threads 1`` is
immune to that. Measured on 2 idle cores: ``ratio=10.05`` (default threads), ``ratio=6.13``
(``--threads 1``); ``--model-path results/students/tiny --template llama3``: ``ratio=12.15``.

    PYTHONPATH=workflow:. python benchmarks/generation.py [--n 64] [--batch-size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workflow"), str(REPO)]

from empathy_distill.core.prompts import Prompts  # noqa: E402
from empathy_distill.evaluation.generate import (  # noqa: E402
    GenerationSettings,
    encode_base,
    encode_finetuned,
    generate_ids,
    llamafactory_template,
    load_model,
    load_tokenizer,
)

DATASET = REPO.parent / "shared/data/dataset.csv"


def test_rows(n: int):
    import pandas as pd

    for path in (REPO / "results/data/test.csv", DATASET):
        if path.exists():
            return pd.read_csv(path, keep_default_na=False).head(n)
    raise SystemExit("no test dialogues: need results/data/test.csv or ../shared/data/dataset.csv")


def model_and_tokenizer(model_path: str | None, device: str | None):
    tiny = REPO / "results/students/tiny"
    path = model_path or (str(tiny) if tiny.exists() else None)
    if path is not None:
        return path, load_model(path, device=device), load_tokenizer(path)
    from tests.tiny_lm import build_tiny

    model, tokenizer = build_tiny(DATASET)
    return "random tiny Llama", model, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path")
    parser.add_argument("--template", help="LLaMA-Factory template (default: the base prompt)")
    parser.add_argument("--n", type=int, default=64, help="test dialogues")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--device")
    parser.add_argument("--repeats", type=int, default=2, help="best of N (shared machines)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    name, model, tokenizer = model_and_tokenizer(args.model_path, args.device)
    rows = test_rows(args.n)
    print(
        f"model: {name}; device: {model.device}; threads: {torch.get_num_threads()}; "
        f"{len(rows)} prompts; max_new_tokens {args.max_new_tokens}"
    )
    if args.template:
        template = llamafactory_template(tokenizer, args.template)
        prompts = [e.ids for e in encode_finetuned(rows, tokenizer, template, Prompts())]
        stop_ids = template.get_stop_token_ids(tokenizer)
    else:
        prompts = [e.ids for e in encode_base(rows, tokenizer, Prompts())]
        stop_ids = [tokenizer.eos_token_id]
    # warm-up: the first generate() call pays one-off kernel/allocator set-up costs
    generate_ids(model, tokenizer, prompts[:2], GenerationSettings(max_new_tokens=2), stop_ids)
    timings = {}
    answers = {}
    for label, batch_size in (("batched", args.batch_size), ("one-at-a-time", 1)):
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=batch_size)
        seconds = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = generate_ids(model, tokenizer, prompts, settings, stop_ids)
            seconds = min(seconds, time.perf_counter() - start)
        tokens = sum(len(ids) for ids in out)
        timings[label] = tokens / seconds
        answers[label] = out
        print(
            f"{label:>14}: batch {batch_size:>3}, {tokens} new tokens in {seconds:.2f} s = "
            f"{timings[label]:.1f} tokens/s"
        )
    load_after = os.getloadavg()
    print(
        f"load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}"
        f" on {os.cpu_count()} cores"
    )
    ratio = timings["batched"] / timings["one-at-a-time"]
    identical = answers["batched"] == answers["one-at-a-time"]
    print(f"ratio={ratio:.2f} identical={'true' if identical else 'false'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
