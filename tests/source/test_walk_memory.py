"""How the walk keeps memory small without losing concurrency.

The shared parse gate, more walks than request slots, and the cycle collector's pace
(BENCHMARKS.md has the numbers, benchmarks/budgets.py the memory handed back).
"""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import threading
from collections.abc import Generator
from typing import Any, cast

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, EmulatorFactory, expected_sids, make_source
from twilio_studio.client import AdaptiveLimit, StudioClient
from twilio_studio.emulator import Emulator, Faults
from twilio_studio.extract import EngagementWalker
from twilio_studio.memory import GC_THRESHOLD, rare_gc_passes


def client(emu: Emulator, max_concurrency: int = 8) -> StudioClient:
    return StudioClient(emu.base_url, ACCOUNT_SID, AUTH_TOKEN, max_concurrency=max_concurrency)


def held(gate: threading.Semaphore) -> bool:
    if gate.acquire(blocking=False):
        gate.release()
        return False
    return True


class WatchedGate(threading.Semaphore):
    """The parse gate, telling when a thread has started waiting for it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.waiting = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes the gate; a blocking call first says that it waits."""
        if blocking:
            self.waiting.set()
        return super().acquire(blocking, timeout)


def test_a_page_is_parsed_only_in_turn_while_its_request_is_already_answered(emulator: Emulator) -> None:
    gate = WatchedGate()
    studio = client(emulator)
    walks = [studio.pages(f"/v1/Flows/{f.sid}/Engagements", "engagements", "t", {"PageSize": 5}, gate)
             for f in emulator.dataset.flows[:2]]  # fmt: skip
    first, second = (cast(Generator[list[dict[str, Any]], None, None], walk) for walk in walks)
    page = next(first)
    assert len(page) == 5 and held(gate)
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.append(next(second)))
    requests_before = emulator.stats.requests
    gate.waiting.clear()
    waiting.start()
    assert gate.waiting.wait(10), "the second walk never asked for the gate"
    assert emulator.stats.requests == requests_before + 1  # its request went out and was answered ...
    assert got == []  # ... but its page waits for the gate (which the first walk holds)
    first.close()  # a walk that stops gives its turn back
    waiting.join(5)
    assert len(got) == 1 and held(gate)
    second.close()
    assert not held(gate)


def test_the_gate_is_given_back_after_a_retried_body_and_at_the_end(emulator: Emulator) -> None:
    gate = threading.Semaphore(1)
    emulator.inject("truncate", times=2, path_contains="/Engagements")
    flow = emulator.dataset.flows[0].sid
    pages = client(emulator).pages(f"/v1/Flows/{flow}/Engagements", "engagements", "t", {"PageSize": 7}, gate)
    sizes = []
    for page in pages:
        assert held(gate)
        sizes.append(len(page))
    assert emulator.pending_faults() == 0 and sum(sizes) == len(expected_sids(emulator, [0]))
    assert not held(gate)


def test_more_flows_than_request_slots_walk_at_once_within_the_account_limit(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: list[int] = []
    acquire = AdaptiveLimit.acquire

    def counted(self: AdaptiveLimit) -> None:
        acquire(self)
        in_flight.append(self._in_flight)

    monkeypatch.setattr(AdaptiveLimit, "acquire", counted)
    walks: set[str] = set()
    rows = EngagementWalker._rows

    def named(self: EngagementWalker, *args: Any) -> Any:
        walks.add(threading.current_thread().name)
        return rows(self, *args)

    monkeypatch.setattr(EngagementWalker, "_rows", named)
    emu = emulator_factory(flows=12, engagements=20, faults=Faults(latency=0.03))
    loaded.run(make_source(emu.base_url, page_size=4, max_concurrency=3))
    assert max(in_flight) == 3  # every slot used, never more (counted where the client takes a slot)
    assert len(walks) > 3  # more walks than slots: a walk waiting for its turn holds no slot
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)


def test_rare_gc_passes_raise_the_threshold_and_restore_it_even_on_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), rare_gc_passes():
        assert gc.get_threshold()[0] == max(before[0], GC_THRESHOLD)
        assert gc.get_threshold()[1:] == before[1:]
        raise RuntimeError("the walk failed")
    assert gc.get_threshold() == before


ARENAS_IN_A_CHILD = "from twilio_studio.memory import few_malloc_arenas; print(few_malloc_arenas())"


@pytest.mark.parametrize(
    ("env", "made"),
    [
        pytest.param({"MALLOC_ARENA_MAX": "4"}, False, id="the_users_value_is_left_alone"),
        pytest.param({}, platform.libc_ver()[0] == "glibc", id="otherwise_two_arenas_on_glibc"),
    ],
)
def test_glibc_heaps_are_limited_unless_the_environment_says_otherwise(env: dict[str, str], made: bool) -> None:
    # in a child: mallopt changes the allocator of the whole process, which must not be pytest's
    clean = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")}
    child = subprocess.run(
        [sys.executable, "-c", ARENAS_IN_A_CHILD], env={**clean, **env}, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == str(made)
