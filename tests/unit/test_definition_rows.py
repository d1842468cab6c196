"""Pure row builders: a step as the spec reads it, and a definition's states and transitions."""

from __future__ import annotations

from typing import Any

import pytest

from twilio_studio.context import step_row
from twilio_studio.definitions import definition_rows, flow_definition_fields

STEP = {
    "sid": "FT" + "1" * 32, "flow_sid": "FW" + "2" * 32, "engagement_sid": "FN" + "3" * 32,
    "name": "keypress", "type": "gather-input-on-call", "transitioned_from": "main_menu",
    "transitioned_to": "Ended", "parent_step_sid": "FT" + "9" * 32,
    "date_created": "2026-03-01T12:00:00Z", "date_updated": "2026-03-01T12:00:00Z",
}  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "want"),
    [
        pytest.param({}, ("main_menu", "keypress", True, "FT" + "9" * 32), id="last_step_of_a_subflow"),
        pytest.param({"transitioned_to": "route", "parent_step_sid": None}, ("main_menu", "keypress", False, None),
                     id="goes_on"),
        pytest.param({"transitioned_to": None}, ("main_menu", "keypress", None, "FT" + "9" * 32), id="no_target"),
    ],
)  # fmt: skip
def test_step_row_reads_the_spec(overrides: dict[str, Any], want: tuple[Any, ...]) -> None:
    row = step_row({**STEP, **overrides}, None, "engagement_sid")
    assert (row["widget"], row["event"], row["is_terminal"], row["parent_step_sid"]) == want
    assert (row["name"], row["transitioned_from"], row["type"]) == ("keypress", "main_menu", "gather-input-on-call")


@pytest.mark.parametrize(
    ("definition", "states", "transitions"),
    [
        pytest.param(None, [], [], id="no_definition"),
        pytest.param({"states": "nope"}, [], [], id="states_not_a_list"),
        pytest.param(
            {"states": [{"name": "T", "type": "trigger", "transitions": [{"event": "incomingCall", "next": "a"}]},
                        {"name": "a", "type": "brand-new-widget-v3", "properties": {"k": 1},
                         "transitions": [{"event": "x", "next": ""}, {"event": "y"},
                                         {"event": "match", "next": "T", "conditions": [{"type": "equal_to"}]}]}]},
            [("T", "trigger", 0, None), ("a", "brand-new-widget-v3", 1, {"k": 1})],
            [("T", 0, "incomingCall", "a", None), ("a", 0, "x", None, None), ("a", 1, "y", None, None),
             ("a", 2, "match", "T", [{"type": "equal_to"}])],
            id="open_types_and_ending_branches",
        ),
    ],
)  # fmt: skip
def test_definition_rows(definition: Any, states: list[tuple[Any, ...]], transitions: list[tuple[Any, ...]]) -> None:
    got_states, got_transitions = definition_rows("FW1", 2, definition)
    assert [(s["name"], s["type"], s["position"], s["properties"]) for s in got_states] == states
    assert [(t["from_state"], t["position"], t["event"], t["to_state"], t["conditions"]) for t in got_transitions] == (
        transitions
    )
    assert all((r["flow_sid"], r["revision"]) == ("FW1", 2) for r in [*got_states, *got_transitions])


@pytest.mark.parametrize(
    ("body", "want"),
    [
        pytest.param(None, (None, None, None, None), id="no_v2_answer"),
        pytest.param({"revision": True, "valid": "yes", "definition": "not json"}, (None, None, None, None),
                     id="wrong_types"),
        pytest.param({"revision": 3, "commit_message": "m", "valid": False, "definition": '{"states": []}'},
                     (3, "m", False, {"states": []}), id="definition_as_text"),
    ],
)  # fmt: skip
def test_flow_definition_fields(body: Any, want: tuple[Any, ...]) -> None:
    got = flow_definition_fields(body)
    assert (got["revision"], got["commit_message"], got["valid"], got["definition"]) == want
