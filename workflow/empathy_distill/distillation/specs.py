"""Job specs of the distillation stage's rules (the teacher's jobs), registered with
``core.specs`` (the job contract)."""

from __future__ import annotations

from ..core.specs import Spec, endpoint_identity, llm_files, register


@register("teacher_initial", "teacher_improve")
def teacher(config: dict) -> Spec:
    """Rules teacher_initial and teacher_improve: the teacher's identity, cache, price table."""
    return {"endpoint": endpoint_identity(config["teacher"]), **llm_files(config)}


@register("improve_llm_sources")
def llm_sources(config: dict) -> Spec:
    """Rule improve_llm_sources: the SFT sample (pandas ``sample(n, random_state=seed)``)."""
    return dict(config["distillation"]["improve_llm_sft_sample"])
