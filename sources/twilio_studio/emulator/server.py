"""A real HTTP server on loopback serving the emulated Studio API, with a clock and fault modes."""

from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from twilio_studio.emulator.accounts import CORE_PREFIX, AccountDirectory, Principal, Subaccount
from twilio_studio.emulator.api import Credentials, Response, StudioApi, error_response, unauthorized
from twilio_studio.emulator.dataset import Dataset, iso
from twilio_studio.settings import ERROR_TOO_MANY_REQUESTS

logger = logging.getLogger(__name__)

FAULT_KINDS = ("error", "drop", "truncate", "throttle", "slow")
CONTROL_PREFIX = "/_emulator/"


@dataclass
class Faults:
    """Fault modes, all off by default. Rates are shares of requests, drawn from ``seed``."""

    latency: float = 0.0  # seconds added to every API request
    max_concurrency: int | None = None  # concurrent requests per account above which: 429
    retry_after: int | None = 1  # Retry-After seconds on 429; None sends no header
    error_rate: float = 0.0  # 500 / 503 answers
    drop_rate: float = 0.0  # connection closed without an answer
    truncate_rate: float = 0.0  # a 200 whose body stops half way
    slow_seconds: float = 0.0  # with kind "slow": how long such an answer takes
    seed: int = 0


class Clock:
    """The emulator's time: starts at ``start`` and moves only when told, or with the wall clock."""

    def __init__(self, start: datetime, realtime: bool = False) -> None:
        self._start = start
        self._offset = timedelta(0)
        self._realtime = realtime
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The emulator's time now, to the second."""
        with self._lock:
            now = self._start + self._offset
            if self._realtime:
                now += timedelta(seconds=time.monotonic() - self._t0)
            return now.replace(microsecond=0)

    def advance(self, delta: timedelta) -> datetime:
        """Moves the clock ``delta`` forward (never back, never past the year 9999); returns the new time."""
        if delta < timedelta(0):
            raise ValueError("the emulator's clock only moves forward")
        with self._lock:
            try:
                self._start + self._offset + delta
            except OverflowError:  # past year 9999: refuse rather than break every later now()
                raise ValueError("the emulator's clock cannot move past the year 9999") from None
            self._offset += delta
        return self.now()


@dataclass
class Stats:
    """What reached the server: counts by route and the paths asked for (tests read these)."""

    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    paths: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)  # path and query string, as requested
    # (username the request authenticated with, account whose data answered, path): who read what
    served: list[tuple[str, str, str]] = field(default_factory=list)
    max_in_flight: int = 0  # the most requests of one account at once
    max_total_in_flight: int = 0  # the most requests at once, all accounts together

    def snapshot(self) -> dict[str, Any]:
        """The traffic counters as JSON: requests, answers by status and the most requests at once."""
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "max_in_flight": self.max_in_flight,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as with Twilio
    # headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the body
    # until the client's delayed ACK (~40 ms), which made every small answer take 40+ ms
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self.server.emulator.serve(self)

    def do_POST(self) -> None:
        self.server.emulator.serve(self)

    def do_DELETE(self) -> None:
        self.server.emulator.serve(self)

    def do_PUT(self) -> None:  # not in Twilio's API: a 405 with Twilio's body, like other methods
        self.server.emulator.serve(self)

    def do_PATCH(self) -> None:
        self.server.emulator.serve(self)


class Emulator:
    """The Studio API on ``http://host:port``: start it, point a client at ``base_url``, stop it.

    Use as a context manager (``with Emulator(...) as emu: emu.base_url``) or through
    :func:`twilio_studio.emulator.serve`, which yields the base URL.
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Credentials | None = None,
        faults: Faults | None = None,
        realtime: bool = False,
        subaccounts: Sequence[Subaccount] = (),
    ) -> None:
        self.dataset = dataset or Dataset()
        self.credentials = credentials or Credentials(account_sid=self.dataset.account_sid)
        if self.credentials.account_sid != self.dataset.account_sid:
            raise ValueError("the credentials' account_sid must be the dataset's account_sid")
        self.faults = faults or Faults()
        self.clock = Clock(self.dataset.start, realtime=realtime)
        self.api = StudioApi(self.dataset, self.credentials, self.clock.now)
        # the parent (this dataset and credentials) and its subaccounts, each with its own Studio data
        self.accounts = AccountDirectory(self.credentials, self.dataset, subaccounts)
        self.apis = {self.credentials.account_sid: self.api}
        for sub in subaccounts:
            own = Credentials(account_sid=sub.sid, auth_token=sub.auth_token)
            self.apis[sub.sid] = StudioApi(sub.dataset, own, self.clock.now)
        self.stats = Stats()
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._rng = random.Random(self.faults.seed)
        self._scripted: list[tuple[str, str | None]] = []  # (kind, path substring)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Emulator:
        """Serves in a background thread from now on; returns the emulator."""
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll: the default 0.5 s slows tests
            name="studio-emulator",
            daemon=True,
        )
        self._thread.start()
        logger.info("Studio emulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket (nothing if not running)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Runs in the calling thread until interrupted (the CLI's foreground mode)."""
        server = _Server((self._host, self._port), _Handler)
        server.emulator = self
        self._server = server
        try:
            server.serve_forever()
        finally:
            server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        """The emulator's ``http://host:port``, once it is running."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use it in a with block")
        return f"http://{self._host_port()}"

    # ---------------------------------------------------------------- control
    def now(self) -> datetime:
        """The time on the emulator's clock now."""
        return self.clock.now()

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Moves the clock forward (``advance(3600)`` or ``advance(days=1)``)."""
        return self.clock.advance(timedelta(seconds=seconds, **delta))

    def inject(self, kind: str, times: int = 1, path_contains: str | None = None) -> None:
        """Makes the next ``times`` API requests (whose path contains ``path_contains``) fail."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
        with self._lock:
            self._scripted.extend([(kind, path_contains)] * times)

    def clear_faults(self) -> None:
        """Drops the scripted faults not yet used."""
        with self._lock:
            self._scripted.clear()

    def pending_faults(self) -> int:
        """How many scripted faults are not yet used."""
        with self._lock:
            return len(self._scripted)

    # ---------------------------------------------------------------- requests
    def serve(self, h: _Handler) -> None:
        """Answers one HTTP request: a control request, or an API request with its faults and limits."""
        parts = urlsplit(h.path)
        path, query = parts.path, parts.query
        if path.startswith(CONTROL_PREFIX):
            self._send(h, self._control(h.command, path, query), count=False)  # stats count API requests
            return
        body = self._read_body(h)
        with self._lock:
            self.stats.requests += 1
            self.stats.paths.append(path)
            self.stats.queries.append(h.path)
        if body is None:
            self._send(h, error_response(400, 20001, "Invalid Content-Length"))
            return
        if h.command not in ("GET", "POST", "DELETE"):
            self._send(h, error_response(405, 20004, "Method not allowed"))
            return
        principal = self._authenticate(h)
        if principal is None:
            self._send(h, unauthorized())
            return
        account = principal.account_sid
        with self._lock:
            self.stats.served.append((principal.username, account, path))
        fault = self._draw_fault(path)
        with self._lock:
            self._in_flight[account] += 1
            in_flight = self._in_flight[account]
            self.stats.max_in_flight = max(self.stats.max_in_flight, in_flight)
            self.stats.max_total_in_flight = max(self.stats.max_total_in_flight, sum(self._in_flight.values()))
        released = False

        def release() -> None:
            """Ends the request's count before its answer goes out.

            Once a client can read the answer, its next request must not find this one still counted (a 429
            it did not earn).
            """
            nonlocal released
            if not released:
                released = True
                with self._lock:
                    self._in_flight[account] -= 1

        try:
            cap = self.faults.max_concurrency
            if fault == "throttle" or (cap is not None and in_flight > cap):
                release()
                self._send(h, self._too_many())
                return
            if self.faults.latency:
                time.sleep(self.faults.latency)
            if fault == "slow":
                time.sleep(self.faults.slow_seconds or 5.0)
            if fault == "drop":
                release()
                h.close_connection = True
                h.connection.close()
                return
            if fault == "error":
                code = self._rng.choice((500, 503))
                release()
                self._send(h, error_response(code, 20500, "Internal Server Error"))
                return
            origin = f"http://{h.headers.get('Host') or self._host_port()}"
            try:
                if path.startswith(CORE_PREFIX):
                    response = (
                        self.accounts.handle(principal, origin, path, query)
                        if h.command == "GET"
                        else error_response(405, 20004, "Method not allowed")  # the source only reads Accounts
                    )
                else:
                    response = self.apis[account].handle(origin, path, query, h.command, body)
            except Exception:  # a bug must cost a 500, never the client's connection
                logger.exception("emulator: %s %s failed", h.command, path)
                response = error_response(500, 20500, "Internal Server Error")
            release()
            if fault == "truncate" and response.status == 200:
                self._send(h, response, truncate=True)
                return
            self._send(h, response)
        finally:
            release()

    @staticmethod
    def _read_body(h: _Handler) -> bytes | None:
        """The request's body (form fields of a write); None for a Content-Length that is not a size."""
        raw = h.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit() or int(raw) > 1 << 20:
            h.close_connection = True  # the body's end is unknown: this connection cannot carry another
            return None
        return h.rfile.read(int(raw)) if int(raw) else b""

    def _host_port(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{host.decode() if isinstance(host, bytes) else host}:{port}"

    def _authenticate(self, h: _Handler) -> Principal | None:
        header = h.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return self.accounts.authenticate(user, password)

    def _draw_fault(self, path: str) -> str | None:
        with self._lock:
            for n, (kind, needle) in enumerate(self._scripted):
                if needle is None or needle in path:
                    del self._scripted[n]
                    return kind
            f = self.faults
            roll = self._rng.random()
            for kind, rate in (("error", f.error_rate), ("drop", f.drop_rate), ("truncate", f.truncate_rate)):
                if roll < rate:
                    return kind
                roll -= rate
        return None

    def _too_many(self) -> Response:
        r = error_response(429, ERROR_TOO_MANY_REQUESTS, "Too Many Requests")
        if self.faults.retry_after is not None:
            r.headers["Retry-After"] = str(self.faults.retry_after)
        return r

    def _control(self, method: str, path: str, query: str) -> Response:
        """Loopback-only controls for a server in another process: clock and stats."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if path == CONTROL_PREFIX + "clock":
            if method == "POST":
                try:
                    self.advance(float(params.get("advance", "0")))
                except (ValueError, OverflowError) as e:
                    return error_response(400, 20001, f"Invalid advance: {e}")
            return Response(200, orjson.dumps({"now": iso(self.now())}))
        if path == CONTROL_PREFIX + "stats":
            with self._lock:
                return Response(200, orjson.dumps(self.stats.snapshot()))
        return error_response(404, 20404, f"The requested resource {path} was not found")

    def _send(self, h: _Handler, r: Response, truncate: bool = False, count: bool = True) -> None:
        if count:
            with self._lock:
                self.stats.by_status[r.status] += 1
        h.send_response(r.status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(r.body)))
        for k, v in r.headers.items():
            h.send_header(k, v)
        h.end_headers()
        if truncate:
            h.wfile.write(r.body[: len(r.body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(r.body)
