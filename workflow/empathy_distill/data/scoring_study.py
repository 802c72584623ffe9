"""The companion scoring study's published data: its four files, pinned, validated, read.

Xie et al., "Scoring with Large Language Models: A Study on Measuring Empathy of Responses in
Dialogues" (arXiv:2412.20264) published, with its code, the 2,000 dialogues of the main dataset
with a third response each, the MITI codes of all 6,000 responses, gpt-4o-mini's 15 v2
subfactor scores (1-10) of all 6,000, and its balanced set (640 responses per rating). The files
have no licence, so the workflow downloads them pinned to one commit (sha256-checked, rule
``download_scoring_study``) and never ships them. Every check here names file, row and column.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from ..core.errors import DatasetError
from .dataset import MAX_ROWS_SHOWN, sha256_of

DIALOGUES = "dataset_and_ratings.csv"
SUBFACTOR_SCORES = "gpt4o-mini-15v2-ratings.csv"
BALANCED = "unified_balanced_dataset.csv"
BALANCED_FEATURES = "15v2_w_miti.csv"
FILES = (DIALOGUES, SUBFACTOR_SCORES, BALANCED, BALANCED_FEATURES)

RESPONSE_TYPES = ("human", "chatgpt", "chatgpt_empathy")
RATINGS = (1, 2, 3)
PER_RATING = 640  # the balanced set: the smallest rating class of the 6,000 responses
#: In gpt4o-mini-15v2-ratings.csv a 0 marks a score gpt-4o-mini did not give: the published
#: file has two such rows (hit:6668_conv:13336 and hit:4742_conv:9484, chatgpt_empathy, the five
#: compassionate subfactors). Read them as missing; the balanced set has none (1-10 only).
MISSING_SCORE = 0
#: The 15 v2 subfactors as the study's files spell them (``ofereing-help`` included).
SUBFACTORS = (
    "perspective-taking",
    "recognition-of-emotions",
    "contextual-awareness",
    "acknowledgment-of-speaker-experience",
    "clarity-of-response",
    "warmth-in-tone",
    "sympathetic-responses",
    "emotional-mirroring",
    "validation-of-feelings",
    "emotional-resonance",
    "encouragement",
    "reassurance",
    "ofereing-help",
    "empowering",
    "assistance",
)
#: The three dimensions of empathy, in the order the study's prompts (and files) list their
#: subfactors, 5 each: ``SUBFACTORS[5 * i : 5 * i + 5]`` are dimension i's (the scoring prompts'
#: ``v2_names``, resources/scoring_prompts.json; the scoring tables use the same mapping).
DIMENSIONS = ("cognitive", "affective", "compassionate")
SUBFACTORS_PER_DIMENSION = 5
#: The 15 MITI codes in the order of the study's feature vector (miti_code_classification.py).
MITI_CODES = (
    "Closed Question",
    "Open Question",
    "Simple Reflection",
    "Complex Reflection",
    "Give Information",
    "Advise with Permission",
    "Affirm",
    "Emphasize Autonomy",
    "Support",
    "Advise without Permission",
    "Confront",
    "Direct",
    "Warn",
    "Self-Disclose",
    "Other",
)

_DIALOGUE_COLUMNS = ["dialog_id", "situation", "speaker_uttr"] + [
    f"{part}_{t}" for t in RESPONSE_TYPES for part in ("response", "rating", "miti")
]
REQUIRED_COLUMNS = {
    DIALOGUES: _DIALOGUE_COLUMNS,
    SUBFACTOR_SCORES: ["dialog-id", *SUBFACTORS, "rating"],
    BALANCED: [
        "dialog_id",
        "situation",
        "speaker_uttr",
        "response",
        "rating",
        "miti",
        "type",
        "unified_dialog_id",
    ],
    BALANCED_FEATURES: ["dialog-id", *SUBFACTORS, "rating", *MITI_CODES],
}


def _rows(index) -> str:
    shown = ", ".join(str(i + 1) for i in list(index)[:MAX_ROWS_SHOWN])
    more = f" and {len(index) - MAX_ROWS_SHOWN} more" if len(index) > MAX_ROWS_SHOWN else ""
    return f"data row(s) {shown}{more}"


def verify_file(path: str | Path, expected_sha256: str) -> None:
    """Refuse a file that is not the pinned one, naming it and both hashes."""
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise DatasetError(
            f"{path}: sha256 is {actual}, expected {expected_sha256} (config"
            " scoring.study_data.files). Not the study's published file; delete it (the rule"
            " download_scoring_study fetches the pinned one) or fix scoring.study_data.dir."
        )


def dimension_of(subfactor: str) -> str:
    """The empathy dimension of one of :data:`SUBFACTORS` (the study's column name)."""
    return DIMENSIONS[SUBFACTORS.index(subfactor) // SUBFACTORS_PER_DIMENSION]


def subfactor_label(subfactor: str) -> str:
    """A study column as words: ``perspective-taking`` -> ``perspective taking`` (and the
    files' ``ofereing-help`` -> ``offering help``)."""
    return subfactor.replace("ofereing", "offering").replace("-", " ")


def parse_miti(cell: object) -> list[str]:
    """A MITI cell (``"['Affirm', 'Give Information']"``) -> its codes; ValueError if not."""
    if not isinstance(cell, str):
        raise ValueError(f"not a list of MITI codes: {cell!r}")
    try:
        codes = ast.literal_eval(cell)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"not a list of MITI codes: {cell!r}") from exc
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise ValueError(f"not a list of MITI codes: {cell!r}")
    unknown = sorted(set(codes) - set(MITI_CODES))
    if unknown:
        raise ValueError(f"unknown MITI code(s) {unknown} in {cell!r}")
    return codes


def miti_vector(codes: list[str]) -> list[float]:
    """0/1 per code in the study's order (a repeated code counts once)."""
    return [1.0 if code in codes else 0.0 for code in MITI_CODES]


def _integers_in(table: pd.DataFrame, column: str, low: int, high: int) -> list[str]:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (values % 1 != 0) | (values < low) | (values > high)
    if not bad.any():
        return []
    found = sorted({str(v) for v in table.loc[bad, column].head(MAX_ROWS_SHOWN)})
    return [
        f"column {column}: {_rows(table.index[bad])} have {found}; expected integers {low}-{high}"
    ]


def _miti_problems(table: pd.DataFrame, column: str) -> list[str]:
    problems = []
    for position, cell in zip(table.index, table[column], strict=True):
        try:
            parse_miti(cell)
        except ValueError as exc:
            problems.append(f"column {column}: data row {position + 1}: {exc}")
    return problems[:MAX_ROWS_SHOWN]


def _id_problems(table: pd.DataFrame, column: str) -> list[str]:
    """``<dialog_id>_type:<human|chatgpt|chatgpt_empathy>``, unique."""
    pattern = r"^hit:\d+_conv:\d+_type:(?:{})$".format("|".join(RESPONSE_TYPES))
    ids = table[column].astype("string")
    bad = ~ids.str.fullmatch(pattern).fillna(False).astype(bool)
    problems = []
    if bad.any():
        found = list(table.loc[bad, column].head(3))
        problems.append(
            f"column {column}: {_rows(table.index[bad])} have {found}; expected"
            f" '<dialog_id>_type:<{'|'.join(RESPONSE_TYPES)}>' (e.g. hit:638_conv:1277_type:human)"
        )
    dup = table[column].duplicated(keep=False)
    if dup.any():
        problems.append(f"column {column}: {_rows(table.index[dup])} repeat an id")
    return problems


def validation_problems(name: str, table: pd.DataFrame) -> list[str]:
    """Every way ``table`` (the study's file ``name``) breaks its expected form."""
    missing = [c for c in REQUIRED_COLUMNS[name] if c not in table.columns]
    if missing:
        return [f"missing column(s) {', '.join(missing)}"]
    problems: list[str] = []
    if name == DIALOGUES:
        dup = table["dialog_id"].duplicated(keep=False)
        if dup.any():
            problems.append(f"column dialog_id: {_rows(table.index[dup])} repeat an id")
        for t in RESPONSE_TYPES:
            problems += _integers_in(table, f"rating_{t}", 1, 3)
            problems += _miti_problems(table, f"miti_{t}")
    if name in (SUBFACTOR_SCORES, BALANCED_FEATURES):
        problems += _id_problems(table, "dialog-id")
        problems += _integers_in(table, "rating", 1, 3)
        low = MISSING_SCORE if name == SUBFACTOR_SCORES else 1
        for column in SUBFACTORS:
            problems += _integers_in(table, column, low, 10)
    if name == BALANCED_FEATURES:
        for column in MITI_CODES:
            problems += _integers_in(table, column, 0, 1)
    if name == BALANCED:
        problems += _id_problems(table, "unified_dialog_id")
        problems += _integers_in(table, "rating", 1, 3)
        problems += _miti_problems(table, "miti")
        expected = table["dialog_id"].astype(str) + "_type:" + table["type"].astype(str)
        bad = expected != table["unified_dialog_id"].astype(str)
        if bad.any():
            problems.append(
                f"column unified_dialog_id: {_rows(table.index[bad])} differ from"
                " '<dialog_id>_type:<type>'"
            )
    if name in (BALANCED, BALANCED_FEATURES) and not problems:
        counts = table["rating"].astype(int).value_counts().to_dict()
        if any(counts.get(r, 0) != PER_RATING for r in RATINGS) or len(table) != 3 * PER_RATING:
            problems.append(
                f"column rating: counts {dict(sorted(counts.items()))}; the balanced set has"
                f" {PER_RATING} responses of each rating 1-3"
            )
    return problems


def load(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """Read and validate one of the study's files (``name``: which, default the file's name)."""
    path = Path(path)
    name = name or path.name
    if name not in REQUIRED_COLUMNS:
        raise DatasetError(f"{path}: not one of the study's files ({', '.join(FILES)})")
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing; the rule download_scoring_study fetches it (scoring.study_data)"
        )
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc})") from exc
    problems = validation_problems(name, table)
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))
    return table


def cross_check(study_dialogues: pd.DataFrame, dataset: pd.DataFrame, where: str = "") -> None:
    """The study's dialogues are the main dataset's: same dialog_ids in the same order."""
    ours, theirs = list(dataset["dialog_id"].astype(str)), list(study_dialogues["dialog_id"])
    if ours == [str(d) for d in theirs]:
        return
    if len(ours) != len(theirs):
        raise DatasetError(
            f"{where}{DIALOGUES} has {len(theirs)} dialogues, the main dataset {len(ours)};"
            " expected the same 2,000"
        )
    first = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != str(b))
    raise DatasetError(
        f"{where}{DIALOGUES} data row {first + 1}: dialog_id {theirs[first]!r}, the main"
        f" dataset's row {first + 1} is {ours[first]!r}; expected the same ids in the same order"
    )


def balanced_in_order(features: pd.DataFrame, balanced: pd.DataFrame) -> None:
    """The two balanced files list the same responses in the same order (the study's order)."""
    a = list(features["dialog-id"].astype(str))
    b = list(balanced["unified_dialog_id"].astype(str))
    if a != b:
        first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        raise DatasetError(
            f"{BALANCED_FEATURES} and {BALANCED} differ at data row {first + 1}; expected the"
            " same responses in the same order"
        )


def read_balanced(path: str | Path, sha256: str) -> pd.DataFrame:
    """The study's balanced set, refused unless it is the pinned file and well formed."""
    if not Path(path).is_file():
        raise DatasetError(f"{path}: missing; run the rule download_scoring_study")
    verify_file(path, sha256)
    return load(path, BALANCED)
