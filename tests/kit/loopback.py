"""Real HTTP servers on loopback for hostile or broken APIs: canned pages, or an answer per request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

Server = TypeVar("Server", bound="LoopbackServer")


class QuietHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, as Twilio answers, and no access log on the test output."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        """Writes no access log."""


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) for the life of a ``with`` block."""

    def start_serving(self, handler: type[BaseHTTPRequestHandler]) -> None:
        """Binds a free port on 127.0.0.1 with ``handler``; serving starts with ``with``."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self: Server) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class ScriptedStudio(LoopbackServer):
    """Serves ``routes[path_and_query] = (status, body)``; ``{base}`` in bodies is its own URL."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                status, body = outer.routes.get(self.path, (404, {"code": 20404, "status": 404}))
                raw = json.dumps(body).replace("{base}", outer.base_url).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.start_serving(Handler)


def page(key: str, records: list[dict[str, Any]], next_url: str | None, url: str = "{base}/x") -> dict[str, Any]:
    """A Studio list page of ``records`` under ``key``; ``next_url`` None on the last page."""
    return {
        key: records,
        "meta": {
            "first_page_url": url, "key": key, "next_page_url": next_url, "page": 0,
            "page_size": 50, "previous_page_url": None, "url": url,
        },
    }  # fmt: skip


def engagement(flow_sid: str, n: int, **overrides: Any) -> dict[str, Any]:
    """Engagement ``n`` of ``flow_sid`` as Studio lists it, with ``overrides``."""
    sid = f"FN{n:032x}"
    record = {
        "sid": sid, "account_sid": "AC" + "a" * 32, "flow_sid": flow_sid, "contact_sid": f"FC{n:032x}",
        "contact_channel_address": "+15550000000", "status": "ended",
        "context": {"widgets": {"ask": {"inbound": {"Body": "yes"}}}, "flow": {"data": {"k": n}}},
        "date_created": "2026-03-01T10:00:00Z", "date_updated": "2026-03-01T10:05:00Z",
        "url": "{base}/v1/Flows/" + flow_sid + "/Engagements/" + sid, "links": {},
    }  # fmt: skip
    record.update(overrides)
    return record


def flow(sid: str) -> dict[str, Any]:
    """Flow ``sid`` as Studio's v1 API shows it."""
    return {
        "sid": sid, "account_sid": "AC" + "a" * 32, "friendly_name": "Scripted", "status": "published",
        "version": 1, "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-02T00:00:00Z",
        "url": "{base}/v1/Flows/" + sid, "links": {},
    }  # fmt: skip


# ---------------------------------------------------------------------------- a programmable server
@dataclass
class Answer:
    """One HTTP answer: ``body`` is JSON (``{base}`` becomes the server's URL) or raw bytes."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # spread the body over this long, a few bytes at a time


@dataclass
class Seen:
    """A request the server saw: its path with the query, and its Authorization header."""

    path: str
    authorization: str | None


class DynamicStudio(LoopbackServer):
    """A real HTTP server on loopback whose every answer is ``respond(path_and_query)``."""

    def __init__(self, respond: Callable[[str], Answer]) -> None:
        self.respond = respond
        self.requests: list[Seen] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                outer.requests.append(Seen(self.path, self.headers.get("Authorization")))
                answer = outer.respond(self.path)
                if isinstance(answer.body, bytes):
                    raw = answer.body
                else:
                    raw = json.dumps(answer.body).replace("{base}", outer.base_url).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in answer.headers.items():
                    self.send_header(k, v.replace("{base}", outer.base_url))
                self.end_headers()
                try:
                    if answer.trickle_seconds:
                        pieces = 20
                        step = max(1, len(raw) // pieces)
                        for n in range(0, len(raw), step):
                            self.wfile.write(raw[n : n + step])
                            self.wfile.flush()
                            time.sleep(answer.trickle_seconds / pieces)
                    else:
                        self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.start_serving(Handler)


def routes(table: dict[str, Answer]) -> Callable[[str], Answer]:
    """A ``respond`` answering exact paths (with query) from ``table``, 404 otherwise."""
    return lambda path: table.get(path, Answer(404, {"code": 20404, "status": 404}))


class ForwardProxy(LoopbackServer):
    """An HTTP forward proxy on loopback (``HTTP_PROXY=<base_url>``): relays each request, notes its URL.

    A client using it sends the absolute URL (``GET http://host:port/path``); the proxy makes the same
    request itself (never through a proxy) and relays the answer.
    """

    def __init__(self) -> None:
        import requests

        self.seen: list[str] = []
        outer = self
        upstream = requests.Session()
        upstream.trust_env = False  # the proxy's own requests must not come back to it
        lock = threading.Lock()

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with lock:
                    outer.seen.append(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                answer = upstream.get(self.path, headers=headers, timeout=30, allow_redirects=False)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self.start_serving(Handler)
