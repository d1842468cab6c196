"""The client's account-wide limit and backoff, without a network."""

from __future__ import annotations

import threading
import time

import pytest

from twilio_studio.client import AdaptiveLimit, PaginationError, RetryPolicy, StudioClient, _plain_prefix, origin_of


def test_limit_halves_on_429_and_grows_back_after_clean_requests() -> None:
    limit = AdaptiveLimit(8)
    for expected in (4, 2, 1, 1):
        limit.acquire()
        limit.release(throttled=True)
        assert limit.limit == expected
    for _ in range(1):  # one clean request at limit 1 earns a second slot
        limit.acquire()
        limit.release(throttled=False)
    assert limit.limit == 2
    for _ in range(2 + 3 + 4 + 5 + 6 + 7):
        limit.acquire()
        limit.release(throttled=False)
    assert limit.limit == 8


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        pytest.param(1, None, 0.0, 0.5, id="first_retry_jitter"),
        pytest.param(4, None, 0.0, 4.0, id="exponential"),
        pytest.param(1, 3.0, 3.0, 3.0, id="retry_after_honoured"),
        pytest.param(1, 999.0, 30.0, 30.0, id="retry_after_capped"),
    ],
)
def test_delay(attempt: int, retry_after: float | None, low: float, high: float) -> None:
    policy = RetryPolicy()
    for _ in range(50):
        assert low <= policy.delay(attempt, retry_after) <= high


def test_slots_go_first_come_first_served_so_a_walk_that_just_had_one_queues_behind_the_others() -> None:
    limit = AdaptiveLimit(1)
    order: list[str] = []
    limit.acquire()  # "a" holds the only slot

    def walk(name: str) -> None:
        limit.acquire()
        order.append(name)
        limit.release(throttled=False)

    threads = []
    for name in ("b", "c"):
        threads.append(threading.Thread(target=walk, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while len(limit._waiting) < len(threads) and time.monotonic() < deadline:
            time.sleep(0.001)
    limit.release(throttled=False)
    walk("a")  # "a" asks again at once: "b" and "c" were first
    for t in threads:
        t.join(5)
    assert order == ["b", "c", "a"]


def test_a_waiter_that_is_interrupted_leaves_the_line() -> None:
    limit = AdaptiveLimit(1)
    limit.acquire()
    failed: list[BaseException] = []

    class StopError(Exception):
        pass

    def impatient() -> None:
        wait = limit._cond.wait

        def raising(timeout: float | None = None) -> bool:
            wait(0.01)
            raise StopError

        limit._cond.wait = raising  # type: ignore[method-assign]
        try:
            limit.acquire()
        except StopError as e:
            failed.append(e)
        finally:
            limit._cond.wait = wait  # type: ignore[method-assign]

    t = threading.Thread(target=impatient)
    t.start()
    t.join(5)
    assert failed and not limit._waiting
    limit.release(throttled=False)
    limit.acquire()  # the line is not stuck behind the one that left
    limit.release(throttled=False)


def test_a_read_ahead_waits_behind_every_other_request_even_one_that_asked_later() -> None:
    limit = AdaptiveLimit(1)
    order: list[str] = []
    limit.acquire()  # a walk's request holds the only slot

    def request(name: str, ahead: bool) -> None:
        limit.acquire(ahead)
        order.append(name)
        limit.release(throttled=False)

    threads = []
    for name, ahead, line in (("next page", True, limit._ahead), ("context", False, limit._waiting)):
        threads.append(threading.Thread(target=request, args=(name, ahead)))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while not line and time.monotonic() < deadline:
            time.sleep(0.001)
    limit.release(throttled=False)
    for t in threads:
        t.join(5)
    assert order == ["context", "next page"]
    limit.acquire(ahead=True)  # with nothing else waiting, a read-ahead takes a free slot at once
    assert limit.in_flight == 1


def test_read_aheads_have_half_the_slots_while_other_requests_wait() -> None:
    """Next pages do not all wait behind a burst of Context requests (the walks would fall into step)."""
    limit = AdaptiveLimit(4)
    for _ in range(4):
        limit.acquire()  # the walks' requests hold every slot
    order: list[str] = []
    done = threading.Event()

    def request(name: str, ahead: bool) -> None:
        limit.acquire(ahead)
        order.append(name)
        done.wait(5)  # holds its slot until the test ends
        limit.release(throttled=False, ahead=ahead)

    threads = []
    for name, ahead, line in (
        ("page 1", True, limit._ahead), ("page 2", True, limit._ahead), ("page 3", True, limit._ahead),
        ("context 1", False, limit._waiting), ("context 2", False, limit._waiting),
    ):  # fmt: skip
        before = len(line)
        threads.append(threading.Thread(target=request, args=(name, ahead), daemon=True))
        threads[-1].start()
        deadline = time.monotonic() + 5
        while len(line) == before and time.monotonic() < deadline:
            time.sleep(0.001)
    try:
        for n in range(1, 5):  # the walks' requests end one by one
            limit.release(throttled=False)
            deadline = time.monotonic() + 5
            while len(order) < n and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.02)  # had another one taken the same slot, it would show here
            assert len(order) == n
        # two read-aheads (half of 4) went while contexts waited; the third waits behind the contexts
        assert order == ["page 1", "page 2", "context 1", "context 2"]
        assert list(limit._ahead) and limit.in_flight == 4
    finally:
        done.set()
        for t in threads:
            t.join(5)
    assert order[4:] == ["page 3"] and limit.in_flight == 0 and limit._ahead_in_flight == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080.evil.example/v1/Flows",
        "http://127.0.0.1:8080@evil.example/v1/Flows",
        "http://127.0.0.1:80801/v1/Flows",
        "https://127.0.0.1:8080/v1/Flows",
        "http://127.0.0.1:8080\\@evil.example/v1/Flows",
        "http://127.0.0.1:8080/v1/Flows?PageToken=PT1",
        "http://127.0.0.1:8080/v1/Flows/FW1/Engagements/FN1/Context",
        "//evil.example/v1/Flows",
    ],
)
def test_the_quick_same_host_test_agrees_with_how_requests_reads_the_url(url: str) -> None:
    client = StudioClient("http://127.0.0.1:8080", "AC" + "0" * 32, "token")
    assert client._prefix == "http://127.0.0.1:8080/"
    try:
        client.check_same_origin(url, "flow")
        allowed = True
    except PaginationError:
        allowed = False
    assert allowed == (origin_of(url) == ("http", "127.0.0.1", 8080))


@pytest.mark.parametrize("base_url", ["http://user@127.0.0.1:8080", "http://[::1]:8080", "http://127.0.0.1:8080?x=1"])
def test_a_base_url_with_more_than_a_host_and_port_is_parsed_at_every_request(base_url: str) -> None:
    assert _plain_prefix(base_url) is None
