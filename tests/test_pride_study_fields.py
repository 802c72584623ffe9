"""PRIDE's privileged fields from the scoring study: MITI codes and gpt-4o-mini subfactor scores.

Read from the study's pinned files (``scoring_study_dir``: resources/scoring_study or
../shared/data/scoring_study); every expected value is read here from the CSV with the ``csv``
module, independently of :mod:`empathy_distill.data.scoring_study`, and the subfactor ->
dimension grouping is the scoring prompts' own (``v2_names`` of resources/scoring_prompts.json).
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError, DatasetError
from empathy_distill.core.prompts import Prompts
from empathy_distill.data import scoring_study as study
from empathy_distill.distillation.formats import sft_record, write_set
from empathy_distill.training.pride import privileged, study_fields
from empathy_distill.training.pride.config import build_settings
from empathy_distill.training.pride.loop import read_examples_and_fields
from empathy_distill.training.pride.teacher_store import spec_of

from .conftest import REPO_ROOT

KNOWN = "hit:9554_conv:19108"  # the study's first dialogue
#: gpt-4o-mini gave no compassionate scores for this ChatGPT-empathy response (0 in the file)
UNSCORED = "hit:6668_conv:13336"
DATASET_FIELDS = ["emotion", "plutchik", "sentiment", "rating_human"]


def csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def subfactor_columns(study_dir: Path) -> list[str]:
    """The 15 subfactor columns of the scores file, in its order (after dialog-id)."""
    with (study_dir / study.SUBFACTOR_SCORES).open(encoding="utf-8") as handle:
        return next(csv.reader(handle))[1:16]


def by_dimension(study_dir: Path) -> dict[str, list[str]]:
    """The scoring prompts' v2 subfactors per dimension, as the study's column names."""
    names = json.loads((REPO_ROOT / "resources/scoring_prompts.json").read_text())
    listed = names["subfactors_1_to_10"]["v2_names"]
    columns = subfactor_columns(study_dir)
    out, start = {}, 0
    for dimension, subfactors in listed.items():
        out[dimension] = columns[start : start + len(subfactors)]
        start += len(subfactors)
    return out


@pytest.fixture(scope="module")
def study_dir(scoring_study_dir: Path) -> Path:
    return scoring_study_dir


def expected_line(study_dir: Path, dialog_id: str, kind: str, label: str) -> str:
    """The teacher's line for one response, from the two CSVs read here."""
    dialogue = next(r for r in csv_rows(study_dir / study.DIALOGUES) if r["dialog_id"] == dialog_id)
    codes = ast.literal_eval(dialogue[f"miti_{kind}"])
    miti = ", ".join(
        f"{c} x{codes.count(c)}" if codes.count(c) > 1 else c for c in dict.fromkeys(codes)
    )
    scores = next(
        r
        for r in csv_rows(study_dir / study.SUBFACTOR_SCORES)
        if r["dialog-id"] == f"{dialog_id}_type:{kind}"
    )
    columns = subfactor_columns(study_dir)
    words = {c: c.replace("-", " ").replace("ofereing", "offering") for c in columns}
    items = ", ".join(f"{words[c]} {scores[c] if scores[c] != '0' else 'n/a'}" for c in columns)
    means = []
    for dimension, group in by_dimension(study_dir).items():
        given = [int(scores[c]) for c in group if scores[c] != "0"]
        shown = f"{sum(given) / len(given):.1f}" if given else "n/a"
        means.append(f"{dimension} {shown}")
    return (
        f"- {label}, MITI: {miti}; gpt-4o-mini empathy subfactors (1-10): {items}; "
        + " / ".join(means)
    )


def test_the_dimension_mapping_is_the_scoring_prompts(study_dir: Path) -> None:
    """data/scoring_study.py's grouping (used by the scoring tables and PRIDE) is v2_names'."""
    for dimension, columns in by_dimension(study_dir).items():
        assert [study.dimension_of(c) for c in columns] == [dimension] * 5
    listed = json.loads((REPO_ROOT / "resources/scoring_prompts.json").read_text())
    names = [n for ns in listed["subfactors_1_to_10"]["v2_names"].values() for n in ns]
    for column, name in zip(study.SUBFACTORS, names, strict=True):
        assert study.subfactor_label(column).split()[0] == name.lower().split("-")[0].split()[0]


def test_the_rendered_fields_of_a_known_dialogue_are_the_csvs(study_dir: Path) -> None:
    files = files_in(study_dir)
    annotations = study_fields.load_annotations(files)
    line = expected_line(study_dir, KNOWN, "human", "Human response")
    # written out once by hand from the files' first rows, so the reading above is checked too
    assert line == (
        "- Human response, MITI: Affirm, Simple Reflection, Closed Question; gpt-4o-mini empathy"
        " subfactors (1-10): perspective taking 5, recognition of emotions 4, contextual"
        " awareness 3, acknowledgment of speaker experience 6, clarity of response 5, warmth in"
        " tone 6, sympathetic responses 5, emotional mirroring 4, validation of feelings 5,"
        " emotional resonance 4, encouragement 6, reassurance 5, offering help 4, empowering 5,"
        " assistance 4; cognitive 4.6 / affective 4.8 / compassionate 4.8"
    )
    got = (
        f"- Human response, {annotations['miti'][(KNOWN, 'human')]}; "
        + (annotations["subfactors"][(KNOWN, "human")])
    )
    assert got == line
    # a score gpt-4o-mini did not give (0 in the published file) shows as n/a, not as 0
    unscored = annotations["subfactors"][(UNSCORED, "chatgpt_empathy")]
    assert "encouragement n/a" in unscored and unscored.endswith("compassionate n/a")
    assert (
        unscored
        == expected_line(study_dir, UNSCORED, "chatgpt_empathy", "ChatGPT-empathy response").split(
            "; ", 1
        )[1]
    )


def files_in(study_dir: Path) -> dict:
    pinned = load_config(REPO_ROOT / "config.yaml")["scoring"]["study_data"]["files"]
    return {
        f: {"file": str(study_dir / study_fields.FIELD_FILES[f]), "sha256": pinned[name]}
        for f, name in study_fields.FIELD_FILES.items()
    }


# --- the teacher's prompt and the student's input, through the PRIDE job's own reader ----------


@pytest.fixture(scope="module")
def job(study_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """train.csv of the study's first 4 dialogues (the main dataset's columns of the same names),
    an SFT set: dialogues 1-2 as direct/chatgpt (human + ChatGPT-empathy targets), 3-4 as
    improve_human (human + a teacher-written target), and a byte-level tokenizer."""
    from empathy_distill.training.tiny_model import iter_texts, train_tokenizer

    root = tmp_path_factory.mktemp("pride_study")
    columns = ["dialog_id", "situation", "speaker_uttr", *DATASET_FIELDS]
    columns += list(study_fields.RESPONSE_COLUMNS)
    data = pd.read_csv(study_dir / study.DIALOGUES, dtype=str).head(4)[columns]
    data.to_csv(root / "train.csv", index=False)
    prompts = Prompts()
    rows = data.to_dict("records")
    records = []
    for i, r in enumerate(rows):
        prompt = prompts.student_train(r["situation"], r["speaker_uttr"])
        second = r["response_chatgpt_empathy"] if i < 2 else f"A rewrite of reply {i}."
        records += [sft_record(r["dialog_id"], prompt, t) for t in (r["response_human"], second)]
    write_set(records, root / "sft.json", "sft")
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
        "training": {"pride": {"teacher": "base"}},
        "scoring": {"study_data": load_config(REPO_ROOT / "config.yaml")["scoring"]["study_data"]},
    }
    config["scoring"]["study_data"]["dir"] = str(study_dir)
    settings = build_settings(config, "tiny", "direct", "chatgpt") | {
        "dataset": str(root / "sft.json"),
        "train_csv": str(root / "train.csv"),
        "cutoff_len": 4096,
    }
    tokenizer = train_tokenizer(iter_texts(root / "train.csv"))
    return {"settings": settings, "rows": rows, "tokenizer": tokenizer, "config": config}


def test_the_teacher_sees_the_study_lines_of_the_examples_responses(job, study_dir) -> None:
    settings, tokenizer = job["settings"], job["tokenizer"]
    assert settings["privileged_fields"] == [*DATASET_FIELDS, "miti", "subfactors"]
    examples, fields = read_examples_and_fields(settings, tokenizer)
    assert len(examples) == 8 and {"miti", "subfactors"} <= set(fields)
    for index, example in enumerate(examples):
        row = job["rows"][index // 2]
        teacher = tokenizer.decode(example.teacher_prompt)
        human = expected_line(study_dir, row["dialog_id"], "human", "Human response")
        empathy = expected_line(
            study_dir, row["dialog_id"], "chatgpt_empathy", "ChatGPT-empathy response"
        )
        assert human in teacher
        # the ChatGPT-empathy response's annotations where the set trains on it (direct), not
        # where the other target is teacher-written (improve_human)
        assert (empathy in teacher) is (index < 4)
        assert teacher == tokenizer.decode(example.teacher_prompt)
        # the multi-source path's privileged text holds them too
        assert human in tokenizer.decode(example.privileged)


def test_the_study_text_never_reaches_the_students_prompt(job, study_dir) -> None:
    from empathy_distill.training.templates import llamafactory_template

    settings, tokenizer = job["settings"], job["tokenizer"]
    examples, _ = read_examples_and_fields(settings, tokenizer)
    template = llamafactory_template(tokenizer, "llama3")
    prompts = Prompts()
    for index, example in enumerate(examples):
        row = job["rows"][index // 2]
        plain = prompts.student_train(row["situation"], row["speaker_uttr"])
        messages = [{"role": "user", "content": plain}, {"role": "assistant", "content": ""}]
        assert example.student_prompt == list(template.encode_oneturn(tokenizer, messages)[0])
        student = tokenizer.decode(example.student_prompt)
        for kind, label in (("human", "Human response"), ("chatgpt_empathy", "ChatGPT-empathy")):
            line = expected_line(study_dir, row["dialog_id"], kind, label)
            miti, scores = line.split(", ", 1)[1].split("; gpt-4o-mini", 1)
            assert miti not in student and "gpt-4o-mini" + scores not in student
        assert "MITI" not in student and "subfactors" not in student


def test_the_leak_check_guards_the_study_text(job) -> None:
    settings = job["settings"]
    from empathy_distill.core.readers import read_table
    from empathy_distill.distillation.formats import read_set

    records = read_set(settings["dataset"])
    columns = ["dialog_id", "situation", "speaker_uttr", *DATASET_FIELDS]
    rows = study_fields.join_study(
        settings,
        records,
        {r["dialog_id"]: r for r in read_table(settings["train_csv"], columns).to_dict("records")},
    )
    row = rows[job["rows"][0]["dialog_id"]]
    plain = Prompts().student_train(row["situation"], row["speaker_uttr"])
    assert privileged.privileged_leaks(plain, row, plain) == []
    scores = privileged.study_notes(row, "subfactors")[0][1]
    leaked = f"{plain}\n{scores}"  # no marker: the annotation text alone
    assert privileged.privileged_leaks(leaked, row, plain) == [f"subfactors={scores[:40]!r}"]
    with pytest.raises(AssertionError, match="holds privileged information"):
        privileged.check_student_input(leaked, row, plain)


def test_a_study_field_constant_over_the_set_is_dropped_and_logged(job, caplog) -> None:
    """One dialogue twice over in a set: every field is constant, each is logged with its value."""
    from empathy_distill.training.pride.loop import privileged_fields

    settings = job["settings"]
    from empathy_distill.core.readers import read_table
    from empathy_distill.distillation.formats import read_set

    records = read_set(settings["dataset"])[:2]  # dialogue 1: its human and ChatGPT targets
    table = read_table(settings["train_csv"], ["dialog_id", *study_fields.RESPONSE_COLUMNS])
    rows = study_fields.join_study(
        settings, records, {r["dialog_id"]: r for r in table.to_dict("records")}
    )
    with caplog.at_level("INFO"):
        kept = privileged_fields(records, rows, ["miti", "subfactors"])
    assert kept == ()
    assert "privileged field miti is 'Human response, MITI: Affirm, Simple" in caplog.text
    # two dialogues whose annotations differ: both study fields kept
    records = read_set(settings["dataset"])[:4]
    rows = study_fields.join_study(
        settings, records, {r["dialog_id"]: r for r in table.to_dict("records")}
    )
    assert privileged_fields(records, rows, ["miti", "subfactors"]) == ("miti", "subfactors")


def test_a_dialogue_the_study_lacks_names_the_file_and_dialog_id(job, train, tmp_path) -> None:
    """The synthetic dataset's dialogues are made up: the study has none of them."""
    settings = job["settings"]
    prompts = Prompts()
    row = train.iloc[0]
    records = [
        sft_record(
            row["dialog_id"],
            prompts.student_train(row["situation"], row["speaker_uttr"]),
            row["response_human"],
        )
    ]
    rows = {row["dialog_id"]: row.astype(str).to_dict()}
    with pytest.raises(DatasetError) as error:
        study_fields.join_study(settings, records, rows)
    message = str(error.value)
    assert study.DIALOGUES in message and f"dialog_id {row['dialog_id']}" in message
    assert "training.pride.privileged_fields" in message
    # subfactors alone: the scores file is named
    only = settings | {"study_data": {"subfactors": settings["study_data"]["subfactors"]}}
    with pytest.raises(DatasetError, match=f"{study.SUBFACTOR_SCORES}: no subfactors for"):
        study_fields.join_study(only, records, rows)


def test_a_response_text_that_is_not_the_studys_is_refused(job) -> None:
    settings = job["settings"]
    first = dict(job["rows"][0])
    first["response_human"] = "Something else entirely."
    records = [sft_record(first["dialog_id"], "p", first["response_human"])]
    with pytest.raises(DatasetError, match=f"dialog_id {first['dialog_id']}: its response_human"):
        study_fields.join_study(settings, records, {first["dialog_id"]: first})


def test_a_study_file_that_is_not_the_pinned_one_is_refused(job, study_dir, tmp_path) -> None:
    changed = tmp_path / study.SUBFACTOR_SCORES
    changed.write_bytes((study_dir / study.SUBFACTOR_SCORES).read_bytes() + b"\n")
    files = job["settings"]["study_data"] | {
        "subfactors": {**job["settings"]["study_data"]["subfactors"], "file": str(changed)}
    }
    with pytest.raises(DatasetError, match="sha256 is"):
        study_fields.load_annotations(files)


# --- configuration and job specs ----------------------------------------------------------------


def test_privileged_fields_default_and_refusals() -> None:
    config = load_config(REPO_ROOT / "config.yaml")
    where = "training.pride"
    assert study_fields.configured_fields(None, config, where) == [
        *DATASET_FIELDS,
        "miti",
        "subfactors",
    ]
    assert study_fields.configured_fields(None, {}, where) == DATASET_FIELDS
    with pytest.raises(ConfigError, match=r"unknown field.*miti_codes"):
        study_fields.configured_fields(["miti_codes"], config, where)
    with pytest.raises(ConfigError, match="distinct"):
        study_fields.configured_fields(["miti", "miti"], config, where)
    with pytest.raises(ConfigError, match="does not pin"):
        study_fields.configured_fields(["subfactors"], {}, where)
    with pytest.raises(ConfigError, match="privileged_fields"):
        build_settings(
            {
                "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
                "training": {"pride": {"privileged_fields": "emotion"}},
            },
            "tiny",
            "direct",
            "chatgpt",
        )


def test_the_spec_names_the_pinned_study_files() -> None:
    """train_pride and pride_teacher_outputs carry the files and their sha256 (a change of
    either reruns them); without study fields the spec has no study key."""
    config = load_config(REPO_ROOT / "config.yaml")
    settings = build_settings(config, "mistral_7b", "improve_human", "naive_prompt")
    pinned = config["scoring"]["study_data"]["files"]
    assert settings["study_data"] == {
        "miti": {
            "file": "resources/scoring_study/dataset_and_ratings.csv",
            "sha256": pinned["dataset_and_ratings.csv"],
        },
        "subfactors": {
            "file": "resources/scoring_study/gpt4o-mini-15v2-ratings.csv",
            "sha256": pinned["gpt4o-mini-15v2-ratings.csv"],
        },
    }
    assert spec_of(settings)["study_data"] == settings["study_data"]
    assert spec_of(settings)["privileged_fields"] == settings["privileged_fields"]
    config["training"]["pride"]["privileged_fields"] = DATASET_FIELDS
    assert "study_data" not in build_settings(config, "mistral_7b", "improve_human", "naive_prompt")


def test_the_projections_stand_in_is_as_long_as_the_studys_mean(study_dir: Path) -> None:
    """empathy-distill gpu-hours counts the study lines with STAND_IN (it reads no study file)."""
    from statistics import mean

    annotations = study_fields.load_annotations(files_in(study_dir))
    scores = mean(len(text) for text in annotations["subfactors"].values())
    assert abs(len(study_fields.STAND_IN["subfactors"]) - scores) < 1  # 416 vs 416.03
    miti = [len(annotations["miti"][key]) for key in annotations["miti"] if key[1] == "human"]
    assert abs(len(study_fields.STAND_IN["miti"]) - mean(miti)) < 1  # 36 vs 36.4
