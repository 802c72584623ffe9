"""A Hugging Face Hub on 127.0.0.1 that the real ``huggingface_hub`` client downloads from.

Point the library at it with ``HF_ENDPOINT=<server.root>`` (read once, when huggingface_hub is
imported: set it in the environment of a fresh process). Serves what ``snapshot_download`` and
``HfApi`` call, as read in huggingface_hub 1.33 (``hf_api.py``: ``model_info``, ``auth_check``,
``list_repo_tree``; ``_snapshot_download.py``; ``file_download.py``: ``get_hf_file_metadata``,
``_get_metadata_or_catch_error``, ``http_get``; ``utils/_http.py``: ``hf_raise_for_status``;
``utils/_pagination.py``: ``paginate``) and as the Hub answers them
(https://huggingface.co/docs/hub/api, https://huggingface.co/docs/huggingface_hub/guides/download):

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: ``{"id", "sha",
  "siblings", "gated", "private"}``; public even for a gated model (the Hub shows a gated
  model's card and file list to everyone; only file downloads are gated).
* ``GET /api/models/{repo}/auth-check``: 200 when the token may download; gated: 401
  (no token) / 403 (a token whose account has not been granted access) with
  ``X-Error-Code: GatedRepo``.
* ``GET /api/models/{repo}/tree/{rev}?recursive=...``: ``[{"type": "file", "path", "size",
  "oid", "lfs": {"oid", "size", "pointerSize"}}]``, paginated with a ``Link: <...>;
  rel="next"`` header (``tree_page_size`` entries a page, 1000 on the Hub).
* ``HEAD /{repo}/resolve/{rev}/{file}``: a regular file answers 200 with ``ETag`` (its git blob
  id) and ``Content-Length``; an LFS file (``*.safetensors``, ``*.bin``, ``*.pth``) answers 302
  to the CDN with ``Location``, ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``; both carry
  ``X-Repo-Commit``. The client downloads the CDN URL itself and drops the Authorization header
  there (another host on the Hub; here ``http://127.0.0.2:<port>/cdn-lfs/<sha256>``, whose
  requests' Authorization is recorded so a test can see it never arrives).
* ``GET /cdn-lfs/{sha256}`` honours ``Range: bytes=N-`` (206 with ``Content-Range``), which
  ``http_get`` sends to resume a download whose connection dropped.
* Errors as ``hf_raise_for_status`` maps them: ``X-Error-Code: RevisionNotFound`` (404),
  ``EntryNotFound`` (404), ``GatedRepo`` (401/403), ``RepoNotFound`` (401 without a token, 404
  with one, as the Hub does not tell strangers which private repositories exist); a token the
  Hub does not know is 401 with ``X-Error-Message: Invalid credentials in Authorization header``.

Faults: ``drop_after[sha256] = n`` sends n bytes of that blob, then closes the connection (once);
``stall_after[sha256] = n`` sends n bytes and then holds the connection until ``release`` is set
(a test kills the downloading process meanwhile); ``sent[sha256]`` counts the bytes sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .base import LocalHTTPServer

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".model")


@dataclass
class FakeRepo:
    """A model repository with one commit (``main`` points at it)."""

    files: dict[str, bytes]
    gated: bool = False
    granted: set[str] = field(default_factory=set)  # tokens whose account accepted the licence

    @property
    def commit(self) -> str:
        listing = json.dumps({p: hashlib.sha1(b).hexdigest() for p, b in self.files.items()})
        return hashlib.sha1(listing.encode()).hexdigest()

    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)


@functools.cache
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    def __init__(
        self, repos: dict[str, FakeRepo], tokens: set[str] | None = None, tree_page_size: int = 2
    ) -> None:
        self.repos = repos
        self.tokens = set(tokens or ())  # tokens the Hub knows (of any account)
        self.tree_page_size = tree_page_size
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # "METHOD /path" -> requests
        self.authorizations: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of ranged GETs
        self.drop_after: dict[str, int] = {}
        self.stall_after: dict[str, int] = {}
        self.sent: Counter[str] = Counter()
        self.release = threading.Event()
        self._httpd: LocalHTTPServer | None = None
        self._cdn: LocalHTTPServer | None = None

    # Lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> HubServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server.serve(self, "GET")

            def do_HEAD(self) -> None:
                server.serve(self, "HEAD")

        # The Hub on 127.0.0.1, its CDN on another host (127.0.0.2, also loopback): the client
        # follows only redirects that stay on the Hub's host, so the CDN must be elsewhere.
        self._httpd = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self._cdn = LocalHTTPServer(("127.0.0.2", 0), Handler)
        for httpd in (self._httpd, self._cdn):
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        for httpd in (self._httpd, self._cdn):
            assert httpd is not None
            httpd.shutdown()
            httpd.server_close()

    @property
    def root(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def cdn_root(self) -> str:
        assert self._cdn is not None
        return f"http://127.0.0.2:{self._cdn.server_address[1]}"

    def requests(self, prefix: str) -> int:
        """Requests whose "METHOD /path" starts with ``prefix``."""
        with self.lock:
            return sum(n for key, n in self.counts.items() if key.startswith(prefix))

    # Routing ----------------------------------------------------------------------------------
    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        auth = handler.headers.get("Authorization")
        with self.lock:
            self.counts[f"{method} {path}"] += 1
            self.authorizations.append((path, auth))
        if path.startswith("/cdn-lfs/"):
            return self.cdn(handler, method, path.removeprefix("/cdn-lfs/"))
        token = auth.removeprefix("Bearer ") if auth else None
        if token is not None and token not in self.tokens:
            return self.reply(
                handler,
                method,
                401,
                {"error": "Invalid credentials"},
                {"X-Error-Message": "Invalid credentials in Authorization header"},
            )
        if path.startswith("/api/models/"):
            return self.api(handler, method, path.removeprefix("/api/models/"), parts.query, token)
        repo_id, sep, rest = path.lstrip("/").partition("/resolve/")
        if sep:
            revision, _, file = rest.partition("/")
            return self.resolve(handler, method, repo_id, revision, file, token)
        return self.reply(handler, method, 404, {"error": "Not Found"})

    def find(self, handler, method, repo_id: str, token: str | None) -> FakeRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            status = 404 if token else 401
            self.reply(
                handler,
                method,
                status,
                {"error": "Repository Not Found"},
                {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
            )
        return repo

    def gate(self, handler, method, repo_id: str, repo: FakeRepo, token: str | None) -> bool:
        """True when the token may download (else the gated error is sent)."""
        if not repo.gated or token in repo.granted:
            return True
        status = 401 if token is None else 403
        message = (
            f"Access to model {repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in."
            if token is None
            else f"Access to model {repo_id} is restricted and you are not in the authorized list."
            f" Visit https://huggingface.co/{repo_id} to ask for access."
        )
        self.reply(
            handler,
            method,
            status,
            {"error": message},
            {"X-Error-Code": "GatedRepo", "X-Error-Message": message},
        )
        return False

    def commit_of(self, handler, method, repo: FakeRepo, revision: str) -> str | None:
        if revision in ("main", repo.commit):
            return repo.commit
        message = f"Invalid rev id: {revision}"
        self.reply(
            handler,
            method,
            404,
            {"error": message},
            {"X-Error-Code": "RevisionNotFound", "X-Error-Message": message},
        )
        return None

    # /api/models ------------------------------------------------------------------------------
    def api(self, handler, method, rest: str, query: str, token: str | None) -> None:
        for marker in ("/revision/", "/tree/"):
            repo_id, sep, tail = rest.partition(marker)
            if sep:
                break
        else:
            repo_id, tail = rest, "main"
            if rest.endswith("/auth-check"):
                repo_id = rest.removesuffix("/auth-check")
                repo = self.find(handler, method, repo_id, token)
                if repo is not None and self.gate(handler, method, repo_id, repo, token):
                    self.reply(handler, method, 200, {})
                return None
        repo = self.find(handler, method, repo_id, token)
        if repo is None:
            return None
        commit = self.commit_of(handler, method, repo, tail.split("/")[0])
        if commit is None:
            return None
        if marker == "/tree/" and sep:
            return self.tree(handler, method, repo_id, repo, tail, query)
        info = {
            "id": repo_id,
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "siblings": [{"rfilename": p} for p in repo.files],
        }
        return self.reply(handler, method, 200, info)

    def tree(self, handler, method, repo_id, repo: FakeRepo, tail: str, query: str) -> None:
        entries = []
        for path, data in sorted(repo.files.items()):
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data)}
            entry["oid"] = git_blob_id(data)
            if repo.is_lfs(path):
                sha = sha256(data)
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            entries.append(entry)
        params = parse_qs(query)
        start = int(params.get("cursor", ["0"])[0])
        page = entries[start : start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(entries):
            revision = tail.split("/")[0]
            url = f"{self.root}/api/models/{repo_id}/tree/{revision}?recursive=True&cursor="
            headers["Link"] = f'<{url}{start + self.tree_page_size}>; rel="next"'
        return self.reply(handler, method, 200, page, headers)

    # /resolve and the CDN ---------------------------------------------------------------------
    def resolve(self, handler, method, repo_id, revision, file, token) -> None:
        repo = self.find(handler, method, repo_id, token)
        if repo is None or not self.gate(handler, method, repo_id, repo, token):
            return None
        commit = self.commit_of(handler, method, repo, revision)
        if commit is None:
            return None
        headers = {"X-Repo-Commit": commit}
        if file not in repo.files:
            return self.reply(
                handler,
                method,
                404,
                {"error": "Entry not found"},
                {**headers, "X-Error-Code": "EntryNotFound"},
            )
        data = repo.files[file]
        if repo.is_lfs(file):
            sha = sha256(data)
            headers |= {
                "Location": f"{self.cdn_root}/cdn-lfs/{sha}?name={quote(file)}",
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_blob_id(data)}"',
            }
            return self.reply(handler, method, 302, {"redirect": "cdn"}, headers)
        headers["ETag"] = f'"{git_blob_id(data)}"'
        return self.send(handler, method, 200, data, headers)

    def cdn(self, handler, method: str, sha: str) -> None:
        blobs = {sha256(d): d for r in self.repos.values() for d in r.files.values()}
        if sha not in blobs:
            return self.reply(handler, method, 404, {"error": "NoSuchKey"})
        data = blobs[sha]
        start = 0
        ranged = handler.headers.get("Range")
        if ranged:
            with self.lock:
                self.ranges.append((sha, ranged))
            start = int(ranged.removeprefix("bytes=").split("-")[0])
        body = data[start:]
        status = 206 if ranged else 200
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{sha}"'}
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if method == "HEAD":
            return None
        with self.lock:
            cut = self.drop_after.pop(sha, None)
            stall = self.stall_after.pop(sha, None)
        limit = cut if cut is not None else stall
        if limit is None:
            handler.wfile.write(body)
            with self.lock:
                self.sent[sha] += len(body)
            return None
        handler.wfile.write(body[:limit])
        handler.wfile.flush()
        with self.lock:
            self.sent[sha] += min(limit, len(body))
        if stall is not None:
            self.release.wait()
        handler.close_connection = True
        return None

    # Replies ----------------------------------------------------------------------------------
    def reply(self, handler, method, status: int, body: Any, headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send(
            handler, method, status, raw, {"Content-Type": "application/json", **(headers or {})}
        )

    def send(self, handler, method, status: int, raw: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(raw)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(raw)
