"""A tiny random Llama model and a BPE tokenizer trained on dataset text, built in seconds.

Used by the generation tests and benchmark so they run offline on CPU. The init scale is large
so greedy decoding has clear argmax margins (a random model with the usual 0.02 init produces
near-tied logits, which float noise between batch shapes could flip).
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tokenizer(texts: list[str], vocab_size: int = 800):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


def dataset_texts(dataset_csv: Path, n: int = 300) -> list[str]:
    import pandas as pd

    from empathy_distill.core.prompts import Prompts

    frame = pd.read_csv(dataset_csv, nrows=n)
    prompts = Prompts()
    texts = [prompts.student_train("x", "y"), prompts.student_test_base("x", "y")]
    for column in ("situation", "speaker_uttr", "response_human", "response_chatgpt_empathy"):
        texts += frame[column].fillna("").astype(str).tolist()
    return texts


def build_tiny(dataset_csv: Path, out_dir: Path | None = None, seed: int = 0):
    """(model, tokenizer); saved to ``out_dir`` as an HF model directory when given."""
    tokenizer = build_tokenizer(dataset_texts(dataset_csv))
    model = build_model(len(tokenizer), seed)
    if out_dir is not None:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return model, tokenizer
