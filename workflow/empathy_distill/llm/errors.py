"""Errors of the LLM layer.

``LLMError`` is for the researcher (it names the request); the two private classes steer the
retry loop: transient errors are retried with backoff, permanent ones are not.
"""

from __future__ import annotations

from ..core.errors import EmpathyDistillError


class LLMError(EmpathyDistillError):
    """An answer could not be obtained (after retries), or the layer is misconfigured."""


class BudgetExceededError(LLMError):
    """Going on would spend more than ``llm.budget_usd``; nothing more was sent."""


class TransientError(Exception):
    """Worth retrying (connection error, timeout, 408/409/429/5xx, malformed body)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Retrying cannot help (400, 401, 403, 404 ...)."""


class AccountStoppedError(PermanentError):
    """Every further request on this account would fail the same way (no credit left, billing
    off, a per-day quota used up): the backend stops sending at once and says why."""


class BillingError(AccountStoppedError):
    """The provider refuses for billing: no credit or quota left on the account (OpenAI
    ``insufficient_quota``, Gemini depleted prepayment or billing not enabled)."""


class ServerWaitTooLongError(PermanentError):
    """The server asked to wait longer than ``llm.retry.max_wait_s``: retrying earlier than it
    asked would only fail again, so the request stops with the server's wait in the message."""
