"""Reading Gemini's JSON error bodies: the retry hint and the exhausted quota of a 429.

WHY the body: Gemini sends no ``Retry-After`` header on 429. The wait is a
``google.rpc.RetryInfo`` entry of ``error.details`` (``retryDelay``, a protobuf Duration such as
``"17s"``), next to a ``google.rpc.QuotaFailure`` whose ``violations[].quotaId`` names the quota
(https://ai.google.dev/gemini-api/docs/rate-limits, https://ai.google.dev/gemini-api/docs/troubleshooting).
A per-day quota does not come back within any retry budget, so it ends the run at once.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import PermanentError

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class QuotaExhaustedError(PermanentError):
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
    """A QuotaExhaustedError when a 429 body reports a per-day quota, else None."""
    daily = [q for q in quota_ids(body) if "PerDay" in q]
    if not daily:
        return None
    return QuotaExhaustedError(
        f"Gemini per-day quota {', '.join(daily)} is exhausted (HTTP 429); retrying cannot help"
        " before the quota resets. Raise the quota (https://ai.google.dev/gemini-api/docs/"
        "rate-limits) or rerun after the reset: answers received so far are cached."
    )
