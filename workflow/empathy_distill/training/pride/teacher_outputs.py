"""Rule pride_teacher_outputs: run a PRIDE teacher once over one configuration's training
examples and store what every epoch of training needs of it (:mod:`.teacher_store`).

Per example, at every response position: the teacher's top-k log-probabilities and their token
ids (k = ``training.pride.teacher_top_k``) at the PRIDE temperature, and the log-mass of the
tail (the other V - k tokens); at the MMD term's positions (:func:`.data.feature_positions`,
at most ``MMD_MAX_TOKENS / batch size`` per example) the teacher's last-layer features. The
examples are read and encoded exactly as the training job reads them
(:func:`.loop.read_examples_and_fields`), in the same order; the manifest names them so the
training job can check that they line up.

Runs where the teacher fits (the job's GPUs are the teacher's: ``teacher_resources``), possibly
another node than training.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from ...core import specs
from ...core.command import run_cli
from ...core.errors import ConfigError
from .. import specs as training_specs
from ..devices import add_gpus_argument, job_gpus
from .data import collate, feature_positions
from .loop import _gather, load_teacher, read_examples_and_fields, teacher_pass
from .losses import teacher_top_k
from .teacher_store import FORMAT_VERSION, MANIFEST, SHARD, SHARD_EXAMPLES, write_shard
from .tokenizers import check_tokenizer_pair

LOG = logging.getLogger(__name__)
#: Examples per teacher forward pass (an operational choice: right padding leaves the real
#: positions' values as they are).
FORWARD_BATCH = 4


def compute(spec: dict, out: Path) -> dict:
    """Write the teacher outputs of ``spec`` (:func:`.teacher_store.spec_of`) into ``out``;
    returns the manifest (written last, so a folder without one is an interrupted run)."""
    check_tokenizer_pair(spec)  # before any model is loaded
    import torch
    from transformers import AutoTokenizer

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    bf16 = spec["bf16"] and cuda and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("shard-*.safetensors"), out / MANIFEST]:
        stale.unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(
        spec["model_name_or_path"], revision=spec["model_revision"]
    )
    # base and sft teachers are the student's base model (with the SFT adapter merged for sft)
    teacher = load_teacher(spec, device, dtype)
    examples, fields = read_examples_and_fields(spec, tokenizer)
    k, temperature = spec["teacher_top_k"], spec["temperature"]
    cap, seed = spec["feature_tokens_per_example"], spec["seed"]
    rows: list[dict] = []
    shards: list[dict] = []
    size = 0
    for start in range(0, len(examples), FORWARD_BATCH):
        chunk = examples[start : start + FORWARD_BATCH]
        batch = collate(chunk, tokenizer.pad_token_id or 0)
        ids, mask = batch["teacher_ids"].to(device), batch["teacher_mask"].to(device)
        logits, features = teacher_pass(None, teacher, ids, mask)
        positions = batch["teacher_positions"].to(logits.device)
        top_ids, top_logprobs, tail = teacher_top_k(_gather(logits, positions), k, temperature)
        features = _gather(features, positions.to(features.device))
        for i, example in enumerate(chunk):
            n = len(example.response)
            picked = feature_positions(example.dialog_id, n, cap, seed)
            rows.append(
                {
                    "topk_ids": top_ids[i, :n].cpu(),
                    "topk_logprobs": top_logprobs[i, :n].cpu(),
                    "tail_logmass": tail[i, :n].cpu(),
                    "features": features[i, picked].cpu(),
                    "feature_positions": torch.tensor(picked),
                }
            )
        if len(rows) >= SHARD_EXAMPLES or start + FORWARD_BATCH >= len(examples):
            name = SHARD.format(len(shards))
            size += write_shard(out / name, rows)
            shards.append({"file": name, "examples": len(rows)})
            rows = []
        LOG.info("teacher outputs: %d of %d examples", start + len(chunk), len(examples))
    config = getattr(teacher, "config", None)
    manifest = {
        "format": FORMAT_VERSION,
        "spec": spec,
        "k": min(k, int(logits.size(-1))),
        "temperature": temperature,
        "teacher": {
            key: spec[key]
            for key in ("teacher", "teacher_mode", "teacher_model", "teacher_revision")
        }
        | {"teacher_adapter": spec["teacher_adapter"]},
        "vocab_size": int(logits.size(-1)),
        "feature_width": int(config.hidden_size),
        "dtype": {"topk_logprobs": "float32", "features": str(dtype).removeprefix("torch.")},
        "privileged_fields": list(fields),
        "examples": [[e.dialog_id, len(e.response)] for e in examples],
        "shards": shards,
        "bytes": size,
        "forward_passes": math.ceil(len(examples) / FORWARD_BATCH),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.training.pride.teacher_outputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--job", help="with --config: student/method/strategy")
    parser.add_argument("--out", required=True, help="results/pride/teacher_outputs/<job>")
    add_gpus_argument(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    def from_config(config: dict) -> Any:
        if not args.job or args.job.count("/") != 2:
            raise ConfigError("--config needs --job student/method/strategy")
        return training_specs.pride_teacher_outputs(config, *args.job.split("/"))

    spec, _ = specs.from_args(args, from_config)
    job = f"pride_teacher_outputs {args.out}"
    with job_gpus(args.gpus, job=job, student=f"{spec['teacher']} (PRIDE teacher)"):
        manifest = compute(spec, Path(args.out))
    LOG.info(
        "wrote %d examples, %d bytes, k=%d into %s",
        len(manifest["examples"]),
        manifest["bytes"],
        manifest["k"],
        args.out,
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
