"""The job contract's registries: every rule that takes a spec has exactly one registered
builder, every registered builder serves a rule, and a stage's semantic config checks run in
``validate_config`` once the stage is imported (``empathy_distill.stages``, as the Snakefile)."""

from __future__ import annotations

import re

import pytest

from empathy_distill import stages
from empathy_distill.core import config as core_config
from empathy_distill.core import grid, specs
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.scoring import config_checks

from .conftest import REPO_ROOT
from .workflow_helpers import rule_blocks


def rules_with_a_spec() -> set[str]:
    """Rules whose ``params:`` hold a ``spec`` (read from the rule files, not from the code)."""
    found = set()
    for path in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):
        for rule, body in rule_blocks(path.read_text(encoding="utf-8")):
            if re.search(r"^\s+spec=", body, flags=re.M):
                found.add(rule)
    return found


def test_the_rule_reader_sees_rules_of_a_loop():
    """The judge rules are defined in a loop (one per comparison kind): the reader names each,
    with its own body, and not the rule before the loop."""
    text = (REPO_ROOT / "workflow" / "rules" / "judge.smk").read_text(encoding="utf-8")
    names = [name for name, _ in rule_blocks(text)]
    assert names == ["train_offline_judge", *grid.JUDGE_RULES]
    offline = dict(rule_blocks(text))["train_offline_judge"]
    assert "judge_outputs" not in offline and "evaluation.offline_judge.cli" in offline


def test_every_rule_with_a_spec_has_its_registered_builder_and_no_other():
    expected = rules_with_a_spec()
    assert {"train", "judge_vs_base", "answer", "cost", "score_answers"} <= expected  # the reader
    assert set(specs.BUILDERS) == expected


def test_a_rule_has_one_builder():
    with pytest.raises(ValueError, match="one rule, one builder"):
        specs.register("judge_vs_base")(lambda config: {})
    assert specs.BUILDERS["judge_vs_base"].__module__ == "empathy_distill.evaluation.specs"


def test_an_unregistered_rule_is_a_clear_error():
    with pytest.raises(ConfigError, match="no spec builder is registered for rule 'no_such'"):
        specs.build("no_such", {})


def test_stages_register_their_config_checks():
    assert config_checks.scoring_problems in core_config.CONFIG_CHECKS
    assert stages.REGISTERING  # imported: the registrations above ran
    before = list(core_config.CONFIG_CHECKS)
    core_config.register_check(config_checks.scoring_problems)  # twice is once
    assert before == core_config.CONFIG_CHECKS
