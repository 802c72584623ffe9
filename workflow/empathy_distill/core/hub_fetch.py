"""Hugging Face Hub weights: fetched once, pinned to a revision, into one cache, before any job.

A local job (rule ``fetch_model``) downloads each Hub model the grid loads with
``huggingface_hub.snapshot_download`` (safetensors, config and tokenizer files only; no ``.bin`` /
``.pth`` duplicates), with ``HF_TOKEN`` from the environment only, and writes a small manifest
(model, resolved commit, files, bytes; never the token). Every other job then runs with
``HF_HUB_OFFLINE=1`` (:func:`.hub.job_environment`) and loads the same cache.

Hub failures become one line naming the model and its licence page (:func:`explain`), from the
library's own exception types: gated without a token, licence not accepted (401/403), unknown
repository, unknown revision. A resumed fetch downloads only the files it lacks: completed files
are kept in the cache, and a connection dropped mid-file is resumed by the library with an HTTP
Range request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .atomic import write_json
from .hub import (
    ALLOW_PATTERNS,
    TOKEN_ENV,
    WeightsError,
    is_commit,
    licence_page,
    manifest_path,
)


def _token() -> str | bool:
    """$HF_TOKEN, or False: never a token saved by ``hf auth login`` (it would make a run work
    here and fail on a machine without it)."""
    return os.environ.get(TOKEN_ENV) or False


def explain(exc: Exception, repo: str, revision: str | None) -> WeightsError:
    """One line for the researcher: the model, what to do, its licence page (never the token)."""
    at = f"{repo}@{revision or 'main'}"
    page = licence_page(repo)
    has_token = bool(os.environ.get(TOKEN_ENV))
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        if not has_token:
            why = f"is gated and ${TOKEN_ENV} is not set; accept its licence at {page}, then set "
            why += f"{TOKEN_ENV} to a read token of that account"
        else:
            why = f"is gated and ${TOKEN_ENV}'s account has no access yet (licence not accepted, "
            why += f"or the request still pending): accept it at {page}"
        return WeightsError(f"model {at} {why}")
    if isinstance(exc, RevisionNotFoundError):
        return WeightsError(
            f"model {repo}: revision {revision!r} does not exist; give a commit of "
            f"{page}/commits/main"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return WeightsError(
            f"model {at} not found on the Hub (a typo, or a private repository ${TOKEN_ENV} "
            f"cannot see): {page}"
        )
    if isinstance(exc, HfHubHTTPError) and status in (401, 403):
        what = f"${TOKEN_ENV} was refused" if has_token else f"no ${TOKEN_ENV} is set"
        return WeightsError(f"model {at}: HTTP {status}, {what}; check access at {page}")
    if isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        return WeightsError(
            f"model {at} is not in the model cache and the Hub cannot be reached "
            f"({type(exc).__name__}); fetch it where there is internet (rule fetch_model, "
            f"snakemake {manifest_path(repo)}): {page}"
        )
    return WeightsError(f"model {at}: {type(exc).__name__}: {exc} ({page})")


def check_access(repo: str, revision: str | None, endpoint: str | None = None) -> str:
    """The commit ``revision`` names, after checking this token may download ``repo``: two small
    requests (``auth-check``, model info), no file. Raises :class:`WeightsError`."""
    api = HfApi(endpoint=endpoint, token=_token())
    try:
        api.auth_check(repo)
        info = api.model_info(repo, revision=revision)
    except (HfHubHTTPError, OfflineModeIsEnabled) as exc:
        raise explain(exc, repo, revision) from None
    return str(info.sha)


#: snapshot_download calls per fetch: each keeps the files already complete (and the bytes of
#: the file in flight where the library can resume them), so a dropped connection costs little.
ATTEMPTS = 3


def fetch(repo: str, revision: str | None, endpoint: str | None = None) -> dict:
    """Download ``repo`` at ``revision`` into the hub cache (files already there are kept) and
    return its manifest. Raises :class:`WeightsError` before any file when access is refused."""
    check_access(repo, revision, endpoint)
    folder = _download(repo, revision, endpoint)
    manifest = snapshot_manifest(repo, revision, Path(folder))
    if not any(f["path"].endswith(".safetensors") for f in manifest["files"]):
        raise WeightsError(
            f"model {repo}@{manifest['commit']} has no safetensors weights (model.safetensors or "
            f"model-*-of-*.safetensors); only .bin/.pth weights are not fetched: "
            f"{licence_page(repo)}"
        )
    return manifest


def _download(repo: str, revision: str | None, endpoint: str | None) -> str:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return snapshot_download(
                repo,
                revision=revision,
                allow_patterns=list(ALLOW_PATTERNS),
                endpoint=endpoint,
                token=_token(),
            )
        except (HfHubHTTPError, OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
            raise explain(exc, repo, revision) from None
        except OSError as exc:  # a connection dropped mid-file, a size mismatch
            # (huggingface_hub 1.x retries within a file first; 0.x gives up at once)
            if attempt == ATTEMPTS:
                raise WeightsError(
                    f"model {repo}@{revision or 'main'}: download failed {ATTEMPTS} times "
                    f"({type(exc).__name__}: {exc}); rerun to resume: {licence_page(repo)}"
                ) from None
            print(f"warning: {repo}: {type(exc).__name__}: {exc}; retrying", file=sys.stderr)
    raise AssertionError("unreachable")


def snapshot_manifest(repo: str, revision: str | None, folder: Path) -> dict:
    """Model, requested revision, resolved commit (the snapshot folder's name), and every file
    with its size and cache blob (for an LFS file, the blob's name is its sha256)."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        files.append(
            {
                "path": path.relative_to(folder).as_posix(),
                "bytes": path.stat().st_size,
                "blob": path.resolve().name,
            }
        )
    return {
        "model": repo,
        "revision": revision,
        "commit": folder.name,
        "pinned": is_commit(revision),
        "licence": licence_page(repo),
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
    }


def cached_snapshot(repo: str, revision: str | None) -> Path:
    """The fetched snapshot folder of ``repo`` at ``revision``, never touching the network.

    Raises :class:`WeightsError` when it was not fetched (or only in part).
    """
    try:
        folder = snapshot_download(
            repo, revision=revision, allow_patterns=list(ALLOW_PATTERNS), local_files_only=True
        )
    except LocalEntryNotFoundError as exc:
        raise explain(exc, repo, revision) from None
    return Path(folder)


def check_all(models: Sequence[dict], endpoint: str | None = None) -> list[str]:
    """:func:`check_access` of every ``{"model", "revision"}``: one problem line per refusal."""
    problems = []
    for model in models:
        try:
            check_access(model["model"], model.get("revision"), endpoint)
        except WeightsError as exc:
            problems.append(str(exc))
    return problems


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hub weights: fetch a model, or check access.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_cmd = commands.add_parser("fetch", help="download one model, write its manifest")
    fetch_cmd.add_argument("--spec", required=True, help='JSON {"model": ..., "revision": ...}')
    fetch_cmd.add_argument("--out", required=True, help="manifest to write")
    check_cmd = commands.add_parser("check", help="may $HF_TOKEN download these models?")
    check_cmd.add_argument("models", help='JSON [{"model": ..., "revision": ...}, ...]')
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = check_all(json.loads(args.models))
        if problems:
            sys.exit("error: Hugging Face models cannot be fetched:\n  " + "\n  ".join(problems))
        return
    spec = json.loads(args.spec)
    try:
        manifest = fetch(spec["model"], spec.get("revision"))
    except WeightsError as exc:
        sys.exit(f"error: {exc}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, manifest, indent=1)
    print(
        f"{manifest['model']}@{manifest['commit']}: {len(manifest['files'])} files, "
        f"{manifest['bytes'] / 1e9:.2f} GB"
    )


if __name__ == "__main__":
    main()
