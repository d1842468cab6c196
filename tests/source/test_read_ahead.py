"""A walk requests its next page while it turns the current one into rows, and never a page too many.

``StudioClient.pages(..., ahead=...)`` sends the request for ``meta.next_page_url`` as soon as a
page is parsed; the walk's next step takes that answer (judged, and retried, as any other). Walks
that may stop before the last page (``stop_at_ended_pages``) read without it: the request counts of
tests/source/test_stop_at_ended.py hold only then.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.kit.loopback import Answer, DynamicStudio, engagement, page
from tests.kit.studio import EmulatorFactory
from twilio_studio.client import RetryPolicy, StudioClient
from twilio_studio.emulator import Emulator

PAGE = 10


def client_of(emu: Emulator) -> StudioClient:
    client = StudioClient(emu.base_url, emu.credentials.account_sid, emu.credentials.auth_token, max_concurrency=4)
    client.retry = RetryPolicy(backoff_base=0.01)
    return client


def list_requests(emu: Emulator, flow: str) -> list[str]:
    return [q for q in emu.stats.queries if q.startswith(f"/v1/Flows/{flow}/Engagements")]


def flow_of(emu: Emulator) -> str:
    return emu.dataset.flows[0].sid


def test_the_next_page_is_requested_before_the_walk_asks_for_it(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(flows=1, engagements=3 * PAGE)
    flow = flow_of(emu)
    with ThreadPoolExecutor(2) as ahead:
        pages = StudioClient.pages(client_of(emu), f"/v1/Flows/{flow}/Engagements", "engagements", "flow",
                                   {"PageSize": PAGE}, ahead=ahead)  # fmt: skip
        first = next(pages)
        served(emu, flow, 2)
        assert len(list_requests(emu, flow)) == 2  # the second page's, sent while the first is in hand
        rest = list(pages)
    assert [len(first), *map(len, rest)] == [PAGE, PAGE, PAGE]
    sids = [e["sid"] for e in first] + [e["sid"] for page in rest for e in page]
    assert len(set(sids)) == 3 * PAGE
    assert len(list_requests(emu, flow)) == 3  # each page requested once: the answer read ahead was used


def served(emu: Emulator, flow: str, count: int) -> None:
    """Waits (10 s at most) until the emulator has answered ``count`` list requests of the flow."""
    deadline = time.monotonic() + 10
    while len(list_requests(emu, flow)) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_walk_that_stops_reads_one_page_more_and_no_further(emulator_factory: EmulatorFactory) -> None:
    emu = emulator_factory(flows=1, engagements=5 * PAGE)
    flow = flow_of(emu)
    ahead = ThreadPoolExecutor(2)
    pages = StudioClient.pages(client_of(emu), f"/v1/Flows/{flow}/Engagements", "engagements", "flow",
                               {"PageSize": PAGE}, ahead=ahead)  # fmt: skip
    next(pages)
    served(emu, flow, 2)
    pages.close()  # type: ignore[attr-defined]  # a generator, as the walk closes it
    ahead.shutdown(wait=True)
    time.sleep(0.2)
    assert len(list_requests(emu, flow)) == 2  # the page read ahead, never the one after it


def test_a_failed_answer_read_ahead_is_retried(
    emulator_factory: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator_factory(flows=1, engagements=3 * PAGE)
    flow = flow_of(emu)
    client = client_of(emu)
    attempts: list[tuple[str, str]] = []  # (thread, URL) of each request sent
    original = StudioClient._attempt

    def spy(self: StudioClient, url: str, ahead: bool = False) -> Any:
        attempts.append((threading.current_thread().name, url))
        return original(self, url, ahead)

    monkeypatch.setattr(StudioClient, "_attempt", spy)
    with ThreadPoolExecutor(2, thread_name_prefix="ahead") as ahead:
        pages = StudioClient.pages(client, f"/v1/Flows/{flow}/Engagements", "engagements", "flow",
                                   {"PageSize": PAGE}, ahead=ahead)  # fmt: skip
        first = next(pages)
        served(emu, flow, 2)  # the second page is in; the third is requested ahead when it is parsed
        emu.inject("error", times=1, path_contains="/Engagements")  # that request's answer: a 500
        rest = list(pages)
    assert sum(map(len, [first, *rest])) == 3 * PAGE
    assert len(list_requests(emu, flow)) == 4  # the third page twice
    third = [thread for thread, url in attempts if url == attempts[-1][1]]
    assert len(third) == 2 and third[0].startswith("ahead") and third[1] == "MainThread"


def test_a_429_read_ahead_waits_its_retry_after_from_when_it_came() -> None:
    # Retry-After: 2 answered to the request read ahead; the walk takes 1.5 s over the page before it
    # asks for the next one: 0.5 s of the wait are left, not 2 s (the backoff's jitter is 0.01 s at most)
    flow = "FW" + "f" * 32
    answers = iter([Answer(429, {"code": 20429, "status": 429}, {"Retry-After": "2"})])

    def respond(path: str) -> Answer:
        if "PageToken=p2" not in path:
            return Answer(200, page("engagements", [engagement(flow, 1)], "{base}/v1/Flows/" + flow
                                    + "/Engagements?PageSize=1&Page=1&PageToken=p2"))  # fmt: skip
        return next(answers, None) or Answer(200, page("engagements", [engagement(flow, 2)], None))

    with DynamicStudio(respond) as studio, ThreadPoolExecutor(1, thread_name_prefix="ahead") as ahead:
        client = StudioClient(studio.base_url, "AC" + "a" * 32, "token")
        client.retry = RetryPolicy(backoff_base=0.01)
        pages = client.pages(f"/v1/Flows/{flow}/Engagements", "engagements", "flow", {"PageSize": 1}, ahead=ahead)
        first = next(pages)
        time.sleep(1.5)  # the walk's work on the first page; the page read ahead was answered 429 meanwhile
        started = time.monotonic()
        rest = list(pages)
        waited = time.monotonic() - started
    assert [e["sid"] for e in [*first, *rest[0]]] == [f"FN{1:032x}", f"FN{2:032x}"]
    assert [seen.path.count("PageToken=p2") for seen in studio.requests] == [0, 1, 1]  # the 429, then its retry
    assert 0.4 <= waited < 1.5, waited  # the 0.5 s left of Retry-After (2 s had it counted from now)
