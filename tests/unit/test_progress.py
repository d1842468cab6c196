"""The progress display's rules: which mode a stream gets, how dlt's steps read, how rates are taken."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import TextIO

import pytest

from twilio_studio.progress import Rates, chosen_mode, merged_steps, steps_text
from twilio_studio.watch import FlowProgress, Snapshot, StepCollector, StepProgress


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """A real terminal (the slave side of a pseudo-terminal), as a text stream."""
    master, slave = os.openpty()
    with open(slave, "w") as stream:
        yield stream
    os.close(master)


@pytest.mark.parametrize(
    ("mode", "tty", "term", "expected"),
    [
        pytest.param("auto", True, "xterm-256color", "live", id="auto_on_a_terminal_is_live"),
        pytest.param("auto", True, "dumb", "log", id="auto_on_a_dumb_terminal_logs"),
        pytest.param("auto", False, "xterm-256color", "log", id="auto_in_a_pipe_or_file_logs"),
        pytest.param("live", False, "xterm-256color", "live", id="live_is_forced"),
        pytest.param("log", True, "xterm-256color", "log", id="log_on_a_terminal"),
        pytest.param("off", True, "xterm-256color", "off", id="off"),
    ],
)
def test_the_mode_follows_the_option_and_the_stream(
    terminal: TextIO, monkeypatch: pytest.MonkeyPatch, mode: str, tty: bool, term: str, expected: str
) -> None:
    monkeypatch.setenv("TERM", term)
    assert chosen_mode(mode, terminal if tty else io.StringIO()) == expected


def recorded(*steps: tuple[str, dict[str, tuple[int, int | None]], bool]) -> tuple[StepProgress, ...]:
    """The steps as dlt reports them to a real StepCollector: (step, {counter: (inc, total)}, ended)."""
    collector = StepCollector()
    for name, counters, ended in steps:
        collector(name).__enter__()
        for counter, (inc, total) in counters.items():
            collector.update(counter, inc, total)
        if ended:
            collector.__exit__(None, None, None)  # type: ignore[arg-type]  # dlt types the exception as required
    return collector.steps()


def snapshot(steps: tuple[StepProgress, ...]) -> Snapshot:
    return Snapshot(flows=(), requests=0, throttled=0, in_flight=0, limit=None, steps=steps)


@pytest.mark.parametrize(
    ("steps", "text"),
    [
        pytest.param((), "starting", id="before_dlt_starts"),
        pytest.param((("Extract twilio_studio", {"Resources": (1, 3)}, False),), "extract 1 of 3 resources",
                     id="extracting"),
        pytest.param(
            (("Extract twilio_studio", {"Resources": (3, 3)}, True),
             ("Extract twilio_studio", {"Resources": (1, 1)}, True),
             ("Normalize twilio_studio in 1", {"Files": (2, 5)}, False)),
            "extract 4 of 4 resources done, normalize 2 of 5 files", id="the_state_extract_is_part_of_extract"),
        pytest.param(
            (("Extract twilio_studio", {}, True), ("Normalize twilio_studio in 1", {"Files": (5, 5)}, True),
             ("Load twilio_studio in 1", {"Jobs": (7, 7)}, True)),
            "extract done, normalize 5 of 5 files done, load 7 of 7 jobs done", id="done"),
    ],
)  # fmt: skip
def test_dlt_steps_read_as_one_line(
    steps: tuple[tuple[str, dict[str, tuple[int, int | None]], bool]], text: str
) -> None:
    assert steps_text(snapshot(recorded(*steps))) == text


def test_updates_outside_a_step_are_not_counted() -> None:
    collector = StepCollector()
    collector.update("Jobs", 3)
    assert collector.steps() == ()
    assert [s.name for s in merged_steps(recorded(("Load x in 1", {"Jobs": (1, 2)}, True)))] == ["load"]


def flow(read: int, done: bool = False, seconds: float = 0.0) -> FlowProgress:
    return FlowProgress("FW" + "0" * 32, "engagements", pages=read // 100, read=read, changed=read, done=done,
                        seconds=seconds)  # fmt: skip


def test_rates_are_items_per_second_between_the_times_given() -> None:
    rates = Rates(started=100.0)
    rates.observe(Snapshot((flow(0),), 0, 0, 0, 8, ()), 100.0)
    rates.observe(Snapshot((flow(400),), 0, 0, 0, 8, ()), 102.0)
    walking = Snapshot((flow(1000),), 0, 0, 0, 8, ())
    rates.observe(walking, 104.0)
    assert rates.now() == pytest.approx(250.0)  # 1,000 in the 4 s seen
    assert rates.flow(walking.flows[0], 104.0) == pytest.approx(250.0)
    ended = Snapshot((flow(1000, done=True, seconds=5.0),), 0, 0, 0, 8, ())
    rates.observe(ended, 110.0)
    assert rates.now() is None  # no walk under way: no current rate
    assert rates.flow(ended.flows[0], 110.0) == pytest.approx(200.0)  # over the walk's own 5 s
    assert rates.average(ended, 120.0) == pytest.approx(100.0)  # from the first walk seen to the end seen
