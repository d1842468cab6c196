"""The client's account-wide limit and backoff, without a network."""

from __future__ import annotations

import pytest

from twilio_studio.client import AdaptiveLimit, RetryPolicy


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
