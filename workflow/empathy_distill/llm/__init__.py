"""The LLM layer: one interface for every model call of the workflow (teacher, judges).

``make_client(endpoint_cfg, ...)`` returns a client whose ``complete(requests)`` answers
``ChatRequest``s from a persistent cache, a provider's real-time API, its batch API or a local
model, with retries, rate limits, a budget cap and a cost report (see ``client.py``).
"""

from .client import LLMClient, make_client
from .errors import BudgetExceededError, LLMError
from .request import ChatRequest, ChatResponse, Message

__all__ = [
    "BudgetExceededError",
    "ChatRequest",
    "ChatResponse",
    "LLMClient",
    "LLMError",
    "Message",
    "make_client",
]
