"""The job contract's registries: every rule that takes a spec has exactly one registered
builder, every registered builder serves a rule, and a stage's semantic config checks run in
``validate_config`` once the stage is imported (``empathy_distill.stages``, as the Snakefile)."""

from __future__ import annotations

import re

import pytest

from empathy_distill import stages
from empathy_distill.core import config as core_config
from empathy_distill.core import specs
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.scoring import config_checks

from .conftest import REPO_ROOT


def rules_with_a_spec() -> set[str]:
    """Rules whose ``params:`` hold a ``spec`` (read from the rule files, not from the code)."""
    found = set()
    for path in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):
        rule = None
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^rule (\w+):", line)
            if match:
                rule = match.group(1)
            elif rule and re.match(r"^\s+spec=", line):
                found.add(rule)
    return found


def test_every_rule_with_a_spec_has_its_registered_builder_and_no_other():
    expected = rules_with_a_spec()
    assert {"train", "judge_pair", "answer", "cost", "score_answers"} <= expected  # the reader
    assert set(specs.BUILDERS) == expected


def test_a_rule_has_one_builder():
    with pytest.raises(ValueError, match="one rule, one builder"):
        specs.register("judge_pair")(lambda config: {})
    assert specs.BUILDERS["judge_pair"].__module__ == "empathy_distill.evaluation.specs"


def test_an_unregistered_rule_is_a_clear_error():
    with pytest.raises(ConfigError, match="no spec builder is registered for rule 'no_such'"):
        specs.build("no_such", {})


def test_stages_register_their_config_checks():
    assert config_checks.scoring_problems in core_config.CONFIG_CHECKS
    assert stages.REGISTERING  # imported: the registrations above ran
    before = list(core_config.CONFIG_CHECKS)
    core_config.register_check(config_checks.scoring_problems)  # twice is once
    assert before == core_config.CONFIG_CHECKS
