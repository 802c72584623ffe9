"""A chat fine-tuning file checked locally before anything is uploaded (or paid for).

OpenAI's chat fine-tuning format is JSONL, one ``{"messages": [{role, content}, ...]}`` per
line, at least 10 examples (https://platform.openai.com/docs/guides/fine-tuning, "Preparing
your dataset"; the API rejects fewer with ``invalid_n_examples`` after the upload). Checking here
names the file and line of a problem at once instead of after an upload and a queued job.

Training tokens are estimated as the LLM layer estimates prompts (``pricing.py``: ``ceil(chars /
4)`` per message plus the chat overhead of OpenAI's cookbook), since no tokenizer can be
fetched offline; the job's own ``trained_tokens`` is what is billed and reported afterwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import LLMError
from .pricing import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, approx_tokens

#: The API's documented minimum number of training examples.
MIN_EXAMPLES = 10
ROLES = ("system", "user", "assistant")
#: Default epochs of ``n_epochs: "auto"``, as OpenAI's cookbook "Data preparation and analysis
#: for chat model fine-tuning" computes them: 3 epochs, raised so that epochs x examples >= 100
#: (at most 25) and lowered so that it stays <= 25,000 (at least 1).
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


@dataclass(frozen=True)
class TrainingFile:
    """A validated fine-tuning file: its bytes, their hash, examples and estimated tokens."""

    path: Path
    data: bytes
    sha256: str
    examples: int
    tokens: int


def example_tokens(messages: object, where: str) -> int:
    """Estimated tokens of one example's messages; LLMError naming ``where`` if malformed."""
    if not isinstance(messages, list) or not messages:
        raise LLMError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    tokens = TOKENS_PER_REPLY
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise LLMError(
                f"{where}: messages[{index}] must have a role among {ROLES}, got"
                f" {message.get('role') if isinstance(message, dict) else message!r}"
            )
        content = message.get("content")
        if not isinstance(content, str) or not content:
            raise LLMError(f"{where}: messages[{index}] ({message['role']}) has no text content")
        tokens += approx_tokens(content) + TOKENS_PER_MESSAGE
    if messages[-1]["role"] != "assistant":
        raise LLMError(f"{where}: the last message must be the assistant's answer to learn")
    return tokens


def read_training_file(path: str | Path) -> TrainingFile:
    """Validate ``path`` (chat fine-tuning JSONL) and estimate its tokens; nothing is sent."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise LLMError(f"fine-tuning file not found: {path}") from exc
    examples = tokens = 0
    for number, line in enumerate(data.decode("utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LLMError(f"{where}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or "messages" not in record:
            raise LLMError(f"{where}: expected an object {{'messages': [...]}}")
        tokens += example_tokens(record["messages"], where)
        examples += 1
    if examples < MIN_EXAMPLES:
        raise LLMError(
            f"{path}: {examples} training example(s); OpenAI fine-tuning needs at least"
            f" {MIN_EXAMPLES} (nothing was uploaded)"
        )
    return TrainingFile(path, data, hashlib.sha256(data).hexdigest(), examples, tokens)


def default_epochs(examples: int) -> int:
    """The epochs ``n_epochs: "auto"`` is expected to pick for ``examples`` examples."""
    epochs = TARGET_EPOCHS
    if examples * epochs < MIN_TARGET_EXAMPLES:
        epochs = min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    elif examples * epochs > MAX_TARGET_EXAMPLES:
        epochs = max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return epochs
