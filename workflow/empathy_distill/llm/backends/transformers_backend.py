"""A local Hugging Face model answering chat requests in-process, in padded batches.

WHY: lets the whole teacher/judge pipeline run offline or with an open-weights teacher, with the
same cache and resume semantics as the paid APIs. Prompts are rendered with the tokenizer's chat
template when it has one; batches share their common prefix (``local_decoding``); only the newly
generated tokens are decoded.
"""

from __future__ import annotations

from typing import Any

from ..errors import LLMError
from ..request import Answer, ChatRequest
from .base import Backend, usage_dict
from .local_decoding import decode_batches


class TransformersBackend(Backend):
    name = "transformers"
    local = True

    def __init__(
        self,
        model: str,
        max_new_tokens: int = 256,
        batch_size: int = 8,
        *,
        revision: str | None = None,
        dtype: str | None = None,
        device_map: str | None = None,
    ) -> None:
        """``revision``, ``dtype`` ("bfloat16", "float32"...) and ``device_map`` ("auto": layers
        spread over the GPUs; "cuda") are for callers that place a large model themselves (PRIDE's
        teacher writing its reasoning); left out, the model loads on the CPU in its default dtype.
        """
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise LLMError(
                "backend 'transformers' needs the training extras: pip install"
                " 'empathy-distill[train]'"
            ) from exc
        self.torch = torch
        self.model_name = model
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        try:
            placement: dict[str, Any] = {"revision": revision} if revision else {}
            if dtype:
                placement["dtype"] = getattr(torch, dtype)
            if device_map:
                placement["device_map"] = device_map
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(model, **placement)
        except OSError as exc:
            raise LLMError(f"cannot load local model {model!r}: {exc}") from exc
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _render(self, request: ChatRequest) -> str:
        messages = [m.as_dict() for m in request.messages]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join([*turns, "Assistant:"])

    def _generation_kwargs(self, sampling: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(
                sampling.get("max_new_tokens", sampling.get("max_tokens", self.max_new_tokens))
            ),
        }
        temperature = sampling.get("temperature")
        do_sample = bool(sampling.get("do_sample", temperature not in (None, 0, 0.0)))
        kwargs["do_sample"] = do_sample
        if do_sample:
            kwargs["temperature"] = float(temperature if temperature is not None else 1.0)
            if "top_p" in sampling:
                kwargs["top_p"] = float(sampling["top_p"])
        return kwargs

    def generate_many(self, requests: list[ChatRequest]) -> list[Answer]:
        """Answer requests sharing one sampling setting in batches of ``batch_size``
        (``local_decoding``: sorted by length, their common prefix prefilled once)."""
        if not requests:
            return []
        sampling = requests[0].sampling
        prompts = [
            self.tokenizer(self._render(r), add_special_tokens=False)["input_ids"] for r in requests
        ]

        def seed(_: list[int]) -> None:
            if "seed" in sampling:
                self.torch.manual_seed(int(sampling["seed"]))

        new_ids = decode_batches(
            self.model,
            prompts,
            self.batch_size,
            self.tokenizer.pad_token_id,
            before_batch=seed,
            **self._generation_kwargs(sampling),
        )
        special = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        answers: list[Answer] = []
        for request, prompt, ids in zip(requests, prompts, new_ids, strict=True):
            produced = len(ids)
            while produced and ids[produced - 1] in special:
                produced -= 1
            text = self.tokenizer.decode(ids[:produced], skip_special_tokens=True)
            answers.append(
                Answer(
                    text=text.strip(),
                    model=request.model,
                    usage=usage_dict(len(prompt), produced),
                )
            )
        return answers
