"""A Hugging Face Hub on 127.0.0.1 that speaks enough of its HTTP API for huggingface_hub:
model info, the file tree and ``resolve`` downloads with Range. Tests point ``HF_ENDPOINT`` at
it, so downloads run for real without the internet. Faults are injected per file: a connection
dropped partway through the first download, or a digest advertised that the bytes do not have.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".bin")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/[^/]+)?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/[^/]+(?:/.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/[^/]+/(?P<file>.+)$")


@dataclass
class Repo:
    files: dict[str, bytes]
    drop_at: dict[str, int] = field(default_factory=dict)  # first GET hangs up at this byte
    advertised_sha256: dict[str, str] = field(default_factory=dict)  # lies about these

    def sha256(self, name: str) -> str:
        return self.advertised_sha256.get(name) or hashlib.sha256(self.files[name]).hexdigest()

    def git_oid(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def entry(self, name: str) -> dict[str, Any]:
        """One file as the tree listing and model info describe it (LFS for weights)."""
        size = len(self.files[name])
        entry: dict[str, Any] = {"type": "file", "path": name, "size": size}
        entry["oid"] = self.git_oid(name)
        if name.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"oid": self.sha256(name), "size": size, "pointerSize": 134}
        return entry


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""

    def downloads_of(self, name: str) -> list[str | None]:
        """The Range header of every GET of file ``name`` (None: from the start)."""
        return [r for m, p, r in self.requests if m == "GET" and p.endswith("/" + name)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # quiet: the test output is for failures

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _send_json(self, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            for pattern in (_TREE, _API, _RESOLVE):
                match = pattern.match(path)
                if match and match.group("repo") in hub.repos:
                    repo = hub.repos[match.group("repo")]
                    break
            else:
                self._not_found()
                return
            if pattern is _TREE:
                self._send_json([repo.entry(name) for name in sorted(repo.files)])
            elif pattern is _API:
                siblings = [
                    {"rfilename": name, "size": e["size"], "blobId": e["oid"]}
                    | ({"lfs": {**e["lfs"], "sha256": e["lfs"]["oid"]}} if "lfs" in e else {})
                    for name in sorted(repo.files)
                    for e in [repo.entry(name)]
                ]
                self._send_json({"id": match.group("repo"), "sha": COMMIT, "siblings": siblings})
            elif match.group("file") not in repo.files:
                self._not_found()
            else:
                self._send_file(repo, match.group("file"), body)

        def _send_file(self, repo: Repo, name: str, body: bool) -> None:
            data = repo.files[name]
            start = 0
            if (wanted := self.headers.get("Range")) and (m := re.match(r"bytes=(\d+)-", wanted)):
                start = int(m.group(1))
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("X-Repo-Commit", COMMIT)
            etag = repo.sha256(name) if name.endswith(LFS_SUFFIXES) else repo.git_oid(name)
            self.send_header("ETag", f'"{etag}"')
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if name in repo.drop_at:
                self.wfile.write(data[start : repo.drop_at.pop(name)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops mid-file
                return
            self.wfile.write(data[start:])

    return Handler


@contextmanager
def serving(hub: FakeHub) -> Iterator[FakeHub]:
    """Serve ``hub`` on a free loopback port until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
