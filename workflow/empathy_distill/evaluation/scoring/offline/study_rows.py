"""The study's 6,000 responses as rows with their labels, restricted to train-split dialogues.

Labels: gpt-4o-mini's 15 v2 subfactor scores (``gpt4o-mini-15v2-ratings.csv``; its two 0s are
missing scores) and the 15 MITI codes as 0/1 (``dataset_and_ratings.csv``). Only dialogues of
the scorers' train split are kept, and the caller's test split is checked to share none.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from ....core.errors import DatasetError
from ....data import scoring_study as study
from ...offline_judge.evaluate import check_disjoint
from ...records import read_split
from ..classifier.features import study_text

#: The texts a model may read: the study's "Situation ...; Response ..." or the response alone.
CONTEXT, RESPONSE = "context", "response"
TEXTS = (CONTEXT, RESPONSE)


def study_table(study_dir: str | Path, files: dict[str, str] | None = None) -> dict:
    """The dialogues and subfactor-score files, sha256-checked when ``files`` pins them."""
    tables = {}
    for name in (study.DIALOGUES, study.SUBFACTOR_SCORES):
        path = Path(study_dir) / name
        if files:
            if not path.is_file():
                raise DatasetError(f"{path}: missing; run the rule download_scoring_study")
            study.verify_file(path, files[name])
        tables[name] = study.load(path, name)
    return tables


def response_table(dialogues: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (dialogue, response type): texts, 15 subfactor scores (NaN where the study
    has none) and the 15 MITI codes as 0/1, dialogue-major."""
    by_id = scores.set_index("dialog-id")
    rows = []
    for record in dialogues.to_dict("records"):
        for kind in study.RESPONSE_TYPES:
            key = f"{record['dialog_id']}_type:{kind}"
            if key not in by_id.index:
                raise DatasetError(f"{study.SUBFACTOR_SCORES}: no scores for {key!r}")
            response = str(record[f"response_{kind}"])
            codes = study.parse_miti(record[f"miti_{kind}"])
            rows.append(
                {
                    "dialog_id": str(record["dialog_id"]),
                    "type": kind,
                    "situation": str(record["situation"]),
                    "speaker_uttr": str(record["speaker_uttr"]),
                    "response": response,
                    **{s: float(by_id.at[key, s]) for s in study.SUBFACTORS},
                    **dict(zip(study.MITI_CODES, study.miti_vector(codes), strict=True)),
                }
            )
    table = pd.DataFrame(rows)
    table[list(study.SUBFACTORS)] = table[list(study.SUBFACTORS)].replace(
        study.MISSING_SCORE, np.nan
    )
    return table


def text_of(rows: pd.DataFrame, which: str) -> list[str]:
    """The text a model reads of each row (``CONTEXT``: the study's embedding text)."""
    if which == CONTEXT:
        return [
            study_text(s, u, r)
            for s, u, r in zip(
                rows["situation"], rows["speaker_uttr"], rows["response"], strict=True
            )
        ]
    if which == RESPONSE:
        return rows["response"].astype(str).tolist()
    raise ValueError(f"unknown text {which!r} (expected one of {TEXTS})")


def train_rows(table: pd.DataFrame, train_ids: Collection[str]) -> pd.DataFrame:
    """The rows of the given (train-split) dialogues; every one of them must be in the study."""
    wanted = {str(d) for d in train_ids}
    missing = sorted(wanted - set(table["dialog_id"]))
    if missing:
        raise DatasetError(
            f"{len(missing)} train dialogue(s) are not in the study's files, e.g. {missing[:3]}"
        )
    return table[table["dialog_id"].isin(wanted)].reset_index(drop=True)


def load_train_rows(
    study_dir: str | Path, train_csv: str | Path, test_csv: str | Path, files: dict | None
) -> pd.DataFrame:
    """The study's responses to the train split's dialogues (the test split must share none)."""
    train, test = read_split(train_csv), read_split(test_csv)
    check_disjoint(train, test)
    tables = study_table(study_dir, files)
    rows = train_rows(
        response_table(tables[study.DIALOGUES], tables[study.SUBFACTOR_SCORES]),
        train["dialog_id"].astype(str),
    )
    leaked = set(rows["dialog_id"]) & set(test["dialog_id"].astype(str))
    if leaked:  # check_disjoint above makes this impossible; kept as the invariant's statement
        raise DatasetError(f"test dialogue(s) among the training rows: {sorted(leaked)[:3]}")
    return rows
