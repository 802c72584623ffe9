"""Build the offline ``tiny`` student: a two-layer Llama with random weights and a BPE tokenizer.

WHY: the real students (Llama 3.1 8B, Mistral 7B) need a model hub and a GPU. The tiny student
lets the whole workflow (SFT, DPO, generation, judging) run offline on a CPU in seconds, so tests
and the demo exercise the very same code paths. It is a plumbing model: it is never trained to
say anything sensible and its answers are noise.

The tokenizer is a byte-level BPE (as Llama 3's) trained with ``tokenizers`` on the train split's
text, with Llama 3's special tokens and a chat template that renders exactly like LLaMA-Factory's
``llama3`` template, so the tiny student is configured with ``template: llama3`` like the real
Llama student and generation can use the tokenizer's own chat template. Everything is seeded:
building twice from the same CSV gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..core.command import run_cli
from ..core.errors import DatasetError

LOG = logging.getLogger(__name__)

#: Text columns of the dataset the tokenizer learns from (train split only: no test leakage).
TEXT_COLUMNS = ("situation", "speaker_uttr")
RESPONSE_PREFIX = "response_"

BOS = "<|begin_of_text|>"
END_OF_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"
PAD = "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = (BOS, END_OF_TEXT, START_HEADER, END_HEADER, EOT, EOM, PAD)

#: Same rendering as LLaMA-Factory 0.9.5's ``llama3`` template (bos, header, content, eot_id;
#: content not stripped), so training and generation see identical token sequences.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

#: Architecture: tiny on purpose (about 0.3 M parameters; trains in seconds on one CPU core).
VOCAB_SIZE = 2048
HIDDEN_SIZE = 64
INTERMEDIATE_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2
MAX_POSITIONS = 2048
DEFAULT_SEED = 0


def iter_texts(train_csv: str | Path) -> Iterator[str]:
    """Every non-empty text of the train split, in file order (deterministic)."""
    path = Path(train_csv)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise DatasetError(f"train split not found: {path}") from exc
    columns = [c for c in TEXT_COLUMNS if c in table.columns]
    columns += [c for c in table.columns if c.startswith(RESPONSE_PREFIX)]
    if not columns:
        raise DatasetError(
            f"{path}: no text columns to train a tokenizer on (expected {', '.join(TEXT_COLUMNS)} "
            f"and {RESPONSE_PREFIX}*)"
        )
    for row in table[columns].itertuples(index=False):
        for text in row:
            if text.strip():
                yield text


def train_tokenizer(texts: Iterator[str], vocab_size: int = VOCAB_SIZE):
    """A byte-level BPE tokenizer (as Llama 3's) with Llama 3's special tokens.

    Returns a ``transformers`` fast tokenizer with bos/eos/pad set and the chat template attached.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # Like Llama 3's tokenizer: plain encoding prepends <|begin_of_text|>.
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        model_max_length=MAX_POSITIONS,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, seed: int = DEFAULT_SEED):
    """A randomly initialised Llama sized for CPU tests (seeded, float32)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOT),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in (EOT, EOM, END_OF_TEXT)],
        pad_token_id=config.pad_token_id,
    )
    return model


def build_tiny_student(train_csv: str | Path, out: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Train the tokenizer, initialise the model, save both under ``out``; return ``out``."""
    out = Path(out)
    tokenizer = train_tokenizer(iter_texts(train_csv))
    model = build_model(tokenizer, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        "what": "empathy-distill tiny plumbing student (random weights, NOT a language model)",
        "train_csv": str(train_csv),
        "seed": seed,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "tiny_student.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    LOG.info(
        "tiny student written to %s (%d parameters, vocabulary %d)",
        out,
        info["parameters"],
        info["vocab_size"],
    )
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-csv", required=True, help="train split (results/data/train.csv)")
    parser.add_argument("--out", required=True, help="output directory (results/students/tiny)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    return parser


def _run(args: argparse.Namespace) -> None:
    build_tiny_student(args.train_csv, args.out, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
