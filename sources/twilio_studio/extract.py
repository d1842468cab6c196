"""The walk: every flow's engagement pages, concurrently, filtered by per-flow cursors.

Cursors are kept per flow in the resource state (not one dlt ``incremental`` for the resource):
a flow added later, or loaded on its own with ``flow_sids``, must start from its own beginning
instead of from another flow's high-water mark.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from twilio_studio.client import StudioClient
from twilio_studio.context import coerce_context, engagement_row, parse_time, step_row
from twilio_studio.memory import rare_gc_passes
from twilio_studio.redact import redact_card_data
from twilio_studio.steps import order_steps
from twilio_studio.watch import watch_walker

logger = logging.getLogger("twilio_studio")

# A parsed page of 1,000 engagements is ~9 MB of Python objects and its rows ~7 MB more. Parsing and
# normalizing hold the GIL, so a second page in hand buys no speed, only memory (and memory Python's
# allocator keeps after the run: BENCHMARKS.md). The walks take turns: one page is parsed and
# normalized at a time, while the requests of the others stay in flight.
PAGES_IN_HAND = 1
# Walks at once, per allowed request in flight: more walks than request slots keep every slot busy
# while some walks wait for their turn to parse (each flow's pages come one after another).
WALKS_PER_REQUEST_SLOT = 3
# Engagement rows handed over and waiting for the consumer: one page of 1,000, ten of 100 (each row
# keeps its parsed context alive until the consumer turns it into JSON text).
QUEUED_ROWS = 1000


@dataclass(frozen=True)
class RunKind:
    """Engagements (v1) or Executions (v2): the same walk over different paths."""

    name: str  # list key and table name
    base: str  # e.g. /v1/Flows/{flow}/Engagements
    owner: str  # the child rows' link column, e.g. engagement_sid
    extra: tuple[str, ...] = ()  # fields only this kind has
    server_filter: bool = False  # the list accepts DateCreatedFrom
    widget_fields: str = "arrays"  # which scalars of widget outputs become field rows (WIDGET_FIELDS)

    def list_path(self, flow_sid: str) -> str:
        return self.base.format(flow=flow_sid)

    def item_path(self, flow_sid: str, sid: str) -> str:
        return f"{self.list_path(flow_sid)}/{sid}"


ENGAGEMENTS = RunKind("engagements", "/v1/Flows/{flow}/Engagements", "engagement_sid")
EXECUTIONS = RunKind(
    "executions", "/v2/Flows/{flow}/Executions", "execution_sid", ("flow_version", "initiated_by"), True
)


@dataclass(frozen=True)
class Window:
    """Which engagements a run loads, by cursor (date_updated, or date_created where it is null)."""

    start_date: datetime | None = None  # first run of a flow: load from here
    end_date: datetime | None = None  # backfill: load up to here (exclusive), keep saved cursors
    lookback: timedelta = timedelta(0)  # re-read this far behind the saved cursor (late updates)


@dataclass
class FlowCursor:
    """A flow's high-water mark and the SIDs seen exactly at it (so equal times are not lost)."""

    last_value: datetime | None
    at_last: set[str] = field(default_factory=set)
    # executions: the next run asks the server only for those created from here on (DateCreatedFrom):
    # the oldest one still active, since ended executions never change again
    created_from: datetime | None = None

    @classmethod
    def from_state(cls, raw: dict[str, Any] | None) -> FlowCursor:
        if not raw:
            return cls(None)
        return cls(parse_time(raw.get("last_value")), set(raw.get("at_last", [])), parse_time(raw.get("created_from")))

    def to_state(self) -> dict[str, Any]:
        return {
            "last_value": iso(self.last_value),
            "at_last": sorted(self.at_last),
            "created_from": iso(self.created_from),
        }


def iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class WalkStats:
    """What one flow's walk saw; logged, and summed up for the CLI's summary."""

    flow_sid: str
    pages: int = 0
    seen: int = 0
    emitted: int = 0
    contexts_fetched: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    without_context: dict[str, int] = field(default_factory=dict)  # loaded, but their context was unusable
    seconds: float = 0.0
    stopped_early: bool = False  # stop_at_ended_pages: the pages after this walk's last were not read

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def cursor_of(item: dict[str, Any]) -> datetime | None:
    return parse_time(item.get("date_updated") or item.get("date_created"))


class EngagementWalker:
    """Walks engagement (or execution) lists of many flows at once; yields normalized rows by page."""

    def __init__(
        self,
        client: StudioClient,
        window: Window,
        context_mode: str,
        max_concurrency: int,
        page_size: int,
        kind: RunKind = ENGAGEMENTS,
        stop_at_ended: bool = False,
        keep_card_data: bool = False,
    ) -> None:
        self.kind = kind
        # stop a flow's walk at the first page created wholly before the oldest engagement that was
        # still active at the last run (all older ones had ended, and ended ones never change)
        self.stop_at_ended = stop_at_ended
        self.keep_card_data = keep_card_data
        self.client = client
        self.window = window
        self.context_mode = context_mode
        self.max_concurrency = max_concurrency
        self.page_size = page_size
        self.stats: dict[str, WalkStats] = {}
        watch_walker(self)  # progress reads self.stats (twilio_studio.watch)

    def run(
        self, flow_sids: list[str], cursors: dict[str, FlowCursor], on_flow_done: Callable[[str, FlowCursor], None]
    ) -> Iterator[list[dict[str, Any]]]:
        """Yields lists of engagement rows; calls ``on_flow_done`` after each flow's complete walk."""
        # few rows wait: the consumer (normalization into Arrow, in the extracting thread) sets the pace;
        # small pages may queue up while it writes a batch, so their walks' next requests go out
        waiting = max(1, QUEUED_ROWS // max(1, self.page_size))
        out: queue.Queue[tuple[str, Any, Any]] = queue.Queue(maxsize=waiting)
        stop = threading.Event()
        self._gate = threading.Semaphore(PAGES_IN_HAND)

        def put(msg: tuple[str, Any, Any]) -> None:
            while not stop.is_set():
                try:
                    out.put(msg, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def walk(flow_sid: str) -> None:
            try:
                cursor = self._walk_flow(flow_sid, cursors.get(flow_sid) or FlowCursor(None), put, stop)
                put(("done", flow_sid, cursor))
            except BaseException as e:  # handed to the consuming thread, which raises it
                put(("error", flow_sid, e))

        walks = max(1, min(len(flow_sids), WALKS_PER_REQUEST_SLOT * self.max_concurrency))
        with rare_gc_passes(), ThreadPoolExecutor(walks, thread_name_prefix="studio-flow") as pool, \
                ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="studio-context") as ctx_pool:  # fmt: skip
            self._ctx_pool = ctx_pool
            futures = [pool.submit(walk, sid) for sid in flow_sids]
            remaining = len(futures)
            try:
                while remaining:
                    kind, flow_sid, payload = out.get()
                    if kind == "rows":
                        yield payload
                    elif kind == "done":
                        remaining -= 1
                        on_flow_done(flow_sid, payload)
                    else:
                        raise payload
            finally:
                stop.set()
                for f in futures:
                    f.cancel()

    def _walk_flow(
        self,
        flow_sid: str,
        cursor: FlowCursor,
        put: Callable[[tuple[str, Any, Any]], None],
        stop: threading.Event,
    ) -> FlowCursor:
        stats = self.stats.setdefault(flow_sid, WalkStats(flow_sid))
        what = f"flow {flow_sid}"
        started = time.monotonic()
        window = self.window
        floor = cursor.last_value if cursor.last_value is not None else window.start_date
        if floor is not None and cursor.last_value is not None:
            floor = floor - window.lookback
        strict = cursor.last_value is not None and window.lookback == timedelta(0)
        new_last, new_at_last = cursor.last_value, set(cursor.at_last)
        seen_sids: set[str] = set()
        params: dict[str, Any] = {"PageSize": self.page_size}
        if self.kind.server_filter and cursor.created_from is not None:
            params["DateCreatedFrom"] = iso(cursor.created_from - window.lookback)
        oldest_active: datetime | None = None
        newest: datetime | None = cursor.created_from
        # the walk may stop early only while the list keeps Twilio's newest-first order (unverified)
        stop_before = cursor.created_from - window.lookback if self.stop_at_ended and cursor.created_from else None
        previous: datetime | None = None
        pages = self.client.pages(self.kind.list_path(flow_sid), self.kind.name, what, params, self._gate)
        with contextlib.closing(pages):  # type: ignore[type-var]  # a walk stopped early gives its parse slot back at once
            for page in pages:
                if stop.is_set():
                    break
                stats.pages += 1
                selected: list[dict[str, Any]] = []
                page_newest: datetime | None = None
                for item in page:
                    stats.seen += 1
                    reason = self._invalid(item, flow_sid, seen_sids)
                    if reason:
                        stats.skip(reason)
                        continue
                    seen_sids.add(item["sid"])
                    at = cursor_of(item)
                    if at is None:
                        stats.skip("no date_created or date_updated")
                        continue
                    created = parse_time(item.get("date_created")) or at
                    newest = created if newest is None else max(newest, created)
                    page_newest = created if page_newest is None else max(page_newest, created)
                    if stop_before is not None and previous is not None and created > previous:
                        logger.warning(
                            "%s: the list is not newest first by date_created; reading every page "
                            "(stop_at_ended_pages has no effect for this flow)", what,
                        )  # fmt: skip
                        stop_before = None
                    previous = created
                    if item.get("status") == "active":
                        oldest_active = created if oldest_active is None else min(oldest_active, created)
                    if window.end_date is None and (new_last is None or at >= new_last):
                        if new_last is None or at > new_last:
                            new_last, new_at_last = at, set()
                        new_at_last.add(item["sid"])
                    if window.end_date is not None and at >= window.end_date:
                        continue
                    if floor is not None and (at < floor or (strict and at == floor and item["sid"] in cursor.at_last)):
                        continue
                    selected.append(item)
                rows = self._rows(selected, flow_sid, stats)
                stats.emitted += len(rows)
                elapsed = max(time.monotonic() - started, 1e-9)
                logger.debug(  # one line per page: progress (--progress) shows these counts
                    "%s: page %d, %d %s read, %d new or changed, %.0f/s",
                    what, stats.pages, stats.seen, self.kind.name, stats.emitted, stats.seen / elapsed,
                )  # fmt: skip
                if rows:
                    put(("rows", flow_sid, rows))
                del page, selected, rows  # before the next request: the page must not outlive its turn
                if stop_before is not None and page_newest is not None and page_newest < stop_before:
                    stats.stopped_early = True
                    break  # every later page is older still: all ended before the last run
        stats.seconds = time.monotonic() - started
        for reason, count in stats.skipped.items():
            logger.warning("%s: skipped %d %s: %s", what, count, self.kind.name, reason)
        for reason, count in stats.without_context.items():
            logger.warning("%s: loaded %d %s without their context: %s", what, count, self.kind.name, reason)
        if window.end_date is not None:
            return cursor  # a backfill window leaves the saved cursor where it was
        return FlowCursor(new_last, new_at_last, oldest_active if oldest_active is not None else newest)

    @staticmethod
    def _invalid(item: Any, flow_sid: str, seen: set[str]) -> str | None:
        if not isinstance(item, dict):
            return "not a JSON object"
        sid = item.get("sid")
        if not isinstance(sid, str) or not sid:
            return "no sid"
        if item.get("flow_sid") != flow_sid:
            return "flow_sid differs from the flow being read"
        if sid in seen:
            return "the same sid twice in one walk"
        try:  # both dates, not only the cursor's: engagement_row parses both, and must not raise
            dates = [parse_time(item.get("date_created")), parse_time(item.get("date_updated"))]
        except ValueError:
            return "a date that is not ISO 8601"
        if any(d is not None and d.tzinfo is None for d in dates):
            return "a date without a time zone"  # it cannot be compared with the UTC cursor
        return None

    def _rows(self, items: list[dict[str, Any]], flow_sid: str, stats: WalkStats) -> list[dict[str, Any]]:
        kind = self.kind
        if self.context_mode == "never":
            return [engagement_row(item, None, kind.owner, kind.extra, children=False) for item in items]
        raw = [item.get("context") for item in items]
        contexts = [coerce_context(c) for c in raw]
        if self.context_mode == "fetch_missing":
            missing = [n for n, c in enumerate(contexts) if not c]
            futures: list[tuple[int, Future[dict[str, Any]]]] = [
                (n, self._ctx_pool.submit(self._fetch_context, flow_sid, items[n]["sid"])) for n in missing
            ]
            if futures:
                # waiting on the network, this page's walk steps aside: another may parse meanwhile
                self._gate.release()
                try:
                    fetched = [(n, future.result()) for n, future in futures]
                finally:
                    self._gate.acquire()
                for n, body in fetched:
                    raw[n] = body.get("context")
                    contexts[n] = coerce_context(raw[n])
                    stats.contexts_fetched += 1
        for value, context in zip(raw, contexts, strict=True):
            if context is None and value is not None and value != "" and value != [] and value != {}:
                reason = "a context that is not a JSON object"
                stats.without_context[reason] = stats.without_context.get(reason, 0) + 1
        if not self.keep_card_data:  # before normalization: every copy below comes from the context
            contexts = [redact_card_data(c) for c in contexts]
        return [
            engagement_row(item, ctx, kind.owner, kind.extra, children=False)
            for item, ctx in zip(items, contexts, strict=True)
        ]

    def _fetch_context(self, flow_sid: str, sid: str) -> dict[str, Any]:
        path = f"{self.kind.item_path(flow_sid, sid)}/Context"
        return self.client.get(self.client.url(path), f"flow {flow_sid}, {self.kind.name[:-1]} {sid} context")


class StepFetcher:
    """Reads the steps of many engagements (or executions) at once, under the client's account-wide limit."""

    def __init__(
        self,
        client: StudioClient,
        kind: RunKind,
        context_mode: str,
        max_concurrency: int,
        keep_card_data: bool = False,
    ) -> None:
        self.client = client
        self.kind = kind
        self.keep_card_data = keep_card_data
        self.context_mode = context_mode
        self.pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="studio-steps")

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

    def rows(self, parents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Step rows of these parent rows (each with ``sid`` and ``flow_sid``), parents in parallel."""
        with rare_gc_passes():
            futures = [self.pool.submit(self._steps_of, p["flow_sid"], p["sid"]) for p in parents]
            out: list[dict[str, Any]] = []
            for future in futures:
                out.extend(future.result())
            return out

    def _steps_of(self, flow_sid: str, sid: str) -> list[dict[str, Any]]:
        base = f"{self.kind.item_path(flow_sid, sid)}/Steps"
        what = f"flow {flow_sid}, {self.kind.name[:-1]} {sid} steps"
        parent = self.kind.owner
        rows = []
        for page in self.client.pages(base, "steps", what, {"PageSize": 1000}):
            for item in page:
                if not isinstance(item, dict) or not isinstance(item.get("sid"), str):
                    logger.warning("%s: skipped a step without a sid", what)
                    continue
                try:  # step_row parses both dates and must not raise
                    parse_time(item.get("date_created")), parse_time(item.get("date_updated"))
                except ValueError:
                    logger.warning("%s: skipped step %s: a date that is not ISO 8601", what, item["sid"])
                    continue
                item.setdefault(parent, sid)
                context = None
                if self.context_mode != "never":
                    context = coerce_context(item.get("context"))
                    if not context and self.context_mode == "fetch_missing":
                        url = self.client.url(f"{base}/{item['sid']}/Context")
                        context = coerce_context(self.client.get(url, f"{what} context").get("context"))
                    if not self.keep_card_data:
                        context = redact_card_data(context)
                rows.append(step_row(item, context, parent, self.kind.widget_fields))
        return order_steps(rows)  # the parent's whole list: walk order, step_index, dwell_seconds
