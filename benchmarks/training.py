"""Benchmark: LoRA SFT and DPO training throughput on CPU (tokens/s, samples/s), fp32 and bf16.

Each run is a real ``llamafactory-cli train`` launched by the workflow's own trainer
(``training/llamafactory_trainer.py``) with the YAML the workflow writes
(``training/llamafactory_config.py``: the paper's hyper-parameters from ``config.yaml``, LoRA rank
8), on real training conversations: the workflow's ``direct``/``chatgpt`` SFT examples and DPO
pairs (``sets.direct_records``) of the dataset's train split. Only the length is cut:
``--steps`` optimizer steps of ``--batch-size`` examples (exactly one pass over that many
examples), ``logging_steps: 1``. DPO continues the SFT adapter of the same precision, as in the
workflow. Default model: the SmolLM2-135M-Instruct student (built first when missing);
``--tiny``: the tiny plumbing student, built from the train split in seconds.

Precision: ``fp32`` or ``bf16`` (``--precision``, both by default). Every run sets ``use_cpu:
true`` (``--device cuda``: false, training on the GPU); the trainer keeps ``bf16`` on a CPU only
with ``use_cpu: true`` and native bf16 (AVX512-BF16 or AMX) and otherwise turns it off, so the
precision printed is the one in the ``train.yaml`` that ran. ``--set KEY=VALUE`` passes any other
LLaMA-Factory argument (YAML value) into ``training.common``, checked like the config's keys.

Counted, not guessed: tokens are the non-padding tokens the trainer fed the model
(transformers' ``include_num_input_tokens_seen: non_padding``; for DPO the chosen and the
rejected sequence), cross-checked against the same examples tokenised here with LLaMA-Factory's
template (``encode_oneturn``); time is the trainer's ``train_runtime`` (the steps, not loading
the model). The last line is machine-readable: ``<stage>_<precision>_tokens_per_s=<x> ...``.

Measured on the idle 2-core machine (2026-11-30, defaults): SFT 124.4 tokens/s fp32, 214.8
bf16; DPO 79.5 fp32, 145.2 bf16 (0.33 / 0.57 / 0.10 / 0.19 samples/s). The issue's earlier
measurement (idle, SFT batch 8): 0.38 samples/s fp32, 0.86 bf16.

    python benchmarks/training.py [--steps 4] [--batch-size 8] [--precision fp32 bf16]
    python benchmarks/training.py --device cuda --precision bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import PROMPTS, REPO, dataset_path, load_line, smollm2_student, splits

from empathy_distill.core.errors import EmpathyDistillError

STUDENT = "bench"
METHOD, STRATEGY = "direct", "chatgpt"
STAGES = ("sft", "dpo")
PRECISIONS = ("fp32", "bf16")


def parse_set(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set {item!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model-path", help="HF model dir (default: the SmolLM2 student)")
    which.add_argument("--tiny", action="store_true", help="the tiny plumbing student")
    parser.add_argument("--template", help="LLaMA-Factory template (smollm2; llama3 with --tiny)")
    parser.add_argument("--dataset", help="dataset CSV (default: as the tests find it)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8, help="per_device_train_batch_size")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the training process")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: train on the GPU (use_cpu: false); default cpu",
    )
    parser.add_argument(
        "--set",
        type=parse_set,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another LLaMA-Factory argument for training.common (repeatable)",
    )
    parser.add_argument("--keep", help="keep the runs' folders (train.yaml, logs) under this dir")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    if "dpo" in args.stages and "sft" not in args.stages:
        parser.error("--stages dpo needs sft too: DPO continues the SFT adapter")
    return args


def training_config(args: argparse.Namespace, model: Path, template: str, bf16: bool) -> dict:
    """The workflow config of one precision: config.yaml's hyper-parameters, a short run."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["training"]
    common = {
        **paper.get("common", {}),
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "num_train_epochs": 1.0,
        "max_steps": args.steps,
        "logging_steps": 1,
        "bf16": bf16,
        "use_cpu": args.device == "cpu",
        "include_num_input_tokens_seen": "non_padding",
        **dict(args.set),
    }
    return {
        "students": {STUDENT: {"model": str(model), "template": template}},
        "training": {"common": common, "sft": paper.get("sft", {}), "dpo": paper.get("dpo", {})},
    }


def write_sets(train, n: int, folder: Path) -> dict[str, list[dict]]:
    """The first ``n`` SFT examples and DPO pairs of the workflow's direct/chatgpt sets."""
    from empathy_distill.core.prompts import Prompts
    from empathy_distill.distillation.formats import dataset_info_entry, write_json, write_set
    from empathy_distill.distillation.sets import direct_records
    from empathy_distill.training.llamafactory_config import dataset_key

    sft, dpo = direct_records(train, STRATEGY, Prompts(PROMPTS))
    sets = {"sft": sft[:n], "dpo": dpo[:n]}
    info = {}
    for stage, records in sets.items():
        if len(records) < n:
            raise SystemExit(
                f"the dataset's train split gives {len(records)} {stage} records of "
                f"{METHOD}/{STRATEGY}, fewer than --steps x --batch-size = {n}; lower them"
            )
        write_set(records, folder / f"{stage}.json", stage)
        info[dataset_key(METHOD, STRATEGY, stage)] = dataset_info_entry(f"{stage}.json", stage)
    write_json(info, folder / "dataset_info.json")
    return sets


def template_tokens(model: Path, template: str, stage: str, records: list[dict]) -> int:
    """Tokens of ``records`` as LLaMA-Factory's template encodes them (DPO: both sequences)."""
    from empathy_distill.evaluation.generate import llamafactory_template, load_tokenizer

    tokenizer = load_tokenizer(model)
    lf_template = llamafactory_template(tokenizer, template)
    total = 0
    for record in records:
        answers = [record["chosen"], record["rejected"]] if stage == "dpo" else [None]
        for answer in answers:
            messages = record["messages"] + ([answer] if answer else [])
            prompt, response = lf_template.encode_oneturn(tokenizer, messages)
            total += len(prompt) + len(response)
    return total


def trained_figures(out: Path) -> dict:
    """Runtime, samples/s, tokens seen and the precision, from what the run wrote."""
    results = json.loads((out / "train_results.json").read_text(encoding="utf-8"))
    history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    seen = max((h.get("num_input_tokens_seen", 0) for h in history), default=0)
    ran = yaml.safe_load((out / "train.yaml").read_text(encoding="utf-8"))
    return {
        "runtime": float(results["train_runtime"]),
        "samples_per_s": float(results["train_samples_per_second"]),
        "tokens": int(seen),
        "precision": "bf16" if ran.get("bf16") else "fp32",
    }


def run_one(config: dict, stage: str, work: Path, previous: Path | None) -> Path:
    """Train one stage through the workflow's trainer; LLaMA-Factory's output goes to a log."""
    from empathy_distill.training.llamafactory_config import build_train_args, validate_training
    from empathy_distill.training.llamafactory_trainer import train

    validate_training(config)
    out = work / stage
    settings = build_train_args(
        config,
        STUDENT,
        METHOD,
        STRATEGY,
        stage,
        out=str(out),
        dataset_dir=str(work.parent / "data"),
        previous_adapter=str(previous) if previous else None,
    )
    log_path = work / f"{stage}.log"
    work.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            train(settings, sink=log.write)
        except EmpathyDistillError:
            log.flush()
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            raise
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(load_line("before"), flush=True)
    dataset = dataset_path(args.dataset)
    train_split = splits(dataset)[0]
    n = args.steps * args.batch_size
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.tiny:
            from empathy_distill.training.tiny_model import build_tiny_student

            train_csv = root / "train.csv"
            train_split.to_csv(train_csv, index=False)
            model = build_tiny_student(train_csv, root / "tiny")
            template = args.template or "llama3"
        else:
            model = smollm2_student(args.model_path)
            template = args.template or "smollm2"
        sets = write_sets(train_split, n, root / "data")
        counted = {s: template_tokens(model, template, s, sets[s]) for s in args.stages}
        print(
            f"model: {model}; template {template}; dataset {dataset.name} (train split,"
            f" {METHOD}/{STRATEGY} sets); {args.steps} steps x batch {args.batch_size} = {n}"
            f" examples per run; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
            flush=True,
        )
        figures: dict[str, float] = {}
        for precision in args.precision:
            config = training_config(args, model, template, bf16=precision == "bf16")
            previous = None
            for stage in STAGES:
                if stage not in args.stages:
                    continue
                start = time.perf_counter()
                out = run_one(config, stage, root / precision, previous)
                wall = time.perf_counter() - start
                previous = out
                got = trained_figures(out)
                rate = got["tokens"] / got["runtime"]
                figures[f"{stage}_{precision}_tokens_per_s"] = rate
                check = (
                    "" if got["tokens"] == counted[stage] else f" (template count {counted[stage]})"
                )
                print(
                    f"{stage} {precision:>4} (trained in {got['precision']}): {n} examples,"
                    f" {got['tokens']} tokens{check} in {got['runtime']:.1f} s ="
                    f" {got['samples_per_s']:.2f} samples/s, {rate:.1f} tokens/s"
                    f" (llamafactory-cli {wall:.0f} s with loading); {load_line('now')}",
                    flush=True,
                )
    print(load_line("after"))
    print(" ".join(f"{key}={value:.1f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
