"""A stand-in for the npm registry and PyPI's simple index, on the loopback interface: a caching mirror of ours
that passes every request through to the real registry, except the one artifact it is told to tamper with.

The tampered artifact is served self-consistently, as a malicious mirror would: its bytes differ from upstream's
(one byte appended), and the metadata the stand-in serves for it (the npm packument's `dist.integrity`, the
simple index's `#sha256=` fragment) is the hash of those bytes. So npm's and pip's own checks against the registry
pass; only the lock's hashes can refuse it. `served` records what was asked for, so a test can tell that the
tampered artifact was really downloaded (and did not pass for another reason).

Not a registry implementation: enough of npm's (packument, tarball) and PyPI's (PEP 503 project page, file)
protocols for `npm ci`, `curl` of a tarball and `pip install --require-hashes`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import ssl
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

NPM_UPSTREAM = "https://registry.npmjs.org"
PYPI_UPSTREAM = "https://pypi.org/simple"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def tamper(data: bytes) -> bytes:
    return data + b"\0"


class RegistryStandIn:
    """`npm_url` and `pypi_url` are the mirrors' base URLs; `tampered` is a file name (an npm tarball's
    `name-version.tgz` or a wheel's name) served with other bytes."""

    def __init__(self, tampered: str = "") -> None:
        self.tampered = tampered
        self.served: list[str] = []
        self.files: dict[str, str] = {}  # wheel name -> upstream URL
        self.cache: dict[str, bytes] = {}
        self.context = ssl.create_default_context(cafile=str(HOST_CA) if HOST_CA.is_file() else None)
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                try:
                    status, kind, body = standin.answer(self.path)
                except Exception as exc:  # upstream failed: say so to the client
                    status, kind, body = 502, "text/plain", f"stand-in: {exc}".encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def npm_url(self) -> str:
        return f"{self.base}/npm/"

    @property
    def pypi_url(self) -> str:
        return f"{self.base}/pypi/simple/"

    def __enter__(self) -> RegistryStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------- upstream
    def fetch(self, url: str, accept: str = "*/*") -> bytes:
        with self.lock:
            if url in self.cache:
                return self.cache[url]
        request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "agent-sandbox-standin"})
        with urllib.request.urlopen(request, timeout=120, context=self.context) as response:
            data: bytes = response.read()
        with self.lock:
            self.cache[url] = data
        return data

    def bytes_of(self, name: str, url: str) -> bytes:
        data = self.fetch(url)
        return tamper(data) if name == self.tampered else data

    # -------------------------------------------------------------- routes
    def answer(self, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        self.served.append(path)
        if path.startswith("/npm/"):
            return self.npm(path[len("/npm/") :])
        if path.startswith("/pypi/simple/"):
            return self.pypi_page(path[len("/pypi/simple/") :].strip("/"))
        if path.startswith("/pypi/files/"):
            name = path.rsplit("/", 1)[-1]
            return 200, "application/octet-stream", self.bytes_of(name, self.files[name])
        return 404, "text/plain", b"not here"

    def npm(self, rest: str) -> tuple[int, str, bytes]:
        rest = rest.replace("%2f", "/").replace("%2F", "/")
        if "/-/" in rest:  # a tarball: <package>/-/<name>-<version>.tgz
            name = rest.rsplit("/", 1)[-1]
            return 200, "application/octet-stream", self.bytes_of(name, f"{NPM_UPSTREAM}/{rest}")
        packument = json.loads(
            self.fetch(
                f"{NPM_UPSTREAM}/{rest.replace('/', '%2f', 1) if rest.startswith('@') else rest}",
                accept="application/json",
            )
        )
        for version in (packument.get("versions") or {}).values():
            dist = version.get("dist") or {}
            tarball = dist.get("tarball", "")
            if tarball.startswith(NPM_UPSTREAM):
                dist["tarball"] = self.npm_url + tarball[len(NPM_UPSTREAM) + 1 :]
            if tarball.rsplit("/", 1)[-1] == self.tampered:  # self-consistent: the registry vouches for it
                data = self.bytes_of(self.tampered, tarball)
                dist["integrity"] = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
                dist.pop("shasum", None)
                dist.pop("signatures", None)
        return 200, "application/json", json.dumps(packument).encode()

    def pypi_page(self, project: str) -> tuple[int, str, bytes]:
        data = json.loads(self.fetch(f"{PYPI_UPSTREAM}/{project}/", accept="application/vnd.pypi.simple.v1+json"))
        links = []
        for f in data.get("files", []):
            name = f["filename"]
            if not name.endswith(".whl"):
                continue
            self.files[name] = f["url"]
            digest = f.get("hashes", {}).get("sha256", "")
            if name == self.tampered:
                digest = hashlib.sha256(self.bytes_of(name, f["url"])).hexdigest()
            requires = f.get("requires-python")
            attr = f' data-requires-python="{html.escape(requires)}"' if requires else ""
            links.append(f'<a href="{self.base}/pypi/files/{name}#sha256={digest}"{attr}>{html.escape(name)}</a>')
        body = "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
        return 200, "text/html", body.encode()

    def was_served(self, name: str) -> bool:
        return any(re.search(rf"/{re.escape(name)}$", p) for p in self.served)
