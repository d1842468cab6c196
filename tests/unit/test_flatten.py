"""The column-wise child tables (flatten.ChildColumns via columnar.RecordTables) hold exactly context.py's rows."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest

from tests.kit.studio import listed_views
from twilio_studio.columnar import RecordTables
from twilio_studio.context import context_children
from twilio_studio.emulator import Dataset

OWNER = "engagement_sid"


def python_rows(contexts: list[dict[str, Any] | None], fields: str) -> dict[str, list[dict[str, Any]]]:
    """The child rows context.py builds, with the ids columnar.RecordTables gives them."""
    out: dict[str, list[dict[str, Any]]] = {"widgets": [], "fields": [], "flow_data": [], "flow_variables": []}
    for n, ctx in enumerate(contexts):
        sid, root_id = f"FN{n:032x}", f"FN{n:032x}"
        children = context_children(ctx, sid, "FW1", OWNER, fields)
        for w_n, widget in enumerate(children["widgets"]):
            widget_id = f"{root_id}/w{w_n}"
            for m, leaf in enumerate(widget.pop("fields")):
                out["fields"].append({**leaf, "_dlt_id": f"{widget_id}/{m}", "_dlt_parent_id": widget_id})
            widget["outputs"] = None if widget["outputs"] is None else orjson.dumps(widget["outputs"]).decode()
            out["widgets"].append({**widget, "_dlt_id": widget_id, "_dlt_list_idx": w_n})
        for key in ("flow_data", "flow_variables"):
            for m, leaf in enumerate(children[key]):
                out[key].append({**leaf, "_dlt_id": f"{root_id}/{key}/{m}", "_dlt_list_idx": m})
    return out


def columnar_rows(contexts: list[dict[str, Any] | None], fields: str) -> dict[str, list[dict[str, Any]]]:
    batch = RecordTables("engagements", OWNER, (), tombstones=False, widget_fields=fields)
    for n, ctx in enumerate(contexts):
        batch.add({"sid": f"FN{n:032x}", "flow_sid": "FW1", "context": ctx})
    tables = {name.removeprefix("engagements__").removeprefix("widgets__"): t for name, t in batch.tables()}
    return {
        k: (tables[f"{k}"].to_pylist() if k in tables else [])
        for k in ("widgets", "fields", "flow_data", "flow_variables")
    }


def same(py: dict[str, list[dict[str, Any]]], db: dict[str, list[dict[str, Any]]]) -> None:
    for table, rows in py.items():
        got = {r["_dlt_id"]: r for r in db[table]}
        assert sorted(got) == sorted(r["_dlt_id"] for r in rows), table
        for row in rows:
            for column, value in row.items():
                have = got[row["_dlt_id"]][column]
                assert have == value, (table, row["_dlt_id"], column)


def emulator_contexts(n: int = 300) -> list[dict[str, Any] | None]:
    ds = Dataset(seed=3, flows=3, engagements_per_flow=n // 3, context_padding=2)
    return [view.context for view in listed_views(ds, ds.start)]


HOSTILE: list[Any] = [
    None,
    {},
    {"widgets": [], "flow": []},
    {"widgets": {"a": None, "b": 5, "c": "x", "d": [], "e": {}, "f": [[], {}, [1, [2, {"g": None}]]]}},
    {
        "widgets": {
            "w": {
                "inbound": {"Body": True},
                "Digits": 7,
                "SpeechResult": 1.5,
                "Confidence": "0.75",
                "status_code": "200",
                "content_type": ["x"],
                "DialCallStatus": {"a": 1},
                "status": False,
            }
        }
    },
    {"widgets": {"w": {"Confidence": True, "status_code": 200.9}}},
    {"widgets": {"w": {"Confidence": "high", "status_code": "200.5"}}},
    {"widgets": {"w": {"status_code": 1.5e23}}},
    {"widgets": {"odd keys": {"a b": [1], "x.y": [{'q"z': "v", "back\\slash": "w"}], "[0]": [True], "": [None]}}},
    {"widgets": {"w": {"s": "contains [ but no array"}}},
    {"widgets": {"w": {"s": "[", "a": [1]}, "k[1]": {"a": 1}}},
    {
        "flow": {
            "data": {
                "plain": "v",
                "num": 1.25,
                "neg": -3,
                "t": True,
                "n": None,
                "e": {},
                "l": [],
                "nested": {"a": [{"b": [1, 2]}, "c"]},
                "ünï": "ç",
                "emoji 👍": "RTL خدمة",
            }
        }
    },
    {"flow": {"variables": {"x": [{"y": {"z": [0]}}]}, "data": "not a map"}},
    {"widgets": {"w": {}}},
]


def _nest(depth: int) -> Any:
    value: Any = {"leaf": "bottom", "list": [1]}
    for n in range(depth):
        value = {f"k{n}": value, "arr": [n]}
    return value


DEEP = [{"widgets": {"w": _nest(d)}, "flow": {"data": {"k": _nest(d)}}} for d in (62, 63, 64, 65, 70)]


@pytest.mark.parametrize("fields", ["arrays", "all", "none"])
@pytest.mark.parametrize(
    "contexts",
    [
        pytest.param(emulator_contexts(), id="emulator"),
        pytest.param(HOSTILE, id="hostile_values_and_keys"),
        pytest.param(DEEP, id="around_the_64_level_limit"),
    ],
)
def test_columnar_child_rows_equal_the_python_rules(contexts: list[Any], fields: str) -> None:
    same(python_rows(contexts, fields), columnar_rows(contexts, fields))


def test_child_tables_have_the_declared_arrow_types() -> None:
    batch = RecordTables("engagements", OWNER, (), tombstones=True)
    batch.add({"sid": "FN1", "flow_sid": "FW1", "context": {"widgets": {"w": {"status_code": 200}}}})
    tables = dict(batch.tables())
    widgets = tables["engagements__widgets"]
    assert widgets.schema.field("status_code").type == pa.int64()
    assert widgets.schema.field("_tombstone").type == pa.bool_()
    # the widget and its tombstone; the other tables hold the tombstone only
    assert widgets["_tombstone"].to_pylist() == [None, True]
    assert tables["engagements__flow_data"]["_dlt_id"].to_pylist() == ["FN1/-"]
