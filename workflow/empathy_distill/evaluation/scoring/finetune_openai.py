"""The ``finetune_scorer`` job for ``backend: openai``: a rating scorer fine-tuned by OpenAI.

As the companion study (Xie et al. 2024, arXiv:2412.20264) fine-tunes gpt-4o-mini to give the
1-3 empathy rating: the training file (chat JSONL from ``scorer_train_data``) is checked locally,
the cost projected and held against ``llm.budget_usd``, then uploaded, a job created and polled
(``llm/finetune.py``, resumable: a rerun never uploads or creates twice). The result, the
fine-tuned model's name, goes to ``model.json``::

    {"model": "ft:gpt-4o-mini-2024-07-18:org::id", "base_model": ..., "backend": "openai",
     "job_id": ..., "trained_tokens": ..., "trained_examples": ...}

The spec (``--spec``): ``scorer`` (its name: where its operational keys sit in the runtime
part), ``endpoint`` (``backend: openai``, ``model`` = the base model, ``base_url``),
``finetune`` (the block of the scorer, keys in :data:`HYPERPARAMETERS` and :data:`DATA_KEYS`),
``cache_dir`` and ``price_table``. The API key comes from the environment only
(``OPENAI_API_KEY`` or the scorer's ``api_key_env``).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...core import runtime, specs
from ...core.atomic import write_json
from ...core.command import run_cli
from ...core.config import resolve_resource
from ...core.errors import ConfigError

#: ``finetune`` keys sent to the API: config key -> (API name, where it goes).
HYPERPARAMETERS = {
    "epochs": "n_epochs",
    "n_epochs": "n_epochs",
    "batch_size": "batch_size",
    "learning_rate_multiplier": "learning_rate_multiplier",
}
JOB_KEYS = ("seed", "suffix")
#: ``finetune`` keys that shaped the training file (rule ``scorer_train_data``) or name the base
#: model: nothing more to send.
DATA_KEYS = ("base_model", "split", "balance", "max_examples")
#: The API's limit on ``suffix`` (``jobs.create``, https://platform.openai.com/docs/api-reference/fine-tuning/create).
MAX_SUFFIX = 64


def _where(spec: dict[str, Any], key: str) -> str:
    return f"scoring.scorers.{spec.get('scorer', '?')}.finetune.{key}"


def _positive(value: Any, where: str, kind: type) -> Any:
    """A positive int/float, or None for ``auto``/null (the API chooses)."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, kind | int) or value <= 0:
        raise ConfigError(f"{where} must be a positive {kind.__name__} or 'auto', got {value!r}")
    return value


def fine_tune_request(spec: dict[str, Any]) -> Any:
    """The FineTuneRequest of a spec; unknown or malformed ``finetune`` keys are refused."""
    from ...llm.finetune import FineTuneRequest

    endpoint = spec["endpoint"]
    if endpoint.get("backend") != "openai":
        raise ConfigError(
            f"scoring.scorers.{spec.get('scorer', '?')}: OpenAI fine-tuning needs backend"
            f" 'openai', got {endpoint.get('backend')!r}"
        )
    block = dict(spec.get("finetune") or {})
    unknown = sorted(set(block) - set(HYPERPARAMETERS) - set(JOB_KEYS) - set(DATA_KEYS))
    if unknown:
        raise ConfigError(
            f"{_where(spec, unknown[0])}: not a setting of OpenAI fine-tuning; known:"
            f" {', '.join(sorted({*HYPERPARAMETERS, *JOB_KEYS, *DATA_KEYS}))}"
        )
    if "epochs" in block and "n_epochs" in block:
        raise ConfigError(f"{_where(spec, 'epochs')}: give epochs or n_epochs, not both")
    hyper: dict[str, Any] = {}
    for key, name in HYPERPARAMETERS.items():
        if key in block:
            kind = float if name == "learning_rate_multiplier" else int
            value = _positive(block[key], _where(spec, key), kind)
            if value is not None:
                hyper[name] = value
    seed = block.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"{_where(spec, 'seed')} must be an integer, got {seed!r}")
    suffix = block.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not 0 < len(suffix) <= MAX_SUFFIX):
        raise ConfigError(
            f"{_where(spec, 'suffix')} must be a string of 1 to {MAX_SUFFIX} characters"
        )
    base = block.get("base_model") or endpoint["model"]
    if not isinstance(base, str) or base.startswith(("builtin:", "ft:")):
        raise ConfigError(
            f"{_where(spec, 'base_model')}: {base!r} is not an OpenAI base model to fine-tune"
            " (e.g. gpt-4o-mini-2024-07-18)"
        )
    return FineTuneRequest(base, hyper, seed, suffix)


def fine_tune(
    spec: dict[str, Any],
    run: dict[str, Any] | None,
    train: str | Path,
    out: str | Path,
    cost_report: str | Path | None = None,
    *,
    retry_failed: bool = False,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    hook: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune (or resume) the spec's scorer on ``train``; write and return model.json."""
    import asyncio

    import openai

    from ...llm.backends import _require_key
    from ...llm.cache import ResponseCache
    from ...llm.endpoint import normalize_endpoint
    from ...llm.finetune import FineTuner
    from ...llm.finetune_data import read_training_file
    from ...llm.pricing import PriceTable

    request = fine_tune_request(spec)
    where = ("scoring", "scorers", spec.get("scorer", ""))
    endpoint = normalize_endpoint(runtime.endpoint(spec["endpoint"], run or {}, *where))
    price = PriceTable.load(resolve_resource(spec["price_table"])).fine_tuning_price(
        request.base_model
    )
    training = read_training_file(train)
    key = _require_key(endpoint)

    async def go() -> Any:
        client = openai.AsyncOpenAI(
            api_key=key,
            base_url=endpoint.get("base_url"),
            max_retries=0,  # retries are ours (llm/retry.py), honouring Retry-After
            timeout=float(endpoint["timeout_s"]),
        )
        tuner = FineTuner(
            client,
            ResponseCache(spec["cache_dir"]),
            price,
            budget_usd=runtime.budget_usd(run or {}),
            max_retries=int(endpoint["max_retries"]),
            poll_interval_s=float(endpoint["poll_interval_s"]),
            cost_report=cost_report,
            desc=f"fine-tune scorer {spec.get('scorer', request.base_model)}",
            sleep=sleep or asyncio.sleep,
            hook=hook,
        )
        try:
            return await tuner.run(training, request, retry_failed=retry_failed)
        finally:
            await client.close()

    result = asyncio.run(go())
    model = {
        "model": result.model,
        "base_model": result.base_model,
        "backend": "openai",
        "job_id": result.job_id,
        "trained_tokens": result.trained_tokens,
        "trained_examples": result.trained_examples,
    }
    write_json(out, model, indent=2, sort_keys=True)
    return model


def spec_from_config(config: dict[str, Any], scorer: str) -> dict[str, Any]:
    """By hand (``--config``): the spec of scorer ``scorer`` of the config."""
    defined = config.get("scoring", {}).get("scorers", {})
    if scorer not in defined:
        raise ConfigError(f"config['scoring']['scorers'] has no scorer {scorer!r}")
    return {
        "scorer": scorer,
        "endpoint": specs.endpoint_identity(defined[scorer]),
        "finetune": defined[scorer].get("finetune") or {},
        "cache_dir": config["llm"]["cache_dir"],
        "price_table": config["llm"]["price_table"],
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fine-tune a rating scorer through OpenAI.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--train", required=True, help="chat fine-tuning JSONL")
    parser.add_argument("--out", required=True, help="model.json to write")
    parser.add_argument("--cost-report", help="CSV the training cost is appended to")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="create a new job when the recorded one failed or was cancelled",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        choices=[0],
        default=0,
        help="rule finetune_scorer's resources.gpu: always 0 (the API trains; one command line"
        " serves both backends)",
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not args.scorer:
        raise ConfigError("--config needs --scorer (a key of config.scoring.scorers)")
    spec, run = specs.from_args(
        args, lambda config: spec_from_config(config, args.scorer), with_runtime=True
    )
    model = fine_tune(
        spec, run, args.train, args.out, args.cost_report, retry_failed=args.retry_failed
    )
    print(
        f"{args.out}: {model['model']} (job {model['job_id']}, {model['trained_tokens']}"
        f" trained tokens, {model['trained_examples']} examples)"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
