"""The scoring study's annotations as PRIDE privileged fields: MITI codes and gpt-4o-mini scores.

The companion study (arXiv:2412.20264, :mod:`empathy_distill.data.scoring_study`) annotated
every response of the main dataset's 2,000 dialogues that the paper's sets train on from the
dataset itself: the human response and the ChatGPT-empathy response (its ``response_human`` and
``response_chatgpt_empathy`` are the dataset's columns of the same name, identical texts), with
the MITI behaviour codes (``dataset_and_ratings.csv``) and gpt-4o-mini's 15 v2 subfactor scores
1-10 (``gpt4o-mini-15v2-ratings.csv``). The teacher sees them for the responses of a dialogue's
training examples the study has: always the human response (a target of every SFT set, and the
source the improve_human teacher rewrote), and the ChatGPT-empathy response where the set trains
on it (direct ``chatgpt`` and ``all``). Teacher-written targets (improve_*) have no study scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from statistics import mean

from ...core.errors import ConfigError, DatasetError
from ...data import scoring_study as study
from .privileged import PRIVILEGED_FIELDS, STUDY_FIELDS, STUDY_KEY

#: The study file each study field is read from.
FIELD_FILES = {"miti": study.DIALOGUES, "subfactors": study.SUBFACTOR_SCORES}
#: Every name training.pride.privileged_fields accepts.
ALL_FIELDS = (*PRIVILEGED_FIELDS, *STUDY_FIELDS)
#: The dataset's responses the study annotated: study type -> (train.csv column, prompt label).
RESPONSES = {
    "human": ("response_human", "Human response"),
    "chatgpt_empathy": ("response_chatgpt_empathy", "ChatGPT-empathy response"),
}
RESPONSE_COLUMNS = tuple(column for column, _ in RESPONSES.values())


def configured_fields(value: object, config: dict, where: str) -> list[str]:
    """``training.pride.privileged_fields`` resolved: a list of :data:`ALL_FIELDS`, or null for
    every field the workflow has (the study's when ``scoring.study_data.files`` pins its file)."""
    pinned = ((config.get("scoring") or {}).get("study_data") or {}).get("files") or {}
    if value is None:
        return [*PRIVILEGED_FIELDS, *(f for f in STUDY_FIELDS if FIELD_FILES[f] in pinned)]
    if not isinstance(value, list) or not value or len(set(value)) != len(value):
        raise ConfigError(
            f"config {where}.privileged_fields: expected null or a non-empty list of distinct "
            f"names among {', '.join(ALL_FIELDS)}, got {value!r}"
        )
    unknown = [f for f in value if f not in ALL_FIELDS]
    if unknown:
        raise ConfigError(
            f"config {where}.privileged_fields: unknown field(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(ALL_FIELDS)})"
        )
    for field in value:
        if field in STUDY_FIELDS and FIELD_FILES[field] not in pinned:
            raise ConfigError(
                f"config {where}.privileged_fields: {field} is read from the scoring study's "
                f"{FIELD_FILES[field]}, which scoring.study_data.files does not pin"
            )
    return list(value)


def study_settings(fields: Sequence[str], config: dict) -> dict | None:
    """The study files the job reads (path relative to the workflow and sha256), per study field
    among ``fields``; None when there is none (the spec then holds no key for them)."""
    wanted = [f for f in STUDY_FIELDS if f in fields]
    if not wanted:
        return None
    data = config["scoring"]["study_data"]
    folder = data.get("dir", "resources/scoring_study").rstrip("/")
    return {
        f: {"file": f"{folder}/{FIELD_FILES[f]}", "sha256": data["files"][FIELD_FILES[f]]}
        for f in wanted
    }


def render_miti(codes: Sequence[str]) -> str:
    """``['Affirm', 'Support', 'Affirm']`` -> ``MITI: Affirm x2, Support`` (first-seen order)."""
    counts = {code: codes.count(code) for code in dict.fromkeys(codes)}
    shown = ", ".join(f"{c} x{n}" if n > 1 else c for c, n in counts.items()) or "none"
    return f"MITI: {shown}"


def render_subfactors(scores: Mapping[str, int]) -> str:
    """The 15 scores in the study's order, then each dimension's mean of 1 decimal. A score of
    :data:`study.MISSING_SCORE` (gpt-4o-mini gave none; two published rows) shows as ``n/a``
    and leaves its dimension's mean (``n/a`` when the dimension has no score)."""
    given = {s: v for s, v in scores.items() if v != study.MISSING_SCORE}
    items = ", ".join(f"{study.subfactor_label(s)} {given.get(s, 'n/a')}" for s in study.SUBFACTORS)
    means = []
    for dimension in study.DIMENSIONS:
        values = [v for s, v in given.items() if study.dimension_of(s) == dimension]
        means.append(f"{dimension} {mean(values):.1f}" if values else f"{dimension} n/a")
    return f"gpt-4o-mini empathy subfactors (1-10): {items}; {' / '.join(means)}"


def load_annotations(files: Mapping[str, Mapping[str, str]]) -> dict:
    """field -> {(dialog_id, response type): rendered text}, and ``"text"`` -> the study's
    response texts, from the pinned files of ``files`` (:func:`study_settings`), each checked
    against its sha256 and validated (:func:`study.load`) before it is read."""
    out: dict = {}
    for field, where in files.items():
        study.verify_file(where["file"], where["sha256"])
        table = study.load(where["file"], FIELD_FILES[field])
        if field == "miti":
            out["miti"], out["text"] = {}, {}
            for row in table.to_dict("records"):
                for kind, (column, _) in RESPONSES.items():
                    key = (str(row["dialog_id"]), kind)
                    out["miti"][key] = render_miti(study.parse_miti(row[f"miti_{kind}"]))
                    out["text"][key] = str(row[column])
        else:
            out["subfactors"] = {}
            for row in table.to_dict("records"):
                dialog_id, _, kind = str(row["dialog-id"]).partition("_type:")
                scores = {s: int(row[s]) for s in study.SUBFACTORS}
                out["subfactors"][(dialog_id, kind)] = render_subfactors(scores)
    return out


def _same(a: object, b: object) -> bool:
    return " ".join(str(a).split()) == " ".join(str(b).split())


def _annotated(
    records: Sequence[dict], rows: Mapping[str, Mapping[str, object]], notes: Callable
) -> dict[str, dict]:
    """``rows`` with :data:`.privileged.STUDY_KEY` set for every dialogue of ``records``:
    (label, ``notes(dialog_id, kind, row)``) for the human response and, where a record's
    target is the dialogue's ChatGPT-empathy response, that one."""
    targets: dict[str, list[str]] = {}
    for record in records:
        targets.setdefault(str(record["dialog_id"]), []).append(record["messages"][1]["content"])
    out = {d: dict(r) for d, r in rows.items()}
    for dialog_id, answers in targets.items():
        row = out.get(dialog_id)
        if row is None:
            continue  # encode_examples names a set dialogue missing from train.csv
        kinds = ["human"]
        empathy = row.get(RESPONSES["chatgpt_empathy"][0])
        if empathy is not None and any(_same(a, empathy) for a in answers):
            kinds.append("chatgpt_empathy")
        row[STUDY_KEY] = tuple((RESPONSES[k][1], notes(dialog_id, k, row)) for k in kinds)
    return out


def annotate(
    records: Sequence[dict],
    rows: Mapping[str, Mapping[str, object]],
    annotations: Mapping,
    files: Mapping[str, Mapping[str, str]],
) -> dict[str, dict]:
    """``rows`` (train.csv by dialog_id) with, for each dialogue of the set ``records``, the
    study's annotations of its responses under :data:`.privileged.STUDY_KEY`: a tuple of
    (label, {field: text}) for the human response and, where a record's target is the
    dialogue's ChatGPT-empathy response, that one. A dialogue or response the study's file lacks,
    or whose text differs from train.csv's, stops the job naming the file and dialog_id."""

    def notes(dialog_id: str, kind: str, row: Mapping[str, object]) -> dict[str, str]:
        key, column = (dialog_id, kind), RESPONSES[kind][0]
        texts = {}
        for field, where in files.items():
            if key not in annotations[field]:
                raise DatasetError(
                    f"{where['file']}: no {field} for dialog_id {dialog_id} ({kind} response), "
                    "which PRIDE's teacher prompt shows (training.pride.privileged_fields)"
                )
            if "text" in annotations and not _same(annotations["text"][key], row[column]):
                raise DatasetError(
                    f"{files['miti']['file']}: dialog_id {dialog_id}: its {column} differs "
                    "from train.csv's; the study's annotations are of another text"
                )
            texts[field] = annotations[field][key]
        return texts

    return _annotated(records, rows, notes)


#: The GPU-hour projection's stand-in for one response's annotations (it reads no study file):
#: as long as the study's mean rendered text (the scores 416 characters, exactly the mean over
#: the 6,000 scored responses; MITI 36, the human responses' mean 36.4, the ChatGPT-empathy
#: responses' 46.2).
STAND_IN = {
    "miti": render_miti(["Affirm", "Support", "Open Question"]),
    "subfactors": render_subfactors(dict.fromkeys(study.SUBFACTORS, 7)),
}


def with_stand_ins(
    records: Sequence[dict], rows: Mapping[str, Mapping[str, object]], fields: Sequence[str]
) -> dict[str, dict]:
    """``rows`` annotated as :func:`annotate` would, with :data:`STAND_IN` texts for the study
    fields among ``fields`` (for token counts before the study's files are fetched)."""
    shown = [f for f in STUDY_FIELDS if f in fields]
    if not shown:
        return dict(rows)  # type: ignore[arg-type]
    return _annotated(records, rows, lambda *_: {f: STAND_IN[f] for f in shown})


def join_study(settings: dict, records: Sequence[dict], rows: dict) -> dict:
    """``rows`` annotated for the job's configured study fields (unchanged when none)."""
    files = settings.get("study_data")
    if not files:
        return rows
    return annotate(records, rows, load_annotations(files), files)
