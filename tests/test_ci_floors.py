""".ci/sdk_floors.py: the oldest-SDK CI step installs exactly the floors pyproject.toml declares."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("sdk_floors", REPO_ROOT / ".ci" / "sdk_floors.py")
sdk_floors = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sdk_floors)

PYPROJECT = """
[project]
dependencies = [
    "pandas>=2.2,<3",
    "OpenAI >= 1.55.3",
    "google_genai>=1.61,<4",
]
"""


def test_sdks_pinned_to_their_floor_and_nothing_else(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    assert sdk_floors.oldest_requirements(tmp_path / "pyproject.toml") == [
        "pandas>=2.2,<3",
        "openai==1.55.3",
        "google-genai==1.61",
    ]


def test_a_sdk_without_floor_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace(">= 1.55.3", ""))
    with pytest.raises(SystemExit, match="'OpenAI ' has no '>=' floor"):
        sdk_floors.oldest_requirements(tmp_path / "pyproject.toml")


def test_the_repository_floors_are_the_ones_in_pyproject():
    """Both SDKs pinned to their floor, read here with tomllib + packaging (not sdk_floors)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        if req.name in ("openai", "google-genai"):
            [floor] = [s.version for s in req.specifier if s.operator == ">="]
            floors[req.name] = floor
    pins = [r for r in sdk_floors.oldest_requirements(REPO_ROOT / "pyproject.toml") if "==" in r]
    assert pins == [f"{name}=={version}" for name, version in floors.items()]
    assert set(floors) == {"openai", "google-genai"}
