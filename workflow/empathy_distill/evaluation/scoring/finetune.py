"""Fine-tuned rating scorers (``scoring.scorers.<name>.finetune``): settings, paths, model.json.

The companion study (Xie et al., arXiv:2412.20264) fine-tunes gpt-4o-mini to give the 1-3
rating. Here any rating scorer can be fine-tuned first: rule ``scorer_train_data`` writes the
training examples (:mod:`.train_data`), rule ``finetune_scorer`` trains (backend transformers:
:mod:`.finetune_local`; backend openai: ``finetune_openai``) and writes ``model.json``, whose
``model`` the scoring jobs then call instead of the configured one (:func:`finetuned_spec`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError
from .prompts import RATING

SCORER_DIR = "results/scorers/{scorer}"
TRAIN_DATA = SCORER_DIR + "/train.jsonl"
#: One line per line of train.jsonl: which response it is (dialog_id, responder, annotator).
TRAIN_INDEX = SCORER_DIR + "/train_index.csv"
DATASET_INFO = SCORER_DIR + "/dataset_info.json"
#: Name of the set in dataset_info.json.
DATASET_KEY = "scorer_train"
MODEL_JSON = SCORER_DIR + "/model.json"
#: Backends the workflow can fine-tune, and the module each one's job runs.
MODULES = {
    "transformers": "empathy_distill.evaluation.scoring.finetune_local",
    "openai": "empathy_distill.evaluation.scoring.finetune_openai",
}
#: Keys every model.json holds (both backends write them).
MODEL_KEYS = ("model", "base_model", "backend", "trained_examples")
#: Keys only a transformers fine-tune uses, and their values when null.
LOCAL_KEYS = ("learning_rate", "lora_rank", "llamafactory", "template")
LOCAL_DEFAULTS = {"learning_rate": 2.0e-4, "batch_size": 8, "lora_rank": 8}
#: Keys only the OpenAI fine-tuning API takes.
OPENAI_KEYS = ("learning_rate_multiplier", "suffix")
#: The key set for each backend, so a key of the other one is an error, not silently ignored.
ONLY_FOR = {"transformers": LOCAL_KEYS, "openai": OPENAI_KEYS}


def local_setting(finetune: dict, key: str):
    """A transformers fine-tune's setting: the config's value, else its default."""
    value = finetune.get(key)
    return LOCAL_DEFAULTS[key] if value is None else value


def set_keys(finetune: dict) -> list[str]:
    """The keys a config actually set (not null, not an empty mapping)."""
    return [k for k, v in finetune.items() if v is not None and v != {}]


def is_finetuned(scorer: dict) -> bool:
    return bool(scorer.get("finetune"))


def base_model(scorer: dict) -> str:
    """The model fine-tuned: ``finetune.base_model``, else the scorer's own ``model``."""
    return scorer["finetune"].get("base_model") or scorer["model"]


def problems(name: str, scorer: dict, students: dict) -> list[str]:
    """What the schema cannot say about a ``finetune`` block, each naming its config key."""
    finetune = scorer.get("finetune")
    if not finetune:
        return []
    where = f"config['scoring']['scorers'][{name!r}]['finetune']"
    found = []
    if scorer["kind"] != RATING:
        found.append(
            f"{where}: only a rating scorer can be fine-tuned (kind is {scorer['kind']!r})"
        )
    if scorer["backend"] not in MODULES:
        found.append(
            f"{where}: backend {scorer['backend']!r} cannot be fine-tuned by the workflow"
            f" (expected one of {', '.join(MODULES)})"
        )
        return found
    for other, keys in ONLY_FOR.items():
        if other != scorer["backend"]:
            found += [
                f"{where}['{key}']: backend {other} only (this scorer's backend is"
                f" {scorer['backend']!r})"
                for key in set_keys(finetune)
                if key in keys and key != "resources"
            ]
    if scorer["backend"] == "transformers":
        try:
            template(scorer, students)
        except ConfigError as exc:
            found.append(str(exc).replace("finetune.template", f"{where}['template']"))
        found += _llamafactory_problems(where, finetune.get("llamafactory") or {})
    return found


def _llamafactory_problems(where: str, extra: dict) -> list[str]:
    from ...training.lf_args_table import load_table
    from ...training.llamafactory_config import MANAGED_KEYS, _key_problem

    arguments = load_table()["arguments"]
    found = []
    for key, value in extra.items():
        if key in MANAGED_KEYS or key in MANAGED_BY_FINETUNE:
            found.append(f"{where}['llamafactory']['{key}']: set by the workflow; remove it")
            continue
        problem = _key_problem(key, value, arguments)
        if problem:
            found.append(f"{where}['llamafactory']['{key}']: {problem}")
    return found


#: LLaMA-Factory keys the finetune block sets under its own names.
MANAGED_BY_FINETUNE = {
    "num_train_epochs": "epochs",
    "learning_rate": "learning_rate",
    "per_device_train_batch_size": "batch_size",
    "lora_rank": "lora_rank",
    "seed": "seed",
}


def template(scorer: dict, students: dict) -> str:
    """LLaMA-Factory template of the base model: ``finetune.template``, else the template of a
    ``students`` entry with the same model."""
    own = scorer["finetune"].get("template")
    if own:
        return own
    model = base_model(scorer)
    for student in students.values():
        if student.get("model") == model and student.get("template"):
            return student["template"]
    raise ConfigError(
        f"finetune.template: no LLaMA-Factory chat template for {model!r} (no students entry"
        " has this model); set it, e.g. template: smollm2"
    )


def read_model_json(path: str | Path) -> dict[str, Any]:
    """A ``model.json`` written by ``finetune_scorer``, checked; a local model must exist."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not found (rule finetune_scorer writes it)") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from exc
    missing = [k for k in MODEL_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")
    if not isinstance(info["model"], str) or not info["model"]:
        raise ConfigError(f"{path}: 'model' must be a non-empty string, got {info['model']!r}")
    if info["backend"] == "transformers" and not (Path(info["model"]) / "config.json").is_file():
        raise ConfigError(
            f"{path}: the fine-tuned model {info['model']} is gone; retrain it"
            " (snakemake -R finetune_scorer)"
        )
    return info


def finetuned_spec(spec: dict[str, Any], model_json: str | Path | None) -> dict[str, Any]:
    """A scoring spec whose endpoint calls the model of ``model_json`` (unchanged if None)."""
    if model_json is None:
        return spec
    info = read_model_json(model_json)
    backend = spec["endpoint"]["backend"]
    if info["backend"] != backend:
        raise ConfigError(
            f"{model_json}: trained for backend {info['backend']!r}, the scorer uses {backend!r}"
        )
    return {**spec, "endpoint": {**spec["endpoint"], "model": info["model"]}}
