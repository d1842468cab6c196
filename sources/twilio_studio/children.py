"""The child tables of a batch of contexts (widgets, their fields, flow data, flow variables), by DuckDB.

``context.py`` defines the normalization; this module computes the same rows in DuckDB's JSON
functions (``json_each``, ``json_tree``, C++ on every core) from the contexts' JSON text, instead of
one Python dict per child row: at some 30 child rows per engagement the Python path cost ~17 us a row
on one core, most of a large load's time (BENCHMARKS.md). Engagements whose context has no JSON text
(nested deeper than orjson's 254 levels) keep the Python path (``context.context_children``).

Every rule of ``context.py`` holds here, tested row for row against it (tests/unit/test_children.py):
widget ``position`` in the context's order, typed outputs converted as ``context._typed`` does,
``fields`` rows for scalars inside arrays (``arrays``) or every scalar (``all``), paths such as
``parsed.orders[1].total``, empty maps and arrays as one row, structures below 64 levels kept whole
as JSON text. One difference: a number's text is DuckDB's JSON writing of it, which differs from
Python's only for floats with exponents beyond 1e16 (``1e+20`` reads ``100000000000000000000.0``).
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb
import pyarrow as pa

from twilio_studio.context import MAX_DEPTH

# A JSON path of a node at depth 64 is at least 128 characters ("[0]" or ".a" per level): shorter
# paths skip counting their levels.
_DEEP_PATH = 2 * MAX_DEPTH
_SEGMENT = r'\[\d+\]|\.[A-Za-z_][A-Za-z0-9_]*|\."(?:[^"\\]|\\.)*"'


def _path(fullkey: str) -> str:
    """SQL: DuckDB's ``fullkey`` (``$.a."b c"[0]``) as context.py writes a path (``a.b c[0]``)."""
    plain = f"substr({fullkey}, 2)"
    unquoted = (
        f"""regexp_replace(regexp_replace({plain}, '\\."((?:[^"\\\\]|\\\\.)*)"', '.\\1', 'g'), """
        f"""'\\\\(.)', '\\1', 'g')"""
    )
    p = f"CASE WHEN contains({fullkey}, '\"') THEN {unquoted} ELSE {plain} END"
    return f"(CASE WHEN starts_with({p}, '.') THEN substr({p}, 2) ELSE {p} END)"


def _depth(fullkey: str) -> str:
    """SQL: how many levels below the tree's root a node sits (0 where it cannot reach MAX_DEPTH)."""
    return (
        f"(CASE WHEN length({fullkey}) < {_DEEP_PATH} THEN 0 ELSE len(regexp_extract_all({fullkey}, '{_SEGMENT}')) END)"
    )


def _leaf_select(tree: str) -> str:
    """SQL columns path, value, value_type of ``context.leaves``' rows, from json_tree ``tree``."""
    return f"""
        {_path(f"{tree}.fullkey")} AS path,
        CASE
            WHEN {tree}.type = 'VARCHAR' THEN json_extract_string({tree}.value, '$')
            WHEN {tree}.type IN ('OBJECT', 'ARRAY') THEN
                CASE WHEN {tree}.value IN ('{{}}', '[]') THEN NULL ELSE CAST({tree}.value AS VARCHAR) END
            WHEN {tree}.type = 'NULL' THEN NULL
            ELSE CAST({tree}.value AS VARCHAR)
        END AS value,
        CASE {tree}.type
            WHEN 'VARCHAR' THEN 'string' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null'
            WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' ELSE 'number'
        END AS value_type"""


def _is_leaf(tree: str) -> str:
    """SQL: the json_tree row is one of ``context.leaves``' rows (scalars, empty or too deep containers)."""
    depth = _depth(f"{tree}.fullkey")
    return (
        f"({depth} <= {MAX_DEPTH} AND ({tree}.type NOT IN ('OBJECT', 'ARRAY') "
        f"OR {tree}.value IN ('{{}}', '[]') OR {depth} = {MAX_DEPTH}))"
    )


# typed outputs (context.TYPED_OUTPUTS), in its order: column -> (JSON path, conversion)
TYPED_SQL = {
    "inbound_body": ("$.inbound.Body", "text"),
    "digits": ("$.Digits", "text"),
    "speech_result": ("$.SpeechResult", "text"),
    "confidence": ("$.Confidence", "double"),
    "status_code": ("$.status_code", "bigint"),
    "content_type": ("$.content_type", "text"),
    "call_status": ("$.DialCallStatus", "text"),
    "message_status": ("$.status", "text"),
}


def _typed(j: str, kind: str) -> str:
    """SQL: an extracted JSON value converted as ``context._typed`` converts it (None where it cannot)."""
    t = f"json_type({j})"
    if kind == "text":  # str(value): Python spells booleans True / False
        return (
            f"CASE {t} WHEN 'VARCHAR' THEN json_extract_string({j}, '$') "
            f"WHEN 'BOOLEAN' THEN CASE WHEN CAST({j} AS VARCHAR) = 'true' THEN 'True' ELSE 'False' END "
            f"WHEN 'NULL' THEN NULL WHEN 'OBJECT' THEN NULL WHEN 'ARRAY' THEN NULL ELSE CAST({j} AS VARCHAR) END"
        )
    if kind == "double":  # float(value)
        return (
            f"CASE {t} WHEN 'VARCHAR' THEN TRY_CAST(trim(json_extract_string({j}, '$')) AS DOUBLE) "
            f"WHEN 'BOOLEAN' THEN CASE WHEN CAST({j} AS VARCHAR) = 'true' THEN 1.0 ELSE 0.0 END "
            f"WHEN 'BIGINT' THEN CAST({j} AS DOUBLE) WHEN 'UBIGINT' THEN CAST({j} AS DOUBLE) "
            f"WHEN 'DOUBLE' THEN CAST({j} AS DOUBLE) ELSE NULL END"
        )
    # int(value): whole-number text only, floats truncated toward zero, out of int64's range: None
    text = f"trim(json_extract_string({j}, '$'))"
    return (
        f"CASE {t} WHEN 'VARCHAR' THEN CASE WHEN regexp_full_match({text}, '[+-]?[0-9]+') "
        f"THEN TRY_CAST({text} AS BIGINT) END "
        f"WHEN 'BOOLEAN' THEN CASE WHEN CAST({j} AS VARCHAR) = 'true' THEN 1 ELSE 0 END "
        f"WHEN 'BIGINT' THEN TRY_CAST({j} AS BIGINT) WHEN 'UBIGINT' THEN TRY_CAST({j} AS BIGINT) "
        f"WHEN 'DOUBLE' THEN TRY_CAST(trunc(CAST({j} AS DOUBLE)) AS BIGINT) ELSE NULL END"
    )


def widgets_sql(owner: str) -> str:
    paths = ", ".join(f"'{path}'" for path, _ in TYPED_SQL.values())
    typed = ",\n".join(f"{_typed(f'e[{n}]', kind)} AS {col}" for n, (col, (_, kind)) in enumerate(TYPED_SQL.items(), 1))
    return f"""
        SELECT owner AS {owner}, flow_sid, name, position, {typed},
            output AS outputs, widget_id AS _dlt_id, root_id AS _dlt_parent_id, root_id AS _dlt_root_id,
            position AS _dlt_list_idx
        FROM (
            SELECT *, json_extract(output, [{paths}]) AS e
            FROM (
                SELECT r.sid AS owner, r.flow_sid, r.root_id, j.key AS name,
                    CAST(row_number() OVER (PARTITION BY r.root_id ORDER BY j.id) - 1 AS BIGINT) AS position,
                    CASE WHEN j.type = 'NULL' THEN NULL ELSE CAST(j.value AS VARCHAR) END AS output,
                    r.root_id || '/w' || CAST(row_number() OVER (PARTITION BY r.root_id ORDER BY j.id) - 1 AS VARCHAR)
                        AS widget_id
                FROM (SELECT * FROM roots WHERE json_type(context, '$.widgets') = 'OBJECT') r,
                    json_each(r.context, '$.widgets') j
            )
        )"""


def fields_sql(owner: str, mode: str) -> str:
    """SQL: ``__widgets__fields`` rows from the widgets table ``widgets`` (mode ``arrays`` or ``all``)."""
    arrays = mode == "arrays"
    # arrays: only widgets whose output holds a non-empty array (context._has_array), and only paths
    # with a '[' in them; a widget whose JSON text has no '[' at all holds no array
    candidates = "SELECT * FROM widgets WHERE contains(outputs, '[')" if arrays else "SELECT * FROM widgets"
    flag = (
        "bool_or(t.type = 'ARRAY' AND CAST(t.value AS VARCHAR) <> '[]') OVER (PARTITION BY w._dlt_id)"
        if arrays
        else "true"
    )
    keep = "has_array AND is_leaf AND contains(path, '[')" if arrays else "is_leaf"
    return f"""
        SELECT {owner}, widget, path, value, value_type,
            parent_id || '/' || CAST(m AS VARCHAR) AS _dlt_id, parent_id AS _dlt_parent_id,
            root_id AS _dlt_root_id, m AS _dlt_list_idx
        FROM (
            SELECT *, CAST(row_number() OVER (PARTITION BY parent_id ORDER BY node) - 1 AS BIGINT) AS m
            FROM (
                SELECT w.{owner}, w.name AS widget, w._dlt_id AS parent_id, w._dlt_root_id AS root_id,
                    t.id AS node, {_leaf_select("t")}, {_is_leaf("t")} AS is_leaf, {flag} AS has_array
                FROM ({candidates}) w, json_tree(coalesce(w.outputs, 'null')) t
            )
            WHERE {keep}
        )"""


def map_sql(owner: str, key: str) -> str:
    """SQL: ``__flow_data`` / ``__flow_variables`` rows: every leaf under each key of ``flow.<key>``."""
    return f"""
        SELECT {owner}, flow_sid, key, path, value, value_type,
            root_id || '/flow_{key}/' || CAST(n AS VARCHAR) AS _dlt_id, root_id AS _dlt_parent_id,
            root_id AS _dlt_root_id, n AS _dlt_list_idx
        FROM (
            SELECT *, CAST(row_number() OVER (PARTITION BY root_id ORDER BY k_node, node) - 1 AS BIGINT) AS n
            FROM (
                SELECT k.{owner}, k.flow_sid, k.root_id, k.key, k.node AS k_node, t.id AS node,
                    {_leaf_select("t")}, {_is_leaf("t")} AS is_leaf
                FROM (
                    SELECT r.sid AS {owner}, r.flow_sid, r.root_id, j.key, j.id AS node, j.value
                    FROM (SELECT * FROM roots WHERE json_type(context, '$.flow.{key}') = 'OBJECT') r,
                        json_each(r.context, '$.flow.{key}') j
                ) k, json_tree(k.value) t
            )
            WHERE is_leaf
        )"""


def _arrow(relation: Any) -> pa.Table:
    """A DuckDB relation's rows as one Arrow table (DuckDB 2 names it ``to_arrow_table``)."""
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


class ChildTables:
    """One in-memory DuckDB that turns batches of contexts into child tables, for one resource's run."""

    def __init__(self, owner: str, widget_fields: str) -> None:
        self.owner = owner
        self.widget_fields = widget_fields
        self._con = duckdb.connect(":memory:", config={"preserve_insertion_order": False})
        self._lock = threading.Lock()
        self._widgets = widgets_sql(owner)
        self._fields = fields_sql(owner, widget_fields) if widget_fields != "none" else None
        self._maps = {key: map_sql(owner, key) for key in ("data", "variables")}

    def close(self) -> None:
        self._con.close()

    def tables(self, roots: pa.Table) -> dict[str, pa.Table]:
        """``widgets``, ``fields``, ``flow_data`` and ``flow_variables`` of ``roots`` (columns ``sid``,
        ``flow_sid``, ``root_id`` and ``context``, the JSON text)."""
        with self._lock:
            con = self._con
            con.register("roots", roots)
            try:
                widgets = _arrow(con.sql(self._widgets))
                out = {"widgets": widgets}
                if self._fields is not None:
                    con.register("widgets", widgets)
                    try:
                        out["fields"] = _arrow(con.sql(self._fields))
                    finally:
                        con.unregister("widgets")
                for key, sql in self._maps.items():
                    out[f"flow_{key}"] = _arrow(con.sql(sql))
            finally:
                con.unregister("roots")
        return out
