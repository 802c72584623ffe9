"""Weights before jobs: rule fetch_model against a local Hub (tests/servers/hub_server.py).

The fetch runs as the rule runs it, ``python -m empathy_distill.core.hub_fetch`` in a fresh
process whose environment points the real huggingface_hub at the fake Hub (``HF_ENDPOINT``) and
a scratch cache (``HF_HUB_CACHE``). Expected bytes, hashes and commits come from the fake's own
files, never from the code under test.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from packaging.version import Version

from empathy_distill import weights
from empathy_distill.core import hub
from empathy_distill.core.errors import ConfigError

from .conftest import REPO_ROOT
from .servers.hub_server import FakeRepo, HubServer
from .workflow_helpers import run_snakemake

#: huggingface_hub >= 1 lists a snapshot's files with the tree API (0.x: the model info's
#: siblings) and caches the listing; the floor (0.34, tested) does not.
LISTS_TREE = Version(huggingface_hub.__version__) >= Version("1.0")
TOKEN = "hf_secretTOKENvalue0123456789"  # granted access to the gated model
STRANGER = "hf_strangerTOKEN9876543210"  # a real account that has not accepted the licence
GATED = "acme/Gated-1B"
#: 24 MiB: more than huggingface_hub's 10 MiB download chunk (constants.DOWNLOAD_CHUNK_SIZE), so a
#: download cut half-way has written whole chunks it can resume after.
WEIGHTS = bytes(range(256)) * (24 * 4096)

TOKENIZER = {"model": {"vocab": {"a": 0, "b": 1}}, "added_tokens": [{"id": 2, "content": "<s>"}]}


def repo_files() -> dict[str, bytes]:
    """A Llama-like repository: shards and index, config, tokenizer, and what the fetch skips
    (.pth and consolidated copies of the weights, README)."""
    return {
        "config.json": b'{"model_type": "llama"}',
        "generation_config.json": b'{"do_sample": false}',
        "model-00001-of-00002.safetensors": WEIGHTS,
        "model-00002-of-00002.safetensors": b"second shard" * 100,
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "tokenizer.json": json.dumps(TOKENIZER).encode(),
        "tokenizer_config.json": b'{"bos_token": "<s>"}',
        "special_tokens_map.json": b"{}",
        "consolidated.safetensors": b"mistral-format copy" * 50,
        "original/consolidated.00.pth": b"pth copy" * 50,
        "pytorch_model.bin": b"bin copy" * 50,
        "README.md": b"# card",
    }


FETCHED = {
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
}


@pytest.fixture
def server():
    repos = {GATED: FakeRepo(repo_files(), gated=True, granted={TOKEN})}
    with HubServer(repos, tokens={TOKEN, STRANGER}) as running:
        yield running


def env_for(server: HubServer, cache: Path, token: str | None = TOKEN, offline: bool = False):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env |= {
        "HF_ENDPOINT": server.root,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # the tree under test first (a floor test may add an older huggingface_hub after it)
        "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT / "workflow"), os.environ.get("PYTHONPATH", "")]
        ),
        "HOME": str(cache.parent),  # no token saved by `hf auth login` is found
    }
    if token:
        env["HF_TOKEN"] = token
    return env


def fetch_command(out: Path, revision: str | None, repo: str = GATED) -> list[str]:
    spec = json.dumps({"model": repo, "revision": revision})
    module = "empathy_distill.core.hub_fetch"
    return [sys.executable, "-m", module, "fetch", "--spec", spec, "--out", str(out)]


def fetch(server, tmp_path, revision, token=TOKEN, repo=GATED) -> subprocess.CompletedProcess:
    out = tmp_path / "weights" / f"{repo}.json"
    env = env_for(server, tmp_path / "cache", token)
    command = fetch_command(out, revision, repo)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def downloads(server: HubServer) -> int:
    """File transfers: GETs of /resolve (small files) and of the CDN (LFS files)."""
    return server.requests("GET /cdn-lfs/") + server.requests(f"GET /{GATED}/resolve/")


# --- a successful fetch --------------------------------------------------------------------------


def test_fetch_pinned_commit_writes_snapshot_and_manifest(server, tmp_path):
    repo = server.repos[GATED]
    done = fetch(server, tmp_path, repo.commit)
    assert done.returncode == 0, done.stderr

    manifest = json.loads((tmp_path / "weights" / f"{GATED}.json").read_text())
    files = repo_files()
    assert manifest["model"] == GATED
    assert manifest["commit"] == manifest["revision"] == repo.commit
    assert manifest["pinned"] is True
    assert manifest["licence"] == f"https://huggingface.co/{GATED}"
    assert {f["path"] for f in manifest["files"]} == FETCHED  # no .pth/.bin/consolidated/README
    assert manifest["bytes"] == sum(len(files[p]) for p in FETCHED)
    shard = next(f for f in manifest["files"] if f["path"].startswith("model-00001"))
    assert shard["blob"] == sha(WEIGHTS)  # an LFS blob is named by its sha256

    snapshot = tmp_path / "cache" / "models--acme--Gated-1B" / "snapshots" / repo.commit
    for path in FETCHED:
        assert sha((snapshot / path).read_bytes()) == sha(files[path]), path
    # LFS files came from the CDN, which never saw the token (the client drops it there).
    cdn = [auth for path, auth in server.authorizations if path.startswith("/cdn-lfs/")]
    assert len(cdn) == 2 and cdn == [None, None]
    if LISTS_TREE:  # the tree listing was paginated (2 entries a page, Link rel="next")
        assert server.requests(f"GET /api/models/{GATED}/tree/") == len(files) // 2
    assert TOKEN not in done.stdout + done.stderr + json.dumps(manifest)


def test_rerun_downloads_nothing(server, tmp_path):
    commit = server.repos[GATED].commit
    assert fetch(server, tmp_path, commit).returncode == 0
    first = downloads(server), server.requests("GET /api/models/")
    done = fetch(server, tmp_path, commit)
    assert done.returncode == 0, done.stderr
    # Only the access check (auth-check and model info) again, no file (huggingface_hub < 1
    # asks for the model info once more; 1.x keeps the tree listing in the cache).
    assert downloads(server) == first[0] == len(FETCHED)
    assert server.requests("GET /api/models/") == first[1] + (2 if LISTS_TREE else 3)


def test_branch_is_resolved_and_recorded_then_loaded_offline(server, tmp_path):
    """revision null fetches main; the manifest records its commit; an offline job (PRIDE's
    tokenizer check) reads the snapshot with no request at all."""
    done = fetch(server, tmp_path, None)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "weights" / f"{GATED}.json").read_text())
    assert manifest["commit"] == server.repos[GATED].commit
    assert manifest["revision"] is None and manifest["pinned"] is False

    before = sum(server.counts.values())
    code = (
        "from empathy_distill.training.pride.tokenizers import tokenizer_fingerprint as f;"
        f"print(f({GATED!r}, None)); print(f({GATED!r}, {manifest['commit']!r}))"
    )
    env = env_for(server, tmp_path / "cache", token=None, offline=True)
    job = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr
    payload = json.dumps([TOKENIZER["model"]["vocab"], [[2, "<s>"]]], sort_keys=True)
    expected = hashlib.sha256(payload.encode()).hexdigest()
    assert job.stdout.split() == [expected, expected]
    assert sum(server.counts.values()) == before


def test_offline_job_names_a_model_that_was_not_fetched(server, tmp_path):
    """PRIDE's tokenizer check no longer says "no tokenizer" for a model it could not read."""
    code = (
        "from empathy_distill.training.pride.tokenizers import tokenizer_fingerprint as f;"
        f"f({GATED!r}, None)"
    )
    env = env_for(server, tmp_path / "cache", offline=True)
    job = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert job.returncode != 0
    last = job.stderr.strip().splitlines()[-1]
    assert "WeightsError" in last and f"{GATED}@main is not in the model cache" in last
    assert f"results/weights/{GATED}.json" in last and "tokenizer" not in last
    assert sum(server.counts.values()) == 0


# --- refusals, before any file -------------------------------------------------------------------


def test_gated_without_token(server, tmp_path):
    done = fetch(server, tmp_path, server.repos[GATED].commit, token=None)
    assert done.returncode != 0
    assert f"model {GATED}@" in done.stderr and "HF_TOKEN is not set" in done.stderr
    assert f"accept its licence at https://huggingface.co/{GATED}" in done.stderr
    assert downloads(server) == 0
    assert not (tmp_path / "weights" / f"{GATED}.json").exists()


def test_licence_not_accepted(server, tmp_path):
    done = fetch(server, tmp_path, None, token=STRANGER)
    assert done.returncode != 0
    assert "has no access yet (licence not accepted" in done.stderr
    assert f"https://huggingface.co/{GATED}" in done.stderr
    assert STRANGER not in done.stdout + done.stderr
    assert downloads(server) == 0


def test_unknown_revision(server, tmp_path):
    for revision in ("v9.9", "0" * 40):
        done = fetch(server, tmp_path, revision)
        assert done.returncode != 0
        assert f"revision {revision!r} does not exist" in done.stderr, done.stderr
        assert f"https://huggingface.co/{GATED}/commits/main" in done.stderr
    assert downloads(server) == 0


def test_unknown_model(server, tmp_path):
    done = fetch(server, tmp_path, None, repo="acme/Missing-1B")
    assert done.returncode != 0
    assert "model acme/Missing-1B@main not found on the Hub" in done.stderr
    assert "https://huggingface.co/acme/Missing-1B" in done.stderr


# --- interrupted downloads -----------------------------------------------------------------------


def test_dropped_connection_resumes_with_range(server, tmp_path):
    """The CDN closes the connection half-way through the big shard: the rest is asked for with
    a Range request and the file is whole (huggingface_hub 1.x resumes within its call; 0.x
    raises, and the fetch's next attempt resumes from the partial file)."""
    half = len(WEIGHTS) // 2
    server.drop_after[sha(WEIGHTS)] = half
    done = fetch(server, tmp_path, server.repos[GATED].commit)
    assert done.returncode == 0, done.stderr
    # It resumes after the whole chunks it wrote (10 MiB each), not from byte 0.
    ((blob, ranged),) = server.ranges
    start = int(ranged.removeprefix("bytes=").rstrip("-"))
    assert blob == sha(WEIGHTS) and ranged == f"bytes={start}-" and 0 < start <= half
    assert server.sent[sha(WEIGHTS)] == len(WEIGHTS) + half - start
    snapshot = tmp_path / "cache" / "models--acme--Gated-1B" / "snapshots"
    shard = next(snapshot.glob("*/model-00001-of-00002.safetensors"))
    assert sha(shard.read_bytes()) == sha(WEIGHTS)


def test_killed_fetch_completes_on_rerun(server, tmp_path):
    """The fetch process is killed while the big shard is half-way: the rerun completes the
    snapshot, downloads none of the files finished before, and every file is whole.

    huggingface_hub 1.33 writes each download to a file unique to its process and does not
    reuse it after a kill, so the shard in flight starts again from byte 0 (a connection drop
    within one process resumes with Range: test above)."""
    big = sha(WEIGHTS)
    server.stall_after[big] = len(WEIGHTS) // 2
    out = tmp_path / "weights" / f"{GATED}.json"
    env = env_for(server, tmp_path / "cache")
    commit = server.repos[GATED].commit
    process = subprocess.Popen(
        fetch_command(out, commit), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while downloads(server) < len(FETCHED) or server.sent[big] < len(WEIGHTS) // 2:
            assert time.monotonic() < deadline, "the fetch never reached the big shard"
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # the small files finish writing
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        server.release.set()
    assert not out.exists()
    before = {path: n for path, n in server.counts.items() if path.startswith("GET /")}

    done = fetch(server, tmp_path, commit)
    assert done.returncode == 0, done.stderr
    again = {p: n - before.get(p, 0) for p, n in server.counts.items() if p.startswith("GET /")}
    fetched_again = {p for p, n in again.items() if n and ("/resolve/" in p or "/cdn-lfs/" in p)}
    assert fetched_again == {f"GET /cdn-lfs/{big}"}
    snapshot = tmp_path / "cache" / "models--acme--Gated-1B" / "snapshots" / commit
    files = repo_files()
    assert {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()} == (
        FETCHED
    )
    for path in FETCHED:
        assert sha((snapshot / path).read_bytes()) == sha(files[path]), path


# --- the grid's models (no network) --------------------------------------------------------------


def shipped_config() -> dict:
    from empathy_distill.cli import load_configs

    return load_configs([str(REPO_ROOT / "config.yaml")])


def test_shipped_grid_fetches_its_three_hub_models_pinned():
    config = shipped_config()
    models = weights.grid_models(config)
    students = config["students"]
    assert {m.repo: m.revision for m in models.values()} == {
        students[s]["model"]: students[s]["revision"]
        for s in ("llama31_8b", "mistral_7b", "llama31_70b_instruct")
    }
    assert models["meta-llama/Llama-3.1-70B-Instruct"].used_by == ["students.llama31_70b_instruct"]
    assert all(hub.is_commit(m.revision) for m in models.values())
    assert weights.check(config) == []
    # The paper-only grid has no PRIDE, so no 70B teacher to fetch.
    paper = copy.deepcopy(config)
    paper["grid"]["methods"] = ["sft", "dpo"]
    assert "meta-llama/Llama-3.1-70B-Instruct" not in weights.grid_models(paper)


@pytest.mark.parametrize("profile", ["demo", "cpu-small"])
def test_offline_profiles_fetch_nothing(profile):
    from empathy_distill.cli import load_configs

    overlay = REPO_ROOT / "workflow" / "profiles" / profile / f"config.{profile}.yaml"
    config = load_configs([str(REPO_ROOT / "config.yaml"), str(overlay)])
    assert weights.grid_models(config) == {}


def test_unpinned_warns_and_conflicting_revisions_stop():
    config = shipped_config()
    config["students"]["mistral_7b"]["revision"] = None
    (warning,) = weights.check(config)
    assert "mistralai/Mistral-7B-v0.3 (students.mistral_7b) is not pinned" in warning
    config["teacher"] = {**config["teacher"], "backend": "transformers", "model": GATED}
    config["students"]["llama31_70b_instruct"]["model"] = GATED
    config["students"]["llama31_70b_instruct"]["revision"] = "a" * 40
    with pytest.raises(ConfigError, match="differ for one model acme/Gated-1B"):
        weights.grid_models(config)


def test_job_environment_is_offline_on_one_absolute_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hub.job_environment(None) == {"HF_HUB_OFFLINE": "1"}
    env = hub.job_environment("hf-cache")
    assert env == {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}


def test_hub_ids_and_other_models(tmp_path):
    assert hub.is_hub_model("meta-llama/Meta-Llama-3.1-8B")
    assert hub.is_hub_model("gpt2")
    local = tmp_path / "owner" / "model"
    local.mkdir(parents=True)
    for model in ("builtin:tiny", str(local), "./models/x", "/abs/x", "a/b/c"):
        assert not hub.is_hub_model(model), model


# --- the rule, end to end ------------------------------------------------------------------------


def hub_student_overlay(dataset_path: Path, cache: Path, revision: str | None) -> dict:
    return {
        "dataset": {"path": str(dataset_path)},
        "models": {"cache_dir": str(cache)},
        "students": {"gated": {"model": GATED, "template": "llama3", "revision": revision}},
        "grid": {"students": ["gated"], "judges": ["offline"], "methods": ["sft", "dpo"]},
    }


def test_gpu_jobs_wait_for_the_fetch(tmp_path, dataset_path):
    overlay = hub_student_overlay(dataset_path, tmp_path / "cache", "b" * 40)
    done = run_snakemake(tmp_path, overlay, "-n")
    assert done.returncode == 0, done.stderr
    blocks = re.split(r"^\[[A-Z][a-z]{2} .*\d{4}\]$", done.stdout, flags=re.M)  # [timestamp]
    jobs = [b for b in blocks if b.lstrip().startswith(("rule ", "localrule "))]
    fetches = [b for b in jobs if "rule fetch_model:" in b]
    assert len(fetches) == 1 and f"results/weights/{GATED}.json" in fetches[0]
    gpu = [b for b in jobs if b.lstrip().split()[1].rstrip(":") in ("train", "answer")]
    assert gpu and all(f"results/weights/{GATED}.json" in b for b in gpu)


def test_rule_fetches_then_refuses_before_any_job(tmp_path, dataset_path, monkeypatch):
    """snakemake <manifest>: the local rule fetches with the token from the environment, which
    no log or output holds; a gated model without a token stops the run at start-up."""
    cache = tmp_path / "cache"
    repos = {GATED: FakeRepo(repo_files(), gated=True, granted={TOKEN})}
    with HubServer(repos, tokens={TOKEN}) as running:
        monkeypatch.setenv("HF_ENDPOINT", running.root)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        target = f"results/weights/{GATED}.json"
        work = tmp_path / "work"
        overlay = hub_student_overlay(dataset_path, cache, None)

        monkeypatch.delenv("HF_TOKEN", raising=False)
        refused = run_snakemake(work, overlay, "--cores", "1", target)
        assert refused.returncode != 0
        assert f"model {GATED}@main is gated and $HF_TOKEN is not set" in refused.stderr
        assert "(students.gated) is not pinned" in refused.stderr  # the start-up warning
        assert downloads(running) == 0 and not (work / target).exists()

        monkeypatch.setenv("HF_TOKEN", TOKEN)
        done = run_snakemake(work, overlay, "--cores", "1", target)
        assert done.returncode == 0, done.stderr
    manifest = json.loads((work / target).read_text())
    assert manifest["commit"] == repos[GATED].commit
    assert (cache / "models--acme--Gated-1B" / "snapshots" / manifest["commit"]).is_dir()
    written = [p for p in work.rglob("*") if p.is_file()] + [p for p in cache.rglob("*")]
    texts = [done.stdout, done.stderr, refused.stdout, refused.stderr]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in written if p.is_file()]
    assert not [t for t in texts if TOKEN in t]
    assert yaml.safe_load((work / "overlay.yaml").read_text())["models"]["cache_dir"] == str(cache)
