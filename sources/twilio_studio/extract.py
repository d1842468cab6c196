"""The walk: every flow's engagement pages, concurrently, filtered by per-flow cursors.

Cursors are kept per flow in the resource state (not one dlt ``incremental`` for the resource):
a flow added later, or loaded on its own with ``flow_sids``, must start from its own beginning
instead of from another flow's high-water mark.
"""

from __future__ import annotations

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
from twilio_studio.context import coerce_context, engagement_row, parse_time

logger = logging.getLogger("twilio_studio")


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

    @classmethod
    def from_state(cls, raw: dict[str, Any] | None) -> FlowCursor:
        if not raw:
            return cls(None)
        return cls(parse_time(raw.get("last_value")), set(raw.get("at_last", [])))

    def to_state(self) -> dict[str, Any]:
        value = self.last_value
        return {
            "last_value": value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None,
            "at_last": sorted(self.at_last),
        }


@dataclass
class WalkStats:
    """What one flow's walk saw; logged, and summed up for the CLI's summary."""

    flow_sid: str
    pages: int = 0
    seen: int = 0
    emitted: int = 0
    contexts_fetched: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def cursor_of(item: dict[str, Any]) -> datetime | None:
    return parse_time(item.get("date_updated") or item.get("date_created"))


class EngagementWalker:
    """Walks engagement lists of many flows at once and yields normalized rows page by page."""

    def __init__(
        self,
        client: StudioClient,
        window: Window,
        context_mode: str,
        max_concurrency: int,
        page_size: int,
    ) -> None:
        self.client = client
        self.window = window
        self.context_mode = context_mode
        self.max_concurrency = max_concurrency
        self.page_size = page_size
        self.stats: dict[str, WalkStats] = {}

    def run(
        self, flow_sids: list[str], cursors: dict[str, FlowCursor], on_flow_done: Callable[[str, FlowCursor], None]
    ) -> Iterator[list[dict[str, Any]]]:
        """Yields lists of engagement rows; calls ``on_flow_done`` after each flow's complete walk."""
        out: queue.Queue[tuple[str, Any, Any]] = queue.Queue(maxsize=2 * self.max_concurrency)
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
                cursor = self._walk_flow(flow_sid, cursors.get(flow_sid) or FlowCursor(None), put, stop)
                put(("done", flow_sid, cursor))
            except BaseException as e:  # handed to the consuming thread, which raises it
                put(("error", flow_sid, e))

        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="studio-flow") as pool, \
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
        for page in self.client.pages(
            f"/v1/Flows/{flow_sid}/Engagements", "engagements", what, {"PageSize": self.page_size}
        ):
            if stop.is_set():
                break
            stats.pages += 1
            selected: list[dict[str, Any]] = []
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
            logger.info(
                "%s: page %d, %d engagements read, %d new or changed, %.0f/s",
                what, stats.pages, stats.seen, stats.emitted, stats.seen / elapsed,
            )  # fmt: skip
            if rows:
                put(("rows", flow_sid, rows))
        stats.seconds = time.monotonic() - started
        for reason, count in stats.skipped.items():
            logger.warning("%s: skipped %d engagements: %s", what, count, reason)
        if window.end_date is not None:
            return cursor  # a backfill window leaves the saved cursor where it was
        return FlowCursor(new_last, new_at_last)

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
        try:
            cursor_of(item)
        except ValueError:
            return "a date that is not ISO 8601"
        return None

    def _rows(self, items: list[dict[str, Any]], flow_sid: str, stats: WalkStats) -> list[dict[str, Any]]:
        if self.context_mode == "never":
            return [engagement_row(item, None) | {"context": None} for item in items]
        contexts = [coerce_context(item.get("context")) for item in items]
        if self.context_mode == "fetch_missing":
            missing = [n for n, c in enumerate(contexts) if not c]
            futures: list[tuple[int, Future[dict[str, Any]]]] = [
                (n, self._ctx_pool.submit(self._fetch_context, flow_sid, items[n]["sid"])) for n in missing
            ]
            for n, future in futures:
                contexts[n] = coerce_context(future.result().get("context"))
                stats.contexts_fetched += 1
        return [engagement_row(item, ctx) for item, ctx in zip(items, contexts, strict=True)]

    def _fetch_context(self, flow_sid: str, sid: str) -> dict[str, Any]:
        path = f"/v1/Flows/{flow_sid}/Engagements/{sid}/Context"
        return self.client.get(self.client.url(path), f"flow {flow_sid}, engagement {sid} context")
