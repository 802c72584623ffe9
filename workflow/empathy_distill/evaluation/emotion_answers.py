"""A student names the speaker's emotion of each test dialogue, scored by likelihood.

Why likelihood and not free generation: a generated answer has to be parsed ("I think they feel
sad" or "Sadness"), a base model rambles, and sampling settings change it. Scoring the 32
candidate labels as the continuation of a fixed question is deterministic, needs no parser and
is cheap: one forward pass per dialogue plus one batch of 32 short candidates.

* Prompt: ``emotion_labels.question`` (the 32 labels listed, then the dialogue). Fine-tuned
  students get it as the user turn of their LLaMA-Factory template and each label as the
  assistant turn (``encode_oneturn``, as training and ``generate`` encode), so a candidate's
  tokens are the label and the template's end-of-turn; base students get the raw text ending
  in ``Emotion:`` (BOS as ``tokenizer(text)`` adds it) and the candidate " <label>" plus a
  newline (the base model's end of the field), as the answer rule prompts them.
* Score: the mean log-probability per candidate token (length-normalised: labels take 1 to 4
  tokens, and a sum would favour the short ones). The prediction is the best-scoring label.
* Speed: the prompt prefix every dialogue shares (the question and the list) is prefilled once
  (``local_decoding.prefix_cache``); each dialogue's rest once; its 32 candidates in one batch
  on copies of that cache, right-padded (causal attention: a real token never sees the padding
  after it, so no mask is needed), less each candidate's last token (it predicts nothing).
* Weights: base + merged adapter as the answer rule loads them (``generate.load_model``),
  ``generation.dtype``. The transformers engine always (``generation.engine: vllm`` serves
  generation only).
* One job per student: the base model is loaded once and each trained model's adapter merged
  into it in turn, the base weights restored from a host copy between them (a load per answer
  set made 128 GPU jobs of the default grid, each mostly loading). The merge runs on the job's
  device: on a GPU a merged bf16 weight may differ in its last bit from ``load_model``'s merge
  on the CPU; on a CPU the labels are those of a load per set (tested). Each set's records are kept
  in a part named by what they depend on (:func:`fingerprint`), so a job killed half-way, or
  rerun for a set added to the grid, scores only the sets it has no part for.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core import grid, specs
from ..core.atomic import write_jsonl
from ..core.command import run_cli
from ..core.errors import ConfigError, DatasetError
from ..core.students import resolve_model
from ..data.dataset import sha256_of
from ..llm.backends.local_decoding import prefix_cache, shared_prefix_length
from ..training.devices import add_gpus_argument, job_gpus
from ..training.templates import llamafactory_template
from . import specs as evaluation_specs
from .emotion_labels import BASE_SUFFIX, CHAT_SUFFIX, question
from .generate import load_model, load_tokenizer
from .records import read_jsonl, read_split


def check_gold(test: Any, labels: Sequence[str], source: str) -> None:
    """Every test dialogue's ``emotion`` must be one of the candidate labels (else no model can
    be right on it): stop before any model is loaded, naming the rows."""
    if "emotion" not in test.columns:
        raise DatasetError(f"{source}: no 'emotion' column (the gold label of emotion accuracy)")
    bad = [
        f"{row.dialog_id} ({row.emotion!r})"
        for row in test.itertuples(index=False)
        if str(row.emotion) not in labels
    ]
    if bad:
        raise DatasetError(
            f"{source}: emotion not among the {len(labels)} EmpatheticDialogues labels in "
            f"dialogue(s) {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}"
        )


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every sequence shares."""
    first, length = sequences[0], 0
    while all(len(s) > length and s[length] == first[length] for s in sequences):
        length += 1
    return length


def encode_base(tokenizer: Any, text: str, labels: Sequence[str]) -> tuple[list[int], list]:
    """(prompt ids, candidate ids per label) of the raw base prompt. The prompt is what every
    candidate's tokenisation starts with (the prompt alone, unless a label merges across it)."""
    prompt = list(tokenizer(text)["input_ids"])
    full = [list(tokenizer(f"{text} {label}\n")["input_ids"]) for label in labels]
    cut = min(len(prompt), common_prefix([prompt, *full]))
    return full[0][:cut], [ids[cut:] for ids in full]


def encode_chat(template: Any, tokenizer: Any, text: str, labels: Sequence[str]) -> tuple:
    """(prompt ids, candidate ids per label): the user turn, then each label as the assistant
    turn with the template's end-of-turn (LLaMA-Factory encodes the two apart, as training)."""
    prompt, candidates = None, []
    for label in labels:
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
        ids, answer = template.encode_oneturn(tokenizer, messages)
        prompt = list(ids) if prompt is None else prompt
        candidates.append(list(answer))
    return prompt, candidates


def candidate_scores(
    model: Any, prompts: Sequence[Sequence[int]], candidates: Sequence[Sequence[Sequence[int]]]
) -> list[list[float]]:
    """Mean log-probability per token of each candidate continuing its prompt."""
    import torch

    prefix_length = shared_prefix_length(prompts)
    shared = prefix_cache(model, prompts[0][:prefix_length]) if prefix_length else None
    out = []
    with torch.inference_mode():
        for prompt, cands in zip(prompts, candidates, strict=True):
            past = copy.deepcopy(shared) if shared is not None else None
            rest = torch.tensor([list(prompt[prefix_length:])], device=model.device)
            step = model(input_ids=rest, past_key_values=past, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(step.logits[0, -1].float(), dim=-1)
            scores = [float(first[c[0]]) for c in cands]
            width = max(len(c) for c in cands) - 1  # a candidate's last token predicts nothing
            if width:
                cache = step.past_key_values
                cache.batch_repeat_interleave(len(cands))
                ids = torch.zeros((len(cands), width), dtype=torch.long)
                for row, c in enumerate(cands):
                    ids[row, : len(c) - 1] = torch.tensor(list(c[:-1]), dtype=torch.long)
                logits = model(input_ids=ids.to(model.device), past_key_values=cache).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                for row, c in enumerate(cands):
                    scores[row] += sum(float(logprobs[row, j - 1, c[j]]) for j in range(1, len(c)))
            scores = [total / len(c) for total, c in zip(scores, cands, strict=True)]
            out.append(scores)
    return out


def name_emotions(
    test: Any,
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    template: str | None = None,
) -> list[dict[str, Any]]:
    """One record per test dialogue: gold, predicted label and every label's score.
    ``template`` set = a fine-tuned student (its chat template), else the raw base prompt."""
    if template is not None:
        lf_template = llamafactory_template(tokenizer, template)
    encoded = []
    for row in test.itertuples(index=False):
        text = question(str(row.situation), str(row.speaker_uttr), tuple(labels))
        if template is not None:
            encoded.append(encode_chat(lf_template, tokenizer, text + CHAT_SUFFIX, labels))
        else:
            encoded.append(encode_base(tokenizer, text + BASE_SUFFIX, labels))
    scores = candidate_scores(model, [e[0] for e in encoded], [e[1] for e in encoded])
    records = []
    for row, row_scores in zip(test.itertuples(index=False), scores, strict=True):
        best = max(range(len(labels)), key=lambda k: row_scores[k])
        records.append(
            {
                "dialog_id": str(row.dialog_id),
                "gold": str(row.emotion),
                "predicted": labels[best],
                "scores": {label: round(s, 6) for label, s in zip(labels, row_scores, strict=True)},
            }
        )
    return records


def fingerprint(spec: dict, tag: str, test_sha256: str, model_path: str | Path) -> str:
    """sha256 of what an answer set's labels depend on: the spec less its list of sets, the set,
    the test split's bytes, the base model (a local folder: its files' names, sizes and times;
    a Hub id: the spec's pinned revision) and the adapter's files. Names the set's part."""
    digest = hashlib.sha256()
    shared = {k: v for k, v in spec.items() if k != "answer_tags"}
    digest.update(f"{specs.dumps(shared)}\0{tag}\0{test_sha256}\0".encode())
    folder = Path(model_path)
    if folder.is_dir():
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    adapter = grid.adapter_dir(tag)
    if adapter is not None:
        for name in grid.ADAPTER_FILES:
            digest.update(f"{name}\0{sha256_of(Path(adapter) / name)}\0".encode())
    return digest.hexdigest()


@contextmanager
def merged(model: Any, adapter: str | None, pristine: dict[str, Any]) -> Iterator[Any]:
    """The base ``model`` with ``adapter`` merged in (as ``generate.load_model`` merges it),
    then its base weights restored from ``pristine`` (a host copy of its state dict)."""
    if adapter is None:
        yield model
        return
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    try:
        yield tuned
    finally:
        tuned.load_state_dict(pristine)
        # unloading leaves the adapter's config on the model; the next adapter is its only one
        if hasattr(tuned, "peft_config"):
            del tuned.peft_config


def answer_set_records(
    spec: dict, test_path: str | Path, model_path: str | Path, parts: Path
) -> Iterator[tuple[str, list[dict[str, Any]], bool]]:
    """(tag, records, from a part) of every answer set of ``spec`` in its order: a part's
    records when the set has one, else scored and its part written. The base model is loaded
    once, on the first set with no part; its host copy costs one more copy of its weights in
    host memory (16 GB for an 8B model in bf16, within the answer job's 32 GB)."""
    labels = list(spec["labels"])
    student = spec["model"]
    test = read_split(test_path)
    test_sha256 = sha256_of(test_path)
    model: Any = None
    pristine: dict[str, Any] | None = None
    for tag in spec["answer_tags"]:
        part = parts / f"{fingerprint(spec, tag, test_sha256, model_path)}.jsonl"
        if part.exists():
            yield tag, read_jsonl(part), True
            continue
        if model is None:
            model = load_model(model_path, None, revision=student["revision"], dtype=spec["dtype"])
        if pristine is None:
            pristine = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        adapter = grid.adapter_dir(tag)
        tokenizer = load_tokenizer(model_path, adapter, student["revision"])
        template = student["template"] if adapter is not None else None
        with merged(model, adapter, pristine) as scored:
            records = [
                {"answers": tag, **r}
                for r in name_emotions(test, scored, tokenizer, labels, template)
            ]
        write_jsonl(part, records)
        yield tag, records, False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A student's models name the speaker's emotion of each test dialogue "
        "(by likelihood): its base model and every trained model of the spec, one load."
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--student", help="with --config: a key of config.students")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--model-path", help="override the student's resolved model path")
    parser.add_argument("--out", required=True, help="results/emotion/<student>.jsonl")
    parser.add_argument(
        "--parts",
        help="folder of the answer sets' parts (default: results/emotion/<student>.parts)",
    )
    add_gpus_argument(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not args.student:
        raise ConfigError("--config needs --student (a key of config.students)")
    spec, _ = specs.from_args(
        args, lambda config: evaluation_specs.emotion_answers(config, args.student)
    )
    check_gold(read_split(args.test), list(spec["labels"]), args.test)
    for tag in spec["answer_tags"]:  # every adapter before the model is loaded
        adapter = grid.adapter_dir(tag)
        missing = [n for n in grid.ADAPTER_FILES if adapter and not (Path(adapter) / n).is_file()]
        if missing:
            raise ConfigError(f"answer set {tag}: no {', '.join(missing)} in {adapter}")
    parts = Path(args.parts) if args.parts else Path(args.out).with_suffix(".parts")
    model_path = args.model_path or resolve_model(spec["model"])
    rows: list[dict[str, Any]] = []
    with job_gpus(args.gpus, job=f"emotion_answers {args.out}", student=spec["student"]):
        for tag, records, reused in answer_set_records(spec, args.test, model_path, parts):
            right = sum(r["gold"] == r["predicted"] for r in records)
            how = "from its part" if reused else "scored"
            print(f"{tag}: {len(records)} dialogues, {right} named right ({how})")
            rows.extend(records)
    write_jsonl(args.out, rows)
    print(f"{args.out}: {len(spec['answer_tags'])} answer sets, {len(rows)} records")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
