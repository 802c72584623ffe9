"""Reading Gemini's JSON error bodies: the retry hint, the exhausted quota, billing refusals.

WHY the body: Gemini sends no ``Retry-After`` header on 429. The wait is a
``google.rpc.RetryInfo`` entry of ``error.details`` (``retryDelay``, a protobuf Duration such as
``"17s"``), next to a ``google.rpc.QuotaFailure`` whose ``violations[].quotaId`` names the quota
(https://ai.google.dev/gemini-api/docs/rate-limits, https://ai.google.dev/gemini-api/docs/troubleshooting;
the detail types: https://github.com/googleapis/googleapis/blob/master/google/rpc/error_details.proto).

A per-day quota does not come back within any retry budget, so it ends the run at once, but
only when it is what was violated: a body whose violations also name a per-minute (or other
short-window) quota is a per-minute 429 and is retried after its ``retryDelay``; should the day's
quota be the real cause, the retries run out within ``max_retries``.

Billing refusals never come back by waiting either: a 429 whose message says the prepayment
credits are depleted (Gemini's prepaid billing; "Your prepayment credits are depleted. Please go
to AI Studio at https://ai.studio/projects to manage your project and billing."), a
FAILED_PRECONDITION asking to enable billing (troubleshooting page: free tier not available in
the user's country), or a ``google.rpc.ErrorInfo`` whose reason is ``BILLING_DISABLED``. They
stop at once with the provider's message. The ordinary quota 429 ("You exceeded your current
quota, please check your plan and billing details") is NOT a billing refusal: it names billing
only as advice.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import AccountStoppedError, BillingError

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
#: Messages of billing refusals (matched case-insensitively).
_BILLING_MESSAGE = re.compile(
    r"prepayment credits? (are|is) depleted|enable billing|billing (is )?not enabled"
    r"|billing account .*(disabled|closed|suspended)|spend(ing)? cap",
    re.IGNORECASE,
)
#: ``ErrorInfo.reason`` values of billing refusals (Google APIs' standard reasons).
BILLING_REASONS = frozenset({"BILLING_DISABLED", "BILLING_NOT_ACTIVE"})


class QuotaExhaustedError(AccountStoppedError):
    """A per-day quota is used up: every further request today would get the same 429."""


def _details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def retry_delay(body: Any) -> float | None:
    """Seconds of ``RetryInfo.retryDelay`` in an error body, or None."""
    for detail in _details(body):
        if detail.get("@type") == RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def quota_ids(body: Any) -> list[str]:
    """``quotaId`` of every ``QuotaFailure`` violation in an error body."""
    return [
        str(violation.get("quotaId"))
        for detail in _details(body)
        if detail.get("@type") == QUOTA_FAILURE
        for violation in detail.get("violations") or []
        if isinstance(violation, dict) and violation.get("quotaId")
    ]


def quota_error(body: Any) -> QuotaExhaustedError | None:
    """A QuotaExhaustedError when every quota a 429 body reports violated is a per-day one,
    else None (no QuotaFailure, or a per-minute quota among the violations: retried)."""
    ids = quota_ids(body)
    daily = [q for q in ids if "PerDay" in q]
    if not daily or len(daily) < len(ids):
        return None
    return QuotaExhaustedError(
        f"Gemini per-day quota {', '.join(daily)} is exhausted (HTTP 429); retrying cannot help"
        " before the quota resets. Raise the quota (https://ai.google.dev/gemini-api/docs/"
        "rate-limits) or rerun after the reset: answers received so far are cached."
    )


def billing_error(code: int, message: str, body: Any) -> BillingError | None:
    """A BillingError when the error says the account cannot pay, else None."""
    reasons = {str(d.get("reason")) for d in _details(body) if d.get("@type") == ERROR_INFO}
    if not (reasons & BILLING_REASONS or _BILLING_MESSAGE.search(message or "")):
        return None
    return BillingError(
        f"Gemini refused for billing (HTTP {code}): {message}. Retrying cannot help: fix the"
        " project's billing (https://ai.google.dev/gemini-api/docs/billing) and rerun; answers"
        " received so far are cached."
    )
