"""PRIDE's precomputed teacher outputs on disk: what rule pride_teacher_outputs writes once per
configuration and every epoch of training reads (``training.pride.teacher_outputs:
precomputed``), with the checks that they belong to the job that reads them.

Layout of ``results/pride/teacher_outputs/{student}/{method}/{strategy}/``:

- ``shard-NNNNN.safetensors``: up to :data:`SHARD_EXAMPLES` examples each, their tensors
  concatenated along the token axis: ``topk_ids`` (tokens, k) int32, ``topk_logprobs``
  (tokens, k) float32, ``tail_logmass`` (tokens,) float32 (log of the teacher's mass outside the
  top k), ``features`` (feature tokens, width) in the teacher's dtype, ``feature_positions``
  (feature tokens,) int32 (response positions), and ``response_offsets`` / ``feature_offsets``
  (examples + 1,) int64 that cut them per example;
- ``manifest.json`` (written last): the spec that shaped them (:func:`spec_of`), k, temperature,
  dtype, the teacher's identity, and the examples in training order as [dialog_id, response
  tokens].

Why a separate store: the teacher (a 70B model over 4 GPUs for the Llama student) is the same in
every epoch; reading its top-k log-probabilities costs k ids and values per token instead of a
forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.errors import TrainingError
from .data import Example, feature_cap, feature_positions
from .privileged import PRIVILEGED_FIELDS

MANIFEST = "manifest.json"
SHARD = "shard-{:05d}.safetensors"
SHARD_EXAMPLES = 256
FORMAT_VERSION = 1
#: The PRIDE job's settings that shape the teacher's outputs (and that the job needs to make
#: them): models, templates, the examples (set, train.csv, reasoning, cutoff), k, temperature.
SPEC_KEYS = (
    "student",
    "model_name_or_path",
    "model_revision",
    "template",
    "teacher",
    "teacher_mode",
    "teacher_model",
    "teacher_adapter",
    "teacher_revision",
    "teacher_template",
    "teacher_device_map",
    "dataset",
    "train_csv",
    "reasoning",
    "study_data",
    "cutoff_len",
    "temperature",
    "teacher_top_k",
    "bf16",
    "seed",
)
#: How the teacher's privileged fields are chosen (loop.privileged_fields): a change of the
#: policy changes every teacher prompt, so it is part of the spec.
PRIVILEGED_POLICY = "the fields of privileged_fields that vary over the set"


def spec_of(settings: dict) -> dict:
    """The spec of the teacher-outputs job of a PRIDE job's ``settings`` (config.build_settings):
    rule pride_teacher_outputs writes it into the manifest, the training job compares it."""
    spec = {key: settings.get(key) for key in SPEC_KEYS}
    spec["privileged_fields"] = list(settings.get("privileged_fields") or PRIVILEGED_FIELDS)
    spec["privileged_policy"] = PRIVILEGED_POLICY
    spec["feature_tokens_per_example"] = feature_cap(
        settings["per_device_train_batch_size"], settings.get("teacher_feature_tokens")
    )
    return spec


def write_shard(path: Path, rows: Sequence[dict]) -> int:
    """One shard of per-example tensors (see the module doc); returns its size in bytes."""
    import torch
    from safetensors.torch import save_file

    def offsets(key: str) -> Any:
        return torch.tensor([0, *torch.tensor([len(r[key]) for r in rows]).cumsum(0).tolist()])

    tensors = {
        "topk_ids": torch.cat([r["topk_ids"] for r in rows]).to(torch.int32),
        "topk_logprobs": torch.cat([r["topk_logprobs"] for r in rows]).float(),
        "tail_logmass": torch.cat([r["tail_logmass"] for r in rows]).float(),
        "features": torch.cat([r["features"] for r in rows]),
        "feature_positions": torch.cat([r["feature_positions"] for r in rows]).to(torch.int32),
        "response_offsets": offsets("topk_ids"),
        "feature_offsets": offsets("features"),
    }
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(path))
    return path.stat().st_size


class TeacherOutputs:
    """The precomputed outputs of one configuration, checked against the training examples and
    held in memory (safetensors), served per batch as padded tensors."""

    def __init__(self, folder: str | Path, settings: dict, examples: Sequence[Example]) -> None:
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise TrainingError(
                f"{manifest_path}: no PRIDE teacher outputs (rule pride_teacher_outputs writes "
                "them; training.pride.teacher_outputs: online runs the teacher instead)"
            )
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = spec_of(settings)
        got = self.manifest.get("spec", {})
        differ = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        if differ:
            raise TrainingError(
                f"{manifest_path}: the teacher outputs were made for another PRIDE job (keys "
                f"{', '.join(differ)} differ, e.g. {differ[0]}: {got.get(differ[0])!r} there, "
                f"{expected.get(differ[0])!r} here); rerun rule pride_teacher_outputs"
            )
        self._check_order(manifest_path, examples)
        self.k = int(self.manifest["k"])
        self._rows = self._read(folder)
        cap, seed = expected["feature_tokens_per_example"], settings["seed"]
        for index, (example, row) in enumerate(zip(examples, self._rows, strict=True)):
            wanted = feature_positions(example.dialog_id, len(example.response), cap, seed)
            if row["feature_positions"].tolist() != wanted:
                raise TrainingError(
                    f"{manifest_path}: example {index} (dialogue {example.dialog_id}): the "
                    "stored MMD feature positions are not the ones training selects; rerun "
                    "rule pride_teacher_outputs"
                )

    def _check_order(self, path: Path, examples: Sequence[Example]) -> None:
        stored = self.manifest["examples"]
        if len(stored) != len(examples):
            raise TrainingError(
                f"{path}: {len(stored)} examples, the training set has {len(examples)}; "
                "rerun rule pride_teacher_outputs"
            )
        for index, ((dialog_id, length), example) in enumerate(zip(stored, examples, strict=True)):
            if dialog_id != example.dialog_id or length != len(example.response):
                raise TrainingError(
                    f"{path}: example {index} is dialogue {dialog_id} with {length} response "
                    f"tokens, the training set's example {index} is dialogue "
                    f"{example.dialog_id} with {len(example.response)}: the teacher's outputs "
                    "do not line up with the student's examples; rerun rule pride_teacher_outputs"
                )

    def _read(self, folder: Path) -> list[dict]:
        from safetensors.torch import load_file

        rows: list[dict] = []
        for shard in self.manifest["shards"]:
            tensors = load_file(str(folder / shard["file"]))
            r_off, f_off = tensors["response_offsets"].tolist(), tensors["feature_offsets"].tolist()
            for i in range(len(r_off) - 1):
                r, f = slice(r_off[i], r_off[i + 1]), slice(f_off[i], f_off[i + 1])
                rows.append(
                    {
                        "topk_ids": tensors["topk_ids"][r],
                        "topk_logprobs": tensors["topk_logprobs"][r],
                        "tail_logmass": tensors["tail_logmass"][r],
                        "features": tensors["features"][f],
                        "feature_positions": tensors["feature_positions"][f],
                    }
                )
        return rows

    def batch(self, indices: Sequence[int], width: int) -> dict:
        """The teacher's side of a batch of examples ``indices`` (right-padded to ``width``
        response positions, as :func:`.data.collate`): top-k ids and log-probabilities, tail
        log-mass, and the MMD features of the batch's feature positions in row-major order."""
        import torch

        rows = [self._rows[i] for i in indices]
        ids = torch.zeros((len(rows), width, self.k), dtype=torch.long)
        logprobs = torch.zeros((len(rows), width, self.k))
        tail = torch.zeros((len(rows), width))
        for i, row in enumerate(rows):
            n = len(row["topk_ids"])
            ids[i, :n] = row["topk_ids"].long()
            logprobs[i, :n] = row["topk_logprobs"]
            tail[i, :n] = row["tail_logmass"]
        return {
            "topk_ids": ids,
            "topk_logprobs": logprobs,
            "tail_logmass": tail,
            "features": torch.cat([row["features"] for row in rows]),
        }
