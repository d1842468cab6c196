"""Progress of a CLI load: a live table in a terminal, summary log lines elsewhere (README "Progress").

``--progress auto`` (the default) shows a live display (rich) when standard error is a terminal, and
logs a summary line every ``--progress-interval`` seconds and at each dlt step otherwise (cron, CI,
pipes). Both read :class:`twilio_studio.watch.Snapshot` from their own thread a few times a second
at most: the walk never waits for them. Only SIDs and counts are shown, never a record's content,
a phone number or a credential.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, TextIO

from twilio_studio.watch import FlowProgress, RunWatch, Snapshot, StepProgress, watching

logger = logging.getLogger("twilio_studio")

PROGRESS_MODES = ("auto", "live", "log", "off")
DEFAULT_PROGRESS_INTERVAL = 10.0  # seconds between two summary lines of --progress log
REFRESHES_PER_SECOND = 2  # the live display's redraws: 4-9 ms of CPU each (benchmarks/progress_cost.py)
RATE_WINDOW_SECONDS = 5.0  # the live rate of the whole run: engagements read over the last seconds
MAX_FLOW_ROWS = 12  # a run over hundreds of flows shows the walks under way and the latest done


def chosen_mode(mode: str, stream: TextIO) -> str:
    """``live``, ``log`` or ``off``: ``auto`` is live on a terminal (not TERM=dumb), else log."""
    if mode != "auto":
        return mode
    return "live" if _is_terminal(stream) and os.environ.get("TERM", "") != "dumb" else "log"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


class Rates:
    """Reading rates from successive snapshots: per flow, and the run's now and over the whole walk.

    Per flow since its walk began, the run's over the last few seconds (what it does now) and over the
    whole walk. Times are passed in: no clock inside.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self._first: dict[tuple[str, str], float] = {}
        self._recent: deque[tuple[float, int]] = deque()
        self._walk_started: float | None = None
        self._walk_ended: float | None = None

    def observe(self, snap: Snapshot, now: float) -> None:
        """Takes in the snapshot ``snap`` taken at time ``now`` (seconds, any monotonic clock)."""
        for f in snap.flows:
            self._first.setdefault((f.kind, f.flow_sid), now)
        if snap.flows and self._walk_started is None:
            self._walk_started = now
        if snap.flows and snap.flows_done == len(snap.flows):
            self._walk_ended = self._walk_ended or now
        else:
            self._walk_ended = None
        self._recent.append((now, snap.read))
        while len(self._recent) > 2 and now - self._recent[1][0] >= RATE_WINDOW_SECONDS:
            self._recent.popleft()

    def flow(self, f: FlowProgress, now: float) -> float | None:
        """Items read per second by one walk (over its whole walk once it ended)."""
        seconds = f.seconds if f.done else now - self._first.get((f.kind, f.flow_sid), now)
        return f.read / seconds if seconds > 0 else None

    def now(self) -> float | None:
        """Items read per second over the last few seconds, while walks run."""
        if self._walk_ended is not None or len(self._recent) < 2:
            return None
        (t0, r0), (t1, r1) = self._recent[0], self._recent[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else None

    def average(self, snap: Snapshot, now: float) -> float | None:
        """Items read per second since the first walk began, up to the last one's end."""
        if self._walk_started is None:
            return None
        seconds = (self._walk_ended or now) - self._walk_started
        return snap.read / seconds if seconds > 0 else None


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _rate(value: float | None) -> str:
    return f"{value:,.0f}/s" if value is not None else "-"


def steps_text(snap: Snapshot) -> str:
    """The dlt steps so far: ``extract done, normalize done, load 3 of 7 jobs``."""
    if not snap.steps:
        return "starting"
    return ", ".join(f"{s.describe()}{' done' if s.done else ''}" for s in merged_steps(snap.steps))


def merged_steps(steps: tuple[StepProgress, ...]) -> list[StepProgress]:
    """The dlt steps with those of one name in a row as one.

    dlt extracts the pipeline's state in an extract of its own, right after the source's; a user sees
    one extract step.
    """
    out: list[StepProgress] = []
    for step in steps:
        if out and out[-1].name == step.name:
            last = out.pop()
            counters = {
                k: last.counters.get(k, 0) + step.counters.get(k, 0) for k in {**last.counters, **step.counters}
            }
            totals = {k: last.totals.get(k, 0) + step.totals.get(k, 0) for k in {**last.totals, **step.totals}}
            step = StepProgress(step.name, counters, totals, step.done, last.started)
        out.append(step)
    return out


def requests_text(snap: Snapshot) -> str:
    """The requests line: requests sent, in flight (and the limit), and how many were answered 429."""
    limit = f" (limit {snap.limit})" if snap.limit is not None else ""
    return f"{_n(snap.requests, 'request')}, {snap.in_flight} in flight{limit}, {snap.throttled:,} answered 429"


def summary_line(snap: Snapshot, rates: Rates, now: float) -> str:
    """One plain line for the whole run (``--progress log``)."""
    kind = "/".join(snap.kinds)
    rate = rates.now() or rates.average(snap, now)
    return (
        f"progress: dlt {steps_text(snap)}; {snap.flows_done} of {len(snap.flows)} flows done, "
        f"{_n(snap.pages, 'page')}, {snap.read:,} {kind} read ({_rate(rate)}), {snap.changed:,} new or changed; "
        f"{requests_text(snap)}; {now - rates.started:.0f} s"
    )


def shown_flows(flows: tuple[FlowProgress, ...]) -> list[FlowProgress]:
    """The rows of the live table: walks under way first, then the latest done, MAX_FLOW_ROWS at most."""
    running = [f for f in flows if not f.done]
    done = [f for f in flows if f.done]
    return (running + done[::-1])[:MAX_FLOW_ROWS]


def live_view(snap: Snapshot, rates: Rates, now: float, title: str) -> Any:
    """The live display: a table per flow and in all, requests, 429s and dlt's step."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    kind = "/".join(snap.kinds)
    table = Table(title=f"{title}: {now - rates.started:.0f} s", title_justify="left", expand=False)
    table.add_column("flow")
    table.add_column("pages", justify="right")
    table.add_column(f"{kind} read", justify="right")
    table.add_column("new or changed", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("walk")
    several_kinds = len(snap.kinds) > 1
    for f in shown_flows(snap.flows):
        label = f"{f.flow_sid} {f.kind}" if several_kinds else f.flow_sid
        walk = f"done in {f.seconds:.1f} s" if f.done else "reading"
        table.add_row(label, f"{f.pages:,}", f"{f.read:,}", f"{f.changed:,}", _rate(rates.flow(f, now)), walk)
    hidden = len(snap.flows) - min(len(snap.flows), MAX_FLOW_ROWS)
    if hidden:
        table.add_row(Text(f"... {hidden} more flows", style="dim"), "", "", "", "", "")
    table.add_section()
    table.add_row(
        Text(f"all {len(snap.flows)} flows", style="bold"),
        f"{snap.pages:,}",
        f"{snap.read:,}",
        f"{snap.changed:,}",
        _rate(rates.now() or rates.average(snap, now)),
        f"{snap.flows_done} done",
    )
    lines = Text(f"requests: {requests_text(snap)}\ndlt: {steps_text(snap)}")
    return Group(table, lines)


class _Shown:
    """Shared by both displays: the watch, the rates and the clock they are read with."""

    def __init__(self, watch: RunWatch, title: str) -> None:
        self.watch = watch
        self.title = title
        self.rates = Rates(time.monotonic())

    def read(self) -> tuple[Snapshot, float]:
        snap, now = self.watch.snapshot(), time.monotonic()
        self.rates.observe(snap, now)
        return snap, now


@contextlib.contextmanager
def _live(shown: _Shown, stream: TextIO, forced: bool) -> Iterator[None]:
    from rich.console import Console
    from rich.live import Live

    def view() -> Any:
        snap, now = shown.read()
        return live_view(snap, shown.rates, now, shown.title)

    console = Console(file=stream, force_terminal=True if forced else None)
    live = Live(
        get_renderable=view,
        console=console,
        refresh_per_second=REFRESHES_PER_SECOND,
        transient=False,
        redirect_stdout=_is_terminal(sys.stdout),  # a print to the same screen goes above the table
        redirect_stderr=True,
    )
    with live, _logging_to(sys.stderr, stream):  # rich replaced sys.stderr: log lines go above the table
        yield


@contextlib.contextmanager
def _logging_to(proxy: TextIO, original: TextIO) -> Iterator[None]:
    """Points the log handlers writing to ``original`` (the terminal) at ``proxy`` meanwhile."""
    handlers = [
        h
        for name in (None, "twilio_studio", "dlt")
        for h in logging.getLogger(name).handlers
        if type(h) is logging.StreamHandler and h.stream in (original, sys.__stderr__)
    ]
    if proxy is original:
        yield
        return
    for h in handlers:
        h.setStream(proxy)
    try:
        yield
    finally:
        for h in handlers:
            h.setStream(original)


@contextlib.contextmanager
def _lines(shown: _Shown, interval: float) -> Iterator[None]:
    stop = threading.Event()
    logged_steps: list[int] = [0]

    def log() -> None:
        snap, now = shown.read()
        logged_steps[0] = len(snap.steps)
        logger.info("%s", summary_line(snap, shown.rates, now))

    def beat() -> None:
        due = time.monotonic() + interval
        while not stop.wait(min(0.25, max(0.0, due - time.monotonic()))):
            steps = len(shown.watch.collector.steps())
            if time.monotonic() >= due or steps != logged_steps[0]:
                log()  # every interval, and when dlt begins a step
                due = time.monotonic() + interval

    thread = threading.Thread(target=beat, name="twilio-studio-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        log()  # the run's last counts, always


@contextlib.contextmanager
def shown_progress(
    pipeline: Any,
    mode: str = "auto",
    title: str = "load",
    interval: float = DEFAULT_PROGRESS_INTERVAL,
    stream: TextIO | None = None,
) -> Iterator[RunWatch]:
    """Shows the progress of the pipeline runs inside the block (``mode`` one of PROGRESS_MODES).

    The pipeline's dlt progress collector is this run's :class:`StepCollector` meanwhile.
    """
    out = stream or sys.stderr
    how = chosen_mode(mode, out)
    with watching() as watch:
        before = pipeline.collector
        pipeline.collector = watch.collector
        shown = _Shown(watch, title)
        try:
            if how == "live":
                with _live(shown, out, forced=mode == "live"):
                    yield watch
            elif how == "log":
                with _lines(shown, interval):
                    yield watch
            else:
                yield watch
        finally:
            pipeline.collector = before
