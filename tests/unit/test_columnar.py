"""Arrow batches (twilio_studio.columnar) and table hints (twilio_studio.modes): what a page becomes, per mode."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pytest

from tests.kit.loopback import engagement
from twilio_studio.columnar import Batches, RecordTables
from twilio_studio.context import engagement_row
from twilio_studio.modes import WriteMode

FLOW = "FW" + "4" * 32
CHILDREN = ("engagements__widgets", "engagements__widgets__fields", "engagements__flow_data",
            "engagements__flow_variables")  # fmt: skip
CONTEXT = {
    "widgets": {"ask": {"inbound": {"Body": "yes"}}, "order": {"parsed": {"items": [1, 2]}}},
    "flow": {"data": {"k": 1}, "variables": {"score": 3}},
}


def row(n: int = 1, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """A root row as the walk hands it to RecordTables: the context kept, children not yet derived."""
    item = engagement(FLOW, n, context=CONTEXT if context is None else context)
    return engagement_row(item, item["context"], children=False)


def tables_of(**options: Any) -> RecordTables:
    return RecordTables("engagements", "engagement_sid", (), load_id="load-1", **options)


def batches(tables: RecordTables, *rows: dict[str, Any]) -> dict[str, pa.Table]:
    for r in rows:
        tables.add(r)
    return dict(tables.tables())


def merge_tables(**options: Any) -> RecordTables:
    return tables_of(tombstones=True, **options)


# ---------------------------------------------------------------------------- table hints
@pytest.mark.parametrize(
    ("mode", "disposition", "merge_key", "primary_key", "hard_delete"),
    [
        pytest.param("merge", {"disposition": "merge", "strategy": "delete-insert"}, "engagement_sid",
                     ["engagement_sid", "_dlt_id"], True, id="merge_replaces_an_engagements_rows"),
        pytest.param("scd2", {"disposition": "merge", "strategy": "delete-insert"}, None,
                     ["engagement_sid", "_dlt_id"], False, id="scd2_adds_each_versions_rows_once"),
        pytest.param("append", "append", None, None, False, id="append_only_adds"),
        pytest.param("merge/first", "append", "engagement_sid", ["engagement_sid", "_dlt_id"], False,
                     id="merges_first_load_appends_with_merges_keys"),
        pytest.param("scd2/first", "append", None, ["engagement_sid", "_dlt_id"], False,
                     id="scd2s_first_load_appends_without_a_merge_key"),
    ],
)  # fmt: skip
def test_child_table_hints_fit_the_write_mode(
    mode: str, disposition: Any, merge_key: str | None, primary_key: list[str] | None, hard_delete: bool
) -> None:
    name, _, first = mode.partition("/")
    hints = WriteMode(name, first_load=bool(first)).child_hints("engagements", "engagement_sid")
    assert sorted(hints) == sorted(CHILDREN)
    for table, hint in hints.items():
        assert hint["write_disposition"] == disposition, table
        assert hint.get("merge_key") == merge_key, table
        assert hint.get("primary_key") == primary_key, table
        # dlt warns about a hard_delete hint wherever no merge reads it: only merge has one
        assert ("hard_delete" in hint["columns"]["_tombstone"]) is hard_delete, table
        assert hint["columns"]["_dlt_id"] == {"data_type": "text", "nullable": False}
    assert hints["engagements__widgets"]["columns"]["outputs"] == {"data_type": "json"}


def test_executions_hints_name_their_own_tables_and_owner() -> None:
    hints = WriteMode("merge").child_hints("executions", "execution_sid")
    assert sorted(hints) == sorted(t.replace("engagements", "executions") for t in CHILDREN)
    assert {h["merge_key"] for h in hints.values()} == {"execution_sid"}


# ---------------------------------------------------------------------------- Arrow batches
def test_a_page_becomes_the_root_table_first_then_one_table_per_child_kind() -> None:
    got = batches(merge_tables(), row(1), row(2))
    assert next(iter(got)) == "engagements" and sorted(got) == sorted(["engagements", *CHILDREN])
    root = got["engagements"]
    assert root.column("sid").to_pylist() == [engagement(FLOW, 1)["sid"], engagement(FLOW, 2)["sid"]]
    assert root.column("_dlt_id").to_pylist() == root.column("sid").to_pylist()  # merge: the SID is the row key
    assert root.column("_dlt_load_id").to_pylist() == ["load-1", "load-1"]
    assert root.schema.field("date_updated").type == pa.timestamp("us", tz="UTC")
    assert not root.schema.field("sid").nullable and not root.schema.field("_dlt_id").nullable
    assert isinstance(root.column("context")[0].as_py(), str)  # the raw context, as JSON text
    widgets = [r for r in got["engagements__widgets"].to_pylist() if not r["_tombstone"]]
    assert sorted(r["name"] for r in widgets) == ["ask", "ask", "order", "order"]
    assert {r["_dlt_root_id"] for r in widgets} == set(root.column("_dlt_id").to_pylist())


@pytest.mark.parametrize("tombstones", [True, False], ids=["merge_one_tombstone_per_root", "append_none"])
def test_tombstones_flag_each_root_once_in_every_child_table(tombstones: bool) -> None:
    tables = tables_of(tombstones=tombstones)
    got = batches(tables, row(1), row(2, context={}))  # the second has no child rows at all
    for name in CHILDREN:
        flagged = [r for r in got.get(name, pa.table({"_tombstone": []})).to_pylist() if r.get("_tombstone")]
        if not tombstones:
            assert flagged == [], name
            continue
        # even a root without rows in a table gets its tombstone there: the merge deletes its old rows
        assert sorted(r["engagement_sid"] for r in flagged) == sorted(engagement(FLOW, n)["sid"] for n in (1, 2))
        assert all(r["_dlt_id"] == r["engagement_sid"] + "/-" for r in flagged), name


def test_no_rows_no_tables() -> None:
    assert batches(merge_tables()) == {}


def test_scd2_keys_a_version_by_its_content() -> None:
    def key(context: dict[str, Any]) -> str:
        tables = tables_of(tombstones=False, versions=True)
        return str(batches(tables, row(1, context))["engagements"].column("_dlt_id")[0])

    assert key(CONTEXT) == key(CONTEXT)  # read again (lookback): the same version
    assert key(CONTEXT) != key({**CONTEXT, "flow": {"data": {"k": 2}}})  # a changed context: a new version
    assert key(CONTEXT) != engagement(FLOW, 1)["sid"]


def test_append_keys_each_snapshot_by_its_time() -> None:
    at = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)
    tables = tables_of(tombstones=False, snapshot_at=at)
    root = batches(tables, row(1))["engagements"]
    assert root.column("_dlt_id").to_pylist() == [engagement(FLOW, 1)["sid"] + "@20260301T123000000000"]
    assert root.column("snapshot_at").to_pylist() == [at]


def test_nul_characters_leave_the_context_and_its_rows() -> None:
    got = batches(merge_tables(), row(1, {"widgets": {"ask": {"inbound": {"Body": "a\x00b"}}}}))
    assert "\\u0000" not in got["engagements"].column("context")[0].as_py()
    bodies = [b for b in got["engagements__widgets"].column("inbound_body").to_pylist() if b is not None]
    assert bodies == ["ab"]


def test_batches_gather_handed_over_rows_until_full_then_start_anew() -> None:
    kept: list[int] = []

    def prepare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept.append(len(rows))
        return rows[1:]  # e.g. a failed account's row goes

    sink = Batches(merge_tables, prepare, size=3)
    assert sink.add([row(1), row(2), row(3)]) is None  # two kept: not full yet
    full = sink.add([row(4), row(5)])
    assert full is not None and len(full) == 3 and kept == [3, 2]
    rest = sink.rest()
    assert rest is None  # the full batch took every row; nothing is left over
    assert sink.add([row(6), row(7)]) is None
    last = sink.rest()
    assert last is not None and [r["sid"] for r in last.run.rows] == [engagement(FLOW, 7)["sid"]]
