"""The shipped prompt files are byte for byte the papers' texts.

`resources/prompts.json` is the prompts of Xie et al.'s reference code (SIGDIAL 2025) and
`resources/scoring_prompts.json` those of the scoring study (arXiv:2412.20264). Every other test
reads the shipped files, so a new user's clone, which has no copy of the references, runs them;
only this file needs the references (the project's ``../shared/reference/``). Without them it
skips, unless ``EMPATHY_DISTILL_REQUIRE_REFERENCE=1`` (CI runs it that way, after the suite has
run from a copy with no ``../shared``), which turns the skip into a failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO_ROOT, SHARED, skip_or_fail

REFERENCE = SHARED / "reference"


def reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        skip_or_fail(f"the reference text {path} is not there", "EMPATHY_DISTILL_REQUIRE_REFERENCE")
    return path


@pytest.mark.parametrize("name", ["prompts.json", "scoring_prompts.json"])
def test_shipped_prompts_equal_the_reference(name: str) -> None:
    shipped = REPO_ROOT / "resources" / name
    assert shipped.read_bytes() == reference(name).read_bytes(), (
        f"{shipped} differs from {REFERENCE / name}"
    )
