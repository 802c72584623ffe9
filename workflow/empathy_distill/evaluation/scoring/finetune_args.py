"""The LLaMA-Factory arguments of a transformers scorer's fine-tune, for its job's spec.

Apart from :mod:`.finetune_local` (the job: torch, peft, LLaMA-Factory) so that building the
spec at planning time, in every rule's environment, imports none of them.
"""

from __future__ import annotations

import copy
from typing import Any

from . import finetune, study_protocol
from .finetune import DATASET_KEY

#: Where the LoRA adapter of scorer ``{scorer}`` is trained to (the study's protocol: below
#: its own folder).
ADAPTER_DIR = finetune.SCORER_DIR + "/lora"
FOLDERS = {
    study_protocol.PAPER_SPLIT: finetune.SCORER_DIR,
    study_protocol.STUDY_BALANCED: study_protocol.FOLDER,
}


def train_args(
    config: dict, scorer: str, protocol: str = study_protocol.PAPER_SPLIT
) -> dict[str, Any]:
    """The complete LLaMA-Factory arguments of the scorer's SFT (as train.yaml shows them);
    on the study's protocol its folder and the study's 4 epochs."""
    from ...core.students import resolve_model
    from ...training.llamafactory_config import EXPLICIT_DEFAULTS, ordered

    entry = config["scoring"]["scorers"][scorer]
    settings = entry["finetune"]
    base = finetune.base_model(entry)
    args: dict[str, Any] = {
        "model_name_or_path": resolve_model({"model": base}),
        "stage": "sft",
        "do_train": True,
    }
    args |= copy.deepcopy(EXPLICIT_DEFAULTS)
    args |= {
        "lora_rank": finetune.local_setting(settings, "lora_rank"),
        "lora_alpha": 2 * finetune.local_setting(settings, "lora_rank"),
        "learning_rate": float(finetune.local_setting(settings, "learning_rate")),
        "num_train_epochs": float(
            study_protocol.STUDY_EPOCHS
            if protocol == study_protocol.STUDY_BALANCED
            else settings["epochs"]
        ),
        "per_device_train_batch_size": finetune.local_setting(settings, "batch_size"),
        "seed": settings["seed"],
        "logging_steps": 1,  # a few dozen steps: log every one
    }
    args |= copy.deepcopy(settings.get("llamafactory") or {})
    folder = FOLDERS[protocol].format(scorer=scorer)
    args |= {
        "template": finetune.template(entry, config.get("students", {})),
        "dataset": DATASET_KEY,
        "dataset_dir": folder,
        "output_dir": f"{folder}/lora",
    }
    return ordered(args)
