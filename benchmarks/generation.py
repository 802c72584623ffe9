"""Benchmark: batched vs one-at-a-time generation of test-dialogue answers.

Default model: the SmolLM2-135M-Instruct student (``results/students/smollm2_135m``, built first
when missing), prompted as a fine-tuned student is (training prompt through LLaMA-Factory's
``smollm2`` template), greedy, on CPU, with its ``repetition_penalty`` 1.2. ``--tiny`` is the old
benchmark (the built tiny student, else a tiny random Llama, base prompt); ``--model-path`` any
model (e.g. a real student on a GPU, ``--device cuda``).

Both sides run the workflow's own ``evaluation/generate.py`` (``generate_ids``) on the same
prompts (the first ``--n`` dialogues of the test split) with the same settings; only the batch
size differs. The sides alternate, ``--repeats`` times each (default 3), and the best run of each
side counts, so a burst of load elsewhere hits one run, not one side. Prints new tokens/s both
ways, their ratio, how many greedy answers are identical, and the load averages; the last line
is machine-readable: ``ratio=<x> identical=<true|false>``.

Read the load averages: when other processes hold the cores, torch's intra-op threads wait for
each other and the one-at-a-time loop (many small ops) slows far more than the batched run,
which inflates the ratio. ``--threads 1`` is immune to that.

Measured on the idle 2-core machine (2026-11-30, defaults): batched 40.10 s, one at a time
110.05 s, ``ratio=2.74 identical=true``. Earlier, idle, ``--tiny``: ``ratio=10.05``; ``--tiny
--threads 1``: ``ratio=6.13``.

    python benchmarks/generation.py [--n 16] [--max-new-tokens 160] [--repeats 3] [--threads 1]
    python benchmarks/generation.py --tiny [--n 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import PROMPTS, REPO, dataset_path, load_line, smollm2_student, splits

from empathy_distill.core.config import validate_config
from empathy_distill.core.prompts import Prompts
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.generate import (
    GenerationSettings,
    encode_base,
    encode_finetuned,
    generate_ids,
    llamafactory_template,
    load_model,
    load_tokenizer,
)

SMOLLM2_TEMPLATE = "smollm2"


def settings(**overrides) -> GenerationSettings:
    """The workflow's generation settings (the config schema's defaults), then ``overrides``."""
    config = validate_config({"students": {"s": {"model": "m", "template": "t"}}})
    return GenerationSettings(**{**evaluation_specs.answer(config, "s")["generation"], **overrides})


def tiny_model(dataset: Path, device: str | None):
    """The built tiny student, else a tiny random Llama with a tokenizer trained on ``dataset``."""
    tiny = REPO / "results/students/tiny"
    if (tiny / "config.json").is_file():
        return str(tiny), load_model(tiny, device=device), load_tokenizer(tiny)
    from tests.tiny_lm import build_tiny

    model, tokenizer = build_tiny(dataset)
    tokenizer.padding_side = "left"
    return "random tiny Llama", model.to(device or "cpu"), tokenizer


def encoded_prompts(rows, tokenizer, template: str | None) -> tuple[list[list[int]], list[int]]:
    """(prompt ids, stop ids) exactly as ``generate.answer_test`` builds them."""
    prompts = Prompts(PROMPTS)
    if template:
        lf_template = llamafactory_template(tokenizer, template)
        ids = [e.ids for e in encode_finetuned(rows, tokenizer, lf_template, prompts)]
        return ids, list(lf_template.get_stop_token_ids(tokenizer))
    return [e.ids for e in encode_base(rows, tokenizer, prompts)], [tokenizer.eos_token_id]


def decode_step_seconds(model, prompt_ids: list[list[int]], batch: int, steps: int = 20) -> float:
    """Best time of one greedy decode step at ``batch`` rows over the longest prompt's KV cache.

    Batching can speed decoding up by at most ``batch * t(1) / t(batch)``: at batch 1 a step is
    bound by reading the weights (memory), at a large batch by arithmetic, and generate() runs
    every row until the longest answer ends.
    """
    import torch

    prompt = max(prompt_ids, key=len)
    ids = torch.tensor([prompt] * batch, device=model.device)
    best = float("inf")
    with torch.inference_mode():
        past = model(input_ids=ids, use_cache=True).past_key_values
        token = ids[:, -1:]
        for _ in range(steps):
            start = time.perf_counter()
            out = model(input_ids=token, past_key_values=past, use_cache=True)
            best = min(best, time.perf_counter() - start)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return best


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-path", help="any HF model dir (default: the SmolLM2 student)")
    which.add_argument("--tiny", action="store_true", help="the tiny model (old benchmark)")
    parser.add_argument(
        "--template",
        help="LLaMA-Factory template (default: smollm2 for SmolLM2, else the base prompt)",
    )
    parser.add_argument("--base-prompt", action="store_true", help="the base prompt, no template")
    parser.add_argument("--dataset", help="dataset CSV (default: as the tests find it)")
    parser.add_argument("--n", type=int, help="test dialogues (default: 16; 64 with --tiny)")
    parser.add_argument("--batch-size", type=int, help="batched side (default: --n, one batch)")
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--device")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="weights' precision, as generation.dtype (auto: float32 on a CPU)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs, on both sides")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 64 if args.tiny else 16
    if args.batch_size is None:
        args.batch_size = args.n
    if args.repeats < 1 or args.n < 1 or args.batch_size < 1:
        parser.error("--n, --batch-size and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    before = load_line("before")
    dataset = dataset_path(args.dataset)
    rows = splits(dataset)[1].head(args.n)
    if args.tiny:
        name, model, tokenizer = tiny_model(dataset, args.device)
        template = args.template
    else:
        path = smollm2_student(args.model_path)
        name, model, tokenizer = (
            str(path),
            load_model(path, device=args.device, dtype=args.dtype),
            None,
        )
        tokenizer = load_tokenizer(path)
        template = args.template or (SMOLLM2_TEMPLATE if args.model_path is None else None)
    if args.base_prompt:
        template = None
    prompts, stop_ids = encoded_prompts(rows, tokenizer, template)
    print(
        f"model: {name}; prompt: {template or 'base'}; device: {model.device}; "
        f"threads: {torch.get_num_threads()}; dataset: {dataset.name}"
    )
    print(
        f"{len(prompts)} test dialogues, {sum(map(len, prompts))} prompt tokens; "
        f"max_new_tokens {args.max_new_tokens}; greedy; best of {args.repeats} per side"
    )
    print(before, flush=True)
    # warm-up: the first generate() call pays one-off kernel/allocator set-up costs
    generate_ids(
        model, tokenizer, prompts[:2], settings(max_new_tokens=2, dtype=args.dtype), stop_ids
    )
    sides = (("batched", args.batch_size), ("one-at-a-time", 1))
    best = {label: float("inf") for label, _ in sides}
    answers: dict[str, list[list[int]]] = {}
    for repeat in range(args.repeats):
        for label, batch_size in sides:
            run = settings(
                max_new_tokens=args.max_new_tokens, batch_size=batch_size, dtype=args.dtype
            )
            start = time.perf_counter()
            out = generate_ids(model, tokenizer, prompts, run, stop_ids)
            seconds = time.perf_counter() - start
            best[label] = min(best[label], seconds)
            if label in answers and answers[label] != out:
                print(f"warning: {label} run {repeat + 1} answered differently from run 1")
            answers.setdefault(label, out)
            one = os.getloadavg()[0]
            print(f"  run {repeat + 1} {label:>13}: {seconds:7.2f} s (load {one:.2f})", flush=True)
    rates = {}
    for label, batch_size in sides:
        tokens = sum(map(len, answers[label]))
        rates[label] = tokens / best[label]
        print(
            f"{label:>13}: batch {batch_size:>3}, {tokens} new tokens in {best[label]:.2f} s "
            f"(best of {args.repeats}) = {rates[label]:.1f} tokens/s"
        )
    pairs = list(zip(answers["batched"], answers["one-at-a-time"], strict=True))
    same = sum(a == b for a, b in pairs)
    print(f"identical greedy answers: {same}/{len(pairs)}")
    one, many = (decode_step_seconds(model, prompts, b) for b in (1, args.batch_size))
    print(
        f"decode step (best of 20): batch 1 {one * 1e3:.2f} ms, batch {args.batch_size} "
        f"{many * 1e3:.2f} ms; batching's ceiling on decoding: "
        f"{args.batch_size * one / many:.2f}x"
    )
    print(load_line("after"))
    ratio = rates["batched"] / rates["one-at-a-time"]
    print(f"ratio={ratio:.2f} identical={'true' if same == len(pairs) else 'false'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
