"""Write the LLaMA-Factory training YAML of one job (student x data configuration x stage).

The stage (a training method of :mod:`.methods`) picks LLaMA-Factory's own ``stage`` argument (the
method's *objective*), the training set and the adapter it continues.

Everything a run does is in that one file, so ``results/models/.../train.yaml`` documents the job
completely: the paper's hyper-parameters (Xie et al., SIGDIAL 2025: LoRA rank 8, lr 5e-5, 3
epochs, bf16, batch size 2; DPO beta 0.1, sigmoid loss, from ``config.yaml``), the LLaMA-Factory
and transformers defaults the paper left unstated (written out explicitly so the file does not
depend on library defaults), and the job's paths.

Precedence, lowest first: :data:`EXPLICIT_DEFAULTS` < ``training.common`` < ``training.<stage>``
< ``training.per_student.<student>.common`` < ``training.per_student.<student>.<stage>``. Keys in
:data:`MANAGED_KEYS` belong to the workflow (paths, model, template, stage) and cannot be
overridden.

DPO reference model. With LoRA, LLaMA-Factory 0.9.5 builds no reference model unless ``ref_model``
is set (``train/trainer_utils.py:create_ref_model``); the DPO trainer then computes the reference
log-probabilities with the policy's adapter *disabled* (``train/dpo/trainer.py``:
``disable_adapter()``). If DPO simply continued the SFT adapter, that reference would be the base
model, not the SFT model the paper's DPO starts from. So a DPO job sets

- ``adapter_name_or_path: <sft dir>`` with ``create_new_adapter: false``: the policy resumes the
  SFT adapter as its trainable adapter (``model/adapter.py``: the last adapter is resumed when
  training), so the DPO output is one self-contained adapter over the base model;
- ``ref_model: <base model>`` + ``ref_model_adapters: <sft dir>``: the frozen reference is the base
  model with the SFT adapter merged (``is_trainable=False`` merges every adapter), i.e. exactly the
  SFT model. At step 0 policy == reference, so the DPO loss is log 2 and the implied rewards are 0
  (proved in ``tests/test_training_e2e.py``).

This costs a second copy of the base weights in GPU memory (16 GB for an 8B model in bf16), which
fits an 80 GB card. Merging the SFT adapter with ``llamafactory-cli export`` instead would save
that memory but is broken for Mistral with transformers >= 5.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path

import yaml

from ..core import grid
from ..core.errors import ConfigError
from ..core.students import resolve_model, resolve_revision
from . import methods as registry
from .lf_args_table import load_table

#: Stages LLaMA-Factory trains (registry entries naming the llamafactory_trainer module): their
#: ``training.<stage>`` keys, and ``training.common``, are LLaMA-Factory arguments.
LLAMAFACTORY_STAGES = registry.stages_of("llamafactory_trainer")
#: LLaMA-Factory objectives whose trainer compares against a frozen reference model.
REFERENCE_OBJECTIVES = frozenset({"dpo", "kto"})

#: Where a job's sets and their ``dataset_info.json`` live (one folder per data configuration, so
#: a job waits only for its own sets).
DATASET_DIR = "results/datasets/{method}/{strategy}"
#: Output folder of a job (the layout contract of the workflow: ``grid.MODELS``).
OUTPUT_DIR = grid.MODELS

#: Defaults the paper did not state, written out so that every value used is in train.yaml.
#: They equal LLaMA-Factory 0.9.5 / transformers 5.6 defaults unless a comment says otherwise.
EXPLICIT_DEFAULTS: dict = {
    "finetuning_type": "lora",
    "lora_target": "all",
    "lora_dropout": 0.0,
    # lora_alpha: LLaMA-Factory's default is 2 x lora_rank; filled in after merging.
    "cutoff_len": 2048,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "seed": 42,
    "overwrite_cache": True,  # not a default: never reuse a tokenised set from an older file
    "logging_steps": 10,  # not a default (500): a loss curve for sets of a few hundred steps
    "plot_loss": True,  # not a default: training_loss.png for the report
    "save_strategy": "no",  # not a default: the final adapter is saved; no checkpoints
    "overwrite_output_dir": True,  # not a default: a rerun retrains from scratch, never resumes
    "report_to": "none",
}

#: Keys the workflow sets per job; a config override of one is an error.
MANAGED_KEYS = frozenset(
    {
        "model_name_or_path",
        "model_revision",
        "template",
        "stage",
        "do_train",
        "dataset",
        "dataset_dir",
        "output_dir",
        "adapter_name_or_path",
        "create_new_adapter",
        "ref_model",
        "ref_model_adapters",
    }
)


#: Section order of train.yaml (LLaMA-Factory's example files); other keys follow in config order.
KEY_ORDER = (
    # model
    "model_name_or_path",
    "model_revision",
    "adapter_name_or_path",
    "trust_remote_code",
    # method
    "stage",
    "do_train",
    "finetuning_type",
    "create_new_adapter",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "lora_target",
    "pref_beta",
    "pref_loss",
    "ref_model",
    "ref_model_adapters",
    # dataset
    "dataset",
    "dataset_dir",
    "template",
    "cutoff_len",
    "overwrite_cache",
    # output
    "output_dir",
    "logging_steps",
    "plot_loss",
    "save_strategy",
    "overwrite_output_dir",
    "report_to",
    # train
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "num_train_epochs",
    "lr_scheduler_type",
    "warmup_steps",
    "bf16",
    "fp16",
    "seed",
)


#: Ranges LLaMA-Factory does not check before the GPU job has loaded the model: key -> (lowest,
#: whether the lowest is allowed, highest or None). A learning rate of 0 trains nothing silently.
RANGES: dict[str, tuple[float, bool, float | None]] = {
    "learning_rate": (0, False, None),
    "num_train_epochs": (0, False, None),
    "per_device_train_batch_size": (1, True, None),
    "per_device_eval_batch_size": (1, True, None),
    "gradient_accumulation_steps": (1, True, None),
    "lora_rank": (1, True, None),
    "lora_alpha": (1, True, None),
    "lora_dropout": (0, True, 1),
    "pref_beta": (0, False, None),
    "cutoff_len": (1, True, None),
    "warmup_steps": (0, True, None),
    "warmup_ratio": (0, True, 1),
    "logging_steps": (0, False, None),
    "weight_decay": (0, True, None),
    "max_grad_norm": (0, True, None),
}
_KIND_NAMES = {
    "float": "a number",
    "int": "an integer",
    "bool": "true/false",
    "str": "text",
    "list": "a list",
    "dict": "a mapping",
    "null": "null",
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for kind, types_ in (
        ("bool", bool),
        ("int", int),
        ("float", float),
        ("str", str),
        ("list", list),
        ("dict", dict),
    ):
        if isinstance(value, types_):
            return kind
    return type(value).__name__


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _key_problem(key: str, value: object, arguments: dict) -> str | None:
    """Why ``key: value`` would fail inside LLaMA-Factory, or None."""
    spec = arguments.get(key)
    if spec is None:
        close = difflib.get_close_matches(key, arguments, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"not a LLaMA-Factory training argument{hint}"
    kinds = spec["kinds"]
    kind = _kind(value)
    if "any" not in kinds and kind not in kinds:
        expected = " or ".join(
            _KIND_NAMES.get(k, k) for k in kinds if k != "int" or "float" not in kinds
        )
        hint = ""
        if kind == "str" and "float" in kinds and _is_number(str(value)):
            hint = f" (YAML reads {value} as text: write it with a decimal point, e.g. 5.0e-5)"
        return f"{value!r} is {_KIND_NAMES.get(kind, kind)}; expected {expected}{hint}"
    if "choices" in spec and value is not None and value not in spec["choices"]:
        return f"{value!r} is not one of {', '.join(map(str, spec['choices']))}"
    if key in RANGES and kind in ("int", "float"):
        low, inclusive, high = RANGES[key]
        too_low = value < low or (value == low and not inclusive)
        if too_low or (high is not None and value > high):
            bound = f"{'>=' if inclusive else '>'} {low}" + (
                f" and <= {high}" if high is not None else ""
            )
            return f"{value!r} is out of range; expected {bound}"
    return None


def training_problems(config: dict, arguments: dict | None = None) -> list[str]:
    """Every training.common|<stage>|per_student.* key LLaMA-Factory would reject or misuse.

    Names and types come from the committed table of LLaMA-Factory's argument dataclasses
    (:mod:`.lf_args_table`), so this runs at start-up without importing LLaMA-Factory.
    """
    if arguments is None:
        arguments = load_table()["arguments"]
    training = config.get("training", {})
    parts = ("common", *LLAMAFACTORY_STAGES)
    layers = [(f"training.{part}", training.get(part) or {}) for part in parts]
    for student, own in (training.get("per_student") or {}).items():
        layers += [
            (f"training.per_student.{student}.{part}", (own or {}).get(part) or {})
            for part in parts
        ]
    problems = []
    for where, layer in layers:
        for key, value in layer.items():
            if key in MANAGED_KEYS:
                problems.append(f"{where}.{key}: set by the workflow per job; remove it")
                continue
            problem = _key_problem(key, value, arguments)
            if problem:
                problems.append(f"{where}.{key}: {problem}")
    return problems


def validate_training(config: dict) -> None:
    """Raise ConfigError naming every bad training key (start-up check, before any GPU job)."""
    problems = training_problems(config)
    if problems:
        raise ConfigError(
            f"invalid training configuration ({len(problems)} problem(s)); keys are checked "
            "against LLaMA-Factory's arguments (workflow/schemas/llamafactory_args.json):\n  "
            + "\n  ".join(problems)
        )


def dataset_key(method: str, strategy: str, training_set: str) -> str:
    """Name of a set in dataset_info.json (the layout contract: ``method__strategy__set``)."""
    return f"{method}__{strategy}__{training_set}"


def output_dir(student: str, method: str, strategy: str, stage: str) -> str:
    return OUTPUT_DIR.format(student=student, method=method, strategy=strategy, stage=stage)


def stage_overrides(config: dict, student: str, stage: str) -> dict:
    """The configured keys of one stage for one student, merged in precedence order."""
    registry.method(stage)  # a clear error for an unknown stage
    training = config.get("training", {})
    per_student = training.get("per_student", {}).get(student, {})
    layers = [
        ("training.common", training.get("common", {})),
        (f"training.{stage}", training.get(stage, {})),
        (f"training.per_student.{student}.common", per_student.get("common", {})),
        (f"training.per_student.{student}.{stage}", per_student.get(stage, {})),
    ]
    merged: dict = {}
    for where, layer in layers:
        managed = sorted(MANAGED_KEYS.intersection(layer or {}))
        if managed:
            raise ConfigError(
                f"config {where}: {', '.join(managed)} set by the workflow per job "
                f"(students.<name> gives model/template/revision); remove them"
            )
        merged.update(copy.deepcopy(layer or {}))
    return merged


def build_train_args(
    config: dict,
    student: str,
    method: str,
    strategy: str,
    stage: str,
    *,
    out: str | None = None,
    dataset_dir: str | None = None,
    previous_adapter: str | None = None,
) -> dict:
    """The complete LLaMA-Factory arguments of one job, in the order train.yaml shows them.

    ``out`` defaults to the layout contract's folder, ``dataset_dir`` to the data configuration's
    folder and, for a stage that continues another (DPO continues SFT), ``previous_adapter`` to
    that stage's folder beside ``out``.
    """
    training_method = registry.method(stage)
    students = config.get("students", {})
    if student not in students:
        raise ConfigError(
            f"config students: no student {student!r} (configured: {', '.join(students)})"
        )
    student_cfg = students[student]
    out = out or output_dir(student, method, strategy, stage)
    dataset_dir = dataset_dir or DATASET_DIR.format(method=method, strategy=strategy)
    model = resolve_model(student_cfg)
    revision = resolve_revision(student_cfg)

    args: dict = {"model_name_or_path": model}
    if revision:
        args["model_revision"] = revision
    args |= {"stage": training_method.objective, "do_train": True}
    args |= copy.deepcopy(EXPLICIT_DEFAULTS)
    args |= stage_overrides(config, student, stage)
    if args.get("finetuning_type") == "lora" and args.get("lora_alpha") is None:
        args["lora_alpha"] = 2 * int(args.get("lora_rank", 8))
    previous = training_method.continues
    if previous is not None:
        if args.get("finetuning_type") != "lora":
            raise ConfigError(
                f"training: {stage} continues the {previous} LoRA adapter; finetuning_type must "
                f"be 'lora' for student {student!r}, got {args.get('finetuning_type')!r}"
            )
        previous_adapter = previous_adapter or str(Path(out).parent / previous)
        args |= {"adapter_name_or_path": previous_adapter, "create_new_adapter": False}
        if training_method.objective in REFERENCE_OBJECTIVES:
            # the reference is the model this stage starts from (see the module docstring)
            args |= {"ref_model": model, "ref_model_adapters": previous_adapter}
    args |= {
        "template": student_cfg["template"],
        "dataset": dataset_key(method, strategy, training_method.training_set),
        "dataset_dir": dataset_dir,
        "output_dir": out,
    }
    return ordered(args)


def ordered(args: dict) -> dict:
    """``args`` with keys in :data:`KEY_ORDER`, unknown keys after them in their given order."""
    rank = {key: i for i, key in enumerate(KEY_ORDER)}
    keys = sorted(args, key=lambda k: (rank.get(k, len(rank)), list(args).index(k)))
    return {key: args[key] for key in keys}


def render_yaml(args: dict) -> str:
    """train.yaml text: keys in build order, one per line (stable, so params compare equal)."""
    header = "# Written by empathy_distill.training (llamafactory_config); llamafactory-cli train\n"
    return header + yaml.safe_dump(args, sort_keys=False, default_flow_style=False, width=1000)


def settings_json(args: dict) -> str:
    """Compact, deterministic form for Snakemake ``params`` (a change triggers retraining)."""
    return json.dumps(args, sort_keys=False, separators=(",", ":"))


def job_settings(config: dict, student: str, method: str, strategy: str, stage: str) -> str:
    """Settings of a job as the Snakemake rule's ``params`` hold them (JSON)."""
    return settings_json(build_train_args(config, student, method, strategy, stage))


def write_train_yaml(args: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_yaml(args), encoding="utf-8")
    return path
