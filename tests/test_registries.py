"""The strategy and judge registries are the single place a strategy or a judge kind is added:
the schema, the wildcard constraints and every kind branch follow them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from empathy_distill.core import judges, strategies
from empathy_distill.core.config import load_schema, validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.core.prompts import Prompts
from empathy_distill.data.dataset import LLM_RESPONDERS
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.judge import PairItem, run_judge

from .conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / "workflow"
PACKAGE = WORKFLOW / "empathy_distill"


def _paper_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))


# --- strategies ---------------------------------------------------------------------------------
def test_registry_is_consistent_with_the_dataset_and_the_prompts():
    assert set(strategies.names()) == set(strategies.REGISTRY)
    assert set(strategies.KINDS) == {s.kind for s in strategies.REGISTRY.values()}
    # direct sources are the dataset's LLM responders; "all" pools the four
    assert strategies.names(strategies.DIRECT_SOURCE) == LLM_RESPONDERS
    assert strategies.direct_sources("all") == LLM_RESPONDERS
    prompts = Prompts()
    for name in strategies.names(strategies.POOLED, strategies.SEQUENTIAL):
        parts = strategies.get(name).parts
        assert parts and all(strategies.kind(p) == strategies.SINGLE_TURN for p in parts), name
    for name in strategies.names(strategies.SINGLE_TURN):
        assert "{" not in prompts.teacher_improve(name, "c", "u", "r"), name
    # the paper's sequential chain: 3 turns, turn 1 = improve_cognitive
    assert len(prompts.teacher_sequential_turns("improve_three_dimensions_sequentially")) == 2
    assert strategies.first_turn("improve_three_dimensions_sequentially") == "improve_cognitive"
    with pytest.raises(KeyError, match="unknown strategy 'nope'"):
        strategies.kind("nope")


def test_schema_enums_are_the_registry():
    defs = load_schema()["$defs"]
    assert defs["improve_strategies"]["items"]["enum"] == [
        "naive_prompt",
        "improve_all_three_dimensions",
        "identify_lacking_dimension",
        "improve_cognitive",
        "improve_affective",
        "improve_compassionate",
        "combined_single_dimensions",
        "improve_three_dimensions_sequentially",
    ]
    assert defs["direct_strategies"]["items"]["enum"] == [*LLM_RESPONDERS, "all"]
    config = _paper_config()
    config["distillation"]["methods"]["improve_llm"] = ["improve_brevity"]
    with pytest.raises(ConfigError, match=r"\['improve_llm'\]\[0\]: 'improve_brevity'"):
        validate_config(config)


def test_rule_files_name_no_strategy():
    """Wildcard constraints come from the registry: no rule file spells a strategy name."""
    spelled = {
        f"{path.name}: {name}"
        for path in (WORKFLOW / "rules").glob("*.smk")
        for name in strategies.names(*strategies.IMPROVE_KINDS)
        if name in path.read_text(encoding="utf-8")
    }
    assert not spelled


def test_teacher_wildcard_constraint_matches_teacher_call_strategies():
    pattern = re.compile(
        "(?:" + strategies.wildcard_regex(strategies.names(*strategies.TEACHER_CALL_KINDS)) + ")"
    )
    matching = {n for n in strategies.names() if pattern.fullmatch(n)}
    assert matching == {
        "naive_prompt",
        "improve_all_three_dimensions",
        "identify_lacking_dimension",
        "improve_cognitive",
        "improve_affective",
        "improve_compassionate",
        "improve_three_dimensions_sequentially",
    }


@pytest.mark.parametrize(
    "module",
    [
        "distillation/teacher.py",
        "distillation/requests.py",
        "cost/requests.py",
        "cost/projection.py",
        "cost/scorers.py",
        "core/grid.py",
        "distillation/sets.py",
        "core/prompts.py",
    ],
)
def test_kind_branches_ask_the_registry(module):
    """No stage module compares a strategy against a name: it asks ``strategies.kind``."""
    text = (PACKAGE / module).read_text(encoding="utf-8")
    # direct source names are also the dataset's LLM names (the gemini judge prompt): not checked
    named = [
        n
        for n in strategies.names(*strategies.IMPROVE_KINDS, strategies.DIRECT_POOLED)
        if f'"{n}"' in text
    ]
    assert not named


def _copy_repo(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "results", ".snakemake", "__pycache__", "cache", "logs", ".ruff_cache"
    )
    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    return dest


def _dry_run(repo: Path, overlay: dict) -> subprocess.CompletedProcess:
    path = repo / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay), encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "-n", "--configfile", "config.yaml", str(path)]
    env = {**os.environ, "PYTHONPATH": str(repo / "workflow")}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=repo)


def test_a_new_single_turn_strategy_is_prompts_json_plus_one_registry_line(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    overlay = {
        "distillation": {
            "methods": {"direct": [], "improve_human": ["improve_brevity"], "improve_llm": []}
        },
        "grid": {"students": ["llama31_8b"], "judges": ["gpt4o"]},
    }
    # without the registry line the strategy is refused at start-up, naming the config key
    refused = _dry_run(repo, overlay)
    assert refused.returncode != 0
    assert "'improve_human'][0]: 'improve_brevity'" in refused.stdout + refused.stderr

    prompts_path = repo / "resources" / "prompts.json"
    prompts = json.loads(prompts_path.read_text(encoding="utf-8"))
    prompts["teacher"]["improve"]["improve_brevity"] = (
        "Make this response shorter.\nContext: {context}\nSpeaker: {speaker_utterance}"
        "\nResponse: {response} \nImproved Response:"
    )
    prompts_path.write_text(json.dumps(prompts, ensure_ascii=False, indent=2), encoding="utf-8")
    registry = repo / "workflow" / "empathy_distill" / "core" / "strategies.py"
    anchor = '        Strategy("naive_prompt", SINGLE_TURN),\n'
    text = registry.read_text(encoding="utf-8")
    assert anchor in text
    registry.write_text(
        text.replace(anchor, anchor + '        Strategy("improve_brevity", SINGLE_TURN),\n'),
        encoding="utf-8",
    )

    result = _dry_run(repo, overlay)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "output: results/teacher/improve_human/improve_brevity.jsonl" in output
    for stage in ("sft", "dpo"):
        assert f"results/datasets/improve_human/improve_brevity/{stage}.json" in output, stage
        assert (
            "output: results/models/llama31_8b/improve_human/improve_brevity/"
            f"{stage}/adapter_model.safetensors" in output
        ), stage
    stats = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = dict(line.split() for line in stats.splitlines()[3:])
    assert counts["teacher_improve"] == "1"
    assert counts["train"] == "2"  # its SFT and its DPO


# --- judges -------------------------------------------------------------------------------------
def test_only_the_judge_registry_spells_the_offline_backend():
    hits = [
        f"{path.relative_to(REPO_ROOT)}:{i}"
        for path in WORKFLOW.rglob("*")
        if path.is_file() and path.suffix in (".py", ".smk")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if '"offline"' in line
    ]
    assert len(hits) == 1 and hits[0].startswith("workflow/empathy_distill/core/judges.py:"), hits


def test_judge_kind_by_backend():
    config = validate_config(_paper_config())
    config["judges"]["scorer"] = {"backend": "offline", "model": "offline-scorer"}
    config = validate_config(config)
    assert isinstance(judges.judge_kind(config, "gpt4o"), judges.LLMJudge)
    assert isinstance(judges.judge_kind(config, "scorer"), judges.ScorerJudge)
    assert judges.calls_llm(config["judges"]["gpt4o"])
    assert not judges.calls_llm(config["judges"]["scorer"])
    assert not judges.calls_llm({})
    assert judges.judge_kind(config, "scorer").inputs(config) == {
        "scorer": "results/judges/offline/model.joblib"
    }
    assert judges.judge_kind(config, "gpt4o").inputs(config) == {"prompts": config["prompts"]}
    assert judges.scorer_judges(config, ["gpt4o", "scorer", "gemini"]) == ["scorer"]


def test_margin_on_an_llm_judge_is_refused_on_a_scorer_kept():
    config = _paper_config()
    config["judges"]["gpt4o"]["margin"] = 0.2
    with pytest.raises(ConfigError, match=r"config\['judges'\]\['gpt4o'\]\['margin'\].*scorer"):
        validate_config(config)
    config = _paper_config()
    config["judges"]["scorer"] = {"backend": "offline", "model": "m", "margin": 0.2}
    validated = validate_config(config)
    assert validated["judges"]["scorer"]["margin"] == 0.2
    # the validated config (margin default filled into every endpoint) validates again
    validate_config(json.loads(json.dumps(validated)))


class LengthScorer:
    """A scorer judge of the test's own: the score is the answer's length in characters."""

    def __init__(self, path: str) -> None:
        self.path = path

    def score(self, situations, utterances, answers):
        return [float(len(a)) for a in answers]


def test_a_new_scorer_judge_is_one_registry_line(monkeypatch, tmp_path):
    scorer = judges.ScorerJudge(
        "length",
        model_file="results/judges/length/model.txt",
        agreement_file="results/judges/length/agreement.json",
        loader=f"{__name__}:LengthScorer",
    )
    monkeypatch.setitem(judges.SCORERS, "length", scorer)
    config = _paper_config()
    config["judges"]["len"] = {"backend": "length", "model": "characters", "margin": 3}
    config = validate_config(config)  # the schema's backend enum follows the registry
    assert judges.judge_kind(config, "len") is scorer
    items = [
        PairItem("d1", "s", "u", "x" * 10, "x" * 20),  # model 10 < 20: the opponent wins
        PairItem("d2", "s", "u", "x" * 12, "x" * 10),  # |12 - 10| = 2 < margin 3: a tie
    ]
    records = run_judge(evaluation_specs.judge(config, "len"), items, scorer=tmp_path / "model.txt")
    model_first = {r["dialog_id"]: r["verdict"] for r in records if r["order"] == "model_first"}
    assert model_first == {"d1": 2, "d2": 0}
