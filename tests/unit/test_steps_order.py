"""Walk order of a parent's steps: by date_created, ties by the chain, then the reverse list order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from twilio_studio.steps import order_steps

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def step(widget: str, to: str, second: int | None) -> dict[str, Any]:
    at = None if second is None else T0 + timedelta(seconds=second)
    return {"widget": widget, "transitioned_to": to, "date_created": at}


CASES = [
    pytest.param(  # newest first, as Twilio lists them
        [step("b", "Ended", 9), step("a", "b", 4), step("Trigger", "a", 0)],
        ["Trigger", "a", "b"], [4.0, 5.0, None], id="distinct_times_newest_first",
    ),
    pytest.param(  # an instant engagement: every step in the same second, listed in a scrambled order
        [step("a", "b", 0), step("b", "Ended", 0), step("Trigger", "a", 0)],
        ["Trigger", "a", "b"], [0.0, 0.0, None], id="same_second_follows_the_chain",
    ),
    pytest.param(  # a loop: the same widget twice; the chain after the earlier step decides
        [step("menu", "Ended", 5), step("menu", "menu", 5), step("Trigger", "menu", 1)],
        ["Trigger", "menu", "menu"], [4.0, 0.0, None], id="loop_in_one_second",
    ),
    pytest.param(  # no chain to follow: reverse list order
        [step("x", "Ended", 3), step("y", "Ended", 3)],
        ["y", "x"], [0.0, None], id="unchained_ties_reverse_list_order",
    ),
    pytest.param(
        [step("late", "Ended", None), step("Trigger", "late", 2)],
        ["Trigger", "late"], [None, None], id="missing_date_goes_last_without_dwell",
    ),
    pytest.param([], [], [], id="no_steps"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "widgets", "dwell"), CASES)
def test_order_steps(rows: list[dict[str, Any]], widgets: list[str], dwell: list[float | None]) -> None:
    ordered = order_steps(rows)
    assert [r["widget"] for r in ordered] == widgets
    assert [r["step_index"] for r in ordered] == list(range(len(widgets)))
    assert [r["dwell_seconds"] for r in ordered] == dwell


def test_a_subflows_steps_come_before_the_widget_that_ran_it() -> None:
    # an instant engagement: parent and subflow steps in one second, listed newest first
    run = {**step("notify", "wait", 0), "sid": "FT_run"}
    sub = [
        {**step("sms", "Ended", 0), "sid": "FT_sms", "parent_step_sid": "FT_run"},
        {**step("Trigger", "sms", 0), "sid": "FT_sub", "parent_step_sid": "FT_run"},
    ]
    rows = [step("wait", "Ended", 0), run, *sub, step("send", "notify", 0), step("Trigger", "send", 0)]
    ordered = order_steps(rows)
    assert [r["widget"] for r in ordered] == ["Trigger", "send", "Trigger", "sms", "notify", "wait"]
