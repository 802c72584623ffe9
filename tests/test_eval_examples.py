"""The report's readable answers: example dialogues side by side with the judges' verdicts, and
the answer-length distribution, from small hand-written answer, judgment and test files."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from empathy_distill.core.errors import DatasetError
from empathy_distill.core.grid import tag_of_answer_path
from empathy_distill.evaluation import examples, judge_records, lengths
from empathy_distill.evaluation.records import AnswersError, write_jsonl

from .conftest import REPO_ROOT, SYNTHETIC_CSV
from .workflow_helpers import run_snakemake

DIALOGUES = ["d1", "d2", "d3"]
SFT = "tiny--direct--chatgpt--sft"
DPO = "tiny--direct--chatgpt--dpo"
# answer tag -> one answer per dialogue (d1, d2, d3); word counts below are counted by hand
ANSWERS = {
    "teacher": ["Teacher one.", "Teacher two & more.", "Teacher three here now."],
    "tiny--base": ["", "base two", "base three words"],
    SFT: ["sft answer one", "sft <b>bold</b> & co", "s"],
    DPO: ["dpo answer number one", "dpo two", "dpo three three three three"],
}
HUMAN = ["Human one", "Human <i>two</i> & that", "Human three"]
RATINGS = [3, 1, 2]


def answers_file(root: Path, tag: str) -> Path:
    return (
        root
        / {
            "teacher": "results/answers/teacher.jsonl",
            "tiny--base": "results/answers/tiny/base.jsonl",
            SFT: "results/answers/tiny/direct/chatgpt/sft.jsonl",
            DPO: "results/answers/tiny/direct/chatgpt/dpo.jsonl",
        }[tag]
    )


def both_orders(dialog_id: str, model_first: str | None, opponent_first: str | None) -> list:
    """Records as judge.py writes them: ``winner`` is "model", "opponent", "tie" or None."""
    return [
        {"dialog_id": dialog_id, "order": "model_first", "winner": model_first, "judge": "j"},
        {"dialog_id": dialog_id, "order": "opponent_first", "winner": opponent_first, "judge": "j"},
    ]


@pytest.fixture
def files(tmp_path):
    test = pd.DataFrame(
        {
            "dialog_id": DIALOGUES,
            "situation": ["Lost my <job> & more", "Got a dog", "Exam passed"],
            "speaker_uttr": ["I was fired.", "He is cute!", "I made it"],
            "response_human": HUMAN,
            "rating_human": RATINGS,
        }
    )
    test_csv = tmp_path / "results/data/test.csv"
    test_csv.parent.mkdir(parents=True)
    test.to_csv(test_csv, index=False)
    for tag, texts in ANSWERS.items():
        rows = [{"dialog_id": d, "answer": a} for d, a in zip(DIALOGUES, texts, strict=True)]
        if tag == "teacher":
            rows[2]["refusal"] = "SAFETY"
        write_jsonl(answers_file(tmp_path, tag), rows)
    judgments = tmp_path / "results/judgments"
    local = {
        # DPO vs base: d1 win in both orders, d2 flips with the order (tie), d3 invalid
        f"local/{DPO}__vs__tiny--base.jsonl": both_orders("d1", "model", "model")
        + both_orders("d2", "model", "opponent")
        + both_orders("d3", None, "model"),
        f"local/{SFT}__vs__tiny--base.jsonl": both_orders("d1", "opponent", "opponent")
        + both_orders("d2", "tie", "tie")
        + both_orders("d3", "model", "model"),
        f"local/{DPO}__vs__{SFT}.jsonl": [
            r for d in DIALOGUES for r in both_orders(d, "model", "model")
        ],
        f"local/{DPO}__vs__teacher.jsonl": [
            r for d in DIALOGUES for r in both_orders(d, "opponent", "opponent")
        ],
    }
    # a paper-faithful judge: only the fixed order, an invalid verdict counts as a loss
    paper = {
        f"paper/{DPO}__vs__tiny--base.jsonl": [
            {"dialog_id": "d1", "order": "opponent_first", "winner": None},
            {"dialog_id": "d2", "order": "opponent_first", "winner": "opponent"},
            {"dialog_id": "d3", "order": "opponent_first", "winner": "model"},
        ]
    }
    for name, rows in {**local, **paper}.items():
        write_jsonl(judgments / name, rows)
    judgment_files = [str(judgments / name) for name in {**local, **paper}]
    answer_files = [str(answers_file(tmp_path, tag)) for tag in ANSWERS]
    return test_csv, answer_files, judgment_files


def run_examples(files, tmp_path, n: int, answers=None) -> pd.DataFrame:
    test_csv, answer_files, judgment_files = files
    out = tmp_path / "out"
    argv = ["--test", str(test_csv), "--answers", *(answers or answer_files)]
    argv += ["--judgments", *judgment_files, "--dialogues", str(n)]
    argv += ["--csv", str(out / "examples.csv"), "--html", str(out / "examples.html")]
    assert examples.main(argv) == 0
    return pd.read_csv(out / "examples.csv", keep_default_na=False, dtype={"human_rating": str})


def test_answers_sit_in_their_rows_in_reading_order(files, tmp_path):
    # the rule lists trained models first: readers get human, teacher, base, then those models
    sft, dpo, base, teacher = (
        str(answers_file(tmp_path, t)) for t in (SFT, DPO, "tiny--base", "teacher")
    )
    table = run_examples(files, tmp_path, 2, answers=[sft, dpo, base, teacher])
    assert list(table["dialog_id"]) == ["d1"] * 5 + ["d2"] * 5
    expected_by = ["human", "teacher", "tiny base", "tiny direct/chatgpt/sft"]
    expected_by.append("tiny direct/chatgpt/dpo")
    for k, dialog_id in enumerate(["d1", "d2"]):
        rows = table[table["dialog_id"] == dialog_id]
        assert list(rows["answer_by"]) == expected_by
        assert list(rows["answer"]) == [
            HUMAN[k],
            ANSWERS["teacher"][k],
            ANSWERS["tiny--base"][k],
            ANSWERS[SFT][k],
            ANSWERS[DPO][k],
        ]
        assert list(rows["human_rating"]) == [str(RATINGS[k]), "", "", "", ""]
    d1 = table[table["dialog_id"] == "d1"].set_index("answer_by")
    assert list(d1["words"]) == [2, 2, 0, 3, 4]
    assert d1.loc[
        "tiny direct/chatgpt/dpo", ["student", "method", "strategy", "stage"]
    ].tolist() == [
        "tiny",
        "direct",
        "chatgpt",
        "dpo",
    ]
    assert d1.loc["human", "situation"] == "Lost my <job> & more"


def test_verdicts_are_from_each_answers_side(files, tmp_path):
    table = run_examples(files, tmp_path, 3)
    cell = table.set_index(["dialog_id", "answer_by"])
    dpo, sft, base = "tiny direct/chatgpt/dpo", "tiny direct/chatgpt/sft", "tiny base"
    assert cell.loc[("d1", dpo), "verdicts_local"] == (
        "win vs tiny base (vs_base); win vs tiny direct/chatgpt/sft (dpo_vs_sft); "
        "loss vs teacher (vs_teacher)"
    )
    assert cell.loc[("d2", dpo), "verdicts_local"].startswith(
        "tie (flipped with the order) vs tiny base (vs_base); "
    )
    assert cell.loc[("d3", dpo), "verdicts_local"].startswith("invalid vs tiny base (vs_base); ")
    # the base model sees the same judgments from the other side
    assert cell.loc[("d1", base), "verdicts_local"] == (
        "loss vs tiny direct/chatgpt/dpo (vs_base); win vs tiny direct/chatgpt/sft (vs_base)"
    )
    assert cell.loc[("d2", sft), "verdicts_local"] == (
        "tie vs tiny base (vs_base); loss vs tiny direct/chatgpt/dpo (dpo_vs_sft)"
    )
    assert (
        cell.loc[("d1", "teacher"), "verdicts_local"]
        == "win vs tiny direct/chatgpt/dpo (vs_teacher)"
    )
    assert cell.loc[("d1", "human"), "verdicts_local"] == ""
    # paper-faithful judge: one order, invalid counted as a loss (and said so)
    assert cell.loc[("d1", dpo), "verdicts_paper"] == (
        "loss (invalid verdict, counted as a loss) vs tiny base (vs_base)"
    )
    assert cell.loc[("d1", base), "verdicts_paper"] == (
        "win (invalid verdict, counted as a win) vs tiny direct/chatgpt/dpo (vs_base)"
    )
    assert cell.loc[("d2", dpo), "verdicts_paper"] == "loss vs tiny base (vs_base)"
    assert cell.loc[("d3", base), "verdicts_paper"] == "loss vs tiny direct/chatgpt/dpo (vs_base)"
    assert cell.loc[("d1", sft), "verdicts_paper"] == ""
    assert cell.loc[("d3", "teacher"), "refusal"] == "SAFETY"


class _Cells(HTMLParser):
    """Text of every <td>/<th> and the tags used, as a browser would parse the page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_answers_and_context(files, tmp_path):
    run_examples(files, tmp_path, 3)
    page = (tmp_path / "out/examples.html").read_text(encoding="utf-8")
    assert "sft &lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "Human &lt;i&gt;two&lt;/i&gt; &amp; that" in page
    assert "Lost my &lt;job&gt; &amp; more" in page
    parser = _Cells()
    parser.feed(page)
    # no tag of the answers reached the markup; their text reads as written
    assert "b" in parser.tags  # the page's own <b>Situation:</b>
    assert "i" not in parser.tags and "job" not in parser.tags
    text = "".join(parser.text)
    assert "sft <b>bold</b> & co" in text and "Lost my <job> & more" in text
    assert page.count("<section>") == 3
    assert "refused by the provider: SAFETY" in page
    assert "(empty answer)" in page  # the base model's empty answer to d1


def test_more_dialogues_than_the_split_shows_them_all(files, tmp_path):
    table = run_examples(files, tmp_path, 50)
    assert list(dict.fromkeys(table["dialog_id"])) == DIALOGUES


def test_missing_answer_names_file_and_dialogue(files, tmp_path):
    path = answers_file(tmp_path, SFT)
    write_jsonl(path, [{"dialog_id": "d1", "answer": "only one"}])
    with pytest.raises(AnswersError, match=rf"{path}: no answer for test dialogue 'd2'"):
        run_examples(files, tmp_path, 2)


def test_test_split_without_human_columns_is_refused(files, tmp_path):
    test_csv = files[0]
    pd.read_csv(test_csv).drop(columns=["rating_human"]).to_csv(test_csv, index=False)
    with pytest.raises(DatasetError, match=rf"{test_csv}: missing column\(s\) rating_human"):
        run_examples(files, tmp_path, 2)


def test_unknown_file_names_are_refused(files, tmp_path):
    stray = tmp_path / "results/answers/tiny/direct.jsonl"
    write_jsonl(stray, [])
    with pytest.raises(AnswersError, match=rf"{stray}: not an answers file"):
        run_examples(files, tmp_path, 2, answers=[str(stray)])


def test_answer_tag_of_path_inverts_answer_path():
    assert tag_of_answer_path("/x/results/answers/teacher.jsonl") == "teacher"
    assert tag_of_answer_path("results/answers/s1/base.jsonl") == "s1--base"
    assert tag_of_answer_path("results/answers/s1/improve_llm/naive_prompt/dpo.jsonl") == (
        "s1--improve_llm--naive_prompt--dpo"
    )


# --- answer lengths ---------------------------------------------------------------------------


def test_length_table_and_figure(tmp_path):
    ids = ["a", "b", "c", "d", "e"]
    test = pd.DataFrame(
        {
            "dialog_id": ids,
            "situation": "s",
            "speaker_uttr": "u",
            "response_human": ["one", "one two", "one two three", "1 2 3 4", "1 2 3 4 5"],
            "rating_human": 2,
        }
    )
    test_csv = tmp_path / "test.csv"
    test.to_csv(test_csv, index=False)
    words = [0, 2, 5, 9, 10]
    caps = [False, False, False, True, True]
    base = tmp_path / "results/answers/tiny/base.jsonl"
    write_jsonl(
        base,
        [
            {
                "dialog_id": d,
                "answer": " ".join(["w"] * n),
                "hit_token_cap": cap,
                "generation": {"max_new_tokens": 160},
            }
            for d, n, cap in zip(ids, words, caps, strict=True)
        ],
    )
    teacher = tmp_path / "results/answers/teacher.jsonl"  # no cap flags: unknown
    write_jsonl(teacher, [{"dialog_id": d, "answer": "a b c"} for d in ids])
    table_csv, figure = tmp_path / "lengths.csv", tmp_path / "lengths.png"
    argv = ["--test", str(test_csv), "--answers", str(base), str(teacher)]
    assert lengths.main([*argv, "--table", str(table_csv), "--figure", str(figure)]) == 0
    table = pd.read_csv(table_csv).set_index("answer_by")
    assert list(table.index) == ["human", "teacher", "tiny base"]
    row = table.loc["tiny base"]
    # by hand: sorted 0 2 5 9 10; p10 at rank 0.4 -> 0 + 0.4 * 2, p90 at rank 3.6 -> 9 + 0.6 * 1
    assert row["n"] == 5 and row["mean_words"] == pytest.approx(26 / 5)
    assert row["median_words"] == 5
    assert row["p10_words"] == pytest.approx(0.8) and row["p90_words"] == pytest.approx(9.6)
    assert (row["min_words"], row["max_words"]) == (0, 10)
    assert row["empty_share"] == pytest.approx(1 / 5)
    assert row["token_cap_share"] == pytest.approx(2 / 5) and row["max_new_tokens"] == 160
    human = table.loc["human"]
    assert human["mean_words"] == pytest.approx(3) and human["median_words"] == 3
    assert math.isnan(human["token_cap_share"]) and math.isnan(
        table.loc["teacher", "token_cap_share"]
    )
    assert table.loc["teacher", "p90_words"] == 3
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the rules --------------------------------------------------------------------------------


def test_demo_dry_run_plans_the_answer_rules(tmp_path):
    demo = yaml.safe_load((REPO_ROOT / "workflow/profiles/demo/config.demo.yaml").read_text())
    overlay = {**demo, "dataset": {**demo["dataset"], "path": str(SYNTHETIC_CSV)}}
    result = run_snakemake(tmp_path, overlay, "-n", "-p")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for rule in ("example_answers", "answer_lengths"):
        assert f"rule {rule}:" in out
    # the job is handed its files and one number; no config in its command line
    command = next(
        line for line in out.splitlines() if "empathy_distill.evaluation.examples" in line
    )
    assert "--dialogues 5" in command
    student = demo["grid"]["students"][0]
    assert f"results/answers/{student}/base.jsonl" in command
    assert "results/judgments/offline/" in command and "--settings" not in command
    assert "results/figures/answer_lengths.png" in out


def test_judge_job_records_give_the_same_table_and_catch_a_changed_file(
    files, tmp_path, monkeypatch
):
    """The rule passes the judge jobs' records (grid.JUDGE_JOB_FILES), not the pair files: the
    table is the one the files themselves give, and a file changed after its judge job wrote it
    stops the job, naming the file and the rule to rerun."""
    test_csv, answer_files, judgment_files = files
    direct = run_examples(files, tmp_path, 3)
    monkeypatch.chdir(tmp_path)
    relative = [str(Path(f).relative_to(tmp_path)) for f in judgment_files]
    records = []
    for judge in ("local", "paper"):
        mine = [f for f in relative if f.startswith(f"results/judgments/{judge}/")]
        counts = {f: len(Path(f).read_text().splitlines()) for f in mine}
        record = tmp_path / f"results/judgments/{judge}/vs_base.files.json"
        judge_records.write(judge, "vs_base", counts, Path("."), record)
        records.append(str(record))
    assert judge_records.judgment_files(records) == relative
    out = tmp_path / "by_records"
    argv = ["--test", str(test_csv), "--answers", *answer_files, "--judge-records", *records]
    argv += ["--dialogues", "3", "--csv", str(out / "e.csv"), "--html", str(out / "e.html")]
    assert examples.main(argv) == 0
    by_records = pd.read_csv(out / "e.csv", keep_default_na=False, dtype={"human_rating": str})
    pd.testing.assert_frame_equal(by_records, direct)
    with open(relative[0], "a") as handle:
        handle.write('{"dialog_id": "d1", "order": "model_first", "winner": "model"}\n')
    with pytest.raises(AnswersError, match=rf"{relative[0]}: missing or changed .*judge_vs_base"):
        judge_records.judgment_files(records)
