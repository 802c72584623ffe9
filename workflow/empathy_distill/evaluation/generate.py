"""Students answer the test dialogues: batched generation with the training template.

Prompting (the paper, Xie et al. SIGDIAL 2025, fed raw text to every model and cut the decoded
sequence afterwards, which runs a base model past its answer and cuts a chat model's answer at
the wrong place):

* Base students get ``Prompts.student_test_base`` as raw text: a base model has no chat
  template, so the paper's prompt, ending in "Response: ", is continued as plain text (with the
  tokenizer's BOS token, as ``tokenizer(prompt)`` in the paper). A base model has no end-of-turn
  token either, so its answer ends at EOS or where it starts a new dialogue field ("Context:",
  "Speaker Utterance:", "Response:" on a new line), which is where the paper's cut at
  "Response: " would split a continued sequence.
* Fine-tuned students get ``Prompts.student_train`` encoded with LLaMA-Factory's template of the
  student (config ``students.<name>.template``), exactly as training encoded the user turn and as
  LLaMA-Factory's own chat engine does (``encode_oneturn`` + ``get_stop_token_ids``). The
  training prompt is what the student learnt to answer; the paper's ``test_prompt_finetuned``
  differs from it only by ASCII instead of typographic apostrophes and one missing space before
  "Context:", i.e. it is a slightly out-of-distribution copy of the same text, so we use the
  training text.

Generation: prompts sorted by length, their shared prefix (the paper's paragraph on empathy)
prefilled once, left padding, KV cache (grouped KV heads not copied on CPU), only new tokens
decoded, stop at the template's end-of-turn tokens, at most
``generation.max_new_tokens`` (default 160; the paper used 4096 and cut afterwards). Greedy by
default; sampling with ``generation.seed``. An optional vLLM path is used when
``generation.engine: vllm`` (GPU machines with vllm installed).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core import specs
from ..core.command import run_cli
from ..core.config import resolve_resource
from ..core.errors import ConfigError
from ..core.hardware import cpu_has_native_bf16
from ..core.prompts import Prompts
from ..llm.backends.local_decoding import decode_batches
from ..training.devices import add_gpus_argument, job_gpus
from ..training.templates import llamafactory_template
from . import specs as evaluation_specs
from .records import read_split, write_jsonl

LOG = logging.getLogger(__name__)
BASE_STOP = re.compile(r"\n\s*(?:Context|Speaker Utterance|Response)\s*:")


@dataclass(frozen=True)
class GenerationSettings:
    """The ``generation`` config block; recorded with every answer."""

    max_new_tokens: int
    batch_size: int
    do_sample: bool
    temperature: float
    top_p: float
    seed: int
    engine: str
    dtype: str  # auto | float32 | bfloat16 (weights' precision, transformers engine)


@dataclass(frozen=True)
class EncodedPrompt:
    dialog_id: str
    text: str  # the exact model input, decoded (template markup included)
    ids: list[int]


def load_tokenizer(
    model_path: str | Path, adapter_dir: str | Path | None = None, revision: str | None = None
) -> Any:
    """The tokenizer saved with the adapter (LLaMA-Factory writes it there), else the base one."""
    from transformers import AutoTokenizer

    if adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), revision=revision)
    tokenizer.padding_side = "left"
    return tokenizer


def torch_dtype(name: str, device: str, cpu_bf16: bool | None = None) -> Any:
    """The weights' dtype: ``auto`` is bfloat16 on a GPU and float32 on a CPU; ``bfloat16`` on a
    CPU without native bf16 (emulated, slower than float32) falls back to float32, logged."""
    import torch

    on_gpu = not device.startswith("cpu")
    if name == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
    if name == "bfloat16" and not on_gpu and not native:
        LOG.warning("generation.dtype bfloat16: this CPU has no native bf16, using float32")
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_model(
    model_path: str | Path,
    adapter_dir: str | Path | None = None,
    device: str | None = None,
    revision: str | None = None,
    dtype: str = "auto",
) -> Any:
    """Base model, with the LoRA adapter merged in when given (merged: faster generation)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path), dtype=torch_dtype(dtype, device), revision=revision
    )
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return model.to(device).eval()


def encode_finetuned(
    test: Any, tokenizer: Any, template: Any, prompts: Prompts
) -> list[EncodedPrompt]:
    """Training user turn through the training template (LLaMA-Factory ``encode_oneturn``)."""
    out = []
    for row in test.itertuples(index=False):
        user = prompts.student_train(str(row.situation), str(row.speaker_uttr))
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": ""}]
        ids, _ = template.encode_oneturn(tokenizer, messages)
        out.append(EncodedPrompt(row.dialog_id, tokenizer.decode(ids), list(ids)))
    return out


def encode_base(test: Any, tokenizer: Any, prompts: Prompts) -> list[EncodedPrompt]:
    """The paper's base prompt as raw text (BOS added as ``tokenizer(prompt)`` does)."""
    out = []
    for row in test.itertuples(index=False):
        text = prompts.student_test_base(str(row.situation), str(row.speaker_uttr))
        out.append(EncodedPrompt(row.dialog_id, text, tokenizer(text)["input_ids"]))
    return out


def cut_base_answer(text: str) -> str:
    """A base model's answer ends where it starts the next dialogue field."""
    match = BASE_STOP.search(text)
    return (text[: match.start()] if match else text).strip()


def hit_token_cap(new_ids: Sequence[int], text: str, max_new_tokens: int, finetuned: bool) -> bool:
    """Whether the answer was cut by ``max_new_tokens`` rather than ending on its own: no stop
    token within the cap (a stop token takes a slot, so a stopped answer has fewer ids) and, for
    a base model, no next dialogue field either (``cut_base_answer`` ends the answer there)."""
    if len(new_ids) < max_new_tokens:
        return False
    return finetuned or BASE_STOP.search(text) is None


def _cut_at_stop(ids: Sequence[int], stop_ids: set[int]) -> list[int]:
    """Tokens before the first end-of-turn (generate() pads finished rows after their stop)."""
    out = []
    for token in ids:
        if token in stop_ids:
            break
        out.append(token)
    return out


def generate_ids(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stop_ids: Sequence[int],
) -> list[list[int]]:
    """New token ids per prompt (stop token excluded), in input order.

    Batched by ``local_decoding.decode_batches``: prompts sorted by length, the prefix they all
    share prefilled once, the rest padded on the left, decoded with the KV cache; on CPU, grouped
    KV heads are attended without copying them (``cpu_attention``). One seed for the whole run.
    """
    from transformers import set_seed

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    set_seed(settings.seed)
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        if settings.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    new_ids = decode_batches(
        model,
        prompt_ids,
        settings.batch_size,
        pad_id,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=list(stop_ids),
        **sampling,
    )
    stop_set = set(stop_ids)
    return [_cut_at_stop(ids, stop_set) for ids in new_ids]


#: Ranks vLLM accepts for ``max_lora_rank`` (``MaxLoRARanks`` in vllm/config/lora.py).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_rank(rank: int, adapter_config: Path) -> int:
    """The smallest rank vLLM accepts that holds the adapter's (vLLM rejects any other)."""
    allowed = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not allowed:
        raise ConfigError(
            f"{adapter_config}: LoRA rank r={rank} is above the largest rank vLLM serves"
            f" ({VLLM_LORA_RANKS[-1]}); use generation.engine: transformers"
        )
    return allowed[0]


def generate_ids_vllm(
    model_path: str | Path,
    adapter_dir: str | Path | None,
    prompt_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stop_ids: Sequence[int],
    revision: str | None = None,
) -> list[list[int]]:
    """The same generation through vLLM (continuous batching, LoRA served on the base model).

    ``revision`` pins the weights and the tokenizer to the commit the student was trained on.
    """
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ConfigError("generation.engine is 'vllm' but vllm is not installed") from exc
    lora_rank = None
    if adapter_dir is not None:
        adapter_config = Path(adapter_dir) / "adapter_config.json"
        rank = int(json.loads(adapter_config.read_text(encoding="utf-8"))["r"])
        lora_rank = vllm_lora_rank(rank, adapter_config)
    llm = LLM(
        model=str(model_path),
        revision=revision,
        tokenizer_revision=revision,
        seed=settings.seed,
        # the KV cache is sized for the longest request, not the model's 128k context
        max_model_len=max(map(len, prompt_ids)) + settings.max_new_tokens,
        enable_lora=lora_rank is not None,
        **({"max_lora_rank": lora_rank} if lora_rank is not None else {}),
    )
    params = SamplingParams(
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature if settings.do_sample else 0.0,
        top_p=settings.top_p if settings.do_sample else 1.0,
        seed=settings.seed,
        stop_token_ids=list(stop_ids),
    )
    lora = LoRARequest("adapter", 1, str(adapter_dir)) if adapter_dir is not None else None
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params, lora_request=lora
    )
    stop_set = set(stop_ids)
    return [_cut_at_stop(list(o.outputs[0].token_ids), stop_set) for o in outputs]


def answer_test(
    test: Any,
    model_path: str | Path,
    settings: GenerationSettings,
    prompts: Prompts,
    template: str | None = None,
    adapter_dir: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    revision: str | None = None,
) -> list[dict]:
    """One answer record per test dialogue. ``template`` set = fine-tuned (training template).

    ``model``/``tokenizer`` may be passed in (tests, benchmarks); otherwise they are loaded.
    """
    if tokenizer is None:
        tokenizer = load_tokenizer(model_path, adapter_dir, revision)
    tokenizer.padding_side = "left"
    finetuned = template is not None
    if finetuned:
        lf_template = llamafactory_template(tokenizer, template)
        encoded = encode_finetuned(test, tokenizer, lf_template, prompts)
        stop_ids = lf_template.get_stop_token_ids(tokenizer)
    else:
        encoded = encode_base(test, tokenizer, prompts)
        stop_ids = [tokenizer.eos_token_id]
    ids = [e.ids for e in encoded]
    if settings.engine == "vllm":
        new_ids = generate_ids_vllm(model_path, adapter_dir, ids, settings, stop_ids, revision)
    else:
        if model is None:
            model = load_model(model_path, adapter_dir, revision=revision, dtype=settings.dtype)
        new_ids = generate_ids(model, tokenizer, ids, settings, stop_ids)
    record_settings = {
        **asdict(settings),
        "prompt": "student_train" if finetuned else "student_test_base",
        "template": template,
        "stop_token_ids": sorted(int(s) for s in stop_ids),
        "model": str(model_path),
        "adapter": str(adapter_dir) if adapter_dir is not None else None,
    }
    rows = []
    for enc, new in zip(encoded, new_ids, strict=True):
        text = tokenizer.decode(new, skip_special_tokens=True)
        answer = text.strip() if finetuned else cut_base_answer(text)
        rows.append(
            {
                "dialog_id": enc.dialog_id,
                "prompt": enc.text,
                "answer": answer,
                "hit_token_cap": hit_token_cap(new, text, settings.max_new_tokens, finetuned),
                "new_tokens": len(new),  # generation tokens/s (gpu_smoke.json)
                "generation": record_settings,
                "seed": settings.seed,
            }
        )
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Answer the test dialogues with a student.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--student", help="with --config: a key of config.students")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--adapter", help="fine-tuned LoRA adapter dir (omit for the base model)")
    parser.add_argument("--model-path", help="override the student's resolved model path")
    parser.add_argument("--out", required=True, help="answers JSONL")
    add_gpus_argument(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not args.student:
        raise ConfigError("--config needs --student (a key of config.students)")
    spec, _ = specs.from_args(args, lambda config: evaluation_specs.answer(config, args.student))
    with job_gpus(args.gpus, job=f"answer {args.out}", student=spec["student"]):
        rows = _answer(args, spec)
    write_jsonl(args.out, rows)
    print(f"{args.out}: {len(rows)} answers")


def _answer(args: argparse.Namespace, spec: dict) -> list[dict[str, Any]]:
    student_cfg = spec["model"]
    if args.model_path:
        model_path = args.model_path
    else:
        from ..core.students import resolve_model

        model_path = str(resolve_model(student_cfg))
    return answer_test(
        read_split(args.test),
        model_path,
        GenerationSettings(**spec["generation"]),
        Prompts(resolve_resource(spec["prompts"])),
        template=student_cfg["template"] if args.adapter else None,
        adapter_dir=args.adapter,
        revision=student_cfg["revision"],
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
