"""A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible provider (Groq's
response shapes, ``usage`` included), scripted per test. Also serves any JSON endpoint
(e.g. a remote model's ``/predict``).

    with OpenAIServer() as server:
        server.script(completion('{"reasoning": "…", "orders": []}'), rate_limited(2))
        ... point LLAMA_BASE_URL at server.base_url ...
        server.requests[0].json["model"]

Replies are taken from the script in order; when it is empty, ``server.default`` answers
(a reply, or a function of the recorded request that returns one). Each reply can be
delayed, or can drop the connection without answering.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GROQ_MODEL = "llama-3.3-70b-versatile"


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A dict/list (sent as JSON), str or bytes (sent as is)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    """Close the connection without any response (a network error for the client)."""
    content_type: str = "application/json"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


Responder = Reply | Callable[[Recorded], Reply]


# ---------------------------------------------------------------- recorded response shapes


def completion_body(
    content: str | None,
    *,
    model: str = GROQ_MODEL,
    prompt_tokens: int = 1187,
    completion_tokens: int = 96,
    finish_reason: str = "stop",
    usage: bool = True,
) -> dict[str, Any]:
    """A chat completion as Groq returns it (fields as recorded from the API)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-7f3c2a1e-5b9d-4c1e-9a7b-2d4e6f8a0b1c",
        "object": "chat.completion",
        "created": 1733011200,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "system_fingerprint": "fp_4e0b6f5a1c",
        "x_groq": {"id": "req_01jd8xk2m3f4g5h6j7k8l9m0n1"},
    }
    if usage:
        body["usage"] = {
            "queue_time": 0.021,
            "prompt_tokens": prompt_tokens,
            "prompt_time": 0.058,
            "completion_tokens": completion_tokens,
            "completion_time": 0.349,
            "total_tokens": prompt_tokens + completion_tokens,
            "total_time": 0.407,
        }
    return body


def completion(content: str | dict[str, Any] | None, **kwargs: Any) -> Reply:
    """A 200 answer whose assistant message is ``content`` (a dict is JSON-encoded)."""
    text = json.dumps(content) if isinstance(content, dict) else content
    delay = kwargs.pop("delay", 0.0)
    return Reply(body=completion_body(text, **kwargs), delay=delay)


def error_body(message: str, type_: str, code: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, **extra}}


def rate_limited(retry_after: float | str | None = None) -> Reply:
    """Groq's 429 (requests per minute), with or without a ``retry-after`` header."""
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return Reply(
        status=429,
        headers=headers,
        body=error_body(
            f"Rate limit reached for model `{GROQ_MODEL}` in organization `org_01jabc` service "
            "tier `on_demand` on requests per minute (RPM): Limit 30, Used 30, Requested 1. "
            "Please try again in 2s.",
            "requests",
            "rate_limit_exceeded",
        ),
    )


def server_error(status: int = 500) -> Reply:
    return Reply(
        status=status,
        body=error_body("Internal Server Error", "internal_server_error", None),
    )


def json_validate_failed(failed_generation: str) -> Reply:
    return Reply(
        status=400,
        body=error_body(
            "Failed to generate JSON. Please adjust your prompt. See 'failed_generation' for "
            "more details.",
            "invalid_request_error",
            "json_validate_failed",
            failed_generation=failed_generation,
        ),
    )


def unauthorized() -> Reply:
    return Reply(
        status=401, body=error_body("Invalid API Key", "invalid_request_error", "invalid_api_key")
    )


def empty_choices() -> Reply:
    body = completion_body(None)
    body["choices"] = []
    return Reply(body=body)


# ---------------------------------------------------------------- the server


class OpenAIServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default: Responder = completion(
            {"reasoning": "Nothing compelling: hold.", "orders": [], "cited_rules": []}
        )
        self._script: deque[Responder] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def script(self, *replies: Responder) -> None:
        with self._lock:
            self._script.extend(replies)

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            responder = self._script.popleft() if self._script else self.default
        return responder(recorded) if callable(responder) else responder

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.02)

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up are part of the tests: stay quiet.
        pass


def _handler_for(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
            )
            reply = server._next(recorded)
            if reply.delay and server._stopping.wait(reply.delay):
                return
            if reply.drop:
                self.close_connection = True
                return
            payload = reply.body
            if isinstance(payload, bytes):
                data = payload
            elif isinstance(payload, str):
                data = payload.encode()
            else:
                data = json.dumps(payload).encode()
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_POST = _handle
        do_GET = _handle

    return Handler
