"""PRIDE's training examples: each SFT example of a data configuration, encoded twice.

The student's sequence is the SFT example exactly as LLaMA-Factory trains it and the answer rule
prompts it (the student's template, ``encode_oneturn`` of the user turn and the target). The
teacher's sequence is the same target after the privileged prompt (:mod:`.privileged`). The
response tokens are the same in both, so token j of the response is predicted at position
``prompt_len - 1 + j`` in each: that is how the two models' distributions are aligned.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...core.errors import DatasetError, TrainingError
from .privileged import PRIVILEGED_FIELDS, check_student_input, privileged_block, teacher_prompt

#: Response tokens per batch that enter the MMD term at most (its kernel matrices are n^2).
MMD_MAX_TOKENS = 512


def feature_cap(batch_size: int, per_example: int | None = None) -> int:
    """Response positions per example whose features enter the MMD term at most: a batch then
    holds at most :data:`MMD_MAX_TOKENS` of them, and precomputed teacher outputs store no
    more (rule pride_teacher_outputs); ``per_example`` (training.pride.teacher_feature_tokens)
    lowers it to bound their disk."""
    cap = max(1, MMD_MAX_TOKENS // batch_size)
    return cap if per_example is None else min(cap, per_example)


def feature_positions(dialog_id: str, length: int, cap: int, seed: int) -> list[int]:
    """The response positions of one example whose features the MMD term compares: all of them
    when there are at most ``cap``, else a fixed subset drawn with (seed, dialog_id), so the
    teacher-outputs job and every epoch of training pick the same ones."""
    if length <= cap:
        return list(range(length))
    return sorted(random.Random(f"{seed}:{dialog_id}").sample(range(length), cap))


@dataclass(frozen=True)
class Example:
    dialog_id: str
    student_prompt: list[int]
    teacher_prompt: list[int]
    response: list[int]
    privileged: list[int]  # the privileged block alone (the multi-source path's input)
    student_text: str  # the student's user turn, for the privileged-information check


def rows_by_id(train: Any) -> dict[str, Mapping[str, object]]:
    """train.csv rows keyed by dialog_id (a pandas DataFrame of strings)."""
    return {str(r["dialog_id"]): r for r in train.to_dict("records")}


def encode_examples(
    records: Sequence[dict],
    rows: Mapping[str, Mapping[str, object]],
    tokenizer: Any,
    student_template: Any,
    teacher_template: Any,
    cutoff_len: int,
    public_prompt: Any,
    reasoning: Mapping[str, str] | None = None,
    fields: Sequence[str] = PRIVILEGED_FIELDS,
) -> list[Example]:
    """Encode SFT ``records``; ``public_prompt(row)`` is the plain student prompt of a row.

    ``reasoning`` (dialog_id -> the teacher's own reasoning, ``training.pride.reasoning``): added
    to the teacher's privileged prompt and the privileged path's text, and checked absent from
    the student's input. ``fields``: the privileged fields the teacher sees (those that vary
    in the set); the student's input is checked against all of them.
    """
    examples = []
    for index, record in enumerate(records):
        dialog_id = str(record["dialog_id"])
        row = rows.get(dialog_id)
        if row is None:
            raise DatasetError(f"SFT record {index}: dialog_id {dialog_id} is not in train.csv")
        user, target = record["messages"][0]["content"], record["messages"][1]["content"]
        analysis = None if reasoning is None else reasoning[dialog_id]
        check_student_input(user, row, public_prompt(row), analysis)
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": target}]
        s_prompt, response = student_template.encode_oneturn(tokenizer, messages)
        t_messages = [
            {"role": "user", "content": teacher_prompt(user, row, analysis, fields)},
            messages[1],
        ]
        t_prompt, t_response = teacher_template.encode_oneturn(tokenizer, t_messages)
        if list(t_response) != list(response):
            raise TrainingError(
                f"dialogue {dialog_id}: the teacher's template encodes the response differently "
                "from the student's; PRIDE aligns their token distributions by response position"
            )
        room = cutoff_len - len(s_prompt)
        if room < 1:
            raise TrainingError(
                f"dialogue {dialog_id}: the student prompt is {len(s_prompt)} tokens, "
                f"cutoff_len is {cutoff_len}; raise training.pride.cutoff_len"
            )
        privileged = tokenizer.encode(
            privileged_block(row, analysis, fields), add_special_tokens=False
        )
        examples.append(
            Example(
                dialog_id, list(s_prompt), list(t_prompt), list(response)[:room], privileged, user
            )
        )
    return examples


def collate(
    examples: Sequence[Example], pad_id: int, feature_cap: int | None = None, seed: int = 0
) -> dict:
    """Right-padded tensors of a batch, with response positions of student and teacher, and
    ``feature_mask``: the positions whose features enter the MMD term
    (:func:`feature_positions`; all response positions when ``feature_cap`` is None)."""
    import torch

    def pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        return ids, mask

    width = max(len(e.response) for e in examples)
    labels = torch.zeros((len(examples), width), dtype=torch.long)
    response_mask = torch.zeros((len(examples), width))
    s_pos = torch.zeros((len(examples), width), dtype=torch.long)
    t_pos = torch.zeros((len(examples), width), dtype=torch.long)
    feature_mask = torch.zeros((len(examples), width))
    for i, e in enumerate(examples):
        n = len(e.response)
        picked = feature_positions(e.dialog_id, n, feature_cap or n, seed)
        feature_mask[i, picked] = 1
        labels[i, :n] = torch.tensor(e.response)
        response_mask[i, :n] = 1
        s_pos[i, :n] = torch.arange(n) + len(e.student_prompt) - 1
        t_pos[i, :n] = torch.arange(n) + len(e.teacher_prompt) - 1
    student_ids, student_mask = pad([e.student_prompt + e.response for e in examples])
    teacher_ids, teacher_mask = pad([e.teacher_prompt + e.response for e in examples])
    privileged_ids, privileged_mask = pad([e.privileged for e in examples])
    return {
        "student_ids": student_ids,
        "student_mask": student_mask,
        "teacher_ids": teacher_ids,
        "teacher_mask": teacher_mask,
        "privileged_ids": privileged_ids,
        "privileged_mask": privileged_mask,
        "labels": labels,
        "response_mask": response_mask,
        "feature_mask": feature_mask,
        "student_positions": s_pos,
        "teacher_positions": t_pos,
    }
