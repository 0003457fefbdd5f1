"""The conformance suite's stand-in for the internet: one program serving every outside endpoint the tests use.

Runs in the test internet image (tests/images/internet) on the egress proxy's routed network, under names a test
profile allowlists. Ports:

  80    HTTP                              /token, /git/ (a bare repository, dumb HTTP), /npm/, /simple/
  443   HTTPS (test CA, SANs for all names)   the same, plus the provider API stubs (provider.py)
  8080  HTTP on a port no profile lists   /token (so that a proxy letting any port through is caught)
  443   with --plain-443: plain HTTP instead (what a TLS-less tunnel to a TLS port would reach)
  22    sshd: user `git`, the same repository, the public key given by --ssh-key

Every request is one JSON line in <state>/requests.jsonl (method, path, headers with the auth headers) so a test
can see what reached the internet, and with which credentials (shared with provider.py's log lines).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provider  # noqa: E402  (the provider API stubs, beside this file)

PACKAGE = "agent-sandbox-probe"
VERSION = "1.0.0"


class State:
    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.lock = threading.Lock()
        self.log = root / "requests.jsonl"

    def record(self, entry: dict[str, object]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self.lock, self.log.open("a", encoding="utf-8") as handle:
            handle.write(line)


def make_handler(state: State, port: int, tls: bool) -> type[BaseHTTPRequestHandler]:
    """Our routes, then (HTTPS only) the provider API stubs of provider.py, which log their own requests."""

    class Handler(provider.StubHandler):
        server_version = "agent-sandbox-test-internet"

        def record(self) -> None:
            state.record(
                {
                    "port": port,
                    "tls": tls,
                    "method": self.command,
                    "path": self.path,
                    "route": "internet",
                    "client": self.client_address[0],
                    "headers": {
                        h: self.headers[h] for h in ("host", "user-agent", *provider.AUTH_HEADERS) if h in self.headers
                    },
                }
            )

        def send_body(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def slow_stream(self) -> None:
            """/v1/slow-stream?chunks=N&gap=S: N chunks, S seconds apart, each stamped with the server's clock."""
            query = dict(part.split("=", 1) for part in urlsplit(self.path).query.split("&") if "=" in part)
            chunks, gap = int(query.get("chunks", "3")), float(query.get("gap", "1"))
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self._start_stream()
            for index in range(chunks):
                if index:
                    time.sleep(gap)
                self._sse("chunk", {"index": index, "sent": time.time()})
            self._end_stream()

        def _dispatch(self) -> None:
            path = urlsplit(self.path).path
            if tls and path.startswith("/v1/slow-stream"):
                self.record()
                return self.slow_stream()
            if self.command in ("GET", "HEAD"):
                if path == "/token":
                    self.record()
                    return self.send_body(200, state.token.encode())
                if path.startswith("/git/"):
                    self.record()
                    return self.static(state.root / "git", path[len("/git/") :])
                if path.rstrip("/") == f"/npm/{PACKAGE}":
                    self.record()
                    return self.send_body(
                        200, json.dumps(packument(self.headers.get("host", ""))).encode(), "application/json"
                    )
                if path.rstrip("/") == f"/simple/{PACKAGE}":
                    self.record()
                    return self.send_body(200, simple_page().encode(), "text/html")
            if tls:
                return super()._dispatch()
            self.record()
            return self.send_body(404, b"not here\n")

        def static(self, root: Path, relative: str) -> None:
            target = (root / relative).resolve()
            if not target.is_file() or root.resolve() not in target.parents:
                return self.send_body(404, b"no such file\n")
            return self.send_body(200, target.read_bytes(), "application/octet-stream")

    return Handler


def packument(host: str) -> dict[str, object]:
    """The npm registry's answer for one package (enough for `npm view`)."""
    return {
        "name": PACKAGE,
        "dist-tags": {"latest": VERSION},
        "versions": {
            VERSION: {
                "name": PACKAGE,
                "version": VERSION,
                "dist": {
                    "tarball": f"https://{host}/npm/{PACKAGE}-{VERSION}.tgz",
                    "shasum": hashlib.sha1(b"").hexdigest(),
                },
            }
        },
    }


def simple_page() -> str:
    """A PEP 503 project page (enough for `pip index versions`)."""
    name = f"{PACKAGE.replace('-', '_')}-{VERSION}.tar.gz"
    return (
        f'<!DOCTYPE html><html><body><a href="{name}#sha256={hashlib.sha256(b"").hexdigest()}">{name}</a></body></html>'
    )


def make_repository(root: Path) -> Path:
    """A bare repository with one commit, served over dumb HTTP (/git/repo.git) and SSH (git@host:repo.git)."""
    work, bare = root / "work", root / "git" / "repo.git"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "internet",
        "GIT_AUTHOR_EMAIL": "internet@stub.test",
        "GIT_COMMITTER_NAME": "internet",
        "GIT_COMMITTER_EMAIL": "internet@stub.test",
        "HOME": str(root),
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README").write_text("served by the agent-sandbox test internet\n")
    subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "first"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True, env=env)
    return bare


def start_sshd(bare: Path, public_key: str) -> None:
    """sshd on 22 for user `git`, whose home holds the repository and the test's public key."""
    try:
        pwd.getpwnam("git")
    except KeyError:
        # "*": no password, but not a locked account (sshd without PAM refuses keys for locked accounts)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", "git"], check=True)
    home = Path(pwd.getpwnam("git").pw_dir)
    shutil.copytree(bare, home / "repo.git", dirs_exist_ok=True)
    (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
    (home / ".ssh" / "authorized_keys").write_text(public_key.strip() + "\n")
    subprocess.run(["chown", "-R", "git:git", str(home)], check=True)
    subprocess.run(["ssh-keygen", "-A"], check=True, capture_output=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-o", "PasswordAuthentication=no", "-o", "UsePAM=no"])


def serve(port: int, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None) -> threading.Thread:
    server = provider.StubServer(("0.0.0.0", port), handler)
    server.ssl_context = context  # the handshake happens per connection, in its worker thread
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, required=True, help="writable directory: log, repositories")
    parser.add_argument("--token", required=True, help="what /token answers")
    parser.add_argument("--cert", type=Path, help="PEM certificate chain for HTTPS (443)")
    parser.add_argument("--key", type=Path, help="its private key")
    parser.add_argument("--ssh-key", default="", help="public key allowed to log in as git over SSH (22)")
    parser.add_argument("--reply", default="STUB-REPLY", help="what the provider stubs answer")
    parser.add_argument("--plain-443", action="store_true", help="plain HTTP on 443 too (a TLS-less tunnel's target)")
    args = parser.parse_args()
    state = State(args.state, args.token)
    provider.StubConfig.reply, provider.StubConfig.log_path = args.reply, str(state.log)
    bare = make_repository(args.state)
    if args.ssh_key:
        start_sshd(bare, args.ssh_key)
    threads = [serve(80, make_handler(state, 80, False), None), serve(8080, make_handler(state, 8080, False), None)]
    if args.plain_443:
        threads.append(serve(443, make_handler(state, 443, False), None))
    elif args.cert and args.key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        threads.append(serve(443, make_handler(state, 443, True), context))
    (args.state / "ready").write_text("ready\n")
    print("internet: serving", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
