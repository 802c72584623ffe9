"""The responses the teacher rewrites for ``improve_human``: the train split's human responses,
each with its role (the SFT set takes a human rating of 3, the DPO set 1 or 2). A data job
(``data.commands improve-human-sources``) writes them; the distillation stage reads them."""

from __future__ import annotations

import pandas as pd

from .dataset import rating_column, response_column

SOURCE_COLUMNS = [
    "dialog_id",
    "role",
    "situation",
    "speaker_uttr",
    "source_response",
    "human_response",
]


def improve_human_sources(train: pd.DataFrame) -> pd.DataFrame:
    """Responses the teacher rewrites for improve_human: SFT role = human 3, DPO role = 1 or 2."""
    human_rating = train[rating_column("human")]
    table = pd.DataFrame(
        {
            "dialog_id": train["dialog_id"],
            "role": human_rating.map(lambda r: "sft" if r == 3 else "dpo"),
            "situation": train["situation"],
            "speaker_uttr": train["speaker_uttr"],
            "source_response": train[response_column("human")],
            "human_response": train[response_column("human")],
        }
    )
    return table[SOURCE_COLUMNS].reset_index(drop=True)
