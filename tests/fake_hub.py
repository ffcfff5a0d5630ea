"""A loopback stand-in for the Hugging Face Hub's HTTP API, for tests (never the real Hub).

Serves what `huggingface_hub` uses to publish and fetch a model repo: `POST
/api/repos/create`, `POST /api/models/R/preupload/REV` (every file "regular", i.e. sent
inline), `POST /api/models/R/commit/REV` (the NDJSON commit), and `HEAD`/`GET
/R/resolve/REV/PATH` with the headers the download endpoint sends (`X-Repo-Commit`,
`ETag`, `Content-Length`, `X-Error-Code` on 404s). Revisions are branch names or commit ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}  # repo -> {"branches": {}, "commits": {}}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo: str, files: dict[str, bytes]) -> str:
        """Create `repo` with one commit on `main` holding `files`; its commit id."""
        self.repos.setdefault(repo, {"branches": {}, "commits": {}})
        return self._commit(repo, "main", files)

    def _commit(self, repo: str, branch: str, files: dict[str, bytes]) -> str:
        r = self.repos[repo]
        parent = r["commits"].get(r["branches"].get(branch), {})
        tree = {**parent, **files}
        digest = hashlib.sha1(json.dumps(
            {k: hashlib.sha256(v).hexdigest() for k, v in sorted(tree.items())}).encode()
            + str(len(r["commits"])).encode()).hexdigest()
        r["commits"][digest] = tree
        r["branches"][branch] = digest
        return digest

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, code: int, error_code: str, extra: dict[str, str] | None = None,
                       ) -> None:
                body = json.dumps({"error": error_code}).encode()
                self._send(code, body, {"X-Error-Code": error_code, **(extra or {})})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
                if not m:
                    return self._error(404, "RepoNotFound")
                repo, rev, path = m.groups()
                if repo not in hub.repos:
                    return self._error(401, "RepoNotFound")
                r = hub.repos[repo]
                commit = r["branches"].get(rev, rev if rev in r["commits"] else None)
                if commit is None:
                    return self._error(404, "RevisionNotFound")
                tree = r["commits"][commit]
                if path not in tree:
                    return self._error(404, "EntryNotFound", {"X-Repo-Commit": commit})
                data = tree[path]
                etag = hashlib.sha256(data).hexdigest()
                self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{etag}"'},
                           content_type="application/octet-stream")

            def do_POST(self) -> None:
                hub.requests.append(f"POST {self.path}")
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    spec = json.loads(self._body())
                    repo = f"{spec['organization']}/{spec['name']}" if spec.get(
                        "organization") else spec["name"]
                    url = json.dumps({"url": f"{hub.endpoint}/{repo}"}).encode()
                    if repo in hub.repos:  # the Hub answers 409 with the url too
                        return self._send(409, url, {"X-Error-Code": "RepoExists"})
                    hub.repos[repo] = {"branches": {}, "commits": {}}
                    hub._commit(repo, "main", {})
                    return self._send(200, url)
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if not m or m.group(1) not in hub.repos:
                    return self._error(404, "RepoNotFound")
                repo, kind, rev = m.groups()
                body = self._body()
                if kind == "preupload":
                    files = json.loads(body)["files"]
                    out = {"files": [{"path": f["path"], "uploadMode": "regular",
                                      "shouldIgnore": False} for f in files]}
                    return self._send(200, json.dumps(out).encode())
                files = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        v = item["value"]
                        files[v["path"]] = base64.b64decode(v["content"])
                    elif item["key"] != "header":
                        return self._error(400, "Unsupported")
                commit = hub._commit(repo, rev, files)
                info = {"commitUrl": f"{hub.endpoint}/{repo}/commit/{commit}",
                        "commitOid": commit}
                return self._send(200, json.dumps(info).encode())

        return Handler
