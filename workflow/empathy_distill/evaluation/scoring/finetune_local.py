"""``finetune_scorer`` for backend transformers: LoRA SFT through LLaMA-Factory, then a merge.

The scorer's examples (:mod:`.train_data`) train a LoRA adapter on the base model with the
workflow's LLaMA-Factory trainer (:func:`..training.llamafactory_trainer.train`, the one the
students use); the adapter is then merged into the base weights and saved as a plain model
folder, which the LLM layer's transformers backend loads by path. The folder is named by the
SHA-256 of its files, so a retrained scorer (new weights, or new generation defaults) is a new
``model`` in the LLM cache's request keys and never answered from an older model's entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ...core import specs
from ...core.atomic import atomic_write
from ...core.command import run_cli
from ...core.errors import ConfigError, TrainingError
from ...training.devices import add_gpus_argument, job_gpus
from . import finetune, finetune_args

ADAPTER_DIR = finetune_args.ADAPTER_DIR
MERGED_ROOT = finetune.SCORER_DIR + "/model"
WEIGHTS = "model.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: What a scorer keeps of its base model's generation_config.json: the special tokens only.
GENERATION_TOKENS = ("bos_token_id", "eos_token_id", "pad_token_id")


def scorer_generation_config(base: Any) -> Any:
    """The base's special tokens without its decoding tweaks: the built SmolLM2 carries the
    students' ``repetition_penalty`` 1.2, which penalises every token of the prompt, so a
    scorer asked "1 to 3" would answer 4 (seen: the tuned model answers 3 greedily, 4 with it)."""
    from transformers import GenerationConfig

    return GenerationConfig(**{k: getattr(base, k, None) for k in GENERATION_TOKENS})


def merge(base: str, adapter: Path, root: Path) -> tuple[Path, str]:
    """Merge ``adapter`` into ``base`` and save it as ``root/<folder_digest[:16]>``; older
    merges under ``root`` are removed. Returns (folder, its digest)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.generation_config = scorer_generation_config(model.generation_config)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if root.exists():
        shutil.rmtree(root)
    staging = root / "staging"
    merged.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    if not (staging / WEIGHTS).is_file():
        raise TrainingError(f"merging {adapter} into {base} wrote no {staging / WEIGHTS}")
    digest = folder_digest(staging)
    final = root / digest[:16]
    staging.rename(final)
    return final, digest


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file of ``folder`` (name and content): what the model answers with,
    weights, tokenizer and generation defaults alike."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f"{path.name}\0{sha256_of(path)}\n".encode())
    return digest.hexdigest()


def count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def finetune_local(spec: dict, train_jsonl: Path, out: Path) -> dict[str, Any]:
    """Train, merge, and write ``out`` (model.json); returns what it wrote."""
    from ...training.llamafactory_trainer import train

    args = spec["llamafactory"]
    expected = Path(args["dataset_dir"]) / finetune.TRAIN_DATA.rsplit("/", 1)[1]
    if train_jsonl.resolve() != expected.resolve():
        raise ConfigError(f"--train {train_jsonl}: the spec trains on {expected}")
    start = time.monotonic()
    adapter = train(args, nproc_per_node=1)
    trained = time.monotonic() - start
    folder, digest = merge(args["model_name_or_path"], adapter, out.parent / "model")
    info = {
        "model": str(folder),
        "base_model": spec["base_model"],
        "backend": "transformers",
        "trained_examples": count_lines(train_jsonl),
        "epochs": args["num_train_epochs"],
        "adapter": str(adapter),
        "model_sha256": digest,
        "weights_sha256": sha256_of(folder / WEIGHTS),
        "train_data_sha256": sha256_of(train_jsonl),
        "train_seconds": round(trained, 1),
    }
    with atomic_write(out) as handle:
        json.dump(info, handle, indent=1)
    return info


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fine-tune a local rating scorer (LoRA SFT).")
    parser.add_argument("--spec", required=True, help="the rule's params.spec")
    parser.add_argument("--train", required=True, help="results/scorers/<name>/train.jsonl")
    parser.add_argument("--out", required=True, help="results/scorers/<name>/model.json")
    add_gpus_argument(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec = specs.parse(args.spec)
    if spec.get("endpoint", {}).get("backend") != "transformers" or "llamafactory" not in spec:
        raise ConfigError("--spec: not a transformers finetune_scorer spec")
    job = f"finetune_scorer {spec.get('scorer', args.out)}"
    with job_gpus(args.gpus, job=job, student=spec["base_model"]):
        info = finetune_local(spec, Path(args.train), Path(args.out))
    print(
        f"{args.out}: {info['model']} from {info['base_model']}, {info['trained_examples']}"
        f" examples, {info['train_seconds']} s of training"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
