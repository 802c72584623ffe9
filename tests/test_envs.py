"""The conda environments (envs/*.yaml) against the code their rules run, and against pyproject.

With ``snakemake --sdm conda`` every job runs in the environment of its rule's ``conda:``
directive and nothing else is installed there, so a distribution missing from that file kills the
job at import. These tests resolve statically, with ``ast``, what each rule's ``python -m`` module
imports (transitively inside empathy_distill, function-level imports included: most heavy imports
are lazy) and map the third-party imports to distributions with
``importlib.metadata.packages_distributions()``. conda itself is not needed.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import itertools
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from empathy_distill.core.config import load_config, read_yaml

from .conftest import REPO_ROOT
from .workflow_helpers import rule_blocks

PACKAGE = "empathy_distill"
PACKAGE_ROOT = REPO_ROOT / "workflow"
RULES = REPO_ROOT / "workflow" / "rules"
DEMO_OVERLAY = REPO_ROOT / "workflow" / "profiles" / "demo" / "config.demo.yaml"

#: Imports that no environment provides, each with why that is right.
NOT_IN_ANY_ENV = {
    # generate.py raises a ConfigError naming the fix when it is missing.
    "vllm": "optional fast engine (generation.engine: vllm): the `vllm` extra, `install.sh --gpu"
    " --vllm` (pinned in envs/constraints-gpu.txt, resolved in CI by .ci/gpu_resolve.sh)",
}
#: Modules a job reaches only for one endpoint backend (llm/backends/__init__.py imports the
#: backend module of the configured endpoint): rules whose env lacks the backend's dependencies
#: must not run with it (TEACHER_ENV in teacher.smk moves a local teacher to envs/train.yaml).
BACKEND_MODULES = {f"{PACKAGE}.llm.backends.transformers_backend": "transformers"}
#: Pins of envs/constraints-gpu.txt that envs/train.yaml leaves out, each with why.
GPU_ONLY = {"vllm": "the optional `vllm` extra; the conda env uses transformers generation"}
#: Entries of an env file that pyproject.toml does not declare, each with why.
ENV_ONLY = {
    "python": "the interpreter",
    "pip": "installs the pip: list",
    "torchvision": "torch, torchvision and torchaudio must be one matching release",
    "torchaudio": "LLaMA-Factory imports it; must match torch",
}


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    smk: str
    conda: str | None  # the directive's expression, as written
    module: str | None  # the `python -m` module of its command


def parse_rules() -> list[Rule]:
    """Every rule of workflow/rules/*.smk with its conda expression and `python -m` module."""
    rules = []
    for smk in sorted(RULES.glob("*.smk")):
        for name, body in rule_blocks(smk.read_text()):
            conda = re.search(r"^\s+conda:\n\s+(.+)$", body, flags=re.M)
            module = re.search(r"python -m ([\w.]+)", body)
            rules.append(
                Rule(
                    name,
                    smk.name,
                    conda.group(1).strip() if conda else None,
                    module.group(1) if module else None,
                )
            )
    return rules


def env_path(rule: Rule, teacher: dict) -> Path:
    """The env file of a rule's conda directive for a given teacher endpoint: string literals,
    or names assigned (``*_ENV = ...``) at the top level of a .smk file, evaluated in order."""
    namespace: dict = {"TEACHER": teacher}
    for smk in sorted(RULES.glob("*.smk"), key=lambda p: p.name != "common.smk"):
        for name, expression in re.findall(r"^([A-Z_]+_ENV) = (.+)$", smk.read_text(), re.M):
            namespace[name] = eval(expression, {}, namespace)
    relative = eval(rule.conda, {}, namespace)
    return (RULES / relative).resolve()


# --- imports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Imports:
    internal: frozenset[str]  # empathy_distill modules
    external: frozenset[str]  # dotted third-party module names


#: (target module, names taken from it or None for the whole module, optional)
Item = tuple[str, frozenset[str] | None, bool]


@dataclass(frozen=True)
class ModuleInfo:
    """What one module imports at import time, and what each top-level def/class imports when
    it runs (most heavy imports are lazy, inside functions)."""

    top: tuple[Item, ...]
    top_refs: frozenset[str]  # names module-level code uses
    defs: dict[str, tuple[tuple[Item, ...], frozenset[str]]]  # name -> (imports, names used)


def module_file(module: str) -> Path | None:
    base = PACKAGE_ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = {n.id for n in ast.walk(handler.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _is_fallback(node: ast.Try) -> bool:
    """``try: import A / except ImportError: <no raise>``: A is optional, the code works
    without it (the handler's own imports are what it then needs)."""
    return any(
        _catches_import_error(h) and not any(isinstance(n, ast.Raise) for n in ast.walk(h))
        for h in node.handlers
    )


def _imports_of(node: ast.AST, optional: bool = False):
    """(import node, optional) for every import statement under ``node``; ``-m module`` literals
    count as imports (subprocesses of this interpreter: ``[sys.executable, "-m", "snakemake"]``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node, optional
        return
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        for flag, target in itertools.pairwise(values):
            if flag == "-m" and isinstance(target, str):
                yield ast.Import(names=[ast.alias(name=target)]), optional
    if isinstance(node, ast.Try) and _is_fallback(node):
        for statement in (*node.body, *node.orelse):
            yield from _imports_of(statement, True)
        for part in (*node.handlers, *node.finalbody):
            yield from _imports_of(part, optional)
        return
    for child in ast.iter_child_nodes(node):
        yield from _imports_of(child, optional)


def _items(module: str, is_package: bool, node: ast.AST) -> tuple[Item, ...]:
    """The imports under ``node`` as absolute items."""
    items: list[Item] = []
    for statement, optional in _imports_of(node):
        if isinstance(statement, ast.Import):
            items += [(alias.name, None, optional) for alias in statement.names]
            continue
        if statement.level:
            parts = module.split(".")[: None if is_package else -1]
            parts = parts[: len(parts) - (statement.level - 1)]
            base = ".".join(parts + ([statement.module] if statement.module else []))
        else:
            base = statement.module or ""
        if base == "__future__":
            continue
        for alias in statement.names:
            if base.split(".")[0] == PACKAGE:
                if module_file(f"{base}.{alias.name}"):  # `from . import grid`: a submodule
                    items.append((f"{base}.{alias.name}", None, optional))
                else:
                    items.append((base, frozenset({alias.name}), optional))
            else:  # `from google import genai`: the name may be a module of a namespace package
                items.append((f"{base}.{alias.name}", None, optional))
    return tuple(items)


def _names(node: ast.AST) -> frozenset[str]:
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name))


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


@cache
def module_info(module: str) -> ModuleInfo:
    path = module_file(module)
    if path is None:
        raise AssertionError(f"{module}: no such module under {PACKAGE_ROOT}")
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    top: list[Item] = []
    refs: set[str] = set()
    defs = {}
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            used = _names(statement) - {statement.name}
            defs[statement.name] = (_items(module, is_package, statement), used)
            refs |= {n for d in statement.decorator_list for n in _names(d)}
        elif not _is_main_guard(statement):  # the entry module is followed whole anyway
            top += _items(module, is_package, statement)
            refs |= _names(statement)
    return ModuleInfo(tuple(top), frozenset(refs), defs)


def closure(module: str, skip: frozenset[str] = frozenset()) -> Imports:
    """What running ``python -m module`` can import: the module whole, then for every module it
    reaches, that module's import-time imports plus the lazy imports of the functions and
    classes actually taken from it (and of the ones they use, within that module).
    Parent packages' __init__ run too."""
    wanted: dict[str, frozenset[str] | None] = {}  # module -> names taken (None: all)
    external: set[str] = set()
    todo: list[tuple[str, frozenset[str] | None]] = [(module, None)]
    while todo:
        current, names = todo.pop()
        if current in skip:
            continue
        before = wanted.get(current, frozenset())
        if current in wanted and (before is None or (names is not None and names <= before)):
            continue
        wanted[current] = None if names is None or before is None else before | names
        info = module_info(current)
        parts = current.split(".")
        todo += [(".".join(parts[:i]), frozenset()) for i in range(1, len(parts))]
        taken = set(info.defs) if wanted[current] is None else set(wanted[current])
        needed, stack = set(), [*taken, *info.top_refs]
        while stack:  # defs used by what is taken, within this module
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            stack += list(info.defs.get(name, ((), frozenset()))[1])
        items = list(info.top)
        for name in needed & set(info.defs):
            items += info.defs[name][0]
        for target, target_names, optional in items:
            if optional:
                continue
            top = target.split(".")[0]
            if top == PACKAGE:
                in_use = None if target_names is None else frozenset(target_names & needed)
                if target_names is not None and not in_use:
                    in_use = frozenset()
                todo.append((target, in_use))
            elif top not in sys.stdlib_module_names:
                external.add(target)
    return Imports(frozenset(wanted), frozenset(external))


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@cache
def _distribution_files(distribution: str) -> frozenset[str]:
    return frozenset(str(f) for f in metadata.distribution(distribution).files or ())


def distribution_of(module: str) -> str:
    """Distribution providing a dotted module (namespace packages such as ``google`` are
    shared: the one whose files hold the submodule wins)."""
    parts = module.split(".")
    candidates = sorted(set(_packages_distributions().get(parts[0], [])))
    # The longest dotted prefix that one distribution's files hold (the last names of a
    # `from X import name` may be attributes, not modules).
    for size in range(len(parts), 1, -1):
        if len(candidates) <= 1:
            break
        prefix = "/".join(parts[:size])
        holders = [
            d
            for d in candidates
            if any(f.startswith((f"{prefix}/", f"{prefix}.py")) for f in _distribution_files(d))
        ]
        if holders:
            candidates = holders
    if len(set(candidates)) != 1:
        raise AssertionError(
            f"cannot map import {module!r} to one installed distribution (found {candidates});"
            " install the package's dev extras"
        )
    return normalize(candidates[0])


# --- env files and pyproject ---------------------------------------------------------------------


def env_requirements(path: Path) -> dict[str, str]:
    """{normalized name: specifier} of an env file: conda entries and its pip: list."""
    entries = {}
    for dependency in yaml.safe_load(path.read_text())["dependencies"]:
        for item in dependency["pip"] if isinstance(dependency, dict) else [dependency]:
            if item.startswith("-"):  # pip options (--extra-index-url ...)
                continue
            if "://" not in item and re.match(r"^[\w.-]+=[^=]", item):  # conda `python=3.11`
                item = item.replace("=", "==", 1)
            requirement = Requirement(item)
            entries[normalize(requirement.name)] = str(requirement.specifier)
    return entries


def pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + list(project["optional-dependencies"]["train"])
    return {normalize(r.name): r for r in map(Requirement, declared)}


@cache
def shipped_teachers() -> dict[str, dict]:
    """Teacher endpoints of the shipped configs: the paper's and the offline demo's."""
    paper = load_config(REPO_ROOT / "config.yaml")
    demo = load_config(REPO_ROOT / "config.yaml", read_yaml(DEMO_OVERLAY))
    return {"config.yaml": paper["teacher"], "demo": demo["teacher"]}


def missing_distributions(rule: Rule, teacher: dict) -> dict[str, set[str]]:
    """{distribution: imports needing it} that the rule's env file does not list."""
    env = env_path(rule, teacher)
    skip = frozenset(m for m, backend in BACKEND_MODULES.items() if teacher["backend"] != backend)
    listed = env_requirements(env)
    missing: dict[str, set[str]] = {}
    for name in closure(rule.module, skip).external:
        if name.split(".")[0] in NOT_IN_ANY_ENV:
            continue
        distribution = distribution_of(name)
        if distribution not in listed:
            missing.setdefault(distribution, set()).add(name)
    return missing


# --- tests ---------------------------------------------------------------------------------------

JOB_RULES = [r for r in parse_rules() if r.module]


def test_the_rule_parser_sees_the_workflow():
    """Guard against a parser that silently finds nothing: known rules, modules and envs."""
    by_name = {r.name: r for r in JOB_RULES}
    assert len(JOB_RULES) >= 20
    assert by_name["judge_vs_base"].module == "empathy_distill.evaluation.judge"
    assert by_name["train"].conda == '"../../envs/train.yaml"'
    assert by_name["cost"].module == "empathy_distill.cost"
    paper = shipped_teachers()["config.yaml"]
    assert env_path(by_name["split_dataset"], paper) == REPO_ROOT / "envs" / "core.yaml"


def test_every_job_rule_has_a_conda_env():
    assert [r.name for r in JOB_RULES if r.conda is None] == []


def test_import_closure_follows_lazy_and_relative_imports():
    """judge.py imports the LLM layer inside a function and the backends are imported by
    make_backend: the judge still needs both SDKs, and the report needs snakemake (-m)."""
    judge = closure("empathy_distill.evaluation.judge")
    assert "empathy_distill.llm.backends.gemini_backend" in judge.internal
    assert {"openai", "google.genai", "tenacity"} <= {
        n if n == "google.genai" else n.split(".")[0] for n in judge.external
    }
    assert "snakemake" in closure("empathy_distill.evaluation.report_html").external
    # `try: import aiohttp / except ImportError: <fallback>` is optional, not required.
    assert "aiohttp" not in closure("empathy_distill.llm.backends.gemini_backend").external


@pytest.mark.parametrize("rule", JOB_RULES, ids=lambda r: r.name)
@pytest.mark.parametrize("config", ["config.yaml", "demo"])
def test_env_has_every_distribution_its_rule_imports(rule, config):
    teacher = shipped_teachers()[config]
    missing = missing_distributions(rule, teacher)
    env = env_path(rule, teacher).relative_to(REPO_ROOT)
    assert not missing, (
        f"rule {rule.name} ({rule.smk}) runs `python -m {rule.module}` in {env}, which lacks "
        + "; ".join(f"{d} (imported as {', '.join(sorted(i))})" for d, i in sorted(missing.items()))
    )


@pytest.mark.parametrize("env", sorted((REPO_ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_versions_agree_with_pyproject(env):
    """A distribution in both files gets the same specifier, or an env pin pyproject allows."""
    declared = pyproject_requirements()
    python = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    problems = []
    for name, specifier in env_requirements(env).items():
        if name == "python":
            pinned = specifier.removeprefix("==")
            if not Requirement(f"python{python['requires-python']}").specifier.contains(
                Version(pinned + ".0" if pinned.count(".") == 1 else pinned)
            ):
                problems.append(f"python {specifier} outside requires-python")
            continue
        if name in ENV_ONLY:
            continue
        if name not in declared:
            problems.append(f"{name} is not declared in pyproject.toml")
            continue
        want = declared[name].specifier
        if specifier.startswith("=="):
            if not want.contains(specifier[2:], prereleases=True):
                problems.append(f"{name}{specifier} outside pyproject's {name}{want}")
        elif str(want) != specifier:
            problems.append(f"{name}{specifier} differs from pyproject's {name}{want}")
    assert problems == [], f"{env.relative_to(REPO_ROOT)}: " + "; ".join(problems)


def test_train_env_pins_equal_the_gpu_constraints():
    """envs/train.yaml (`snakemake --sdm conda`) and envs/constraints-gpu.txt (`install.sh
    --gpu`) install one training stack: every exact pin of either is the other's."""
    train = {
        name: spec.removeprefix("==")
        for name, spec in env_requirements(REPO_ROOT / "envs" / "train.yaml").items()
        if spec.startswith("==") and name != "python"
    }
    gpu = {}
    for line in (REPO_ROOT / "envs" / "constraints-gpu.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            requirement = Requirement(line.split("#")[0])
            gpu[normalize(requirement.name)] = str(requirement.specifier).removeprefix("==")
    assert {"torch", "torchvision", "torchaudio", "llamafactory"} <= set(train) & set(gpu)
    only_gpu = {n: v for n, v in gpu.items() if n not in train and n not in GPU_ONLY}
    differ = {n: (v, gpu.get(n)) for n, v in train.items() if gpu.get(n) != v}
    assert (differ, only_gpu) == ({}, {}), "train.yaml (pin, constraints-gpu.txt pin) differ"
