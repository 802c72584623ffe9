"""PRIDE's dual-alignment loss terms (torch): cross-entropy, reverse KL, MMD.

Reverse KL(student || teacher) = sum_v p_s(v) (log p_s(v) - log p_t(v)) per response token,
averaged over tokens. It is mode-seeking: the student puts its mass where the teacher (who saw
the privileged prompt) is confident, rather than spreading it over everything the teacher
allows (Gu et al., MiniLLM, 2024). TRL's ``GKDTrainer.generalized_jsd_loss`` with ``beta=1`` is
the same quantity, and the tests use it as the independent reference; the GKD trainer itself
is not used, because it feeds teacher and student the *same* input ids, while here the teacher's
prompt carries the privileged block and the two sequences are aligned by response position
(:mod:`.data`), and its on-policy sampling is no part of PRIDE.

MMD: the biased (V-statistic) estimate of squared maximum mean discrepancy with one Gaussian
kernel (Gretton et al., JMLR 2012), bandwidth by the median heuristic: sigma^2 = median of the
pairwise squared distances of the pooled sample, detached (a bandwidth that moved with the
gradient would let the loss shrink by widening the kernel). The estimate is exactly 0 for two
identical batches and >= 0 always.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def response_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean negative log-likelihood of ``labels`` (n, ) under ``logits`` (n, V) where ``mask``."""
    nll = F.cross_entropy(logits.float(), labels, reduction="none")
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def reverse_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over masked positions of KL(p_student || p_teacher); logits (..., V) aligned."""
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = (log_s.exp() * (log_s - log_t)).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def teacher_top_k(
    teacher_logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What :func:`reverse_kl_topk` needs of the teacher at each position, computed once
    (rule pride_teacher_outputs): (ids (..., k), log-probabilities (..., k), the tail's log-mass
    (...)). The tail is log(1 - sum of the top-k probabilities), taken as the log-sum-exp of the
    other tokens' log-probabilities, which stays exact where that mass is tiny (1 - sum would
    cancel); with k = V there is no tail (-inf)."""
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    k = min(k, log_t.size(-1))
    top, ids = log_t.topk(k, dim=-1)
    if k == log_t.size(-1):
        return ids, top, torch.full(top.shape[:-1], float("-inf"), device=top.device)
    rest = log_t.scatter(-1, ids, float("-inf"))
    return ids, top, torch.logsumexp(rest, dim=-1)


def reverse_kl_topk(
    student_logits: torch.Tensor,
    teacher_ids: torch.Tensor,
    teacher_logprobs: torch.Tensor,
    teacher_tail: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over masked positions of KL(p_student || q_teacher) over k + 1 buckets: the
    teacher's top-k tokens, and "everything else" (the student's mass there is 1 - its mass at
    those k ids; the teacher's is ``teacher_tail``, log-space).

    Merging tokens into one bucket can only lose information, so by the data-processing
    inequality this is <= the full-vocabulary :func:`reverse_kl`, with equality at k = V
    (tests/test_pride_teacher_outputs.py measures the gap). It is what precomputed teacher
    outputs allow: k ids and log-probabilities per position instead of V logits.
    """
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    s_top = log_s.gather(-1, teacher_ids.long())
    per_token = (s_top.exp() * (s_top - teacher_logprobs.float())).sum(-1)
    if teacher_ids.size(-1) < log_s.size(-1):
        # the student's tail by log-sum-exp over the other ids (exact where it is tiny)
        s_tail = torch.logsumexp(log_s.scatter(-1, teacher_ids.long(), float("-inf")), dim=-1)
        per_token = per_token + s_tail.exp() * (s_tail - teacher_tail.float())
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sigma^2 by the median heuristic over the pooled sample (detached; > 0)."""
    pooled = torch.cat([x, y]).detach().float()
    d2 = torch.cdist(pooled, pooled).pow(2)
    off_diagonal = d2[~torch.eye(len(pooled), dtype=torch.bool, device=d2.device)]
    median = off_diagonal.median() if off_diagonal.numel() else d2.new_tensor(1.0)
    return median.clamp(min=1e-6)


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, sigma2: torch.Tensor | None = None) -> torch.Tensor:
    """Biased squared MMD between samples ``x`` (n, d) and ``y`` (m, d), Gaussian kernel."""
    x, y = x.float(), y.float()
    if sigma2 is None:
        sigma2 = median_bandwidth(x, y)

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma2))

    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


class FeatureProjection(torch.nn.Module):
    """Student features to the teacher's width: identity when equal, else a learned linear map.

    The map is trained with the student (it is not part of the adapter, and inference never uses
    it: it only feeds the MMD term).
    """

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.linear = (
            None
            if student_width == teacher_width
            else torch.nn.Linear(student_width, teacher_width, bias=False)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (
            features if self.linear is None else self.linear(features.to(self.linear.weight.dtype))
        )
