"""LLaMA-Factory's chat templates, as training applied them: generation (``evaluation.generate``)
and PRIDE's loop encode prompts with the template their student was trained with."""

from __future__ import annotations

from typing import Any

from ..core.errors import ConfigError, EmpathyDistillError


def llamafactory_template(tokenizer: Any, name: str) -> Any:
    """LLaMA-Factory's template ``name``, fixing the tokenizer's special tokens as training did."""
    try:
        from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
        from llamafactory.hparams import DataArguments
    except (ImportError, OSError) as exc:  # LLaMA-Factory imports torchaudio at module level
        raise EmpathyDistillError(
            f"cannot import LLaMA-Factory's templates ({exc}). On CPU machines with PyPI's CUDA "
            "build of torchaudio, delete torchaudio's native libraries (see README); "
            "LLaMA-Factory imports torchaudio but never uses it for text."
        ) from exc

    if name not in TEMPLATES:
        raise ConfigError(f"students.*.template: {name!r} is not a LLaMA-Factory template")
    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))
