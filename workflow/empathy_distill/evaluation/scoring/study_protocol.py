"""The study's fine-tuning protocol beside the main paper's split: names, paths, settings.

The companion study (Xie et al., arXiv:2412.20264; its ``finetune-gpt-40-mini.py`` at commit
062fd10) fine-tunes ``gpt-4o-mini-2024-07-18`` on 80% of its balanced set
(``unified_balanced_dataset.csv``: 640 responses per rating; ``train_test_split(test_size=0.2,
random_state=42, stratify=rating)``) with ``n_epochs: 4`` and ``learning_rate_multiplier: 0.5``,
then asks the tuned model to rate the other 20% (384 responses). A fine-tuned scorer named in
``scoring.study_protocol.scorers`` is trained that way too (protocol ``study_balanced``), apart
from its own fine-tune on the paper's train split (protocol ``paper_split``), which it keeps.
Names only (no sklearn, no torch): the Snakefile and the job specs import it.
"""

from __future__ import annotations

from ...core.errors import ConfigError
from . import finetune

#: The main paper's train split (rule finetune_scorer) and the study's balanced 80/20 split.
PAPER_SPLIT = "paper_split"
STUDY_BALANCED = "study_balanced"
PROTOCOLS = (PAPER_SPLIT, STUDY_BALANCED)
#: The study's fine-tuning settings (finetune-gpt-40-mini.py: ``hyperparameters``).
STUDY_EPOCHS = 4
STUDY_LR_MULTIPLIER = 0.5
#: Keys of a scorer's finetune block the study's protocol sets itself: its 80% is already
#: balanced and the whole of it is trained on, for the study's epochs.
REPLACED_KEYS = ("split", "balance", "max_examples", "epochs", "learning_rate_multiplier")

FOLDER = finetune.SCORER_DIR + "/" + STUDY_BALANCED
TRAIN_DATA = FOLDER + "/train.jsonl"
TRAIN_INDEX = FOLDER + "/train_index.csv"
DATASET_INFO = FOLDER + "/dataset_info.json"
#: The 20% the tuned scorer rates (the study's test rows, in the split's order).
TEST_ROWS = FOLDER + "/test.csv"
MODEL_JSON = FOLDER + "/model.json"
PREDICTIONS = FOLDER + "/predictions.jsonl"
#: The paper-split model's ratings of the test split's responses (rule score_responses writes
#: them: responses.RESPONSES with split test; a test pins the two equal).
PAPER_PREDICTIONS = "results/scores/{scorer}/responses_test.jsonl"
#: Feature name of a fine-tuned scorer's rows in the reproduction table.
FEATURES = "finetune:{scorer}"


def settings(config: dict) -> dict:
    """``scoring.study_protocol`` (scorers, max_train, max_test), defaults filled."""
    block = config.get("scoring", {}).get("study_protocol") or {}
    return {
        "scorers": list(block.get("scorers") or []),
        "max_train": block.get("max_train"),
        "max_test": block.get("max_test"),
    }


def scorers(config: dict) -> list[str]:
    """Fine-tuned scorers trained and tested on the study's protocol (none: []). Their rows go
    into the reproduction table, so ``scoring.study_reproduction: false`` turns them off too."""
    if not config.get("scoring", {}).get("study_reproduction", True):
        return []
    return settings(config)["scorers"]


def paper_split_scorers(config: dict) -> list[str]:
    """Of those, the ones in ``scoring.grid``: their test-split responses are scored anyway
    (``results/scores/<scorer>/responses_test.jsonl``), so the table gets a paper_split row."""
    grid = config.get("scoring", {}).get("grid", [])
    return [name for name in scorers(config) if name in grid]


def path(template: str, scorer: str) -> str:
    return template.format(scorer=scorer)


def problems(config: dict) -> list[str]:
    """What the schema cannot say about ``scoring.study_protocol``, naming the key."""
    scoring = config.get("scoring", {})
    listed = settings(config)["scorers"]
    where = "config['scoring']['study_protocol']['scorers']"
    found = []
    defined = scoring.get("scorers", {})
    for name in listed:
        scorer = defined.get(name)
        if scorer is None:
            found.append(
                f"{where}: {name!r} is not defined under config['scoring']['scorers']"
                f" (defined: {', '.join(sorted(defined)) or 'none'})"
            )
        elif not finetune.is_finetuned(scorer):
            found.append(
                f"{where}: {name!r} has no finetune block (the study's protocol fine-tunes it)"
            )
    return found


def require(config: dict, scorer: str) -> None:
    if scorer not in scorers(config):
        raise ConfigError(
            f"config['scoring']['study_protocol']['scorers'] does not list {scorer!r}"
            " (or scoring.study_reproduction is false)"
        )
