"""What a running load is doing, for whoever shows its progress (the CLI's ``--progress``).

The source keeps its counters where it works: each flow's walk its pages and engagements in its
``WalkStats`` (``extract.py``), each client's ``AdaptiveLimit`` its requests, 429 answers and requests
in flight (``client.py``). Those objects register here when they are made inside :func:`watching` (a
context variable, as ``account_report`` is), and :meth:`RunWatch.snapshot` reads their counters from
another thread: the walk pays for one registration per object, nothing per page or request. dlt's
step (extract, normalize, load) comes from a dlt progress collector, :class:`StepCollector`, that the
CLI sets on the pipeline.

Nothing here reads a record: a snapshot holds SIDs and counts, never personal data or credentials.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlt.common.runtime.collector_base import Collector

if TYPE_CHECKING:
    from twilio_studio.client import AdaptiveLimit
    from twilio_studio.extract import ListingWalker

# dlt's step names, as its collector is started with them ("Extract twilio_studio", "Normalize ...")
DLT_STEPS = ("extract", "normalize", "load")
# the counter of each step that has a total: dlt's resources, normalized files and load jobs
STEP_COUNTERS = {"extract": "Resources", "normalize": "Files", "load": "Jobs"}


@dataclass(frozen=True)
class FlowProgress:
    """One flow's walk so far."""

    flow_sid: str
    kind: str  # engagements or executions
    pages: int
    read: int  # list items read
    changed: int  # new or changed since the last run: the rows this run writes
    done: bool
    seconds: float  # of a finished walk; 0 while it runs


@dataclass(frozen=True)
class StepProgress:
    """One dlt step of the run: its name, dlt's counters (and their totals) and whether it ended."""

    name: str
    counters: dict[str, int]
    totals: dict[str, int]
    done: bool
    started: float  # time.monotonic()

    def describe(self) -> str:
        """``load 3 of 7 jobs`` or ``extract``: the step and its main counter."""
        key = STEP_COUNTERS.get(self.name)
        if key is None or key not in self.counters:
            return self.name
        count, total = self.counters[key], self.totals.get(key)
        what = key.lower()
        return f"{self.name} {count} of {total} {what}" if total else f"{self.name} {count} {what}"


@dataclass(frozen=True)
class Snapshot:
    """The whole run at one moment: every walk, the requests of every client, dlt's steps so far."""

    flows: tuple[FlowProgress, ...]
    requests: int  # attempts answered or failed, every client of the run
    throttled: int  # of them answered HTTP 429
    in_flight: int
    limit: int | None  # the adaptive limit of requests in flight, when the run has one client
    steps: tuple[StepProgress, ...]

    @property
    def pages(self) -> int:
        """Pages read by all walks."""
        return sum(f.pages for f in self.flows)

    @property
    def read(self) -> int:
        """List items read by all walks."""
        return sum(f.read for f in self.flows)

    @property
    def changed(self) -> int:
        """Records of all walks new or changed since the last run: the rows this run writes."""
        return sum(f.changed for f in self.flows)

    @property
    def flows_done(self) -> int:
        """Walks that have ended."""
        return sum(f.done for f in self.flows)

    @property
    def kinds(self) -> list[str]:
        """What the walks read (engagements, executions), in the order they started."""
        return list(dict.fromkeys(f.kind for f in self.flows)) or ["engagements"]

    @property
    def step(self) -> StepProgress | None:
        """The dlt step now (or the last one, once it ended)."""
        return self.steps[-1] if self.steps else None


@dataclass
class _Step:
    name: str
    started: float = field(default_factory=time.monotonic)
    counters: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    done: bool = False


class StepCollector(Collector):
    """A dlt progress collector (``pipeline.collector``) that records dlt's steps and their counters.

    dlt starts it at each step (``Extract <source>``, ``Normalize <schema> in <load id>``, ``Load ...``)
    and counts into it (rows per table, resources, files, jobs); the progress display reads
    :meth:`steps` from its own thread.
    """

    def __init__(self) -> None:
        self.step = ""
        self._lock = threading.Lock()
        self._steps: list[_Step] = []

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str | None = None,
    ) -> None:
        """Counts ``inc`` for the counter ``name`` (``label``) of the current step, and its total (dlt's collector)."""
        key = f"{name} {label}" if label else name
        with self._lock:
            if not self._steps:
                return
            step = self._steps[-1]
            step.counters[key] = step.counters.get(key, 0) + inc
            if total is not None:
                step.totals[key] = total
            if inc_total:
                step.totals[key] = step.totals.get(key, 0) + inc_total

    def _start(self, step: str) -> None:
        name = (step.split() or ["?"])[0].lower()
        with self._lock:
            self._steps.append(_Step(name))

    def _stop(self) -> None:
        with self._lock:
            if self._steps:
                self._steps[-1].done = True

    def steps(self) -> tuple[StepProgress, ...]:
        """The dlt steps so far, copied."""
        with self._lock:
            return tuple(StepProgress(s.name, dict(s.counters), dict(s.totals), s.done, s.started) for s in self._steps)


class RunWatch:
    """The walks and request limits of one run, and its dlt steps: read by :meth:`snapshot`."""

    def __init__(self) -> None:
        self.collector = StepCollector()
        self._lock = threading.Lock()
        self._walkers: list[ListingWalker] = []
        self._limits: list[AdaptiveLimit] = []

    def add_walker(self, walker: ListingWalker) -> None:
        """Adds a walk to those the snapshot reads."""
        with self._lock:
            self._walkers.append(walker)

    def add_limit(self, limit: AdaptiveLimit) -> None:
        """Adds a request limit to those the snapshot reads."""
        with self._lock:
            self._limits.append(limit)

    def snapshot(self) -> Snapshot:
        """The counters now, read without the walk's locks.

        Each number is one the walk has reached (a page counted a moment late at most), and the walk never
        waits for a reader.
        """
        with self._lock:
            walkers, limits = list(self._walkers), list(self._limits)
        flows = []
        for walker in walkers:
            kind = walker.kind.name
            for sid, s in dict(walker.stats).items():  # a copy: walks add their flows meanwhile
                flows.append(FlowProgress(sid, kind, s.pages, s.seen, s.emitted, s.seconds > 0, s.seconds))
        return Snapshot(
            flows=tuple(flows),
            requests=sum(limit.requests for limit in limits),
            throttled=sum(limit.throttled for limit in limits),
            in_flight=sum(limit.in_flight for limit in limits),
            limit=limits[0].limit if len(limits) == 1 else None,
            steps=self.collector.steps(),
        )


_WATCH: ContextVar[RunWatch | None] = ContextVar("twilio_studio_watch", default=None)


@contextlib.contextmanager
def watching() -> Iterator[RunWatch]:
    """Watches the runs inside the block (in this thread or task).

    For example::

        with watching() as watch:
            pipeline.collector = watch.collector  # dlt's steps
            pipeline.run(twilio_studio_source())  # meanwhile, from another thread: watch.snapshot()
    """
    watch = RunWatch()
    token = _WATCH.set(watch)
    try:
        yield watch
    finally:
        _WATCH.reset(token)


def watch_walker(walker: ListingWalker) -> None:
    """Registers a walk with the run being watched, if any (called where the walker is made)."""
    watch = _WATCH.get()
    if watch is not None:
        watch.add_walker(walker)


def watch_limit(limit: AdaptiveLimit) -> None:
    """Registers a client's request limit with the run being watched, if any."""
    watch = _WATCH.get()
    if watch is not None:
        watch.add_limit(limit)


__all__ = ["FlowProgress", "RunWatch", "Snapshot", "StepCollector", "StepProgress", "watching"]
