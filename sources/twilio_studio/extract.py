"""The walk: every flow's engagement (or execution) pages, concurrently.

Each record is selected by its flow's cursor (``cursors``), one page at a time turned into rows
(``ParseTurns``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from twilio_studio.client import StudioClient
from twilio_studio.context import coerce_context, engagement_row, parse_time, step_row
from twilio_studio.cursors import FlowCursor, FlowSelection, Window, cursor_of
from twilio_studio.memory import rare_gc_passes
from twilio_studio.redact import may_hold_card_data, redact_card_data
from twilio_studio.steps import order_steps
from twilio_studio.watch import watch_walker

logger = logging.getLogger("twilio_studio")

# More walks than allowed requests in flight keep every request slot busy while some walks wait
# for their turn to parse (each flow's pages come one after another).
WALKS_PER_REQUEST_SLOT = 3
# Full batches (RowSink.add) waiting for the consumer, which turns them into Arrow tables.
QUEUED_BATCHES = 1


class ParseTurns:
    """One page at a time is parsed and handed over as rows, across all walks of a run.

    A parsed page of 1,000 engagements is ~100,000 Python objects (~9 MB); as rows in a batch it is a
    third of that. Parsing and turning pages into rows hold the GIL, so two pages in hand buy no
    speed, only memory, and memory Python's allocator keeps for the rest of the process (its arenas
    are freed only when wholly empty: BENCHMARKS.md). So a walk's turn starts when its page's body has
    arrived and is parsed (``parse``: the client calls it, while the other walks' requests stay in
    flight) and ends when the walk has handed the page's rows over (``end``); a walk waiting for the
    network in its turn steps ``aside``. ``end`` is safe to call when the turn is not held.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = threading.local()

    def holding(self) -> bool:
        """Whether this thread holds the turn."""
        return bool(getattr(self._held, "turn", False))

    def taken(self) -> bool:
        """Whether some thread holds the turn."""
        return self._lock.locked()

    def parse(self, content: bytes) -> Any:
        """The body's JSON, parsed in this thread's turn (waited for, unless this thread holds it).

        The turn stays held only when the body is a JSON object, the page to hand over.
        """
        if not self.holding():
            self._lock.acquire()
            self._held.turn = True
        try:
            body = orjson.loads(content)
        except BaseException:
            self.end()  # nothing to hand over: the client retries the request, or gives up
            raise
        if not isinstance(body, dict):
            self.end()
        return body

    def end(self) -> None:
        """Gives back this thread's turn, if it holds it."""
        if self.holding():
            self._held.turn = False
            self._lock.release()

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Gives the turn to another walk while this one waits (for the network), then takes it back."""
        held = self.holding()
        self.end()
        try:
            yield
        finally:
            if held:
                self._lock.acquire()
                self._held.turn = True


class RowSink(Protocol):
    """Where walks hand their rows over, in their own threads (``columnar.Batches``)."""

    def add(self, rows: list[dict[str, Any]]) -> Any | None:
        """Takes the rows (consumed); returns a full batch for the consumer, or None."""

    def rest(self) -> Any | None:
        """The last, partly filled batch (None if empty), once every walk has ended."""


@dataclass(frozen=True)
class Listing:
    """Engagements (v1) or Executions (v2): the same walk over different paths."""

    name: str  # list key and table name
    base: str  # e.g. /v1/Flows/{flow}/Engagements
    owner: str  # the child rows' link column, e.g. engagement_sid
    extra: tuple[str, ...] = ()  # fields only this kind has
    server_filter: bool = False  # the list accepts DateCreatedFrom
    widget_fields: str = "arrays"  # which scalars of widget outputs become field rows (WIDGET_FIELDS_MODES)

    def list_path(self, flow_sid: str) -> str:
        """The list path of this kind's records of the flow ``flow_sid``."""
        return self.base.format(flow=flow_sid)

    def item_path(self, flow_sid: str, sid: str) -> str:
        """The path of the record ``sid`` of the flow ``flow_sid``."""
        return f"{self.list_path(flow_sid)}/{sid}"


ENGAGEMENTS = Listing("engagements", "/v1/Flows/{flow}/Engagements", "engagement_sid")
EXECUTIONS = Listing(
    "executions", "/v2/Flows/{flow}/Executions", "execution_sid", ("flow_version", "initiated_by"), True
)


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
        """Counts a record left out for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class ListingWalker:
    """Walks the engagement (or execution) lists of many flows at once, handing their rows to a sink."""

    def __init__(
        self,
        client: StudioClient,
        window: Window,
        context_mode: str,
        max_concurrency: int,
        page_size: int,
        kind: Listing = ENGAGEMENTS,
        stop_at_ended: bool = False,
        keep_card_data: bool = False,
    ) -> None:
        self.kind = kind
        self.turns = ParseTurns()
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
        # context fetches, shared by the walks: the pool lives as long as one call of walk()
        self._contexts: ThreadPoolExecutor | None = None
        # each walk's next page, requested while the walk turns this one into rows (same lifetime)
        self._ahead: ThreadPoolExecutor | None = None
        self._page = threading.local()  # per walk thread: whether the page just parsed can hold card data
        watch_walker(self)  # progress reads self.stats (twilio_studio.watch)

    def walk(
        self,
        flow_sids: list[str],
        cursors: dict[str, FlowCursor],
        on_flow_done: Callable[[str, FlowCursor], None],
        sink: RowSink,
    ) -> Iterator[Any]:
        """Hands every flow's new and changed rows to ``sink`` and yields its full batches, then the last one.

        Calls ``on_flow_done`` after each flow's complete walk.
        """
        # the consumer (Arrow tables, in the extracting thread) sets the pace: a walk with a full
        # batch waits for it, in its turn, so no other page is parsed meanwhile
        out: queue.Queue[tuple[str, Any, Any]] = queue.Queue(maxsize=QUEUED_BATCHES)
        stop = threading.Event()

        def put(msg: tuple[str, Any, Any]) -> None:
            while not stop.is_set():
                try:
                    out.put(msg, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def walk(flow_sid: str) -> None:
            try:
                cursor = self._walk_flow(flow_sid, cursors.get(flow_sid) or FlowCursor(None), sink, put, stop)
                put(("done", flow_sid, cursor))
            except BaseException as e:  # handed to the consuming thread, which raises it
                put(("error", flow_sid, e))
            finally:
                self.turns.end()

        walks = max(1, min(len(flow_sids), WALKS_PER_REQUEST_SLOT * self.max_concurrency))
        # the walks' pool last: it is shut down first, so no walk is left to use the other two
        with rare_gc_passes(), \
                ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="studio-context") as ctx_pool, \
                ThreadPoolExecutor(walks, thread_name_prefix="studio-ahead") as ahead, \
                ThreadPoolExecutor(walks, thread_name_prefix="studio-flow") as pool:  # fmt: skip
            self._contexts = ctx_pool
            self._ahead = ahead
            futures = [pool.submit(walk, sid) for sid in flow_sids]
            remaining = len(futures)
            try:
                while remaining:
                    kind, flow_sid, payload = out.get()
                    if kind == "batch":
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
        self._contexts = self._ahead = None
        last = sink.rest()
        if last is not None:
            yield last

    def _walk_flow(
        self,
        flow_sid: str,
        cursor: FlowCursor,
        sink: RowSink,
        put: Callable[[tuple[str, Any, Any]], None],
        stop: threading.Event,
    ) -> FlowCursor:
        stats = self.stats.setdefault(flow_sid, WalkStats(flow_sid))
        what = f"flow {flow_sid}"
        started = time.monotonic()
        selection = FlowSelection(cursor, self.window, self.stop_at_ended)
        seen_sids: set[str] = set()
        params: dict[str, Any] = {"PageSize": self.page_size}
        if self.kind.server_filter and (created_from := selection.server_created_from()) is not None:
            params["DateCreatedFrom"] = created_from
        # the next page is requested while this one is turned into rows (the walk and the API's work
        # overlap), unless the walk may stop before the last page
        ahead = self._ahead if selection.stop_before is None else None
        pages = self.client.pages(self.kind.list_path(flow_sid), self.kind.name, what, params, self._parse_page, ahead)
        with contextlib.closing(pages):  # type: ignore[type-var]
            for page in pages:  # each page in this walk's turn (ParseTurns), ended before the next request
                if stop.is_set():
                    break
                stats.pages += 1
                selected: list[dict[str, Any]] = []
                in_order = not selection.out_of_order
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
                    if selection.wanted(item, at):
                        selected.append(item)
                del page  # only the selected records stay, and each only until its row is handed over
                if in_order and selection.out_of_order:
                    logger.warning(
                        "%s: the list is not newest first by date_created; reading every page "
                        "(stop_at_ended_pages has no effect for this flow)", what,
                    )  # fmt: skip
                cards = getattr(self._page, "cards", True)  # set by _parse_page for this page
                stats.emitted += self._hand_over(selected, flow_sid, stats, sink, put, cards)
                self.turns.end()
                elapsed = max(time.monotonic() - started, 1e-9)
                logger.debug(  # one line per page: progress (--progress) shows these counts
                    "%s: page %d, %d %s read, %d new or changed, %.0f/s",
                    what, stats.pages, stats.seen, self.kind.name, stats.emitted, stats.seen / elapsed,
                )  # fmt: skip
                if selection.end_page():
                    stats.stopped_early = True
                    break  # every later page is older still: all ended before the last run
        stats.seconds = time.monotonic() - started
        for reason, count in stats.skipped.items():
            logger.warning("%s: skipped %d %s: %s", what, count, self.kind.name, reason)
        for reason, count in stats.without_context.items():
            logger.warning("%s: loaded %d %s without their context: %s", what, count, self.kind.name, reason)
        return selection.result()

    def _parse_page(self, content: bytes) -> Any:
        """A list page's JSON, parsed in the walk's turn; notes whether its text can hold card data at all.

        One test of the page's text spares the per-context test of every record on a page without
        any (most pages of most flows).
        """
        self._page.cards = not self.keep_card_data and may_hold_card_data(content)
        return self.turns.parse(content)

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

    def _hand_over(
        self,
        items: list[dict[str, Any]],
        flow_sid: str,
        stats: WalkStats,
        sink: RowSink,
        put: Callable[[tuple[str, Any, Any]], None],
        cards: bool = True,
    ) -> int:
        """Hands the rows of these records to ``sink`` (the list is emptied); returns how many rows.

        Those whose context must be fetched go last, after stepping aside while it is fetched.
        ``cards``: the page's text may hold card data (False: no inline context is tested for it).
        """
        missing: list[dict[str, Any]] = []
        rows = []
        for item in items:
            value = item.get("context") if self.context_mode != "never" else None
            context = coerce_context(value)
            if not context and self.context_mode == "fetch_missing":
                missing.append(item)
                continue
            rows.append(self._row(item, value, context, stats, cards))
        items.clear()
        count = len(rows)
        self._give(rows, flow_sid, sink, put)
        if missing:
            with self.turns.aside():  # waiting on the network, with only these small records in hand
                pool = self._contexts
                if pool is None:
                    raise RuntimeError("contexts are fetched only during walk()")  # a bug, not a user error
                futures = [pool.submit(self._fetch_context, flow_sid, item["sid"]) for item in missing]
                fetched = [future.result() for future in futures]
            for item, body in zip(missing, fetched, strict=True):
                value = body.get("context")
                stats.contexts_fetched += 1
                rows.append(self._row(item, value, coerce_context(value), stats))
            count += len(rows)
            self._give(rows, flow_sid, sink, put)
        return count

    def _row(
        self, item: dict[str, Any], value: Any, context: dict[str, Any] | None, stats: WalkStats, cards: bool = True
    ) -> Any:
        if context is None and value is not None and value != "" and value != [] and value != {}:
            reason = "a context that is not a JSON object"
            stats.without_context[reason] = stats.without_context.get(reason, 0) + 1
        if context is not None and cards and not self.keep_card_data:  # before normalization: every copy is of it
            context = redact_card_data(context)
        kind = self.kind
        return engagement_row(item, context, kind.owner, kind.extra, children=False)

    @staticmethod
    def _give(
        rows: list[dict[str, Any]], flow_sid: str, sink: RowSink, put: Callable[[tuple[str, Any, Any]], None]
    ) -> None:
        """Rows to the sink (the list is emptied); a batch the sink fills goes to the consumer."""
        if not rows:
            return
        full = sink.add(rows)
        rows.clear()
        if full is not None:
            put(("batch", flow_sid, full))

    def _fetch_context(self, flow_sid: str, sid: str) -> dict[str, Any]:
        path = f"{self.kind.item_path(flow_sid, sid)}/Context"
        return self.client.get(self.client.url(path), f"flow {flow_sid}, {self.kind.name[:-1]} {sid} context")


class StepFetcher:
    """Reads the steps of many engagements (or executions) at once, under the client's account-wide limit."""

    def __init__(
        self,
        client: StudioClient,
        kind: Listing,
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
        """Stops the context-fetch pool, its queued fetches cancelled."""
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
