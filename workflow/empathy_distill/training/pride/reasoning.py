"""The PRIDE teacher's own reasoning about each training dialogue (``training.pride.reasoning``).

PRIDE's privileged information is what only training time knows; besides the dataset's labels
(emotion, Plutchik category, sentiment, the human reply's rating) it may be "the teacher's own
reasoning". When the option is on, rule ``pride_reasoning`` has the PRIDE teacher model itself
write, for every train dialogue, the first two empathy-reasoning steps (the speaker's feelings,
the situation) from a prompt that shows it the labels; the trainer then puts that text in the
teacher's privileged prompt as its "Analysis:" line (:func:`.privileged.privileged_block`). The
student never sees it (:func:`.privileged.privileged_leaks` checks every student input).

Every generation goes through the LLM layer (:mod:`empathy_distill.llm`, the ``transformers``
backend) and its persistent cache: a killed job resumes from the last stored chunk and a rerun,
or another student with the same teacher, costs nothing. The model loads only when something is
not cached.

Command line (the rule's shell)::

    python -m empathy_distill.training.pride.reasoning --spec JSON --train train.csv \\
        --out results/pride/reasoning/<teacher>.jsonl --gpus N

``--gpus`` (the rule's ``resources.gpu``): the job's own devices, or a stop
(:mod:`..devices`).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ...core import specs
from ...core.atomic import write_jsonl
from ...core.command import run_cli
from ...core.errors import DatasetError
from ...core.readers import read_jsonl
from ...llm import ChatRequest, LLMClient, Message
from ...llm.backends.base import Backend
from ...llm.cache import ResponseCache
from ...llm.endpoint import normalize_endpoint
from ...llm.pricing import Price
from ...llm.request import Answer
from .. import specs as training_specs
from ..devices import add_gpus_argument, job_gpus

LOG = logging.getLogger(__name__)

#: The reasoning prompt. Why this text: PRIDE's teacher "decomposes the empathetic process"
#: (understand the feelings, analyse the situation, then respond); the trainer already scores the
#: respond step on the data configuration's own targets, so this prompt asks for the first two
#: steps only and says twice not to reply: a reply here would hand the teacher an answer to copy
#: rather than an analysis. The labels are given as annotations to explain, not to repeat. The
#: human reply's rating is left out: without the rated reply it says nothing about the speaker.
PROMPT = (
    "You are preparing to answer someone empathetically. Do not write the answer yet.\n"
    "Situation: {situation}\n"
    "What they said: {speaker_uttr}\n"
    "Annotations (known for certain): they feel {emotion} (Plutchik category: {plutchik}; "
    "sentiment: {sentiment}).\n"
    "Think step by step, in at most four sentences:\n"
    "1. Their feelings: what they feel and why.\n"
    "2. The situation: what happened to them and what they need from a listener.\n"
    "Write only this analysis. Do not write a reply to them."
)
#: train.csv columns the prompt reads.
COLUMNS = ("dialog_id", "situation", "speaker_uttr", "emotion", "plutchik", "sentiment")
COST_REPORT = "results/costs/pride_reasoning.csv"


def reasoning_prompt(row: Mapping[str, object]) -> str:
    """The prompt for one train.csv row."""
    return PROMPT.format(**{column: str(row[column]).strip() for column in COLUMNS[1:]})


def reasoning_requests(
    rows: Iterable[Mapping[str, object]], model: str, max_new_tokens: int
) -> list[ChatRequest]:
    """One greedy request per row (greedy: a cached answer is the answer, not one sample)."""
    sampling = {"max_new_tokens": max_new_tokens}
    return [ChatRequest(model, (Message("user", reasoning_prompt(row)),), sampling) for row in rows]


def write_reasoning(
    client: LLMClient,
    rows: list[Mapping[str, object]],
    model: str,
    max_new_tokens: int,
    out: str | Path,
) -> list[dict]:
    """Ask ``client`` for every row's reasoning; write ``out`` (dialog_id, reasoning)."""
    requests = reasoning_requests(rows, model, max_new_tokens)
    responses = client.complete(
        requests, desc="pride reasoning", expected_output_tokens=max_new_tokens
    )
    records = []
    for row, response in zip(rows, responses, strict=True):
        record = {"dialog_id": str(row["dialog_id"]), "reasoning": response.text.strip()}
        if response.refusal:
            record["refusal"] = response.refusal
        records.append(record)
    empty = sum(not r["reasoning"] for r in records)
    if empty:  # the trainer then leaves the Analysis line out for those dialogues
        LOG.warning("%d of %d dialogue(s) got an empty reasoning", empty, len(records))
    write_jsonl(out, records)
    return records


def read_reasoning(path: str | Path) -> dict[str, str]:
    """A reasoning file as dialog_id -> text."""
    return {str(r["dialog_id"]): str(r["reasoning"]) for r in read_jsonl(path)}


def reasoning_for(reasoning: Mapping[str, str], dialog_id: str, path: str) -> str:
    """The reasoning of ``dialog_id``; a dialogue the file lacks is an error naming both."""
    if dialog_id not in reasoning:
        raise DatasetError(
            f"{path}: no reasoning for dialogue {dialog_id} (the file was written for another "
            "train split: rerun rule pride_reasoning)"
        )
    return reasoning[dialog_id]


class LazyLocalBackend(Backend):
    """A local backend built on first use: a job whose requests are all cached never loads the
    model (a 70B teacher takes minutes and most of a node to load)."""

    name = "transformers"
    local = True

    def __init__(self, load: Callable[[], Backend]) -> None:
        self._load = load
        self._backend: Backend | None = None

    def generate_many(self, requests: list[ChatRequest]) -> list[Answer]:
        if self._backend is None:
            self._backend = self._load()
        return self._backend.generate_many(requests)


def make_reasoning_client(spec: dict[str, Any], cost_report: str | Path | None) -> LLMClient:
    """The LLM-layer client of ``spec`` (:func:`..config.reasoning_spec`): the teacher through
    the transformers backend, placed as PRIDE places it (bf16 and its device map on a GPU)."""
    endpoint = normalize_endpoint(
        {
            "backend": "transformers",
            "model": spec["model"],
            "max_new_tokens": spec["max_new_tokens"],
            "batch_size": spec["batch_size"],
        }
    )

    def load() -> Backend:
        import torch

        from ...llm.backends.transformers_backend import TransformersBackend

        cuda = torch.cuda.is_available()
        bf16 = spec["dtype"] == "bfloat16" and cuda and torch.cuda.is_bf16_supported()
        return TransformersBackend(
            spec["model_path"],
            spec["max_new_tokens"],
            spec["batch_size"],
            revision=spec["revision"],
            dtype="bfloat16" if bf16 else None,
            device_map=spec["device_map"] or ("cuda" if cuda else None),
        )

    return LLMClient(
        endpoint,
        ResponseCache(spec["cache_dir"]),
        Price(0.0, 0.0),  # a local model: free
        cost_report=cost_report,
        backend=LazyLocalBackend(load),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.training.pride.reasoning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--teacher", help="with --config: the teacher (a key of students)")
    parser.add_argument("--train", required=True, help="results/data/train.csv")
    parser.add_argument("--out", required=True, help="results/pride/reasoning/<teacher>.jsonl")
    parser.add_argument("--cost-report", default=COST_REPORT, help="CSV to append usage to")
    add_gpus_argument(parser)
    return parser


def _run(args: argparse.Namespace) -> None:
    from ...core.readers import read_table

    spec, _ = specs.from_args(
        args, lambda config: training_specs.pride_reasoning(config, args.teacher)
    )
    job = f"pride_reasoning {args.out}"
    with job_gpus(args.gpus, job=job, student=f"{spec['teacher']} (PRIDE teacher)"):
        rows = read_table(args.train, list(COLUMNS)).to_dict("records")
        client = make_reasoning_client(spec, args.cost_report)
        write_reasoning(client, rows, spec["model"], spec["max_new_tokens"], args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
