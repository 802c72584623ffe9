"""PRIDE's training loop: LoRA on the student, a frozen teacher, three loss terms, one adapter out.

Plain torch + transformers + peft rather than a ``transformers.Trainer`` subclass: each step
runs up to four forward passes (privileged encoding, teacher, student) whose inputs differ,
which the Trainer's one-batch-one-forward shape does not fit without overriding most of it.

Outputs, as every training method writes them (so the answer rule needs no special case):
``adapter_model.safetensors`` + ``adapter_config.json`` (a plain LoRA adapter over the student's
base model), ``train_results.json``, ``training_loss.png``; and ``pride_settings.json`` (what ran)
and ``pride_log.json`` (every logged step's terms and gate).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from ...core.errors import TrainingError
from .config import PRECOMPUTED
from .data import MMD_MAX_TOKENS, feature_cap
from .losses import (
    FeatureProjection,
    mmd_rbf,
    response_cross_entropy,
    reverse_kl,
    reverse_kl_topk,
)
from .privileged import PRIVILEGED_FIELDS, constant_fields
from .teacher_store import TeacherOutputs
from .tokenizers import check_tokenizer_pair

LOG = logging.getLogger(__name__)
SETTINGS_FILE = "pride_settings.json"
LOG_FILE = "pride_log.json"
__all__ = ["MMD_MAX_TOKENS", "step_losses", "teacher_pass", "train", "train_in_memory"]


def _gather(values: Any, positions: Any) -> Any:
    """values (B, L, D) at positions (B, R) -> (B, R, D)."""
    index = positions.unsqueeze(-1).expand(-1, -1, values.size(-1))
    return values.gather(1, index)


def teacher_pass(student: Any, teacher: Any, ids: Any, mask: Any) -> tuple[Any, Any]:
    """The teacher's logits and last-layer features (no gradient). ``teacher`` None: the
    student's base model (adapter disabled). The one place the teacher runs: in training with
    ``teacher_outputs: online``, in rule pride_teacher_outputs otherwise."""
    import torch

    from .attention import multi_source

    model = student if teacher is None else teacher
    with torch.no_grad(), multi_source(model, None, None, None, 0.0) as tap:
        if teacher is None:
            with student.disable_adapter():
                logits = student(input_ids=ids, attention_mask=mask).logits
        else:
            logits = teacher(input_ids=ids, attention_mask=mask).logits
    return logits, tap.features


def step_losses(
    student: Any,
    batch: dict,
    weights: dict,
    *,
    teacher: Any = None,
    teacher_outputs: dict | None = None,
    block: Any = None,
    projection: Any = None,
    gate: float = 0.0,
    temperature: float = 1.0,
) -> dict:
    """Every enabled term of one batch and their weighted sum (``total``).

    ``teacher_outputs`` (precomputed, :meth:`.teacher_store.TeacherOutputs.batch`): the reverse
    KL over the teacher's top k and a tail bucket, the MMD against the stored features; no
    teacher runs. Otherwise the teacher runs now (``teacher`` None: the student's base model,
    adapter disabled). A term whose weight is 0 is not computed, so no gradient flows through it.
    """
    import torch

    from .attention import multi_source

    privileged = None
    if block is not None and gate != 0.0:
        with torch.no_grad(), student.disable_adapter():
            with multi_source(student, None, None, None, 0.0) as tap:
                student(input_ids=batch["privileged_ids"], attention_mask=batch["privileged_mask"])
            privileged = tap.features
    with multi_source(student, block, privileged, batch["privileged_mask"], gate) as tap:
        out = student(input_ids=batch["student_ids"], attention_mask=batch["student_mask"])
    s_logits = _gather(out.logits, batch["student_positions"])
    mask = batch["response_mask"].to(s_logits.device)
    # the MMD term's positions (data.feature_positions): the same online and precomputed
    keep = batch.get("feature_mask", batch["response_mask"]).to(s_logits.device).bool()
    terms: dict = {}
    if weights.get("ce"):
        flat = s_logits.reshape(-1, s_logits.size(-1))
        terms["ce"] = response_cross_entropy(flat, batch["labels"].reshape(-1), mask.reshape(-1))
    needs_teacher = bool(weights.get("reverse_kl") or weights.get("mmd"))
    if needs_teacher and teacher_outputs is not None:
        stored = {k: v.to(s_logits.device) for k, v in teacher_outputs.items()}
        if weights.get("reverse_kl"):
            terms["reverse_kl"] = reverse_kl_topk(
                s_logits,
                stored["topk_ids"],
                stored["topk_logprobs"],
                stored["tail_logmass"],
                mask,
                temperature,
            )
        if weights.get("mmd"):
            s_feat = _gather(tap.features, batch["student_positions"])[keep][:MMD_MAX_TOKENS]
            t_feat = stored["features"][:MMD_MAX_TOKENS]
            s_feat = projection(s_feat) if projection is not None else s_feat
            terms["mmd"] = mmd_rbf(s_feat, t_feat.to(s_feat.dtype))
    elif needs_teacher:
        t_logits, t_features = teacher_pass(
            student, teacher, batch["teacher_ids"], batch["teacher_mask"]
        )
        # a teacher spread over several GPUs returns them on its last layer's device
        t_logits = t_logits.to(s_logits.device)
        t_features = t_features.to(s_logits.device)
        if weights.get("reverse_kl"):
            t_resp = _gather(t_logits, batch["teacher_positions"])
            terms["reverse_kl"] = reverse_kl(s_logits, t_resp, mask, temperature)
        if weights.get("mmd"):
            s_feat = _gather(tap.features, batch["student_positions"])[keep][:MMD_MAX_TOKENS]
            t_feat = _gather(t_features, batch["teacher_positions"])[keep][:MMD_MAX_TOKENS]
            s_feat = projection(s_feat) if projection is not None else s_feat
            terms["mmd"] = mmd_rbf(s_feat, t_feat.to(s_feat.dtype))
    terms["total"] = sum(weights[name] * value for name, value in terms.items())
    return terms


def prepare_output_dir(out: Path) -> None:
    """Empty ``out`` of a previous PRIDE run (it must look like one) so nothing stale survives."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / SETTINGS_FILE).is_file():
            raise TrainingError(
                f"{out} is not empty and holds no {SETTINGS_FILE}: refusing to clear a folder "
                "this workflow did not write"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def load_models(settings: dict, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    """(tokenizer, LoRA student, teacher or None when it is the student's un-tuned base or
    its outputs are precomputed: ``teacher_outputs: precomputed`` never loads it).

    The ``sft`` teacher (``teacher_adapter``) is its own copy of the student's base model with
    the configuration's SFT adapter merged in: one more copy of the base weights (16 GB for an
    8B model in bf16), against switching adapters on the student's copy at every step, which
    peft's set_adapter makes fragile (it moves requires_grad between adapters).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, revision = settings["model_name_or_path"], settings.get("model_revision")
    tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
    base = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype).to(device)
    lora = LoraConfig(
        r=settings["lora_rank"],
        lora_alpha=settings["lora_alpha"],
        lora_dropout=settings["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    student = get_peft_model(base, lora)
    own_model = (settings["teacher_model"], settings.get("teacher_revision")) == (model, revision)
    teacher = None
    if settings.get("teacher_outputs") == PRECOMPUTED:
        teacher = None  # rule pride_teacher_outputs ran it; training reads its outputs
    elif settings.get("teacher_adapter") or not own_model:
        teacher = load_teacher(settings, device, dtype)
    return tokenizer, student, teacher


def load_teacher(settings: dict, device: str, dtype: Any) -> Any:
    """The frozen teacher: ``teacher_model`` (with the ``teacher_adapter`` merged, the sft
    teacher), whole on ``device`` or spread by ``teacher_device_map``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device_map = settings.get("teacher_device_map")
    teacher = AutoModelForCausalLM.from_pretrained(
        settings["teacher_model"],
        revision=settings.get("teacher_revision"),
        dtype=dtype,
        device_map=device_map,  # "auto": layers spread over the job's GPUs (accelerate)
    )
    adapter = settings.get("teacher_adapter")
    if adapter:
        teacher = PeftModel.from_pretrained(teacher, adapter).merge_and_unload()
    if device_map is None:
        teacher = teacher.to(device)
    return teacher.eval().requires_grad_(False)


def read_examples(settings: dict, tokenizer: Any) -> list:
    """The job's SFT set joined with train.csv (and, with ``training.pride.reasoning``, the
    teacher's reasoning file), encoded for student and teacher."""
    return read_examples_and_fields(settings, tokenizer)[0]


def read_examples_and_fields(settings: dict, tokenizer: Any) -> tuple[list, tuple[str, ...]]:
    """:func:`read_examples`, and the privileged fields the teacher sees (those that vary)."""
    from ...core.prompts import Prompts
    from ...core.readers import read_table
    from ...distillation.formats import read_set
    from ..templates import llamafactory_template
    from .data import encode_examples, rows_by_id
    from .reasoning import read_reasoning, reasoning_for
    from .study_fields import RESPONSE_COLUMNS, join_study

    student_template = llamafactory_template(tokenizer, settings["template"])
    teacher_template = (
        student_template
        if settings["teacher_template"] == settings["template"]
        else llamafactory_template(tokenizer, settings["teacher_template"])
    )
    study = RESPONSE_COLUMNS if settings.get("study_data") else ()
    columns = ("dialog_id", "situation", "speaker_uttr", *PRIVILEGED_FIELDS, *study)
    records = read_set(settings["dataset"])
    # the scoring study's annotations of the dialogues' responses (privileged_fields)
    rows = join_study(settings, records, rows_by_id(read_table(settings["train_csv"], columns)))
    reasoning = None
    if settings.get("reasoning"):
        path = settings["reasoning"]["file"]
        every = read_reasoning(path)
        reasoning = {
            str(r["dialog_id"]): reasoning_for(every, str(r["dialog_id"]), path) for r in records
        }
    prompts = Prompts()
    fields = privileged_fields(records, rows, settings.get("privileged_fields"))
    examples = encode_examples(
        records,
        rows,
        tokenizer,
        student_template,
        teacher_template,
        settings["cutoff_len"],
        lambda row: prompts.student_train(str(row["situation"]), str(row["speaker_uttr"])),
        reasoning,
        fields,
    )
    return examples, fields


def privileged_fields(
    records: list, rows: dict, configured: list[str] | None = None
) -> tuple[str, ...]:
    """The ``configured`` privileged fields (training.pride.privileged_fields; None: the
    dataset's) that vary over the set's dialogues; the constant ones are logged with their
    value and left out of the teacher's prompt (they tell it nothing)."""
    configured = list(PRIVILEGED_FIELDS) if configured is None else configured
    known = [rows[str(r["dialog_id"])] for r in records if str(r["dialog_id"]) in rows]
    constant = constant_fields(known, configured)
    for field, value in constant.items():
        LOG.info(
            "privileged field %s is %r in every dialogue of this training set: left out of the "
            "teacher's prompt",
            field,
            value,
        )
    kept = tuple(f for f in configured if f not in constant)
    LOG.info("privileged fields the teacher sees: %s", ", ".join(kept) or "none")
    return kept


def precomputed_dir(settings: dict) -> str | None:
    """The folder of the job's precomputed teacher outputs, or None when the teacher runs
    online (``teacher_outputs: online``) or no teacher term is weighted."""
    if settings.get("teacher_outputs") != PRECOMPUTED:
        return None
    return settings.get("teacher_outputs_dir")


def schedule_of(settings: dict) -> tuple[float, float, str]:
    """The gate schedule's arguments of :func:`attention.gate_value` after ``step, total``."""
    return (
        settings["gate_start"],
        settings["anneal_fraction"],
        settings.get("gate_schedule", "linear"),
    )


def train(settings: dict, out: Path) -> Path:
    """Train one PRIDE job; write the adapter files into ``out``; return ``out``."""
    train_in_memory(settings, out)
    return out


def train_in_memory(settings: dict, out: Path) -> tuple[Any, Any]:
    """:func:`train`, also returning (the trained LoRA student as it is in memory, tokenizer):
    what the tests compare with the base model + the saved adapter the answer rule loads."""
    if precomputed_dir(settings) is None:
        # the teacher loads here (online); precomputed, rule pride_teacher_outputs checked it
        check_tokenizer_pair(settings)  # before any model is loaded
    import torch

    from .attention import PrivilegedCrossAttention, gate_value
    from .data import collate

    torch.manual_seed(settings["seed"])
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = (
        torch.bfloat16
        if settings["bf16"] and cuda and torch.cuda.is_bf16_supported()
        else torch.float32
    )
    prepare_output_dir(out)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    tokenizer, student, teacher = load_models(settings, device, dtype)
    examples, fields = read_examples_and_fields(settings, tokenizer)
    weights = settings["weights"]
    store = None
    if precomputed_dir(settings) is not None:
        store = TeacherOutputs(precomputed_dir(settings), settings, examples)
    width = student.get_base_model().config.hidden_size
    teacher_width = (
        store.manifest["feature_width"]
        if store is not None
        else width
        if teacher is None
        else teacher.config.hidden_size
    )
    # New parameters keep float32 master weights whatever the student's dtype (attention.py).
    block = (
        PrivilegedCrossAttention(
            width, settings["attention_heads"], settings.get("gate_init", 0.0)
        ).to(device, torch.float32)
        if settings["gate_start"]
        else None
    )
    projection = FeatureProjection(width, teacher_width).to(device, torch.float32)
    params = [p for p in student.parameters() if p.requires_grad]
    for extra in (block, projection):
        if extra is not None:
            params += list(extra.parameters())
    batch_size = settings["per_device_train_batch_size"]
    per_epoch = math.ceil(len(examples) / batch_size)
    total = (
        settings["max_steps"]
        if settings["max_steps"] > 0
        else math.ceil(per_epoch * settings["num_train_epochs"])
    )
    optimizer = torch.optim.AdamW(params, lr=settings["learning_rate"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    generator = torch.Generator().manual_seed(settings["seed"])
    order: list[int] = []
    history, losses = [], []
    start = time.monotonic()
    student.train()
    for step in range(total):
        if len(order) < batch_size:
            order += torch.randperm(len(examples), generator=generator).tolist()
        picked, order = order[:batch_size], order[batch_size:]
        batch = {
            k: v.to(device)
            for k, v in collate(
                [examples[i] for i in picked],
                tokenizer.pad_token_id or 0,
                feature_cap(batch_size, settings.get("teacher_feature_tokens")),
                settings["seed"],
            ).items()
        }
        stored = None if store is None else store.batch(picked, batch["labels"].size(1))
        gate = gate_value(step, total, *schedule_of(settings))
        terms = step_losses(
            student,
            batch,
            weights,
            teacher=teacher,
            teacher_outputs=stored,
            block=block,
            projection=projection,
            gate=gate,
            temperature=settings["temperature"],
        )
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(terms["total"].detach()))
        if (step + 1) % settings["logging_steps"] == 0 or step in (0, total - 1):
            entry = {
                "step": step + 1,
                "gate": gate,
                "learned_gate": None if block is None else float(block.gate()),
                **{k: float(v.detach()) for k, v in terms.items()},
            }
            history.append(entry)
            LOG.info("step %s", entry)
    elapsed = time.monotonic() - start
    final_gate = gate_value(total, total, *schedule_of(settings))
    if final_gate != 0.0:
        raise TrainingError(f"the privileged path's gate ended at {final_gate}, not 0")
    student.save_pretrained(str(out))  # the LoRA adapter only: no privileged path, no projection
    results = {
        "epoch": total * batch_size / len(examples),
        "train_loss": sum(losses) / len(losses),
        "train_runtime": elapsed,
        "train_samples_per_second": total * batch_size / elapsed,
        "train_steps_per_second": total / elapsed,
        "pride": {
            "steps": total,
            "examples": len(examples),
            "final_gate": final_gate,
            "teacher": settings["teacher"],
            "teacher_mode": settings.get("teacher_mode"),
            "teacher_outputs": settings.get("teacher_outputs", "online"),
            "teacher_top_k": None if store is None else store.k,
            "privileged_fields": list(fields),
            "final_learned_gate": None if block is None else float(block.gate()),
            "first_loss": losses[0],
            "last_loss": losses[-1],
        },
    }
    (out / "train_results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / LOG_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    plot_loss(history, out / "training_loss.png")
    return student, tokenizer


def plot_loss(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for term in ("total", "ce", "reverse_kl", "mmd"):
        points = [(h["step"], h[term]) for h in history if term in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=term)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("PRIDE training loss")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
