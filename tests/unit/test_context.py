"""Context normalization: pure functions, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from twilio_studio.context import coerce_context, engagement_row, leaves, map_rows, widget_rows


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("yes", [("", "yes", "string")], id="string"),
        pytest.param(3, [("", "3", "number")], id="int"),
        pytest.param(0.5, [("", "0.5", "number")], id="float"),
        pytest.param(True, [("", "true", "boolean")], id="bool"),
        pytest.param(None, [("", None, "null")], id="null"),
        pytest.param({}, [("", None, "object")], id="empty_map_kept"),
        pytest.param([], [("", None, "array")], id="empty_array_kept"),
        pytest.param(
            {"a": {"b": [1, {"c": "x"}]}},
            [("a.b[0]", "1", "number"), ("a.b[1].c", "x", "string")],
            id="nested_arrays_become_paths",
        ),
        pytest.param("a\x00b", [("", "ab", "string")], id="nul_removed"),
        pytest.param("مرحبا 👍", [("", "مرحبا 👍", "string")], id="unicode_kept"),
    ],
)
def test_leaves(value: Any, expected: list[tuple[str, Any, str]]) -> None:
    assert list(leaves(value)) == expected


def test_deep_nesting_stops_at_max_depth_without_recursion_error() -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = {"k": deep}
    rows = list(leaves(deep))
    assert len(rows) == 1 and rows[0][2] == "object" and rows[0][0].count(".") == 63


def test_widget_rows_type_common_outputs_and_keep_order() -> None:
    widgets = {
        "ask": {"inbound": {"Body": "5"}, "outbound": {"Body": "Rate us"}},
        "menu": {"Digits": "2", "Confidence": "0.9"},
        "api": {"status_code": 200, "content_type": "application/json", "parsed": {"x": [1, 2]}},
        "split": {},
    }
    rows = widget_rows(widgets, "FN1", "FW1", fields="all")
    assert [r["name"] for r in rows] == ["ask", "menu", "api", "split"]
    assert [r["position"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["inbound_body"] == "5" and rows[1]["digits"] == "2" and rows[1]["confidence"] == 0.9
    assert rows[2]["status_code"] == 200 and rows[2]["inbound_body"] is None
    assert [f["path"] for f in rows[2]["fields"]] == ["status_code", "content_type", "parsed.x[0]", "parsed.x[1]"]
    assert rows[3]["fields"] == [
        {"engagement_sid": "FN1", "widget": "split", "path": "", "value": None, "value_type": "object"}
    ]


@pytest.mark.parametrize(
    ("fields", "paths"),
    [
        pytest.param("all", [["inbound.Body"], ["status_code", "parsed.x[0]", "parsed.x[1]"]], id="all"),
        pytest.param("arrays", [[], ["parsed.x[0]", "parsed.x[1]"]], id="arrays_only"),
        pytest.param("none", [[], []], id="none"),
    ],
)
def test_widget_fields_modes(fields: str, paths: list[list[str]]) -> None:
    widgets = {"ask": {"inbound": {"Body": "5"}}, "api": {"status_code": 200, "parsed": {"x": [1, 2]}}}
    rows = widget_rows(widgets, "FN1", "FW1", fields=fields)
    assert [[f["path"] for f in r["fields"]] for r in rows] == paths
    assert rows[1]["outputs"] == widgets["api"]  # the whole output stays, whatever the mode


def test_map_rows_one_row_per_leaf() -> None:
    rows = map_rows({"lang": "en", "items": [{"sku": "A"}, {"sku": "B"}]}, "FN1", "FW1")
    assert [(r["key"], r["path"], r["value"]) for r in rows] == [
        ("lang", "", "en"), ("items", "[0].sku", "A"), ("items", "[1].sku", "B"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1}, id="object"),
        pytest.param('{"a": 1}', {"a": 1}, id="json_text_parsed"),
        pytest.param("not json", None, id="bad_text"),
        pytest.param([1, 2], None, id="array"),
        pytest.param(None, None, id="null"),
    ],
)
def test_coerce_context(raw: Any, expected: Any) -> None:
    assert coerce_context(raw) == expected


def test_engagement_row_parses_times_and_trigger() -> None:
    item: dict[str, Any] = {
        "sid": "FN1", "flow_sid": "FW1", "status": "ended", "date_created": "2026-03-01T10:00:00Z",
        "date_updated": None, "context": {},
    }  # fmt: skip
    ctx = {"trigger": {"call": {}}, "flow": {"data": {"k": "v"}, "variables": {}}, "widgets": {"w": {}}}
    row = engagement_row(item, ctx)
    assert row["date_created"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert row["date_updated"] is None
    assert row["trigger_type"] == "call"
    assert len(row["widgets"]) == 1 and len(row["flow_data"]) == 1 and row["flow_variables"] == []
