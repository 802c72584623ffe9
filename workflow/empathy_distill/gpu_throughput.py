"""The GPU throughput table behind ``empathy-distill gpu-hours`` (``resources/gpu_throughput.yaml``:
tokens/s per model and part, its sources and assumptions in the file), checked on reading, and
the rows a gpu-smoke run measured (``results/gpu_smoke.json``) put over the table's."""

from __future__ import annotations

import json
from pathlib import Path

from .core.config import read_yaml
from .core.errors import ConfigError

DEFAULT_TABLE = "resources/gpu_throughput.yaml"
RATES = ("lora_sft", "lora_dpo", "pride_student", "forward", "generate_transformers")
RATE_KEYS = (*RATES, "generate_vllm", "load_s")


def load_table(path: str | Path) -> dict[str, dict[str, float]]:
    """model id -> {rate key: value} of a throughput table, checked."""
    raw = read_yaml(path) or {}
    models = raw.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: no 'models' mapping (model id -> tokens/s per part)")
    table: dict[str, dict[str, float]] = {}
    for model, rows in models.items():
        for key, value in (rows or {}).items():
            if key == "params_b":
                continue
            if key not in RATE_KEYS:
                raise ConfigError(f"{path}: models.{model}.{key}: unknown; use one of {RATE_KEYS}")
            if not isinstance(value, (int, float)) or value < 0 or (value == 0 and key != "load_s"):
                raise ConfigError(f"{path}: models.{model}.{key}: {value!r} is not a positive rate")
        table[model] = {k: float(v) for k, v in rows.items() if k != "params_b"}
    return table


def apply_measured(table: dict[str, dict[str, float]], path: str | Path) -> list[str]:
    """Replace the rows ``results/gpu_smoke.json`` measured for its own model; return them."""
    smoke = json.loads(Path(path).read_text(encoding="utf-8"))
    model = smoke.get("model_id")
    if not model:
        raise ConfigError(f"{path}: no model_id (written by the gpu-smoke profile's summary)")
    rows = table.setdefault(model, {})
    replaced = []
    training = smoke.get("training", {})
    for stage, key in (("sft", "lora_sft"), ("dpo", "lora_dpo")):
        if "tokens_per_s" in training.get(stage, {}):
            rows[key] = float(training[stage]["tokens_per_s"])
            replaced.append(key)
    generation = smoke.get("generation", {})
    if "tokens_per_s_wall" in generation:
        key = f"generate_{generation.get('engine', 'transformers')}"
        rows[key] = float(generation["tokens_per_s_wall"])
        replaced.append(key)
    return [f"{model}: {key}" for key in replaced]


def rate(table: dict[str, dict[str, float]], model: str, key: str) -> float:
    value = table.get(model, {}).get(key)
    if value is None:
        raise ConfigError(
            f"the throughput table has no {key} for {model}: add it to the table (--table) or"
            " measure it (--measured results/gpu_smoke.json of a smoke run on that model)"
        )
    return value
