"""OpenAI fine-tuning of a chat model: upload -> job -> poll -> fine-tuned model id, resumable.

API: files (https://platform.openai.com/docs/api-reference/files/create, purpose
``fine-tune``) and fine-tuning jobs (https://platform.openai.com/docs/api-reference/fine-tuning:
create, retrieve, list); SDK: ``openai/resources/fine_tuning/jobs/jobs.py``,
``openai/types/fine_tuning/fine_tuning_job.py``.

WHY the state: a job costs money and takes hours, so every step is recorded in the cache
(``finetune_jobs`` table, keyed by the hash of the training file's bytes, the base model and
the hyperparameters) BEFORE and AFTER it is taken, the way batches are (``cache.py``):

    uploading (file name) -> uploaded (file id) -> creating (tag) -> created (job id)
    -> succeeded | failed | cancelled

A rerun after a kill at any point continues from the record: an upload whose id was not saved
is found again by its file name (``files.list``), a job whose id was not saved by its training
file and tag (``fine_tuning.jobs.list``), a running job is polled again. A create whose reply
was lost (5xx, dropped connection) is looked up the same way before it is retried. So one file
is uploaded and one job created per key, whatever happens.

The SDK floor (openai 1.55.3) has no ``metadata`` argument on ``jobs.create`` and no metadata
filter on ``jobs.list``: both go through ``extra_body`` / ``extra_query``, which every 1.x SDK
passes on as given; the lookup relies on the job's ``training_file`` (a documented field), the
tag only narrows it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from .backends.openai_backend import _translate
from .budget import SharedBudget
from .cache import ResponseCache
from .errors import LLMError, PermanentError, TransientError
from .finetune_data import TrainingFile, default_epochs
from .ledger import append_cost_row
from .pricing import FineTuningPrice
from .request import canonical_json
from .retry import with_retries

log = logging.getLogger("empathy_distill.llm")

#: Metadata key our jobs carry (value: the job key), and the purpose of training files.
TAG_METADATA = "empathy_distill_ft"
PURPOSE = "fine-tune"
#: Terminal job states (FineTuningJob.status).
SUCCEEDED = "succeeded"
TERMINAL = (SUCCEEDED, "failed", "cancelled")
#: Longest wait between two polls of a job whose status did not change.
MAX_POLL_S = 600.0

#: hook(point): called at each step boundary (tests crash the flow there).
Hook = Callable[[str], None]


@dataclass(frozen=True)
class FineTuneRequest:
    """What shapes the fine-tuned model besides the data: base model and hyperparameters.

    ``hyperparameters`` holds only what is set (``n_epochs``, ``batch_size``,
    ``learning_rate_multiplier``); the API chooses the rest ("auto").
    """

    base_model: str
    hyperparameters: dict[str, Any]
    seed: int | None = None
    suffix: str | None = None

    def key(self, training: TrainingFile) -> str:
        identity = {
            "train_sha256": training.sha256,
            "base_model": self.base_model,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
            "suffix": self.suffix,
        }
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()

    def epochs(self, training: TrainingFile) -> int:
        """Epochs the job will train: as set, or what ``auto`` picks (``default_epochs``)."""
        n_epochs = self.hyperparameters.get("n_epochs")
        return int(n_epochs) if n_epochs is not None else default_epochs(training.examples)


@dataclass(frozen=True)
class FineTuneResult:
    model: str
    base_model: str
    job_id: str
    trained_tokens: int
    trained_examples: int
    cost_usd: float


def projected_cost(training: TrainingFile, request: FineTuneRequest, price: FineTuningPrice):
    """(training tokens, USD): estimated file tokens x epochs x the training price."""
    tokens = training.tokens * request.epochs(training)
    return tokens, price.training_cost(tokens)


class FineTuner:
    """Runs one fine-tuning request to its end, recording each step in ``cache``."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        cache: ResponseCache,
        price: FineTuningPrice,
        *,
        budget_usd: float | None = None,
        max_retries: int = 8,
        poll_interval_s: float = 60.0,
        cost_report: str | Path | None = None,
        desc: str = "fine-tune",
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        hook: Hook | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.price = price
        self.budget_usd = budget_usd
        self.max_retries = max_retries
        self.poll_interval_s = poll_interval_s
        self.cost_report = Path(cost_report) if cost_report else None
        self.desc = desc
        self.sleep = sleep
        self.hook = hook or (lambda point: None)

    # Steps -----------------------------------------------------------------------------------
    async def _step(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        """One API call with retries (429/5xx, honouring Retry-After); what still fails is an
        LLMError naming the step."""

        async def attempt() -> Any:
            try:
                return await call()
            except openai.OpenAIError as exc:
                raise _translate(exc) from exc

        try:
            return await with_retries(attempt, self.max_retries, sleep=self.sleep)
        except (TransientError, PermanentError) as exc:
            raise LLMError(
                f"{self.desc}: {what} failed: {type(exc).__name__}: {exc}\nEvery step so far is"
                " recorded in the cache; rerun to resume (nothing is uploaded or created twice)."
            ) from exc

    def _save(self, state: dict[str, Any], *, release: bool = False, **changes: Any) -> None:
        """Record the state; ``release``: drop the job's budget reservation in the same write."""
        state.update(changes)
        self.cache.save_finetune_state(
            state["key"], state, float(state.get("cost_usd") or 0), release=release
        )

    async def _find_upload(self, name: str, size: int) -> str | None:
        async for item in self.client.files.list(purpose=PURPOSE):
            if item.filename == name and item.bytes == size:
                return item.id
        return None

    async def _upload(self, state: dict[str, Any], training: TrainingFile) -> str:
        name = state["upload_name"]
        tried = state["step"] == "uploading"  # an earlier run may have uploaded it
        self._save(state, step="uploading")

        async def attempt() -> str:
            nonlocal tried
            if tried:
                found = await self._find_upload(name, len(training.data))
                if found is not None:
                    log.info("%s: training file %s was uploaded before", self.desc, found)
                    return found
            tried = True
            upload = await self.client.files.create(file=(name, training.data), purpose=PURPOSE)
            return upload.id

        file_id = await self._step(attempt, f"uploading {training.path}")
        self.hook("uploaded")
        self._save(state, step="uploaded", file_id=file_id)
        self.hook("upload_saved")
        return file_id

    async def _find_job(self, state: dict[str, Any]) -> str | None:
        jobs = self.client.fine_tuning.jobs.list(
            limit=100, extra_query={f"metadata[{TAG_METADATA}]": state["key"]}
        )
        async for job in jobs:
            tag = (getattr(job, "metadata", None) or {}).get(TAG_METADATA)
            if job.training_file == state["file_id"] and tag in (None, state["key"]):
                return job.id
        return None

    async def _create(self, state: dict[str, Any], request: FineTuneRequest) -> str:
        tried = state["step"] == "creating"  # an earlier run may have created it
        self._save(state, step="creating")
        options: dict[str, Any] = {}
        if request.hyperparameters:
            options["hyperparameters"] = request.hyperparameters
        if request.seed is not None:
            options["seed"] = request.seed
        if request.suffix is not None:
            options["suffix"] = request.suffix

        async def attempt() -> str:
            nonlocal tried
            if tried:
                found = await self._find_job(state)
                if found is not None:
                    log.info("%s: job %s was created before its id was saved", self.desc, found)
                    return found
            tried = True
            job = await self.client.fine_tuning.jobs.create(
                model=request.base_model,
                training_file=state["file_id"],
                extra_body={"metadata": {TAG_METADATA: state["key"]}},
                **options,
            )
            return job.id

        job_id = await self._step(attempt, f"creating the job for {state['file_id']}")
        self.hook("created")
        self._save(state, step="created", job_id=job_id, status=None)
        self.hook("job_saved")
        return job_id

    async def _poll(self, state: dict[str, Any]) -> Any:
        """Retrieve the job until it ends; waits grow while its status does not change."""
        job_id = state["job_id"]
        delay = self.poll_interval_s
        while True:
            job = await self._step(
                lambda: self.client.fine_tuning.jobs.retrieve(job_id), f"polling job {job_id}"
            )
            self.hook("polled")
            if job.status != state.get("status"):
                log.info("%s: job %s is %s", self.desc, job_id, job.status)
                self._save(state, status=job.status)
                delay = self.poll_interval_s
            if job.status in TERMINAL:
                return job
            finish = getattr(job, "estimated_finish", None)
            if finish:
                log.info("%s: job %s estimated to finish at %s", self.desc, job_id, finish)
            await self.sleep(delay)
            delay = min(delay * 2, max(MAX_POLL_S, self.poll_interval_s))

    # The flow --------------------------------------------------------------------------------
    def _failure(self, state: dict[str, Any]) -> LLMError:
        error = state.get("error") or {}
        return LLMError(
            f"{self.desc}: fine-tuning job {state['job_id']} (base {state['base_model']})"
            f" ended {state['status']}: {error.get('code') or 'no code'}:"
            f" {error.get('message') or 'no message'}"
            + (f" (param {error['param']})" if error.get("param") else "")
            + "\nRerun with --retry-failed to create a new job from the same uploaded file."
        )

    async def run(
        self, training: TrainingFile, request: FineTuneRequest, retry_failed: bool = False
    ) -> FineTuneResult:
        """The fine-tuned model of ``request`` on ``training``, from the record if it exists."""
        key = request.key(training)
        with _exclusive(self.cache.dir, key):
            state = self.cache.finetune_state(key)
            if state is None:
                state = {
                    "key": key,
                    "base_model": request.base_model,
                    "hyperparameters": request.hyperparameters,
                    "seed": request.seed,
                    "suffix": request.suffix,
                    "train_sha256": training.sha256,
                    "examples": training.examples,
                    "estimated_tokens": training.tokens,
                    "upload_name": f"empathy-distill-{key[:16]}.jsonl",
                    "step": "new",
                }
            if state["step"] in ("failed", "cancelled"):
                if not retry_failed:
                    raise self._failure(state)
                log.info("%s: job %s %s; a new one", self.desc, state["job_id"], state["step"])
                self._save(state, step="uploaded", job_id=None, status=None, error=None)
            if not state.get("job_id"):
                tokens, projected = projected_cost(training, request, self.price)
                log.info(
                    "%s: %d example(s), ~%d training tokens x %d epoch(s): projected $%.4f",
                    self.desc,
                    training.examples,
                    training.tokens,
                    request.epochs(training),
                    projected,
                )
                # Held by the job, not this process, until its real cost is recorded.
                SharedBudget(self.cache, self.budget_usd).reserve(
                    projected,
                    f"fine-tuning {request.base_model} on {training.path}",
                    holder=f"finetune:{key}",
                )
                self._save(state, projected_tokens=tokens, projected_usd=projected)
                if not state.get("file_id"):
                    await self._upload(state, training)
                await self._create(state, request)
            if state["step"] != SUCCEEDED:
                job = await self._poll(state)
                if job.status != SUCCEEDED:
                    error = job.error.model_dump() if job.error is not None else None
                    self._save(state, step=job.status, error=error, release=True)
                    raise self._failure(state)
                trained = job.trained_tokens
                if trained is None:
                    log.warning("%s: job %s reports no trained_tokens", self.desc, job.id)
                    trained = state["projected_tokens"]
                self._save(
                    state,
                    release=True,
                    step=SUCCEEDED,
                    fine_tuned_model=job.fine_tuned_model,
                    trained_tokens=int(trained),
                    cost_usd=self.price.training_cost(int(trained)),
                )
            if not state.get("cost_reported"):
                self._report(state)
                self._save(state, cost_reported=True)
            return FineTuneResult(
                state["fine_tuned_model"],
                state["base_model"],
                state["job_id"],
                state["trained_tokens"],
                state["examples"],
                state["cost_usd"],
            )

    def _report(self, state: dict[str, Any]) -> None:
        """The job's actual cost (``trained_tokens`` x training price) in the cost report."""
        if self.cost_report is None:
            return
        append_cost_row(
            self.cost_report,
            {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "desc": f"{self.desc} (job {state['job_id']})",
                "backend": "openai",
                "model": state["base_model"],
                "mode": "training",
                "requests": "",
                "unique": "",
                "cached": "",
                "answered": 0,
                "failed": 0,
                "input_tokens": state["trained_tokens"],
                "output_tokens": 0,
                "cost_usd": f"{state['cost_usd']:.10f}",
            },
        )


@contextmanager
def _exclusive(cache_dir: Path, key: str) -> Iterator[None]:
    """One process at a time per fine-tuning key (a second one waits, then reuses the record)."""
    path = Path(cache_dir) / f"finetune-{key[:16]}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another run of the same fine-tuning job (%s)", path)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
