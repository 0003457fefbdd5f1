#!/usr/bin/env python3
"""Stub LLM provider: answers just enough of several vendor APIs for one reply (a stand-in for the providers).

Single file, Python 3.11 standard library only, so it can run inside any image
that has python3 (e.g. the agent image itself) without installing anything.

Every model call is answered with the same fixed text (``--reply``), so a test
can run an agent CLI against this server and grep the CLI's output for that
marker.  Every request (any method, any path, known or not) is recorded as one
JSON line in ``--log`` so a test can assert which endpoints the CLI called and
which header carried the API key.

APIs served (streaming wherever the client asks for it):

  Anthropic Messages     POST /v1/messages                 SSE or JSON
                         POST /v1/messages/count_tokens    JSON
  OpenAI Responses       POST /v1/responses                SSE or JSON  (codex)
  OpenAI Chat Compl.     POST /v1/chat/completions         SSE or JSON  (litellm / aider)
  Gemini                 POST /v1beta/models/{m}:generateContent        JSON
                         POST /v1beta/models/{m}:streamGenerateContent  SSE (?alt=sse)
                                                                        or JSON array
                         POST /v1beta/models/{m}:countTokens            JSON
  Model lists            GET  /v1/models, /models          OpenAI + Anthropic shape
                         GET  /v1beta/models               Gemini shape

The "/v1" prefix is optional for the OpenAI/Anthropic routes (clients differ in
whether the configured base URL already contains it) and any "/v1*" version
prefix is accepted for Gemini.  Unknown paths get a 404 JSON error (and are
logged).  WebSocket upgrade attempts (codex can try one for the Responses API)
are logged and refused with 426 so the client falls back to plain HTTP.

Usage:
  python3 stub_provider.py --port 8080 --reply STUB-OK-1234 --log /tmp/stub.jsonl
  python3 stub_provider.py --port 8443 --cert srv.pem --key srv.key ...   # HTTPS

Only ever give agents *placeholder* keys: header values are logged verbatim
unless --redact is set.
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Headers copied into the request log (lower-case names).  Auth headers first:
# the log also gets a derived "auth" field naming which one(s) were present.
AUTH_HEADERS = ("x-api-key", "authorization", "x-goog-api-key")
LOGGED_HEADERS = AUTH_HEADERS + (
    "host",
    "user-agent",
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "openai-beta",
    "originator",
    "x-goog-api-client",
    "upgrade",
    "connection",
    "transfer-encoding",
    "x-stainless-lang",
    "x-stainless-package-version",
)

# Rough token counts reported in usage blocks; clients only need numbers.
PROMPT_TOKENS = 10


def _now() -> int:
    return int(time.time())


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class StubConfig:
    """Settings shared by all handler threads (set once in main())."""

    reply: str = "STUB-REPLY"
    log_path: str | None = None
    redact: bool = False
    log_bodies: int = 0  # >0: also log the first N bytes of each request body
    log_lock = threading.Lock()

    @classmethod
    def output_tokens(cls) -> int:
        return max(1, len(cls.reply.split()))


# --------------------------------------------------------------------------
# Response bodies, one small builder per API.  Kept as plain dicts so they are
# easy to compare with the vendors' reference docs.
# --------------------------------------------------------------------------


def anthropic_message(model: str, text: str) -> dict:
    """Non-streamed Anthropic Messages API response."""
    return {
        "id": _id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": StubConfig.output_tokens()},
    }


def anthropic_events(model: str, text: str):
    """(event, data) pairs of a streamed Anthropic Messages response."""
    msg = anthropic_message(model, text)
    start = dict(msg, content=[], stop_reason=None, usage={"input_tokens": PROMPT_TOKENS, "output_tokens": 1})
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    yield "ping", {"type": "ping"}
    yield (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": StubConfig.output_tokens()},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _responses_usage() -> dict:
    out = StubConfig.output_tokens()
    return {
        "input_tokens": PROMPT_TOKENS,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": PROMPT_TOKENS + out,
    }


def responses_object(resp_id: str, model: str, status: str, output: list) -> dict:
    """OpenAI Responses API `response` object."""
    return {
        "id": resp_id,
        "object": "response",
        "created_at": _now(),
        "status": status,
        "model": model,
        "output": output,
        "usage": _responses_usage() if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
    }


def responses_events(model: str, text: str):
    """(event, data) pairs of a streamed Responses API reply (one text message).

    codex needs at least response.output_item.done (the message) and
    response.completed; the other events are what the real API also sends.
    """
    resp_id, item_id = _id("resp"), _id("msg")
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"id": item_id, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
    seq = iter(range(1_000_000))

    def ev(kind: str, **fields):
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    yield ev("response.created", response=responses_object(resp_id, model, "in_progress", []))
    yield ev("response.in_progress", response=responses_object(resp_id, model, "in_progress", []))
    yield ev("response.output_item.added", output_index=0, item=dict(item, status="in_progress", content=[]))
    yield ev("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=dict(part, text=""))
    yield ev("response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=text)
    yield ev("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=text)
    yield ev("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)
    yield ev("response.output_item.done", output_index=0, item=item)
    yield ev("response.completed", response=responses_object(resp_id, model, "completed", [item]))


def _chat_usage() -> dict:
    out = StubConfig.output_tokens()
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": out, "total_tokens": PROMPT_TOKENS + out}


def chat_completion(model: str, text: str) -> dict:
    """Non-streamed OpenAI Chat Completions response."""
    return {
        "id": _id("chatcmpl"),
        "object": "chat.completion",
        "created": _now(),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": _chat_usage(),
    }


def chat_chunks(model: str, text: str, include_usage: bool):
    """`data:` payloads of a streamed Chat Completions reply (then [DONE])."""
    base = {"id": _id("chatcmpl"), "object": "chat.completion.chunk", "created": _now(), "model": model}

    def chunk(delta: dict, finish=None) -> dict:
        return dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    yield chunk({"role": "assistant", "content": ""})
    yield chunk({"content": text})
    yield chunk({}, "stop")
    if include_usage:  # requested with stream_options.include_usage
        yield dict(base, choices=[], usage=_chat_usage())


def gemini_response(model: str, text: str) -> dict:
    """Gemini GenerateContentResponse (also used as the single stream chunk)."""
    out = StubConfig.output_tokens()
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": out,
            "totalTokenCount": PROMPT_TOKENS + out,
        },
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:22],
    }


MODEL_IDS = ("stub-model", "claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "gemini-2.5-flash")


def model_list() -> dict:
    """GET /v1/models: one list that satisfies both the OpenAI shape
    ({object:list, data:[{id, object:model, ...}]}) and the Anthropic shape
    ({data:[{id, type:model, display_name, created_at}], has_more, ...})."""
    data = [
        {
            "id": m,
            "object": "model",
            "type": "model",
            "created": 0,
            "owned_by": "stub",
            "display_name": m,
            "created_at": "2025-01-01T00:00:00Z",
        }
        for m in MODEL_IDS
    ]
    return {"object": "list", "data": data, "has_more": False, "first_id": MODEL_IDS[0], "last_id": MODEL_IDS[-1]}


def gemini_model_list() -> dict:
    return {
        "models": [
            {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent", "countTokens"]}
            for m in MODEL_IDS
            if m.startswith("gemini")
        ]
    }


# --------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------

# Gemini: /v1beta/models/gemini-2.5-pro:streamGenerateContent (any /v1* version).
GEMINI_RE = re.compile(r"^/(v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked encoding
    server_version = "StubProvider/1.0"

    # ---- plumbing ---------------------------------------------------------

    def log_message(self, fmt, *args):  # silence default stderr access log
        pass

    def _read_body(self) -> bytes:
        """Request body, honouring Content-Length or chunked encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, route: str, status: int, body: bytes, parsed: dict | None) -> None:
        """Append one JSON line describing this request to --log (and stderr)."""
        url = urlsplit(self.path)
        headers = {}
        for name in LOGGED_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                if StubConfig.redact and name in AUTH_HEADERS:
                    value = value[:12] + "..."
                headers[name] = value
        entry = {
            "ts": round(time.time(), 3),
            "client": self.client_address[0],
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "route": route,
            "status": status,
            # Which auth header(s) carried a key (Gemini may also use ?key=).
            "auth": [h for h in AUTH_HEADERS if h in headers] + (["query:key"] if "key" in parse_qs(url.query) else []),
            "headers": headers,
            "body_bytes": len(body),
        }
        if isinstance(parsed, dict):
            entry["model"] = parsed.get("model")
            entry["stream"] = parsed.get("stream")
        if StubConfig.log_bodies:
            entry["body"] = body[: StubConfig.log_bodies].decode("utf-8", "replace")
        _log_line(entry)

    def _send_json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sse(self, event: str | None, data) -> None:
        payload = data if isinstance(data, str) else json.dumps(data)
        head = f"event: {event}\n" if event else ""
        self._chunk(f"{head}data: {payload}\n\n".encode())

    # ---- dispatch ---------------------------------------------------------

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def do_OPTIONS(self):
        self._dispatch()

    def _dispatch(self) -> None:
        body = self._read_body()
        try:
            parsed = json.loads(body) if body else {}
        except ValueError:
            parsed = None
        req = parsed if isinstance(parsed, dict) else {}
        path = urlsplit(self.path).path.rstrip("/")
        query = parse_qs(urlsplit(self.path).query)
        method = self.command
        model = req.get("model") or "stub-model"
        stream = bool(req.get("stream"))
        reply = StubConfig.reply

        # Strip an optional /v1 prefix for the OpenAI/Anthropic routes.
        short = path[3:] if path.startswith("/v1/") else path
        gem = GEMINI_RE.match(path)

        if self.headers.get("Upgrade", "").lower() == "websocket":
            route, status = "websocket-refused", 426
            self._record(route, status, body, parsed)
            return self._send_json(status, {"error": {"message": "websockets not supported by stub"}})

        if method == "POST" and short == "/messages":
            route = "anthropic.messages" + (".stream" if stream else "")
            self._record(route, 200, body, parsed)
            if not stream:
                return self._send_json(200, anthropic_message(model, reply))
            self._start_stream()
            for event, data in anthropic_events(model, reply):
                self._sse(event, data)
            return self._end_stream()

        if method == "POST" and short == "/messages/count_tokens":
            self._record("anthropic.count_tokens", 200, body, parsed)
            return self._send_json(200, {"input_tokens": PROMPT_TOKENS})

        if method == "POST" and short == "/responses":
            route = "openai.responses" + (".stream" if stream else "")
            self._record(route, 200, body, parsed)
            if not stream:
                events = list(responses_events(model, reply))
                return self._send_json(200, events[-1][1]["response"])
            self._start_stream()
            for event, data in responses_events(model, reply):
                self._sse(event, data)
            return self._end_stream()

        if method == "POST" and short == "/chat/completions":
            route = "openai.chat" + (".stream" if stream else "")
            self._record(route, 200, body, parsed)
            if not stream:
                return self._send_json(200, chat_completion(model, reply))
            include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
            self._start_stream()
            for data in chat_chunks(model, reply, include_usage):
                self._sse(None, data)
            self._sse(None, "[DONE]")
            return self._end_stream()

        if method == "GET" and short == "/models":
            self._record("models.list", 200, body, parsed)
            return self._send_json(200, model_list())

        if method == "GET" and re.fullmatch(r"/v1[a-z0-9]*/models", path):
            self._record("gemini.models.list", 200, body, parsed)
            return self._send_json(200, gemini_model_list())

        if method == "POST" and gem:
            gmodel, gmethod = gem.group("model"), gem.group("method")
            if gmethod == "generateContent":
                self._record("gemini.generateContent", 200, body, parsed)
                return self._send_json(200, gemini_response(gmodel, reply))
            if gmethod == "streamGenerateContent":
                sse = query.get("alt", [""])[0] == "sse"
                self._record("gemini.streamGenerateContent" + (".sse" if sse else ".json"), 200, body, parsed)
                if not sse:  # without alt=sse the API streams one JSON array
                    return self._send_json(200, [gemini_response(gmodel, reply)])
                self._start_stream()
                self._sse(None, gemini_response(gmodel, reply))
                return self._end_stream()
            if gmethod == "countTokens":
                self._record("gemini.countTokens", 200, body, parsed)
                return self._send_json(200, {"totalTokens": PROMPT_TOKENS})

        # Anything else: log it (that is the point) and say 404.
        self._record("unknown", 404, body, parsed)
        if method == "HEAD":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        return self._send_json(
            404,
            {"error": {"type": "not_found_error", "code": 404, "message": f"stub has no route for {method} {path}"}},
        )


class StubServer(ThreadingHTTPServer):
    """Threading HTTP server; with an SSL context it speaks HTTPS.

    The TLS handshake is done in the per-connection worker thread (not in the
    accept loop), so one stuck client cannot block the others, and a failed
    handshake (typically: the client does not trust our test CA) is logged as
    a "tls-error" entry, which is exactly what a CA-trust test wants to see.
    """

    daemon_threads = True
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request, client_address):
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                _log_line(
                    {"ts": round(time.time(), 3), "client": client_address[0], "route": "tls-error", "error": str(exc)}
                )
                return
        super().finish_request(request, client_address)


def _log_line(entry: dict) -> None:
    """Append one JSON object to --log (if set) and echo it to stderr."""
    line = json.dumps(entry, sort_keys=True)
    with StubConfig.log_lock:
        if StubConfig.log_path:
            with open(StubConfig.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        print(line, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    ap.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    ap.add_argument("--reply", default="STUB-REPLY", help="fixed text of every model reply")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--cert", help="PEM certificate (chain) -> serve HTTPS")
    ap.add_argument("--key", help="PEM private key for --cert")
    ap.add_argument("--redact", action="store_true", help="truncate auth header values in the log")
    ap.add_argument(
        "--log-bodies", type=int, default=0, metavar="N", help="also log the first N bytes of each request body"
    )
    args = ap.parse_args(argv)

    StubConfig.reply, StubConfig.log_path = args.reply, args.log
    StubConfig.redact, StubConfig.log_bodies = args.redact, args.log_bodies

    server = StubServer((args.host, args.port), StubHandler)
    scheme = "http"
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.ssl_context = ctx
        scheme = "https"
    print(f"stub provider listening on {scheme}://{args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
