"""Reading Gemini Batch Mode jobs leniently: their state names and their result lines.

States. The Gemini API reports ``BATCH_STATE_*`` names; google-genai turns them into
``JobState`` (``JOB_STATE_*``) in ``_transformers.t_job_state`` but passes through, unchanged,
any name its version does not know: 1.22 (our floor) maps no ``BATCH_STATE_EXPIRED`` (added in
1.39). So both spellings of every state are mapped here explicitly, and a name in neither list
stops polling with a message naming it, instead of counting as "still running" for ever. The
lists: google-genai ``types.JobState`` and the API's ``BatchState``
(https://ai.google.dev/api/batch-mode#BatchState).

Results. google-genai validates what it receives only after dropping the fields its models do
not know (``_common._remove_extra_fields`` in ``BaseModel._from_response``), because the API adds
fields before the SDK does (e.g. ``modelStatus``, known to the SDK only from 1.69). Result lines
of a results file never pass through that path, and the SDK's models forbid extra fields, so
:func:`drop_unknown_fields` does the same walk (our own, against pydantic's public
``model_fields``) before validating a line's response.
"""

from __future__ import annotations

import types as pytypes
import typing
from typing import Any

import pydantic
from google.genai import types

from ..errors import PermanentError
from .base import CANCELLED, COMPLETED, EXPIRED, FAILED, RUNNING

#: Every known state name, both spellings, onto the client's states.
#: WHY EXPIRED is "not done" and its unanswered items are resubmitted: an expired job is one the
#: service stopped before answering (the batch-mode guide's job states: pending or running past
#: its window), and Batch Mode bills per token of what it answers, so an item without a result
#: was not paid for. Results the job still lists are read first (those were paid), so only the
#: unanswered items go again, and each resubmission counts against ``max_retries``.
BATCH_STATES: dict[str, str] = {
    **dict.fromkeys(
        (
            "JOB_STATE_UNSPECIFIED",  # the proto default: a job the service has not filled in
            "JOB_STATE_QUEUED",
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_CANCELLING",
            "JOB_STATE_PAUSED",
            "JOB_STATE_UPDATING",
            "BATCH_STATE_UNSPECIFIED",
            "BATCH_STATE_PENDING",
            "BATCH_STATE_RUNNING",
        ),
        RUNNING,
    ),
    "JOB_STATE_SUCCEEDED": COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": COMPLETED,
    "BATCH_STATE_SUCCEEDED": COMPLETED,
    "JOB_STATE_FAILED": FAILED,
    "BATCH_STATE_FAILED": FAILED,
    "JOB_STATE_CANCELLED": CANCELLED,
    "BATCH_STATE_CANCELLED": CANCELLED,
    "JOB_STATE_EXPIRED": EXPIRED,
    "BATCH_STATE_EXPIRED": EXPIRED,
}


class UnknownBatchStateError(PermanentError):
    """A batch reports a state this code does not know: polling stops instead of running on."""


def batch_state(state: str, batch_id: str) -> str:
    """The client's state for a Gemini state name; UnknownBatchStateError for an unknown one."""
    try:
        return BATCH_STATES[state]
    except KeyError:
        raise UnknownBatchStateError(
            f"Gemini batch {batch_id} reports state {state!r}, which this code does not know;"
            " polling stopped rather than waiting on a state that may never change. The batch"
            " stays recorded in the cache: update empathy-distill / google-genai and rerun to"
            " read it (nothing is submitted again)."
        ) from None


def _model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model an annotation refers to (through Optional/Union/Annotated)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, pytypes.UnionType):
        models = [m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None]
        return models[0] if models else None
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _item_model(annotation: Any) -> type[pydantic.BaseModel] | None:
    """For ``list[Model]`` (possibly Optional): Model, else None."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, pytypes.UnionType):
        for arg in typing.get_args(annotation):
            if (found := _item_model(arg)) is not None:
                return found
        return None
    if typing.get_origin(annotation) is list:
        args = typing.get_args(annotation)
        return _model_of(args[0]) if args else None
    return None


def drop_unknown_fields(model: type[pydantic.BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (REST JSON, camelCase or snake_case keys) without the keys that
    ``model`` and its nested models do not declare, at every depth."""
    model.model_rebuild(raise_errors=False)  # resolve forward references of deferred models
    by_key: dict[str, str] = {}
    for name, info in model.model_fields.items():
        by_key[name] = name
        if info.alias:
            by_key[info.alias] = name
    kept: dict[str, Any] = {}
    for key, value in data.items():
        name = by_key.get(key)
        if name is None:
            continue
        annotation = model.model_fields[name].annotation
        nested = _model_of(annotation)
        if isinstance(value, dict) and nested is not None:
            value = drop_unknown_fields(nested, value)
        elif isinstance(value, list) and (item := _item_model(annotation)) is not None:
            value = [drop_unknown_fields(item, v) if isinstance(v, dict) else v for v in value]
        kept[key] = value
    return kept


def parse_response(data: dict[str, Any]) -> types.GenerateContentResponse:
    """A result line's ``response`` as the SDK's model, fields unknown to it dropped first.

    Raises ValueError (pydantic's ValidationError) when what is left is still not valid.
    """
    response = types.GenerateContentResponse
    return response.model_validate(drop_unknown_fields(response, data))
