"""Tables and figures over a small synthetic grid judged by rule-based judges."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from empathy_distill.core.config import validate_config
from empathy_distill.core.grid import answer_path, answer_tags, comparisons, judgment_path
from empathy_distill.core.prompts import Prompts
from empathy_distill.evaluation import figures, tables
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.judge import PairItem, judge_with_llm, judge_with_scorer
from empathy_distill.evaluation.records import read_answers, write_jsonl
from tests.servers.judge_rules import prefer_longer
from tests.test_eval_judge import rule_ask

N = 30


@pytest.fixture
def grid(tmp_path, llm_types):
    config = validate_config(
        {
            "students": {"tiny": {"model": "builtin:tiny", "template": "default"}},
            "distillation": {"methods": {"improve_human": ["naive_prompt", "improve_cognitive"]}},
            "teacher": {"backend": "openai_compatible", "model": "t"},
            "judges": {
                "local": {"backend": "openai_compatible", "model": "j"},
                "offline": {"backend": "offline", "model": "spy", "margin": 0.5},
            },
            "evaluation": {"bootstrap_samples": 200},
        }
    )
    for k, tag in enumerate(answer_tags(config)):
        rows = [
            {
                "dialog_id": f"d{i}",
                "prompt": "p",
                "answer": "word " * (5 + (i * k) % 9),
                "generation": {},
                "seed": 0,
            }
            for i in range(N)
        ]
        write_jsonl(tmp_path / answer_path(tag), rows)
    for pair in comparisons(config):
        mine = read_answers(tmp_path / answer_path(pair.model))
        theirs = read_answers(tmp_path / answer_path(pair.opponent))
        items = [PairItem(d, "s", "u", mine[d], theirs[d]) for d in mine]
        write_jsonl(
            tmp_path / judgment_path("local", pair.model, pair.opponent),
            judge_with_llm(items, rule_ask(prefer_longer), Prompts(), "j", "local"),
        )
        write_jsonl(
            tmp_path / judgment_path("offline", pair.model, pair.opponent),
            judge_with_scorer(items, lambda s, u, r: [len(x.split()) for x in r], "offline", 0.5),
        )
    return config, tmp_path


def test_win_rate_table_one_row_per_comparison_and_judge(grid):
    config, root = grid
    table = tables.win_rate_table(evaluation_specs.win_rates(config), root)
    assert list(table.columns) == tables.WIN_RATE_COLUMNS
    assert len(table) == 2 * len(comparisons(config))
    assert set(table["comparison"]) == {"vs_base", "vs_naive", "dpo_vs_sft", "vs_teacher"}
    assert (table["n"] == N).all()
    assert (table["wins"] + table["ties"] + table["losses"] + table["invalid"] == N).all()
    assert ((table["ci_low"] <= table["win_rate"]) & (table["win_rate"] <= table["ci_high"])).all()
    local = table[table["judge"] == "local"]
    # the length rule answers "1" for equal lengths: those (and only those) flip into ties
    assert list(local["position_consistency"]) == pytest.approx(list(1 - local["ties"] / N))
    # every win comes from the longer side, so a positive length slope wherever there is a spread
    spread = local[(local["wins"] > 0) & (local["losses"] > 0)]
    assert not spread.empty and (spread["length_slope"] > 0).all()
    base_row = table[(table["model"] == "tiny--base")].iloc[0]
    assert base_row["stage"] == "base" and base_row["opponent"] == "teacher"


def test_judge_agreement_table(grid, tmp_path):
    config, root = grid
    report = tmp_path / "agreement.json"
    report.write_text(
        json.dumps(
            {
                "test": {
                    "n_pairs": 2500,
                    "pairwise_3class_accuracy": 0.4,
                    "pairwise_3class_kappa": 0.05,
                    "pairwise_agreement": 0.55,
                }
            }
        )
    )
    table = tables.agreement_table(evaluation_specs.judge_agreement(config), report, root)
    assert list(table.columns) == tables.AGREEMENT_COLUMNS
    pooled = table[(table["scope"] == "all")].iloc[0]
    # both judges follow answer length with ties for equal lengths: they agree on every pair
    assert pooled["kappa"] == pytest.approx(1.0) and pooled["n"] == N * len(comparisons(config))
    human = table[table["judge_b"] == "human"].iloc[0]
    assert human["judge_a"] == "offline" and human["pairwise_agreement"] == 0.55


def test_table_jobs_read_the_pairs_their_spec_names(grid):
    """The job rebuilds nothing from the grid: it reads the judgment and answer files of the
    pairs in its spec (the files the rule lists as inputs), and only those."""
    config, root = grid
    spec = evaluation_specs.win_rates(config)
    files = {e["path"] for e in evaluation_specs.manifest(spec)}
    assert files == {e["path"] for e in evaluation_specs.judgments(config)}  # the rule's inputs
    assert len(files) == 2 * len(comparisons(config))
    expected = tables.win_rate_table(spec, root)
    dropped = spec["comparisons"].pop()  # one pair less: one row less per judge
    smaller = tables.win_rate_table(spec, root)
    assert len(smaller) == len(expected) - 2
    assert dropped[1] not in set(smaller["model"][smaller["opponent"] == dropped[2]])
    spec["judges"] = ["offline"]
    assert set(tables.win_rate_table(spec, root)["judge"]) == {"offline"}


def test_figures_and_command_lines(grid, tmp_path):
    config, root = grid
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    out = tmp_path / "win_rates.csv"
    assert (
        tables.main(
            ["win-rates", "--config", str(config_path), "--root", str(root), "--out", str(out)]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 2 * len(comparisons(config))
    for kind in figures.KINDS:
        png = tmp_path / f"{kind}.png"
        assert figures.main([kind, "--table", str(out), "--judge", "local", "--out", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.png"
    assert (
        figures.main(["heatmap", "--table", str(out), "--judge", "nobody", "--out", str(empty)])
        == 0
    )
    assert empty.exists()


@pytest.mark.parametrize("table", ["win-rates", "judge-agreement"])
def test_table_jobs_check_the_judge_records(grid, tmp_path, table, capsys):
    """As the rules call them (``--judge-records``): the table is written when every judgment
    file of its manifest is in a judge job's record, unchanged; a file changed after its judge
    job wrote it, or one no record names, stops the job naming the file, before any row."""
    from empathy_distill.evaluation import judge_records

    config, root = grid
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    paths = [e["path"] for e in evaluation_specs.judgments(config)]
    records = []
    for judge in ("local", "offline"):
        mine = [p for p in paths if p.startswith(f"results/judgments/{judge}/")]
        counts = {p: len((root / p).read_text().splitlines()) for p in mine}
        record = root / f"results/judgments/{judge}/all.files.json"
        judge_records.write(judge, "all", counts, root, record)
        records.append(str(record))
    out = tmp_path / "table.csv"
    argv = [table, "--config", str(config_path), "--root", str(root), "--out", str(out)]
    assert tables.main([*argv, "--judge-records", *records]) == 0 and out.exists()
    out.unlink()
    assert tables.main([*argv, "--judge-records", records[0]]) == 1  # the offline record left out
    assert not out.exists()
    offline = next(p for p in paths if p.startswith("results/judgments/offline/"))
    error = capsys.readouterr().err
    assert "in no judge job's record" in error and offline in error
    with open(root / paths[0], "a", encoding="utf-8") as handle:
        handle.write('{"dialog_id": "d0", "order": "model_first", "winner": "model"}\n')
    assert tables.main([*argv, "--judge-records", *records]) == 1
    assert not out.exists()
    assert f"{paths[0]}: missing or changed since its judge job wrote it" in capsys.readouterr().err
