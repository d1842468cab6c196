"""HTTP client for the Studio API: auth, retries, an account-wide concurrency bound, pagination.

dlt's ``RESTClient`` and retrying ``Client`` were the first choice; this small client exists because
they (a) follow a ``next_page_url`` to any host, which would send the credentials elsewhere,
(b) back off without jitter, and (c) do not retry a 200 whose JSON body was cut short.

What it guarantees (README "Reliability"): a request goes only to base_url's scheme, host and port,
as ``requests`` itself parses the URL; redirects are never followed; ``request_timeout`` bounds a
whole response, a body trickling in included; a page URL or page token seen twice stops the walk.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from twilio_studio.settings import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_MAX_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
)
from twilio_studio.watch import watch_limit

logger = logging.getLogger("twilio_studio")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_EXCEPTIONS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
READ_CHUNK_BYTES = 256 * 1024


class StudioError(Exception):
    """Base of every error this package raises on purpose; its text is safe to show and log."""


class ConfigurationError(StudioError, ValueError):
    """Bad input, raised before any request is sent."""


class StudioApiError(StudioError):
    """The API refused a request, or kept failing after the bounded retries."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PaginationError(StudioError):
    """A list page the connector must not or cannot follow (another host, a loop, a bad envelope)."""


class AdaptiveLimit:
    """Requests in flight for the account: halves on each 429, grows back by one after a clean run.

    Twilio's 429 (error 20429) means too many concurrent requests for the account, which other
    programs share; backing off in time alone would send the same burst again.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self._in_flight = 0
        self._clean = 0
        self._cond = threading.Condition()
        self._waiting: collections.deque[object] = collections.deque()
        self._ahead: collections.deque[object] = collections.deque()  # read-aheads: their own line
        self._ahead_in_flight = 0
        self.requests = 0  # attempts ended, answered or not: read by progress (twilio_studio.watch)
        self.throttled = 0  # of them answered 429
        watch_limit(self)

    @property
    def in_flight(self) -> int:
        """Requests taken and not yet released."""
        return self._in_flight

    def acquire(self, ahead: bool = False) -> None:
        """Takes a slot, first come first served in two lines: requests waited for, and read-aheads (``ahead``).

        A walk that just had one queues behind those waiting, so with more walks than slots every flow
        advances (none waits for others to end). A page read ahead is not yet waited for, while the
        other requests are (a Context request holds up the rows of the page in hand), so read-aheads
        get half the slots while other requests wait, and the rest only when none does. Without that
        half, the walks fall into step: their next pages all wait behind a page's Context requests,
        then go out together and come back together, the server idle before and the client after.
        """
        me = object()
        line = self._ahead if ahead else self._waiting
        with self._cond:
            line.append(me)
            try:
                while line[0] is not me or not self._may_take(ahead):
                    self._cond.wait()
            except BaseException:  # interrupted while waiting: leave the line, let the next one try
                line.remove(me)
                self._cond.notify_all()
                raise
            line.popleft()
            self._in_flight += 1
            self._ahead_in_flight += ahead
            self._cond.notify_all()  # the next in line may fit too

    def _may_take(self, ahead: bool) -> bool:
        """Whether the first of its line may take a slot now (under ``_cond``)."""
        free = self.limit - self._in_flight
        share = self.limit // 2 - self._ahead_in_flight  # read-aheads' half, less those in flight
        if ahead:
            return free > 0 and (share > 0 or not self._waiting)
        return free > min(len(self._ahead), max(0, share))  # the slots read-aheads may claim stay theirs

    def release(self, throttled: bool, ahead: bool = False) -> None:
        """Gives back a slot (taken with ``ahead``); a 429 (``throttled``) halves the limit, clean answers raise it."""
        with self._cond:
            self._in_flight -= 1
            self._ahead_in_flight -= ahead
            self.requests += 1
            if throttled:
                self.throttled += 1
                self.limit = max(1, self.limit // 2)
                self._clean = 0
            elif self.limit < self.maximum:
                self._clean += 1
                if self._clean >= self.limit:
                    self.limit += 1
                    self._clean = 0
            self._cond.notify_all()


@dataclass(frozen=True)
class RetryPolicy:
    """How failed requests are retried: bounded attempts, exponential backoff with full jitter."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS
    backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS
    timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, and never sooner than the server's Retry-After."""
        jitter = random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))
        return min(self.backoff_max, max(jitter, retry_after or 0.0))


def origin_of(url: str) -> tuple[str, str, int] | None:
    r"""(scheme, host, port) that ``requests`` connects to for ``url``; None if it is not an http(s) URL.

    ``requests`` first rewrites the URL with urllib3's parser, then connects where ``urlsplit`` reads
    the rewritten URL. Reading the raw URL with ``urlsplit`` is not the same: ``http://a\@b/`` is host
    b to ``urlsplit`` but host a to ``requests``, so such a check would let credentials out to a.
    """
    try:
        prepared = requests.Request("GET", url).prepare().url or ""
        parts = urlsplit(prepared)
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except (ValueError, requests.exceptions.RequestException):  # no scheme, bad host or port, ...
        return None
    if scheme not in ("http", "https") or not host:
        return None
    return scheme, host, port or (443 if scheme == "https" else 80)


# a base URL's authority that every parser reads alike: host name or IPv4 address, optional port (no
# user info, no IPv6 brackets, no backslash): a URL that starts with such a base URL and a "/" has its host
PLAIN_AUTHORITY = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def _plain_prefix(base_url: str) -> str | None:
    """``base_url`` + "/" when every URL starting with it is on base_url's origin (``origin_of``); else None."""
    parts = urlsplit(base_url)
    if parts.query or parts.fragment or "\\" in base_url or not PLAIN_AUTHORITY.fullmatch(parts.netloc):
        return None
    if f"{parts.scheme}://{parts.netloc}{parts.path}" != base_url:
        return None
    return f"{base_url}/"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date; rare, so fall back to our own backoff


def _error_code(content: bytes) -> int | None:
    """Twilio's numeric error code from an error body; the body itself is never kept or shown."""
    try:
        code = orjson.loads(content).get("code")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return code if isinstance(code, int) else None


Parse = Callable[[bytes], Any]  # a response body's bytes to JSON (StudioClient.get's ``parse``)
# one request's outcome: the response and its whole body, or no response and the reason to retry; and
# when it ended (time.monotonic())
Attempt = tuple["requests.Response | None", bytes, str, float]


def _page_tokens(url: str) -> list[str]:
    return parse_qs(urlsplit(url).query).get("PageToken", [])


def _pagination_loop(url: str, seen: set[str], tokens: set[str]) -> str:
    """Why requesting ``url`` would read a page of this walk again; empty when it would not."""
    if url in seen:
        return f"the API returned the page {urlsplit(url).path} twice (a pagination loop)"
    # Twilio's next_page_url also counts Page=N up: the same PageToken under a new N is the same page
    own: set[str] = set()
    for token in _page_tokens(url):
        if token in tokens or token in own:
            return f"the API returned the page token {token[:40]} twice (a pagination loop)"
        own.add(token)
    return ""


def _json(content: bytes, parse: Parse) -> Any:
    """The body's JSON, or None if it is not complete JSON."""
    try:
        return parse(content)
    except orjson.JSONDecodeError:
        return None


def _environment_once(session: requests.Session, base_url: str) -> None:
    """Reads what requests takes from the environment once, instead of at every request.

    With ``trust_env`` (its default) requests reads the proxy variables (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``) and the CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) for every
    request, walking the whole environment twice: about 0.3 ms of CPU per request under the GIL the
    walk's threads share, 1.5 s of a load with 5,000 Context requests (BENCHMARKS.md). Every request
    of a client goes to ``base_url``'s host (``check_same_origin``), so the same settings, read once
    when the session is made, give each request what requests would have given it. Credentials come
    from the source, never from ``~/.netrc`` (the other thing ``trust_env`` reads).
    """
    session.trust_env = False
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


class StudioClient:
    """Talks to one Studio host with one set of credentials; safe to use from several threads."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        retry: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        origin = origin_of(self.base_url)
        if origin is None:
            raise ValueError("base_url is not an http(s) URL")  # options.py checks this before
        self._origin = origin
        self._prefix = _plain_prefix(self.base_url)  # URLs under it need no parsing to know their origin
        self._auth = (username, password)
        self.retry = retry or RetryPolicy()
        self.limit = AdaptiveLimit(max_concurrency)
        self._local = threading.local()
        self._max_connections = max_concurrency

    # ------------------------------------------------------------------ plumbing
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            _environment_once(session, self.base_url)
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._max_connections)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["Accept"] = "application/json"
            session.headers["User-Agent"] = "twilio-studio-dlt"
            self._local.session = session
        return session

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """The absolute URL of ``path`` on this client's host, with ``params`` as its query."""
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url}{path}{query}"

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on base_url's scheme, host and port, as requests would connect.

        A URL that starts with base_url and a "/" is on its host (the authority ends at that "/"), when
        base_url's own authority is plain (``_plain_prefix``); any other is parsed as requests parses it.
        """
        return (self._prefix is not None and url.startswith(self._prefix)) or origin_of(url) == self._origin

    def check_same_origin(self, url: str, what: str) -> None:
        """Refuses any URL outside base_url's scheme, host and port: credentials stay home."""
        if self.same_origin(url):
            return
        origin = origin_of(url)
        if origin is None:
            raise PaginationError(
                f"{what}: meta.next_page_url is not a URL the connector can follow (not an absolute http(s) "
                "URL with a valid host and port); stopping"
            )
        if origin != self._origin:
            scheme, host, port = origin
            raise PaginationError(
                f"{what}: the API returned a next page on {scheme}://{host}:{port}, which is not "
                f"base_url's host; refusing to send credentials there. Check base_url."
            )

    # ------------------------------------------------------------------ requests
    def get(
        self, url: str, what: str, parse: Parse = orjson.loads, first: Future[Attempt] | None = None
    ) -> dict[str, Any]:
        """GETs a JSON object, retrying 429, 5xx, resets, timeouts and cut-short bodies.

        ``parse`` turns a complete body into JSON (``extract.ParseTurns.parse`` waits for the walk's
        turn first); a body it cannot parse is retried like a cut-short one. ``first``: the first
        attempt, already sent (``pages`` reads the next page ahead); its answer is judged as any other, and
        the wait before its retry counts from when it came (a Retry-After of 1 s read 0.8 s later leaves
        0.2 s to wait).
        """
        self.check_same_origin(url, what)
        path = urlsplit(url).path
        policy = self.retry
        reason = ""
        for attempt in range(1, policy.max_attempts + 1):
            retry_after: float | None = None
            if attempt == 1 and first is not None:
                response, content, reason, ended = first.result()
            else:
                response, content, reason, ended = self._attempt(url)
            if response is not None:
                status = response.status_code
                if status == 200:
                    body = _json(content, parse)
                    if isinstance(body, dict):
                        return body
                    if body is not None:
                        raise StudioApiError(f"{what}: GET {path} returned JSON that is not an object")
                    reason = "a response body that is not complete JSON"
                elif status in RETRY_STATUS:
                    reason = f"HTTP {status}"
                    retry_after = _retry_after(response) if status == 429 else None
                else:
                    raise self._fatal(response, content, path, what)
            if attempt < policy.max_attempts:
                # the wait runs from the answer: a read-ahead answer may have waited for its walk
                wait = max(0.0, policy.delay(attempt, retry_after) - (time.monotonic() - ended))
                logger.warning(
                    "%s: GET %s failed with %s; retry %d of %d in %.1f s",
                    what, path, reason, attempt, policy.max_attempts - 1, wait,
                )  # fmt: skip
                time.sleep(wait)
        raise StudioApiError(
            f"{what}: GET {path} still failed with {reason} after {policy.max_attempts} attempts; "
            "the next run starts again from the last saved state"
        )

    def _attempt(self, url: str, ahead: bool = False) -> Attempt:
        """One request under the account's limit: the response and its whole body, or why there is none.

        ``ahead``: a page read ahead, which has half the slots while other requests wait (``AdaptiveLimit``).
        """
        timeout = self.retry.timeout
        response: requests.Response | None = None
        content, reason = b"", ""
        self.limit.acquire(ahead)
        try:
            # no redirects: a 3xx is an answer (see _fatal), so no request leaves base_url's host
            response = self._session().get(url, timeout=timeout, stream=True, allow_redirects=False)
            content = self._read(response, timeout)
        except requests.Timeout:
            reason = f"no complete response within {timeout:g} s (request_timeout)"
            response = None
        except requests.exceptions.ChunkedEncodingError:
            reason = "a response cut short before its end"
            response = None
        except RETRY_EXCEPTIONS as e:
            reason = f"a network error ({type(e).__name__})"
            response = None
        finally:
            self.limit.release(response is not None and response.status_code == 429, ahead)
        return response, content, reason, time.monotonic()

    @staticmethod
    def _read(response: requests.Response, timeout: float) -> bytes:
        """The whole body within ``timeout`` seconds in all.

        Checked after each read, and each read waits ``timeout`` at most: ``requests``' own timeout
        bounds each read only, so a body that trickles in a few bytes at a time would hold the run for as
        long as the server likes.
        """
        deadline = time.monotonic() + timeout
        chunks = []
        late = False
        try:
            while chunk := response.raw.read1(READ_CHUNK_BYTES, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    late = True
                    break
        except ReadTimeoutError:
            response.close()
            raise requests.Timeout("no data within request_timeout") from None
        except (Urllib3Error, OSError) as e:  # reset or cut short in the body: as requests would raise it
            response.close()
            raise requests.exceptions.ChunkedEncodingError(type(e).__name__) from None
        except BaseException:
            response.close()  # a half-read connection must not go back to the pool
            raise
        if late:
            response.close()
            raise requests.Timeout("the response took longer than request_timeout")
        return b"".join(chunks)

    @staticmethod
    def _fatal(response: requests.Response, content: bytes, path: str, what: str) -> StudioApiError:
        status, code = response.status_code, _error_code(content)
        coded = f"HTTP {status}" + (f" (Twilio error {code})" if code else "")
        if 300 <= status < 400:
            target = origin_of(response.headers.get("Location", ""))
            where = f" to {target[0]}://{target[1]}:{target[2]}" if target else ""
            hint = (
                f"a redirect{where}; the connector follows no redirects, so credentials stay on base_url's "
                "host. Check base_url"
            )
        elif status == 401:
            hint = (
                "check account_sid and auth_token (or api_key_sid and api_key_secret), and that "
                "base_url is the region the credentials belong to"
            )
        elif status == 403:
            hint = "the credentials may not read Studio; check the API key's permissions"
        elif status == 404:
            hint = "it does not exist in this account (a wrong flow SID, or data past Studio's 30-day retention)"
        else:
            hint = "the request was refused; see https://www.twilio.com/docs/errors" + (f"/{code}" if code else "")
        return StudioApiError(f"{what}: GET {path} answered {coded}: {hint}", status, code)

    # ------------------------------------------------------------------ lists
    def pages(
        self,
        path: str,
        key: str,
        what: str,
        params: dict[str, Any] | None = None,
        parse: Parse = orjson.loads,
        ahead: Executor | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yields each page's records, following ``meta.next_page_url`` until it is null.

        A yielded list is not kept here: once the caller drops it, the page's objects are freed
        (before the next page is parsed). ``parse`` as in ``get``. ``ahead``: threads that request the
        next page while the caller works on this one (only its body is held, not parsed); for walks
        that read to the last page, as one page too many is requested when the caller stops early.
        """
        url: str | None = self.url(path, params)
        seen: set[str] = set()
        tokens: set[str] = set()
        pending: Future[Attempt] | None = None
        try:
            while url is not None:
                loop = _pagination_loop(url, seen, tokens)
                if loop:
                    raise PaginationError(f"{what}: {loop}; stopping so the run cannot go on forever")
                seen.add(url)
                tokens.update(_page_tokens(url))
                body = self.get(url, what, parse, pending)
                pending = None
                meta = body.get("meta")
                if not isinstance(body.get(key), list) or not isinstance(meta, dict):
                    raise PaginationError(
                        f"{what}: GET {urlsplit(url).path} returned a page without a '{key}' list and a "
                        "'meta' object; is base_url a Twilio Studio API?"
                    )
                next_url = meta.get("next_page_url")
                if (
                    ahead is not None
                    and isinstance(next_url, str)
                    and self.same_origin(next_url)
                    and not _pagination_loop(next_url, seen, tokens)
                ):
                    pending = ahead.submit(self._attempt, next_url, True)
                yield body.pop(key)  # no reference stays here while the caller works on the page
                del body
                if next_url is not None and not isinstance(next_url, str):
                    raise PaginationError(f"{what}: meta.next_page_url is not a URL")
                if next_url is not None:
                    self.check_same_origin(next_url, what)
                url = next_url
        finally:
            if pending is not None:
                pending.cancel()  # or, already sent, its answer is dropped when it comes
