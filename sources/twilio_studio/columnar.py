"""Normalized engagement rows as Arrow tables: the fast path into the destination.

dlt normalizes nested Python rows one row at a time; an engagement with its widgets, fields and
flow data is about 40 rows, so at 100,000 engagements that normalizer was most of a load's time
(see BENCHMARKS.md). Here the same rows (from ``context.engagement_row``, the one normalization)
are laid out as columns and handed to dlt as Arrow tables, which it writes to Parquet as they are.

dlt cannot take nested (parent-linked) tables as Arrow at extract time, so the child tables are
tables of their own, merged on the owner's SID (delete-insert on ``merge_key``). To replace ALL of a
changed engagement's child rows, even where its new version has none in a table, each table also
gets one tombstone row per changed engagement: its SID, flagged ``_tombstone`` (dlt's ``hard_delete``
hint), so the merge deletes the old rows and inserts only the new ones. Rows still carry
``_dlt_id``, ``_dlt_parent_id``, ``_dlt_root_id`` and ``_dlt_list_idx`` as dlt's normalizer writes them,
derived from the SID so a re-extracted page yields the same keys.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute

from twilio_studio.context import strip_nul
from twilio_studio.destinations import destination_kind
from twilio_studio.flatten import ChildColumns

logger = logging.getLogger("twilio_studio")

TS = pa.timestamp("us", tz="UTC")
TEXT, INT, FLOAT = pa.string(), pa.int64(), pa.float64()

ID_FIELDS = [("_dlt_id", TEXT)]
CHILD_ID_FIELDS = [
    ("_dlt_parent_id", TEXT),
    ("_dlt_root_id", TEXT),
    ("_dlt_list_idx", INT),
    ("_dlt_id", TEXT),
    ("_tombstone", pa.bool_()),
]
WIDGET_COLUMNS = [
    ("flow_sid", TEXT), ("name", TEXT), ("position", INT), ("inbound_body", TEXT), ("digits", TEXT),
    ("speech_result", TEXT), ("confidence", FLOAT), ("status_code", INT), ("content_type", TEXT),
    ("call_status", TEXT), ("message_status", TEXT), ("outputs", TEXT),
]  # fmt: skip
LEAF_FIELDS = [("path", TEXT), ("value", TEXT), ("value_type", TEXT)]
# child table names after the root's: engagements__widgets, engagements__widgets__fields, ...
TABLE_SUFFIX = {
    "widgets": "widgets",
    "fields": "widgets__fields",
    "flow_data": "flow_data",
    "flow_variables": "flow_variables",
}


def run_fields(extra: tuple[str, ...], snapshot: bool, validity: bool = False) -> list[tuple[str, pa.DataType]]:
    """The Arrow fields of a root table: the common ones, its kind's ``extra``, then those asked for."""
    fields: list[tuple[str, pa.DataType]] = [
        ("sid", TEXT), ("account_sid", TEXT), ("flow_sid", TEXT), ("contact_sid", TEXT),
        ("contact_channel_address", TEXT), ("status", TEXT), ("date_created", TS), ("date_updated", TS),
        ("url", TEXT),
    ]  # fmt: skip
    fields += [(name, INT if name == "flow_version" else TEXT) for name in extra]
    fields += [("trigger_type", TEXT), ("context", TEXT)]
    if snapshot:
        fields.append(("snapshot_at", TS))
    if validity:  # scd2's first load, appended: dlt's scd2 merge fills these on later runs
        fields += [("valid_from", TS), ("valid_to", TS)]
    return [*fields, ("_dlt_load_id", TEXT), *ID_FIELDS]


class Columns:
    """Rows of one table, turned into one Arrow table column by column.

    A comprehension per column is several times faster than appending each value of each row.
    """

    def __init__(self, fields: list[tuple[str, pa.DataType]], required: tuple[str, ...] = ()) -> None:
        self.schema = pa.schema([pa.field(name, kind, nullable=name not in required) for name, kind in fields])
        self.rows: list[dict[str, Any]] = []
        self.append = self.rows.append

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        """The rows as an Arrow table of this schema."""
        rows = self.rows
        return pa.Table.from_pydict(
            {name: [r.get(name) for r in rows] for name in self.schema.names}, schema=self.schema
        )


def _json_and_value(value: Any, what: str = "a value") -> tuple[str | None, Any]:
    """JSON text of a context or output and the value it was made of, NUL characters removed from both.

    PostgreSQL's jsonb refuses them: children are built from the cleaned value.
    """
    if value is None:
        return None, None
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # nested deeper than orjson's 254 levels: keep the row, not the JSON
        logger.warning("%s is nested deeper than 254 levels: stored without its JSON", what)
        return None, strip_nul(value)
    if "\\u0000" in text:  # rare: only then pay for a second pass
        value = strip_nul(value)
        text = orjson.dumps(value).decode()
    return text, value


class RecordTables:
    """Builds the root table (engagements or executions) and its child tables.

    From rows of ``context.engagement_row(..., children=False)``: the root row by row, the children
    column by column (``flatten.ChildColumns``).
    """

    def __init__(
        self,
        root: str,
        owner: str,
        extra: tuple[str, ...],
        tombstones: bool,
        widget_fields: str = "arrays",
        versions: bool = False,
        valid_from: datetime | None = None,
        load_id: str | None = None,
        snapshot_at: datetime | None = None,
    ) -> None:
        self.root, self.owner = root, owner
        self.load_id, self.snapshot_at = load_id, snapshot_at
        self.versions = versions  # scd2: a root row's `_dlt_id` is the hash of its content
        self.tombstones = tombstones  # merge replaces child rows; append only adds
        self.valid_from = valid_from
        self.run = Columns(
            run_fields(extra, snapshot_at is not None, validity=valid_from is not None), required=("sid", "_dlt_id")
        )
        self.children = ChildColumns(owner, widget_fields)
        keys = (owner, "_dlt_id")
        self.schemas = {
            "widgets": Columns([(owner, TEXT), *WIDGET_COLUMNS, *CHILD_ID_FIELDS], keys).schema,
            "fields": Columns([(owner, TEXT), ("widget", TEXT), *LEAF_FIELDS, *CHILD_ID_FIELDS], keys).schema,
            **{
                key: Columns(
                    [(owner, TEXT), ("flow_sid", TEXT), ("key", TEXT), *LEAF_FIELDS, *CHILD_ID_FIELDS], keys
                ).schema
                for key in ("flow_data", "flow_variables")
            },
        }

    def add(self, row: dict[str, Any]) -> None:
        """Adds one root row (its ``context`` a dict or None) and its child rows; the row is consumed."""
        snapshot_at = self.snapshot_at
        text, context = _json_and_value(row["context"], f"the context of {row['sid']}")
        row["context"] = text
        if self.versions:
            root_id = version_hash(row)
        elif snapshot_at is not None:
            root_id = f"{row['sid']}@{snapshot_at:%Y%m%dT%H%M%S%f}"
        else:
            root_id = row["sid"]
        self.children.add(context, row["sid"], row["flow_sid"], root_id)
        row.update(_dlt_id=root_id, _dlt_load_id=self.load_id, snapshot_at=snapshot_at, valid_from=self.valid_from)
        self.run.append(row)

    def __len__(self) -> int:
        return len(self.run)

    def tables(self) -> Iterator[tuple[str, pa.Table]]:
        """(table name, Arrow table) of every table with rows, the root first."""
        root = self.run.table()
        if not len(root):
            return
        yield self.root, root
        computed = self.children.tables(self.schemas)
        for name, schema in self.schemas.items():
            table = computed[name]
            if self.tombstones:
                table = pa.concat_tables([table, _tombstones(root["sid"], root["_dlt_id"], schema, self.owner)])
            if len(table):
                yield f"{self.root}__{TABLE_SUFFIX[name]}", table


class Batches:
    """The walks' rows gathered into shared batches (``RecordTables``) of ``size`` rows.

    The walks hand them over in their own threads (``extract.RowSink``): a page becomes compact columns
    in its walk's turn, and its parsed objects are freed before the next page is parsed. ``prepare``
    runs first on every handed-over list (the rows to keep, pseudonymized); Arrow tables are built by
    the consumer, from full batches, in one thread.
    """

    def __init__(
        self,
        new: Callable[[], RecordTables],
        prepare: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
        size: int,
    ) -> None:
        self._new, self._prepare, self._size = new, prepare, size
        self._lock = threading.Lock()
        self._batch = new()

    def add(self, rows: list[dict[str, Any]]) -> RecordTables | None:
        """Adds the rows to keep of ``rows`` to the batch; returns the batch when it is full, else None."""
        with self._lock:
            batch = self._batch
            for row in self._prepare(rows):
                batch.add(row)
            if len(batch) < self._size:
                return None
            self._batch = self._new()
            return batch

    def rest(self) -> RecordTables | None:
        """The last, partly filled batch; None if it is empty."""
        with self._lock:
            batch, self._batch = self._batch, self._new()
        return batch if len(batch) else None


def version_hash(row: dict[str, Any]) -> str:
    """scd2's row version: a hash of every value of the root row (the context as its JSON text).

    So a version whose context changed is a new version, and one read again is the same.
    """
    digest = hashlib.blake2b(orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS), digest_size=16)
    return digest.hexdigest()


def _tombstones(sids: pa.ChunkedArray, root_ids: pa.ChunkedArray, schema: pa.Schema, owner: str) -> pa.Table:
    """One row per root flagged ``_tombstone``: the merge deletes the root's old rows from this table."""
    n = len(sids)
    ids = pa.compute.binary_join_element_wise(root_ids, pa.scalar("/-"), "")
    given = {owner: sids, "_dlt_id": ids, "_tombstone": pa.repeat(pa.scalar(True), n)}
    columns = [given[f.name] if f.name in given else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def parent_rows(item: Any, root: str) -> list[dict[str, Any]]:
    """The ``sid`` and ``flow_sid`` of the runs in what the root resource yielded (rows or Arrow)."""
    if isinstance(item, list):
        return [row for row in item if isinstance(row, dict) and "sid" in row]
    if isinstance(item, pa.Table):
        if "sid" not in item.column_names or "contact_sid" not in item.column_names:
            return []  # a child table of the same page
        return [
            {"sid": s, "flow_sid": f}
            for s, f in zip(item["sid"].to_pylist(), item["flow_sid"].to_pylist(), strict=True)
        ]
    return []


class JsonAsTextNotice(logging.Filter):
    """Drops dlt's per-page warning that the Arrow string columns ``context`` and ``outputs`` are ``json``.

    That is on purpose (dlt has no Arrow type for JSON), and the destination stores them as JSON;
    every other dlt message passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for dlt's Arrow-to-dlt schema merge warning, True for every other record."""
        return "when merging arrow schema with dlt schema" not in record.getMessage()


def quiet_json_notice() -> None:
    """Installs JsonAsTextNotice on dlt's logger once per process."""
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, JsonAsTextNotice) for f in dlt_logger.filters):
        dlt_logger.addFilter(JsonAsTextNotice())


def stored_counts(written: dict[str, int], tables: dict[str, Any]) -> dict[str, int]:
    """Rows written per table, less the tombstones (one per merged root row in each child table)."""
    out = dict(written)
    for name, count in written.items():
        table = tables.get(name, {})
        root = name.split("__", 1)[0]
        if "_tombstone" in table.get("columns", {}) and table.get("write_disposition") == "merge":
            out[name] = max(0, count - written.get(root, 0))
    return {name: count for name, count in out.items() if count}


# Loader files where dlt's choice for Arrow tables would change values: PostgreSQL gets Arrow as CSV,
# which dlt copies with FORCE_NULL, so every empty string (e.g. the `path` '' of plain flow data)
# would be stored as NULL. INSERT files keep them. Every other destination takes dlt's choice.
EXACT_FILE_FORMATS = {"postgres": "insert_values"}
# The tables dlt normalizes from rows (flows, the revision tables, steps): into DuckDB, Parquet instead
# of dlt's default INSERT statements, which DuckDB parses slowly and holds whole in memory (the steps
# of 2,000 engagements: a load step of 15.2 s and a peak RSS of 1,034 MB; as Parquet 2.2 s and 317 MB,
# BENCHMARKS.md). Parquet keeps every value as the INSERT files did (the tests load both ways).
ROW_FILE_FORMATS = {**EXACT_FILE_FORMATS, "duckdb": "parquet"}


def _destination_kind() -> str | None:
    try:
        destination = dlt.current.pipeline().destination
    except Exception:  # iterated outside a pipeline: nothing is loaded
        return None
    return destination_kind(destination)


def exact_file_format() -> str | None:
    """The loader file format the tables of this run must use, by the running pipeline's destination.

    Set as a table hint, it wins over ``pipeline.run(loader_file_format=...)``.
    """
    return EXACT_FILE_FORMATS.get(_destination_kind() or "")


def row_file_format() -> dict[str, Any]:
    """The ``file_format`` hint of a table dlt normalizes from rows, by the running pipeline's destination.

    ``{}`` where dlt's choice stands; a hint wins over ``pipeline.run(loader_file_format=...)``.
    """
    file_format = ROW_FILE_FORMATS.get(_destination_kind() or "")
    return {"file_format": file_format} if file_format else {}
