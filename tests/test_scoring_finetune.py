"""Fine-tuned rating scorers (``scoring.scorers.<name>.finetune``, issue 13).

Training data: the study's rating prompt byte for byte, the human rating as the answer, never a
test-split response. Fine-tuning: the real ``llamafactory-cli`` on the tiny student (seconds on a
CPU), merged, then scored through the LLM layer and its cache. The DAG and bad keys.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core import grid, runtime, specs
from empathy_distill.core.config import load_config, validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import finetune_local, score, train_data
from empathy_distill.evaluation.scoring import specs as scoring_specs

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SHIPPED = REPO_ROOT / "resources" / "scoring_prompts.json"
RAW = json.loads(SHIPPED.read_text(encoding="utf-8"))
PRICES = REPO_ROOT / "resources" / "prices.yaml"
SUFFIXES = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")


def scorer_config(tmp_path: Path, finetune: dict | None = None, **scorer) -> dict:
    entry = {
        "kind": "rating",
        "variant": "naive_3_dimensions",
        "backend": "transformers",
        "model": "builtin:tiny",
        "max_new_tokens": 4,
        "finetune": {"base_model": "builtin:tiny", **(finetune or {})},
        **scorer,
    }
    return validate_config(
        {
            "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES)},
            "scoring": {"prompts": str(SHIPPED), "scorers": {"r": entry}, "grid": ["r"]},
        }
    )


def study_prompt(variant: str, situation: str, utterance: str, response: str) -> tuple[str, str]:
    """The study's rating messages, its f-string written out (as tests/test_scoring.py)."""
    part = RAW["rating_1_to_3"]
    user = (
        f"{part['instructions'][variant]} \n Situation: '{situation}' \n Speaker Utterance:"
        f" '{utterance}' \n Response: '{response}' "
    )
    return part["system"], user


def write_train_data(tmp_path: Path, split: dict, config: dict) -> tuple[Path, Path, Path]:
    folder = tmp_path / "results/scorers/r"
    out = (folder / "train.jsonl", folder / "train_index.csv", folder / "dataset_info.json")
    argv = ["--spec", specs.dumps(scoring_specs.scorer_train_data(config, "r"))]
    argv += ["--train", str(split["train"]), "--test", str(split["test"])]
    argv += ["--out", str(out[0]), "--index", str(out[1]), "--dataset-info", str(out[2])]
    assert train_data.main(argv) == 0
    return out


# --- training data ------------------------------------------------------------------------------
def test_examples_are_the_studys_prompt_with_the_human_digit(tmp_path, split, train, test_split):
    train_jsonl, index_csv, info = write_train_data(tmp_path, split, scorer_config(tmp_path))
    lines = train_jsonl.read_text(encoding="utf-8").splitlines()
    index = list(csv.DictReader(index_csv.open(encoding="utf-8")))
    assert len(lines) == len(index) == 5 * len(train)
    rows = train.set_index("dialog_id")
    for line, where in zip(lines, index, strict=True):
        record = json.loads(line)
        assert list(record) == ["messages"]  # OpenAI chat fine-tuning JSONL, nothing else
        row = rows.loc[where["dialog_id"]]
        suffix = where["responder"]
        system, user = study_prompt(
            "naive_3_dimensions",
            row["situation"],
            row["speaker_uttr"],
            row[f"response_{suffix}"],
        )
        assert record["messages"] == [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": str(row[f"rating_{suffix}"])},
        ]
        assert where["annotator"] == row[f"annotator_{suffix}"]
    # every (train dialogue, responder) once, in file order
    expected = [(d, s) for d in train["dialog_id"] for s in SUFFIXES]
    assert [(w["dialog_id"], w["responder"]) for w in index] == expected
    # no test-split dialogue, and none of its prompts (the synthetic texts repeat across
    # dialogues: those also built from a train row are left out of the comparison)
    assert not {w["dialog_id"] for w in index} & set(test_split["dialog_id"])

    def prompts(table):
        return {
            study_prompt("naive_3_dimensions", r.situation, r.speaker_uttr, r[f"response_{s}"])
            for _, r in table.iterrows()
            for s in SUFFIXES
        }

    only_test = prompts(test_split) - prompts(train)
    asked = {tuple(t["content"] for t in json.loads(line)["messages"][:2]) for line in lines}
    assert len(only_test) > 50 and not only_test & asked
    # LLaMA-Factory reads the file through this entry (sharegpt, role/content, system first)
    entry = json.loads(info.read_text())["scorer_train"]
    assert entry["file_name"] == "train.jsonl" and entry["tags"]["system_tag"] == "system"


def test_a_train_file_holding_a_test_dialogue_is_refused(tmp_path, split, train, test_split):
    leaky = tmp_path / "leaky.csv"
    pd.concat([train.head(3), test_split.iloc[[4]]]).to_csv(leaky, index=False)
    config = scorer_config(tmp_path)
    argv = [
        "--spec",
        specs.dumps(scoring_specs.scorer_train_data(config, "r")),
        "--train",
        str(leaky),
    ]
    argv += ["--test", str(split["test"]), "--out", str(tmp_path / "t.jsonl")]
    argv += ["--index", str(tmp_path / "i.csv"), "--dataset-info", str(tmp_path / "d.json")]
    assert train_data.main(argv) == 1
    assert not (tmp_path / "t.jsonl").exists()


def test_downsample_balances_classes_and_max_examples_caps(tmp_path, split, train):
    ratings = pd.concat([train[f"rating_{s}"] for s in SUFFIXES]).value_counts()
    smallest = int(ratings.min())
    config = scorer_config(tmp_path, {"balance": "downsample", "seed": 3})
    _, index_csv, _ = write_train_data(tmp_path, split, config)
    kept = pd.read_csv(index_csv)["human_rating"].value_counts()
    assert kept.to_dict() == {r: smallest for r in ratings.index}
    config = scorer_config(tmp_path, {"max_examples": 7})
    _, index_csv, _ = write_train_data(tmp_path, split, config)
    assert len(pd.read_csv(index_csv)) == 7


# --- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "finetune, scorer, named",
    [
        ({"epoch": 3}, {}, "['finetune']: Additional properties are not allowed ('epoch'"),
        ({"balance": "up"}, {}, "['finetune']['balance']: 'up' is not one of"),
        ({"split": "test"}, {}, "['finetune']['split']: 'test' is not one of ['train']"),
        ({"learning_rate": 0}, {}, "['finetune']['learning_rate']: 0 is less than or equal"),
        ({"llamafactory": {"lora_rnak": 4}}, {}, "lora_rnak']: not a LLaMA-Factory training"),
        ({"llamafactory": {"dataset": "x"}}, {}, "['llamafactory']['dataset']: set by the work"),
        ({"llamafactory": {"seed": 1}}, {}, "['llamafactory']['seed']: set by the workflow"),
        ({"base_model": "/m"}, {}, "['finetune']['template']: no LLaMA-Factory chat template"),
        ({}, {"kind": "subfactors", "variant": None}, "only a rating scorer can be fine-tuned"),
        ({}, {"backend": "gemini", "model": "g"}, "backend 'gemini' cannot be fine-tuned"),
        ({"suffix": "e"}, {}, "['finetune']['suffix']: backend openai only"),
        ({"lora_rank": 4}, {"backend": "openai", "model": "m"}, "['lora_rank']: backend transf"),
        ({"llamafactory": {"bf16": True}}, {"backend": "openai", "model": "m"}, "['llamafactory"),
    ],
)
def test_bad_finetune_keys_are_refused_naming_the_key(tmp_path, finetune, scorer, named):
    with pytest.raises(ConfigError) as error:
        scorer_config(tmp_path, finetune, **scorer)
    assert "config['scoring']['scorers']['r']" in str(error.value)
    assert named in str(error.value)


def test_shipped_smollm2_rating_is_defined_not_in_the_grid():
    config = load_config(REPO_ROOT / "config.yaml")
    entry = config["scoring"]["scorers"]["smollm2_rating"]
    assert [entry[k] for k in ("kind", "variant", "backend")] == ["rating", "naive", "transformers"]
    assert entry["finetune"]["base_model"] == "builtin:smollm2_135m"
    assert "smollm2_rating" not in config["scoring"]["grid"]
    args = scoring_specs.finetune_scorer(config, "smollm2_rating")["llamafactory"]
    assert (args["template"], args["model_name_or_path"]) == (
        "smollm2",
        "results/students/smollm2_135m",
    )


# --- the DAG ------------------------------------------------------------------------------------
def test_dry_run_plans_train_data_then_finetune_then_scores(dataset_path, tmp_path):
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        # SFT and DPO only (config.yaml adds PRIDE): the answer sets counted below
        "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft", "dpo"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "scoring": {
            "prompts": str(SHIPPED),
            "scorers": {
                "api_rating": {
                    "kind": "rating",
                    "backend": "openai",
                    "model": "gpt-4o-mini",
                    "finetune": {"base_model": "gpt-4o-mini-2024-07-18"},
                }
            },
            "grid": ["smollm2_rating", "api_rating"],
        },
    }
    result = run_snakemake(tmp_path, overlay, "-n", "-p")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    blocks = {}
    for block in output.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        blocks.setdefault(name, []).append(block)
    for name in ("smollm2_rating", "api_rating"):
        folder = f"results/scorers/{name}"
        [data] = [b for b in blocks["scorer_train_data"] if f"{folder}/train.jsonl" in b]
        assert "--test results/data/test.csv" in data  # read to refuse its dialogues
        [tune] = [b for b in blocks["finetune_scorer"] if f"{folder}/model.json" in b]
        assert f"input: {folder}/train.jsonl" in tune
        # one job per scorer, writing the scores of tiny's base, SFT and DPO answers
        [scores] = [b for b in blocks["score_answers"] if f"results/scores/{name}/" in b]
        outputs = scores.split("output: ", 1)[1].splitlines()[0].split(", ")
        assert len(outputs) == 3 and all(o.startswith(f"results/scores/{name}/") for o in outputs)
        assert f"--scorer-model {folder}/model.json" in scores
        assert f"{folder}/model.json" in scores.split("output:", 1)[0]
        # the human responses of the test split (the agreement table) use the same model
        [people] = [b for b in blocks["score_responses"] if f"results/scores/{name}/" in b]
        assert f"--scorer-model {folder}/model.json" in people
        assert f"{folder}/model.json" in people.split("output:", 1)[0]
    [local] = [b for b in blocks["finetune_scorer"] if "smollm2_rating" in b]
    assert "python -m empathy_distill.evaluation.scoring.finetune_local" in local
    assert "results/students/smollm2_135m/model.safetensors" in local  # the built base model
    [api] = [b for b in blocks["finetune_scorer"] if "api_rating" in b]
    assert "python -m empathy_distill.evaluation.scoring.finetune_openai" in api
    assert "--gpus 0 " in api  # an API fine-tune asks for no GPU (its module accepts only 0)


# --- fine-tune the tiny student, then score with it ---------------------------------------------
#: The tiny student's random lm_head is trained too (LoRA alone barely moves its loss in a few
#: steps), so it learns to answer one digit: the point is the plumbing, not the ratings.
TINY = {
    "epochs": 8.0,
    "learning_rate": 2.0e-2,
    "max_examples": 16,
    "batch_size": 8,
    "llamafactory": {"disable_gradient_checkpointing": True, "additional_target": "lm_head"},
}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, split):
    """The tiny student LoRA-tuned on 24 scorer examples through llamafactory-cli, merged."""
    from empathy_distill.training import tiny_model

    work = tmp_path_factory.mktemp("tuned")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        built = work / "results/students/tiny"
        tiny_model.build_tiny_student(split["train"], built)
        # as the built SmolLM2's (students.smollm2_135m.generation_config): a student's decoding
        # tweak, which would push a scorer off the digits its prompt names (1 to 3)
        generation = json.loads((built / "generation_config.json").read_text())
        generation["repetition_penalty"] = 1.2
        (built / "generation_config.json").write_text(json.dumps(generation))
        config = scorer_config(work, TINY, batch_size=8)
        train_jsonl, _, _ = write_train_data(work, split, config)
        spec = scoring_specs.finetune_scorer(config, "r")
        argv = ["--spec", specs.dumps(spec), "--train", "results/scorers/r/train.jsonl"]
        assert finetune_local.main([*argv, "--out", "results/scorers/r/model.json"]) == 0
        yield work, config, train_jsonl
    finally:
        mp.undo()


def test_model_json_names_a_merged_model_of_the_base(tuned):
    work, _, train_jsonl = tuned
    info = json.loads((work / "results/scorers/r/model.json").read_text())
    assert info["backend"] == "transformers" and info["base_model"] == "builtin:tiny"
    assert info["trained_examples"] == TINY["max_examples"] == len(read_jsonl(train_jsonl))
    folder = work / info["model"]
    assert folder.parent == work / "results/scorers/r/model"
    # named by the digest of its files, so the cache's request keys change with any of them
    files = sorted(p for p in folder.iterdir())
    expected = hashlib.sha256(
        "".join(f"{p.name}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files).encode()
    ).hexdigest()
    assert folder.name == expected[:16] and info["model_sha256"] == expected
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    # the scorer decodes as its sampling says (greedy), with none of the base's decoding tweaks
    generation = json.loads((folder / "generation_config.json").read_text())
    base = json.loads((work / "results/students/tiny/generation_config.json").read_text())
    assert "repetition_penalty" in base
    assert {k: v for k, v in generation.items() if k != "transformers_version"} == {
        k: base[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
    }
    train_yaml = (work / "results/scorers/r/lora/train.yaml").read_text()
    assert "num_train_epochs: 8.0" in train_yaml and "dataset: scorer_train" in train_yaml


def test_scoring_with_the_tuned_model_parses_ratings_and_reruns_from_cache(
    tuned, split, test_split, monkeypatch
):
    from empathy_distill.llm.backends.transformers_backend import TransformersBackend

    work, config, _ = tuned
    monkeypatch.chdir(work)
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
    answers = work / grid.answer_path("s--base")  # the job's one answer set
    rows = [
        {"dialog_id": d, "prompt": "", "answer": a, "generation": {}, "seed": 0}
        for d, a in zip(test_split["dialog_id"], test_split["response_human"], strict=True)
    ]
    write_jsonl(answers, rows)
    spec = scoring_specs.score_answers(config, "r") | {"answer_tags": ["s--base"]}
    argv = ["--spec", specs.dumps(spec), "--test", str(split["test"])]
    argv += ["--scorer-model", "results/scorers/r/model.json"]
    out = work / grid.score_path("r", "s--base")
    assert score.main(argv) == 0
    first = read_jsonl(out)
    out.unlink()
    model = json.loads((work / "results/scorers/r/model.json").read_text())["model"]
    assert len(first) == len(test_split)
    assert {r["model"] for r in first} == {model}
    valid = [r for r in first if r["valid"]]
    assert len(valid) == len(first), [r["raw"] for r in first]
    assert all(r["scores"][0] in (1, 2, 3) for r in valid)

    def no_model(*args, **kwargs):
        raise AssertionError("a rerun must be answered by the cache")

    monkeypatch.setattr(TransformersBackend, "__init__", no_model)
    assert score.main(argv) == 0
    assert read_jsonl(out) == first
