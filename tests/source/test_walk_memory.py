"""How the walk keeps memory small without losing concurrency: the shared parse gate, more walks than
request slots, and the cycle collector's pace (BENCHMARKS.md has the numbers)."""

from __future__ import annotations

import gc
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.source.conftest import ACCOUNT_SID, AUTH_TOKEN, Loaded, expected_sids, make_source
from twilio_studio.client import AdaptiveLimit, StudioClient
from twilio_studio.emulator import Emulator, Faults
from twilio_studio.extract import EngagementWalker
from twilio_studio.memory import GC_THRESHOLD, few_malloc_arenas, rare_gc_passes, release_freed_memory


def client(emu: Emulator, max_concurrency: int = 8) -> StudioClient:
    return StudioClient(emu.base_url, ACCOUNT_SID, AUTH_TOKEN, max_concurrency=max_concurrency)


def held(gate: threading.Semaphore) -> bool:
    if gate.acquire(blocking=False):
        gate.release()
        return False
    return True


def test_a_page_is_parsed_only_in_turn_while_its_request_is_already_answered(emulator: Emulator) -> None:
    gate = threading.Semaphore(1)
    studio = client(emulator)
    first, second = (studio.pages(f"/v1/Flows/{f.sid}/Engagements", "engagements", "t", {"PageSize": 5}, gate)
                     for f in emulator.dataset.flows[:2])  # fmt: skip
    page = next(first)
    assert len(page) == 5 and held(gate)
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.append(next(second)))
    requests_before = emulator.stats.requests
    waiting.start()
    deadline = time.monotonic() + 5
    while emulator.stats.requests == requests_before and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert emulator.stats.requests == requests_before + 1  # its request went out and was answered ...
    assert got == []  # ... but its page waits for the gate
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
    emulator_factory: Callable[..., Emulator], loaded: Loaded, monkeypatch: pytest.MonkeyPatch
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


def test_glibc_heaps_are_limited_unless_the_environment_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert few_malloc_arenas() is False  # glibc read the user's value at start: left alone
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert few_malloc_arenas() is (platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_to_the_os() -> None:
    def rss_kb() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    # 100 MB of 1 KB blocks from the C heap, and one block after them that stays: glibc does not
    # hand back the freed pages below a block in use by itself
    blocks = [bytes(1024 + n % 7) for n in range(100_000)]
    pin = bytes(1024)
    del blocks
    before = rss_kb()
    release_freed_memory()
    assert before - rss_kb() > 50_000, "less than 50 MB of the 100 MB freed went back"
    del pin
