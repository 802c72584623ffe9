"""The fine-tuned scorers' rows of the reproduction table (``scoring_study_reproduction.csv``).

One row per (scorer of ``scoring.study_protocol``, protocol): ``study_balanced``, the scorer
tuned on the study's 80% rating its 20% (the classifier rows' test responses, checked id by id),
and ``paper_split``, the same scorer's own fine-tune on the paper's train split rating the
paper's test-split responses (only when it is in ``scoring.grid``: that file exists then). The
accuracy is the share of responses whose reply is a valid rating equal to the human one; an
invalid or refused reply is a miss (``n_invalid`` counts them): the study's script would have
stopped on one (``int(pred_rating)``), so its figure has none.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.errors import DatasetError
from ..records import read_jsonl
from . import study_protocol
from .study_finetune_data import split_rows

#: The study's figure for its fine-tuned gpt-4o-mini on its 20%, and where it is stated. The
#: setup (base model gpt-4o-mini-2024-07-18, 4 epochs, multiplier 0.5) is its code's.
REPORTED_FINETUNE = (
    0.5469,
    "arXiv:2412.20264 summary (sciencestack.ai/paper/2412.20264): fine-tuned GPT-4o-mini"
    " 54.69%; setup from its finetune-gpt-40-mini.py at 062fd10 (4 epochs, lr multiplier 0.5)",
)
REPORTED_MODEL = "gpt-4o-mini-2024-07-18"
#: Columns the classifier table lacks: which protocol a row is on, and the invalid replies.
PROTOCOL, INVALID = "protocol", "n_invalid"


def is_reported_setup(backend: str, base_model: str) -> bool:
    """The study's own setup: gpt-4o-mini fine-tuned through OpenAI."""
    return backend == "openai" and str(base_model).startswith("gpt-4o-mini")


def accuracy(records: list[dict]) -> tuple[float, int]:
    """(share of valid replies equal to the human rating, count of invalid or refused)."""
    hits = [bool(r["valid"]) and r["scores"][0] == int(r["human_rating"]) for r in records]
    return (float(np.mean(hits)) if hits else float("nan")), sum(not r["valid"] for r in records)


def expected_ids(balanced: pd.DataFrame, max_test: int | None) -> list[str]:
    """The study's 20% (as far as ``max_test``), in the split's order: what must be rated."""
    _, test = split_rows(balanced, None, max_test)
    return list(test["unified_dialog_id"].astype(str))


def read_rated(path: str | Path, ids: list[str] | None) -> list[dict]:
    """A predictions file, checked to rate exactly ``ids`` in order (None: no check)."""
    if not Path(path).is_file():
        raise DatasetError(f"{path}: missing (rules score_study_test / score_responses)")
    records = read_jsonl(path)
    got = [str(r["dialog_id"]) for r in records]
    if ids is not None and got != ids:
        first = next((i for i, (a, b) in enumerate(zip(got, ids, strict=False)) if a != b), None)
        at = f"first difference at line {first + 1}" if first is not None else "lengths differ"
        raise DatasetError(
            f"{path}: rates {len(got)} responses, not the study's {len(ids)} test responses of"
            f" the classifier table's split ({at}); rerun rule score_study_test"
        )
    return records


def rows(spec: dict, manifest: list[dict], balanced: pd.DataFrame) -> list[dict]:
    """The table rows of every (scorer, protocol) of ``manifest``
    (``specs.study_finetune_manifest``), plus the study's own figure when no row carries it."""
    entries = {e["scorer"]: e for e in spec.get("finetuned", [])}
    found = []
    for item in manifest:
        entry = entries[item["scorer"]]
        study = item["protocol"] == study_protocol.STUDY_BALANCED
        ids = expected_ids(balanced, entry["max_test"]) if study else None
        records = read_rated(item["predictions"], ids)
        info = json.loads(Path(item["model"]).read_text(encoding="utf-8"))
        share, invalid = accuracy(records)
        reported = study and is_reported_setup(entry["backend"], entry["base_model"])
        found.append(
            row(
                study_protocol.FEATURES.format(scorer=item["scorer"]),
                entry["base_model"],
                item["protocol"],
                int(info["trained_examples"]),
                len(records),
                share,
                invalid,
                REPORTED_FINETUNE if reported else None,
            )
        )
    if found and not any(r["reported"] == REPORTED_FINETUNE[0] for r in found):
        split = split_rows(balanced)
        found.append(
            row(
                "finetune:study",
                REPORTED_MODEL,
                study_protocol.STUDY_BALANCED,
                len(split[0]),
                len(split[1]),
                float("nan"),
                None,
                REPORTED_FINETUNE,
            )
        )
    return found


def row(
    features: str,
    model: str,
    protocol: str,
    n_train: int,
    n_test: int,
    share: float,
    invalid: int | None,
    reported: tuple[float, str] | None,
) -> dict:
    return {
        "features": features,
        PROTOCOL: protocol,
        "model": model,
        "selection": "none",
        "k_choice": "",
        "k": None,
        "n_features": None,
        "n_train": n_train,
        "n_test": n_test,
        "accuracy": round(share, 4) if share == share else None,
        "cv_accuracy": None,
        "reported": reported[0] if reported else None,
        "reported_source": reported[1] if reported else "",
        "chosen": "",
        INVALID: invalid,
    }


def with_rows(table: pd.DataFrame, extra: list[dict]) -> pd.DataFrame:
    """The classifier table (all on the study's protocol) with the fine-tuned rows below it;
    ``protocol`` second, ``n_invalid`` last."""
    table = table.copy()
    table.insert(1, PROTOCOL, study_protocol.STUDY_BALANCED)
    if not extra:
        return table
    table[INVALID] = None
    return pd.DataFrame(table.to_dict("records") + extra, columns=table.columns)
