"""The Studio REST API over a Dataset: routing, resources, pagination and Twilio's error bodies.

Pure request -> response logic with no sockets, so the HTTP server stays a thin shell around it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode

import orjson

from twilio_studio.emulator.dataset import Dataset, EngagementView, Flow, Script, Step, iso
from twilio_studio.emulator.definitions import TRIGGER
from twilio_studio.emulator.flows_v2 import find_revision, render_revision, render_v2_flow
from twilio_studio.emulator.writes import WriteError, Writes, creation_fields, dumps, parse_form
from twilio_studio.settings import (
    API_DEFAULT_PAGE_SIZE,
    ERROR_AUTHENTICATE,
    ERROR_INVALID_PAGE_TOKEN,
    ERROR_INVALID_PARAMETER,
    ERROR_NOT_FOUND,
    MAX_PAGE_SIZE,
    MIN_PAGE_SIZE,
)

SID = "[0-9a-fA-F]{32}"
INTEGER_RE = re.compile(r"^[0-9]+$")  # a JSON Schema integer >= 0 as a query string carries it
# RFC 3339 date-time (the spec's `format: date-time`), as JSON Schema's format checkers read it
DATE_TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$", re.IGNORECASE
)
RUN = rf"^/(?P<ver>v1|v2)/Flows/(?P<flow>FW{SID})/(?P<kind>Engagements|Executions)"  # engagement or execution
ROUTES: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("flows", r"^/v1/Flows$"),
        ("flow_", rf"^/v1/Flows/(?P<flow>FW{SID})$"),
        ("list", rf"{RUN}$"),
        ("fetch", rf"{RUN}/(?P<sid>FN{SID})$"),
        ("context", rf"{RUN}/(?P<sid>FN{SID})/Context$"),
        ("steps", rf"{RUN}/(?P<sid>FN{SID})/Steps$"),
        ("step", rf"{RUN}/(?P<sid>FN{SID})/Steps/(?P<step>FT{SID})$"),
        ("step_context", rf"{RUN}/(?P<sid>FN{SID})/Steps/(?P<step>FT{SID})/Context$"),
        ("v2_flows", r"^/v2/Flows$"),
        ("v2_flow", rf"^/v2/Flows/(?P<flow>FW{SID})$"),
        ("revisions", rf"^/v2/Flows/(?P<flow>FW{SID})/Revisions$"),
        ("revision", rf"^/v2/Flows/(?P<flow>FW{SID})/Revisions/(?P<revision>[^/]+)$"),
    ]
]


@dataclass(frozen=True)
class Credentials:
    """Who may call the emulator: an account SID + auth token, or an API key SID + secret.

    The defaults are the documented test credentials (README "Emulator"); they are not secrets.
    """

    account_sid: str = "AC" + "a" * 32
    auth_token: str = "emulator-auth-token"
    api_key_sid: str = "SK" + "a" * 32
    api_key_secret: str = "emulator-api-secret"

    def accepts(self, user: str, password: str) -> bool:
        """Whether ``user`` and ``password`` are the account SID and token, or the API key SID and secret."""
        return (user, password) in {
            (self.account_sid, self.auth_token),
            (self.api_key_sid, self.api_key_secret),
        }


@dataclass
class Response:
    """An HTTP answer: status, body and headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """A request the API refuses: the status, Twilio's error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        """The error as Twilio answers it: a JSON body with code, message, more_info and status."""
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        return Response(self.status, orjson.dumps(body))


def error_response(status: int, code: int, message: str) -> Response:
    """An error answer with that status, Twilio error code and message."""
    return ApiError(status, code, message).response()


def unauthorized() -> Response:
    """Twilio's 401 answer to a request without valid credentials."""
    return error_response(401, ERROR_AUTHENTICATE, "Authenticate")


# ------------------------------------------------------------------------ pagination
def encode_token(list_path: str, key: int, direction: str) -> str:
    """A page token for ``list_path`` that continues from ``key`` in ``direction``."""
    raw = orjson.dumps({"l": list_path, "k": key, "d": direction})
    return "PT" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, list_path: str) -> tuple[int, str]:
    """The key and direction of a page token of ``list_path``; raises a 400 ``ApiError`` for any other token."""
    invalid = ApiError(400, ERROR_INVALID_PAGE_TOKEN, "Invalid PageToken")
    if not token.startswith("PT"):
        raise invalid
    try:
        raw = token[2:]
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        key, direction = int(data["k"]), str(data["d"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if data.get("l") != list_path or direction not in ("n", "p"):
        raise invalid
    return key, direction


class Keys(Protocol):
    """What a list page reads of its records' keys (ints growing with date_created)."""

    hi: int  # above every key

    def below(self, key: int) -> Iterator[int]:
        """The kept keys below ``key``, largest first."""
        ...

    def above(self, key: int) -> Iterator[int]:
        """The kept keys above ``key``, smallest first."""
        ...


@dataclass
class Listing:
    """A list ordered newest first: keys are ints that grow with date_created; scanning is lazy."""

    lo: int
    hi: int  # keys lo <= k < hi
    keep: Callable[[int], bool] | None = None

    def below(self, key: int) -> Iterator[int]:
        """The kept keys below ``key``, largest first."""
        for k in range(min(key, self.hi) - 1, self.lo - 1, -1):
            if self.keep is None or self.keep(k):
                yield k

    def above(self, key: int) -> Iterator[int]:
        """The kept keys above ``key``, smallest first."""
        for k in range(max(key + 1, self.lo), self.hi):
            if self.keep is None or self.keep(k):
                yield k


def take(it: Iterator[int], n: int) -> list[int]:
    """The first ``n`` keys of ``it``."""
    out: list[int] = []
    for k in it:
        out.append(k)
        if len(out) == n:
            break
    return out


# ------------------------------------------------------------------------ the API
# The write operations per route (writes.py): (route, method) -> handler name
WRITE_ROUTES = {("list", "POST"): "_create", ("fetch", "POST"): "_update", ("fetch", "DELETE"): "_delete"}


class StudioApi:
    """Answers the Studio v1/v2 requests: the reads the connector makes and the writes of the seeds."""

    def __init__(self, dataset: Dataset, credentials: Credentials, now: Callable[[], datetime]):
        self.dataset = dataset
        self.credentials = credentials
        self.now = now
        self.writes = Writes(dataset)

    def handle(self, origin: str, path: str, query: str, method: str = "GET", body: bytes = b"") -> Response:
        """The answer to one authenticated request, routed by its path and method; an error answer for any other."""
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        for name, pattern in ROUTES:
            m = pattern.match(path)
            if m:
                if m.groupdict().get("kind") == "Engagements" and m["ver"] != "v1":
                    break  # Engagements are a v1 resource: Twilio's v2 spec has Executions only
                handler = "_" + name if method == "GET" else WRITE_ROUTES.get((name, method))
                if handler is None:
                    return error_response(405, 20004, "Method not allowed")
                try:
                    if method == "GET":
                        return Response(200, dumps(getattr(self, handler)(origin, path, params, **m.groupdict())))
                    return getattr(self, handler)(origin, path, parse_form(body), **m.groupdict())  # type: ignore[no-any-return]
                except ApiError as e:
                    return e.response()
                except WriteError as e:
                    return error_response(e.status, e.code, e.message)
        return self._not_found(path).response()

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _not_found(path: str) -> ApiError:
        return ApiError(404, ERROR_NOT_FOUND, f"The requested resource {path} was not found")

    def _flow(self, path: str, flow_sid: str) -> Flow:
        flow = self.dataset.flows_by_sid.get(flow_sid)
        if flow is None:
            raise self._not_found(path)
        return flow

    def _view(self, path: str, flow: Flow, sid: str) -> EngagementView:
        now = self.now()
        created = self.writes.created_run(flow, sid, now)
        if created is not None:
            return self.writes.view(created.script, now, created.flow_address)
        lo, hi = self.dataset.index_range(flow, now)
        i = self.dataset.locate(flow, sid)
        if i is None or not lo <= i < hi or self.writes.is_deleted(sid):  # unknown, not yet, past retention, deleted
            raise self._not_found(path)
        return self.writes.view(self.dataset.script(flow, i), now)

    def _page(
        self,
        origin: str,
        path: str,
        params: dict[str, str],
        key: str,
        listing: Keys,
        render: Callable[[int], dict[str, Any]],
        filters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        size_raw = params.get("PageSize", str(API_DEFAULT_PAGE_SIZE))
        size = int(size_raw) if INTEGER_RE.match(size_raw) and len(size_raw) < 8 else -1
        if not MIN_PAGE_SIZE <= size <= MAX_PAGE_SIZE:
            raise ApiError(
                400,
                ERROR_INVALID_PARAMETER,
                f"Invalid PageSize: must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}",
            )
        page = self._page_number(params.get("Page", "0"))
        token = params.get("PageToken")
        if token:
            anchor, direction = decode_token(token, path)
            keys = take(listing.below(anchor), size) if direction == "n" else take(listing.above(anchor), size)[::-1]
        else:
            keys = take(listing.below(listing.hi), size)
        base = dict(filters or {})

        def url(p: int, tok: str | None = None) -> str:
            q = {**base, "PageSize": str(size), "Page": str(p)}
            if tok:
                q["PageToken"] = tok
            return f"{origin}{path}?{urlencode(q)}"

        has_next = bool(keys) and next(listing.below(keys[-1]), None) is not None
        has_prev = bool(keys) and page > 0 and next(listing.above(keys[0]), None) is not None
        return {
            key: [render(k) for k in keys],
            "meta": {
                "first_page_url": url(0),
                "key": key,
                "next_page_url": url(page + 1, encode_token(path, keys[-1], "n")) if has_next else None,
                "page": page,
                "page_size": size,
                "previous_page_url": (url(page - 1, encode_token(path, keys[0], "p")) if has_prev else None),
                "url": url(page, token),
            },
        }

    @staticmethod
    def _page_number(raw: str) -> int:
        """``Page``: client state, any whole number from 0 (the spec's schema), however large."""
        if not INTEGER_RE.match(raw):
            raise ApiError(400, ERROR_INVALID_PARAMETER, "Invalid Page: must be a whole number, 0 or more")
        if len(raw) > 1000:  # Python turns at most 4,300 digits into an int and back
            raise ApiError(400, ERROR_INVALID_PARAMETER, "Invalid Page: more than 1,000 digits")
        return int(raw)

    # ------------------------------------------------------------ flows
    def _render_flow(self, origin: str, flow: Flow) -> dict[str, Any]:
        url = f"{origin}/v1/Flows/{flow.sid}"
        return {
            "sid": flow.sid,
            "account_sid": self.dataset.account_sid,
            "friendly_name": flow.friendly_name,
            "status": flow.status,
            "version": flow.version,
            "date_created": iso(flow.date_created),
            "date_updated": iso(flow.date_updated),
            "url": url,
            "links": {"engagements": f"{url}/Engagements", "executions": f"{url}/Executions"},
        }

    def _flows(self, origin: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        flows = self.dataset.flows  # index grows with date_created, newest first like the rest
        return self._page(
            origin, path, params, "flows", Listing(0, len(flows)),
            lambda k: self._render_flow(origin, flows[k]),
        )  # fmt: skip

    def _flow_(self, origin: str, path: str, params: dict[str, str], flow: str) -> dict[str, Any]:
        return self._render_flow(origin, self._flow(path, flow))

    # ------------------------------------------------------------ v2 flows and revisions
    def _v2_flows(self, origin: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        flows = self.dataset.flows
        return self._page(
            origin, path, params, "flows", Listing(0, len(flows)),
            lambda k: render_v2_flow(origin, self.dataset.account_sid, flows[k], with_definition=False),
        )  # fmt: skip

    def _v2_flow(self, origin: str, path: str, params: dict[str, str], flow: str) -> dict[str, Any]:
        return render_v2_flow(origin, self.dataset.account_sid, self._flow(path, flow), with_definition=True)

    def _revisions(self, origin: str, path: str, params: dict[str, str], flow: str) -> dict[str, Any]:
        f = self._flow(path, flow)
        return self._page(
            origin, path, params, "revisions", Listing(0, len(f.revisions)),
            lambda k: render_revision(origin, self.dataset.account_sid, f, f.revisions[k], with_definition=False),
        )  # fmt: skip

    def _revision(self, origin: str, path: str, params: dict[str, str], flow: str, revision: str) -> dict[str, Any]:
        f = self._flow(path, flow)
        found = find_revision(f, revision)
        if found is None:
            raise self._not_found(path)
        return render_revision(origin, self.dataset.account_sid, f, found, with_definition=True)

    # ------------------------------------------------------------ engagements / executions
    def _render_engagement(
        self, origin: str, ver: str, kind: str, view: EngagementView, full_context: bool
    ) -> dict[str, Any]:
        s = view.script
        url = f"{origin}/{ver}/Flows/{s.flow.sid}/{kind}/{s.sid}"
        context_link = "engagement_context" if kind == "Engagements" else "execution_context"
        hide = s.context_only_on_endpoint and not full_context
        out: dict[str, Any] = {
            "sid": s.sid,
            "account_sid": self.dataset.account_sid,
            "flow_sid": s.flow.sid,
            "contact_sid": s.contact_sid,
            "contact_channel_address": s.address,
            "context": {} if hide else view.context,
            "status": view.status,
            "date_created": iso(s.date_created),
            "date_updated": iso(view.date_updated),
            "url": url,
            "links": {"steps": f"{url}/Steps", context_link: f"{url}/Context"},
        }
        if ver == "v2":
            out["flow_version"] = s.flow_version
            out["initiated_by"] = s.initiated_by
        return out

    def _list(self, origin: str, path: str, params: dict[str, str], ver: str, flow: str, kind: str) -> dict[str, Any]:
        f = self._flow(path, flow)
        now = self.now()
        filters: dict[str, str] = {}
        since = until = None
        status: str | None = None
        if kind == "Executions":
            since = self._date_param(params, "DateCreatedFrom", filters)
            until = self._date_param(params, "DateCreatedTo", filters)
            lo, hi = self.dataset.indices_created_between(f, now, since, until)
            status = params.get("status") if ver == "v2" else None
            if status is not None:
                if status not in ("active", "ended"):
                    raise ApiError(400, ERROR_INVALID_PARAMETER, "Invalid status: active or ended")
                filters["status"] = status
        else:
            lo, hi = self.dataset.index_range(f, now)
        # the dataset's runs and those created through the API, less the deleted (writes.py)
        listing, view_of = self.writes.listing(f, now, lo, hi, since, until)
        if status is not None:
            visible = listing.keep
            listing.keep = lambda k: (visible is None or visible(k)) and view_of(k).status == status
        return self._page(
            origin, path, params, kind.lower(), listing,
            lambda k: self._render_engagement(origin, ver, kind, view_of(k), False),
            filters,
        )  # fmt: skip

    @staticmethod
    def _date_param(params: dict[str, str], name: str, filters: dict[str, str]) -> datetime | None:
        raw = params.get(name)
        if raw is None:
            return None
        invalid = ApiError(
            400, ERROR_INVALID_PARAMETER, f"Invalid {name}: use ISO 8601 with a time zone, e.g. 2026-01-31T00:00:00Z"
        )
        m = DATE_TIME_RE.match(raw)
        if not m:
            raise invalid
        text = raw.upper().replace("Z", "+00:00")
        fraction = m.group(1) or ""
        text = text.replace(fraction, fraction[:7].ljust(7, "0") if fraction else "", 1)  # 6 digits: any Python
        try:
            value = datetime.fromisoformat(text)
        except ValueError:  # e.g. month 13 or February 30
            raise invalid from None
        filters[name] = raw
        return value

    def _fetch(
        self, origin: str, path: str, params: dict[str, str], ver: str, flow: str, kind: str, sid: str
    ) -> dict[str, Any]:
        f = self._flow(path, flow)
        return self._render_engagement(origin, ver, kind, self._view(path, f, sid), False)

    def _context(
        self, origin: str, path: str, params: dict[str, str], ver: str, flow: str, kind: str, sid: str
    ) -> dict[str, Any]:
        view = self._view(path, self._flow(path, flow), sid)
        own = "engagement_sid" if kind == "Engagements" else "execution_sid"
        return {
            "account_sid": self.dataset.account_sid,
            "context": view.context,
            own: sid,
            "flow_sid": flow,
            "url": f"{origin}{path}",
        }

    # ------------------------------------------------------------ writes (state in writes.py)
    def _create(self, origin: str, path: str, form: dict[str, str], ver: str, flow: str, kind: str) -> Response:
        """CreateEngagement / CreateExecution: a new active run that walks its flow as the clock moves."""
        f = self._flow(path, flow)
        to, from_, parameters = creation_fields(form)
        now = self.now()
        run = self.writes.create(f, to, from_, parameters, now)
        body = self._render_engagement(origin, ver, kind, self.writes.view(run.script, now, run.flow_address), True)
        return Response(201 if ver == "v2" else 200, dumps(body))  # the spec's codes: v1 200, v2 201

    def _update(
        self, origin: str, path: str, form: dict[str, str], ver: str, flow: str, kind: str, sid: str
    ) -> Response:
        """UpdateExecution: ``Status=ended`` ends an active execution (an ended one stays as it is)."""
        if kind != "Executions":
            return error_response(405, 20004, "Method not allowed")
        f = self._flow(path, flow)
        status = form.get("Status")
        if not status:
            raise WriteError(400, ERROR_INVALID_PARAMETER, "Missing required parameter Status in the post body")
        if status != "ended":
            raise WriteError(400, ERROR_INVALID_PARAMETER, "Invalid Status: an execution can only be updated to ended")
        self._view(path, f, sid)  # 404 for an unknown one
        self.writes.end(sid, self.now())
        return Response(200, dumps(self._render_engagement(origin, ver, kind, self._view(path, f, sid), False)))

    def _delete(
        self, origin: str, path: str, form: dict[str, str], ver: str, flow: str, kind: str, sid: str
    ) -> Response:
        """DeleteEngagement / DeleteExecution: 204; the run, its context and steps are gone."""
        f = self._flow(path, flow)
        self._view(path, f, sid)
        self.writes.delete(f, sid)
        return Response(204, b"")

    # ------------------------------------------------------------ steps
    def _render_step(self, origin: str, ver: str, kind: str, view: EngagementView, step: Step) -> dict[str, Any]:
        s: Script = view.script
        url = f"{origin}/{ver}/Flows/{s.flow.sid}/{kind}/{s.sid}/Steps/{step.sid}"
        own = "engagement_sid" if kind == "Engagements" else "execution_sid"
        return {
            "sid": step.sid,
            "account_sid": self.dataset.account_sid,
            "flow_sid": s.flow.sid,
            own: s.sid,
            "name": step.event,
            "context": self._step_context_of(s, step),
            "parent_step_sid": step.parent_step_sid,
            "transitioned_from": step.transitioned_from,
            "transitioned_to": step.transitioned_to,
            "type": step.widget.type,
            "date_created": iso(step.at),
            "date_updated": iso(step.at),
            "url": url,
            "links": {"step_context": f"{url}/Context"},
        }

    @staticmethod
    def _step_context_of(script: Script, step: Step) -> dict[str, Any]:
        """What one step parsed: the trigger's payload, or the widget's output."""
        if step.widget.name == TRIGGER and step.parent_step_sid is not None:  # a subflow, started by its parent
            return {"trigger": {"parent": {"flow_sid": script.flow.sid, "execution_sid": script.sid}}}
        if step.widget.name == TRIGGER:
            return {"trigger": script.trigger}
        return {"widgets": {step.widget.name: step.output}}

    def _steps(
        self, origin: str, path: str, params: dict[str, str], ver: str, flow: str, kind: str, sid: str
    ) -> dict[str, Any]:
        view = self._view(path, self._flow(path, flow), sid)
        return self._page(
            origin, path, params, "steps", Listing(0, len(view.steps)),
            lambda k: self._render_step(origin, ver, kind, view, view.steps[k]),
        )  # fmt: skip

    def _find_step(self, path: str, view: EngagementView, step: str) -> Step:
        for s in view.steps:
            if s.sid == step:
                return s
        raise self._not_found(path)

    def _step(
        self,
        origin: str,
        path: str,
        params: dict[str, str],
        ver: str,
        flow: str,
        kind: str,
        sid: str,
        step: str,
    ) -> dict[str, Any]:
        view = self._view(path, self._flow(path, flow), sid)
        return self._render_step(origin, ver, kind, view, self._find_step(path, view, step))

    def _step_context(
        self,
        origin: str,
        path: str,
        params: dict[str, str],
        ver: str,
        flow: str,
        kind: str,
        sid: str,
        step: str,
    ) -> dict[str, Any]:
        view = self._view(path, self._flow(path, flow), sid)
        found = self._find_step(path, view, step)
        own = "engagement_sid" if kind == "Engagements" else "execution_sid"
        return {
            "account_sid": self.dataset.account_sid,
            "context": self._step_context_of(view.script, found),
            own: sid,
            "flow_sid": flow,
            "step_sid": step,
            "url": f"{origin}{path}",
        }
