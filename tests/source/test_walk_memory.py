"""How the walk keeps memory small without losing concurrency.

The shared parse turn, more walks than request slots, and the cycle collector's pace
(BENCHMARKS.md has the numbers, benchmarks/budgets.py the memory handed back).
"""

from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import threading
from typing import Any

import orjson
import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, EmulatorFactory, expected_sids, make_source
from twilio_studio.client import AdaptiveLimit, StudioClient
from twilio_studio.emulator import Emulator, Faults
from twilio_studio.extract import ListingWalker, ParseTurns
from twilio_studio.memory import GC_THRESHOLD, rare_gc_passes


def client(emu: Emulator, max_concurrency: int = 8) -> StudioClient:
    return StudioClient(emu.base_url, ACCOUNT_SID, AUTH_TOKEN, max_concurrency=max_concurrency)


class WatchedTurns(ParseTurns):
    """The parse turn, telling when a thread has started waiting for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def parse(self, content: bytes) -> Any:
        """Parses in turn; a thread without the turn first says that it waits."""
        if not self.holding():
            self.waiting.set()
        return super().parse(content)


def test_a_page_is_parsed_only_in_turn_while_its_request_is_already_answered(emulator: Emulator) -> None:
    turns = WatchedTurns()
    studio = client(emulator)
    first, second = (studio.pages(f"/v1/Flows/{f.sid}/Engagements", "engagements", "t", {"PageSize": 5}, turns.parse)
                     for f in emulator.dataset.flows[:2])  # fmt: skip
    page = next(first)
    assert len(page) == 5 and turns.holding()
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.append(next(second)))
    requests_before = emulator.stats.requests
    turns.waiting.clear()
    waiting.start()
    assert turns.waiting.wait(10), "the second walk never asked for the turn"
    assert emulator.stats.requests == requests_before + 1  # its request went out and was answered ...
    assert got == []  # ... but its page waits for the turn (which the first walk holds)
    turns.end()  # the first walk handed its page over
    waiting.join(5)
    assert len(got) == 1 and turns.taken() and not turns.holding()  # the other thread's turn now


def test_a_turn_is_held_only_with_a_page_in_hand() -> None:
    turns = ParseTurns()
    with pytest.raises(orjson.JSONDecodeError):
        turns.parse(b'{"engagements": [')  # cut short: the client retries, in no turn
    assert not turns.taken()
    assert turns.parse(b"[1]") == [1] and not turns.taken()  # not a page: nothing to hand over
    assert turns.parse(b'{"a": 1}') == {"a": 1} and turns.holding()
    assert turns.parse(b'{"a": 2}') == {"a": 2}  # a retried body in the same turn: no deadlock
    other: list[bool] = []

    def another_walk() -> None:
        turns.parse(b"{}")
        other.append(turns.holding())
        turns.end()

    with turns.aside():  # waiting on the network: another walk may parse
        worker = threading.Thread(target=another_walk)
        worker.start()
        worker.join(5)
    assert other == [True] and turns.holding()
    turns.end()
    turns.end()  # ending twice is harmless
    assert not turns.taken()


def test_the_turn_is_given_back_after_a_retried_body_and_at_the_end(emulator: Emulator) -> None:
    turns = ParseTurns()
    emulator.inject("truncate", times=2, path_contains="/Engagements")
    flow = emulator.dataset.flows[0].sid
    pages = client(emulator).pages(f"/v1/Flows/{flow}/Engagements", "engagements", "t", {"PageSize": 7}, turns.parse)
    sizes = []
    for page in pages:
        assert turns.holding()
        sizes.append(len(page))
        turns.end()
    assert emulator.pending_faults() == 0 and sum(sizes) == len(expected_sids(emulator, [0]))
    assert not turns.taken()


def test_a_walk_waiting_for_contexts_leaves_the_turn_to_others(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one flow, one walk: while it waits for a context (one engagement in 20 has it only at the
    # Context endpoint), nobody else may hold the turn, so a turn taken then would be its own
    emu = emulator_factory(flows=1, engagements=60)
    taken_while_fetching: list[bool] = []
    fetch = ListingWalker._fetch_context

    def watched(self: ListingWalker, flow_sid: str, sid: str) -> dict[str, Any]:
        taken_while_fetching.append(self.turns.taken())
        return fetch(self, flow_sid, sid)

    monkeypatch.setattr(ListingWalker, "_fetch_context", watched)
    loaded.run(make_source(emu.base_url, page_size=10))
    assert taken_while_fetching == [False] * 3  # engagements 7, 27 and 47
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)
    assert loaded.scalar("SELECT count(*) FROM engagements WHERE context IS NULL OR context = '{}'") == 0


def test_more_flows_than_request_slots_walk_at_once_within_the_account_limit(
    emulator_factory: EmulatorFactory, loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight: list[int] = []
    acquire = AdaptiveLimit.acquire

    def counted(self: AdaptiveLimit, ahead: bool = False) -> None:
        acquire(self, ahead)
        in_flight.append(self._in_flight)

    monkeypatch.setattr(AdaptiveLimit, "acquire", counted)
    walks: set[str] = set()
    hand_over = ListingWalker._hand_over

    def named(self: ListingWalker, *args: Any) -> Any:
        walks.add(threading.current_thread().name)
        return hand_over(self, *args)

    monkeypatch.setattr(ListingWalker, "_hand_over", named)
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
