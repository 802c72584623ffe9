"""Run the real workflow (snakemake CLI) in a scratch directory for rule-level tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from empathy_distill.core import grid

from .conftest import REPO_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: Rules defined in a loop (``rule:`` and a ``name:`` expression): the expression -> every name
#: it takes (workflow/rules/judge.smk defines one judge rule per comparison kind).
LOOP_RULE_NAMES = {"grid.judge_rule(_kind)": grid.JUDGE_RULES}
_RULE = re.compile(r"^( *)rule(?: (\w+))?:\n", flags=re.M)


def rule_blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of every rule of a .smk file's text, read as text: ``rule NAME:``, or a rule
    of a loop (``rule:`` named by an expression of ``LOOP_RULE_NAMES``), once per name it takes.
    An unnamed rule with another name expression is an error, never skipped."""
    blocks = []
    for match in _RULE.finditer(text):
        indent = len(match.group(1))
        rest = text[match.end() :]
        # the body: up to the next non-blank line indented no deeper than the rule itself
        end = re.search(rf"^ {{0,{indent}}}\S", rest, flags=re.M)
        body = rest[: end.start()] if end else rest
        if match.group(2):
            blocks.append((match.group(2), body))
            continue
        named = re.search(r"^\s+name:\n\s+(.+)$", body, flags=re.M)
        expression = named.group(1).strip() if named else None
        if expression not in LOOP_RULE_NAMES:
            raise ValueError(f"a rule named by {expression!r}: add it to LOOP_RULE_NAMES")
        blocks += [(name, body) for name in LOOP_RULE_NAMES[expression]]
    return blocks


def write_overlay(workdir: Path, overlay: dict) -> Path:
    """Config overlay with absolute paths to shipped resources, so rules run in ``workdir``."""
    overlay = {"prompts": str(REPO_ROOT / "resources" / "prompts.json"), **overlay}
    price_table = str(REPO_ROOT / "resources" / "prices.yaml")
    overlay["llm"] = {"price_table": price_table, **overlay.get("llm", {})}
    scoring_prompts = str(REPO_ROOT / "resources" / "scoring_prompts.json")
    overlay["scoring"] = {"prompts": scoring_prompts, **overlay.get("scoring", {})}
    path = workdir / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def run_snakemake(
    workdir: Path, overlay: dict, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``snakemake -s REPO/Snakefile -d workdir --configfile REPO/config.yaml overlay ...``."""
    workdir.mkdir(parents=True, exist_ok=True)
    overlay_path = write_overlay(workdir, overlay)
    command = [
        *SNAKEMAKE,
        "-s",
        str(REPO_ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(REPO_ROOT / "config.yaml"),
        str(overlay_path),
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )
