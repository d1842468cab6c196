"""The child rows of contexts (widgets, their fields, flow data, flow variables) built column by column.

``context.py`` defines the normalization, one dict per child row; at ~30 child rows per engagement
that cost ~17 us a row (dicts built, then read back column by column into Arrow), most of a large
load's time. Here the same rows go straight into one list per column: no dict per row, one pass over
the context, and Arrow arrays built from the lists in C. Measured alternatives are in BENCHMARKS.md
(DuckDB's ``json_tree`` was 7x slower than this: it writes every node's subtree out as JSON again).

tests/unit/test_flatten.py checks that every row and value equals what ``context.py`` gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from twilio_studio.context import MAX_DEPTH, _typed

_dumps = orjson.dumps
TEXT = pa.string()


def _container_text(value: dict[str, Any] | list[Any]) -> str | None:
    """A container as one leaf: None when empty, else its JSON (None if too deep for orjson)."""
    if not value:
        return None
    try:
        return _dumps(value).decode()
    except TypeError:
        return None


class Leaves:
    """Columns ``path``, ``value``, ``value_type`` of ``context.leaves`` rows, appended in its order."""

    __slots__ = ("kind", "path", "value")

    def __init__(self) -> None:
        self.path: list[str] = []
        self.value: list[str | None] = []
        self.kind: list[str] = []

    def __len__(self) -> int:
        return len(self.path)

    def columns(self) -> dict[str, list[Any]]:
        """The collected rows as the child table's columns ``path``, ``value`` and ``value_type``."""
        return {"path": self.path, "value": self.value, "value_type": self.kind}

    def add(self, value: Any, path: str, depth: int = 0, bracketed_only: bool = False) -> None:
        """Every scalar under ``value`` (empty and too deep containers as one row), as context.leaves.

        With ``bracketed_only``, only those whose path holds a '[' (widget_fields="arrays").
        """
        t = type(value)
        if t is not dict and t is not list:
            if not bracketed_only or "[" in path:
                self._scalar(value, path)
            return
        if not value or depth >= MAX_DEPTH:
            if not bracketed_only or "[" in path:
                self.path.append(path)
                self.value.append(_container_text(value))
                self.kind.append("object" if t is dict else "array")
            return
        # scalars inline, containers by recursion: one call per container, not per value
        paths, values, kinds = self.path.append, self.value.append, self.kind.append
        items: Iterable[tuple[Any, Any]] = value.items() if t is dict else enumerate(value)
        prefix = (f"{path}." if path else "") if t is dict else path
        inside = "[" in path
        for k, v in items:
            child = prefix + k if t is dict else f"{prefix}[{k}]"
            tv = type(v)
            if tv is dict or tv is list:
                self.add(v, child, depth + 1, bracketed_only)
                continue
            if bracketed_only and not (inside or t is list or "[" in k):
                continue
            paths(child)
            if tv is str:
                values(v)
                kinds("string")
            elif v is None:
                values(None)
                kinds("null")
            elif tv is bool:
                values("true" if v else "false")
                kinds("boolean")
            else:
                values(_dumps(v).decode())
                kinds("number")

    def _scalar(self, value: Any, path: str) -> None:
        self.path.append(path)
        t = type(value)
        if t is str:
            self.value.append(value)
            self.kind.append("string")
        elif value is None:
            self.value.append(None)
            self.kind.append("null")
        elif t is bool:
            self.value.append("true" if value else "false")
            self.kind.append("boolean")
        else:
            self.value.append(_dumps(value).decode())
            self.kind.append("number")


def _has_array(value: Any) -> bool:
    """Whether a non-empty array sits anywhere below ``value``."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is list:
            if v:
                return True
        elif t is dict:
            stack.extend(v.values())
    return False


def _text(value: Any) -> str | None:
    return None if value is None else _typed(value, str)


class ChildColumns:
    """The four child tables of a batch of contexts, one list per column until ``tables``.

    Values that repeat on many rows (the owner's SID, the root's and the widget's ids, the flow SID,
    the widget's name) are kept once per root or widget; each row keeps only their index, and Arrow
    gathers them (``take``) and joins the row ids in C.
    """

    def __init__(self, owner: str, widget_fields: str) -> None:
        self.owner = owner
        self.widget_fields = widget_fields
        self.sids: list[str] = []  # per root
        self.flow_sids: list[str] = []
        self.root_ids: list[str] = []
        self.widgets: dict[str, list[Any]] = {
            name: [] for name in ("root", "name", "position", *TYPED_COLUMNS, "outputs")
        }
        self.fields = Leaves()
        self.field_of: list[int] = []  # per field row: its widget's index
        self.field_idx: list[int] = []
        self.maps = {key: Leaves() for key in ("flow_data", "flow_variables")}
        self.map_of: dict[str, list[int]] = {key: [] for key in self.maps}  # per row: its root's index
        self.map_keys: dict[str, list[str]] = {key: [] for key in self.maps}
        self.map_idx: dict[str, list[int]] = {key: [] for key in self.maps}

    def add(self, context: dict[str, Any] | None, sid: str, flow_sid: str, root_id: str) -> None:
        """Adds the child rows of one context (``context.context_children``' rows, with dlt's ids)."""
        if not context:
            return
        root = len(self.sids)
        self.sids.append(sid)
        self.flow_sids.append(flow_sid)
        self.root_ids.append(root_id)
        widgets = context.get("widgets")
        if type(widgets) is dict:
            self._add_widgets(widgets, root)
        flow = context.get("flow")
        if type(flow) is dict:
            for key, part in (("flow_data", "data"), ("flow_variables", "variables")):
                values = flow.get(part)
                if type(values) is dict and values:
                    self._add_map(key, values, root)

    def _add_widgets(self, widgets: dict[str, Any], root: int) -> None:
        w = self.widgets
        mode = self.widget_fields
        leaves, field_of, field_idx = self.fields, self.field_of, self.field_idx
        for position, (name, output) in enumerate(widgets.items()):
            index = len(w["root"])
            w["root"].append(root)
            w["name"].append(name)
            w["position"].append(position)
            if type(output) is dict:
                inbound = output.get("inbound")
                w["inbound_body"].append(_text(inbound.get("Body")) if type(inbound) is dict else None)
                w["digits"].append(_text(output.get("Digits")))
                w["speech_result"].append(_text(output.get("SpeechResult")))
                confidence = output.get("Confidence")
                w["confidence"].append(None if confidence is None else _typed(confidence, float))
                code = output.get("status_code")
                w["status_code"].append(None if code is None else _typed(code, int))
                w["content_type"].append(_text(output.get("content_type")))
                w["call_status"].append(_text(output.get("DialCallStatus")))
                w["message_status"].append(_text(output.get("status")))
            else:
                for column in TYPED_COLUMNS:
                    w[column].append(None)
            w["outputs"].append(None if output is None else _output_text(output))
            if mode == "none" or (mode == "arrays" and not _has_array(output)):
                continue
            before = len(leaves)
            leaves.add(output, "", bracketed_only=mode == "arrays")  # arrays: only scalars inside arrays
            count = len(leaves) - before
            field_of.extend([index] * count)
            field_idx.extend(range(count))

    def _add_map(self, key: str, values: dict[str, Any], root: int) -> None:
        leaves, keys = self.maps[key], self.map_keys[key]
        start = len(leaves)
        for k, v in values.items():
            before = len(leaves)
            leaves.add(v, "")
            keys.extend([k] * (len(leaves) - before))
        count = len(leaves) - start
        self.map_of[key].extend([root] * count)
        self.map_idx[key].extend(range(count))

    def tables(self, schemas: dict[str, pa.Schema]) -> dict[str, pa.Table]:
        """Arrow tables in ``schemas``' columns (``widgets``, ``fields``, ``flow_data``, ``flow_variables``)."""
        sids, flow_sids, root_ids = (
            pa.array(self.sids, TEXT),
            pa.array(self.flow_sids, TEXT),
            pa.array(self.root_ids, TEXT),
        )
        w = self.widgets
        w_root = pa.array(w["root"], pa.int64())
        w_position = pa.array(w["position"], pa.int64())
        w_root_id = root_ids.take(w_root)
        w_id = pc.binary_join_element_wise(w_root_id, pc.cast(w_position, TEXT), "/w")
        w_name = pa.array(w["name"], TEXT)
        columns: dict[str, dict[str, Any]] = {
            "widgets": {
                self.owner: sids.take(w_root), "flow_sid": flow_sids.take(w_root), "name": w_name,
                "position": w_position, **{c: w[c] for c in (*TYPED_COLUMNS, "outputs")},
                "_dlt_parent_id": w_root_id, "_dlt_root_id": w_root_id, "_dlt_list_idx": w_position, "_dlt_id": w_id,
            },
        }  # fmt: skip
        f_of = pa.array(self.field_of, pa.int64())
        f_idx = pa.array(self.field_idx, pa.int64())
        f_parent = w_id.take(f_of)
        columns["fields"] = {
            self.owner: sids.take(w_root.take(f_of)), "widget": w_name.take(f_of), **self.fields.columns(),
            "_dlt_parent_id": f_parent, "_dlt_root_id": w_root_id.take(f_of), "_dlt_list_idx": f_idx,
            "_dlt_id": pc.binary_join_element_wise(f_parent, pc.cast(f_idx, TEXT), "/"),
        }  # fmt: skip
        for key, leaves in self.maps.items():
            m_of = pa.array(self.map_of[key], pa.int64())
            m_idx = pa.array(self.map_idx[key], pa.int64())
            m_root_id = root_ids.take(m_of)
            columns[key] = {
                self.owner: sids.take(m_of), "flow_sid": flow_sids.take(m_of), "key": self.map_keys[key],
                **leaves.columns(), "_dlt_parent_id": m_root_id, "_dlt_root_id": m_root_id, "_dlt_list_idx": m_idx,
                "_dlt_id": pc.binary_join_element_wise(m_root_id, pc.cast(m_idx, TEXT), f"/{key}/"),
            }  # fmt: skip
        out = {}
        for name, schema in schemas.items():
            data = columns[name]
            n = len(data["_dlt_id"])
            out[name] = pa.Table.from_arrays(
                [_array(data[f.name], f.type) if f.name in data else pa.nulls(n, f.type) for f in schema],
                schema=schema,
            )
        return out


def _array(values: Any, kind: pa.DataType) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values, type=kind)


TYPED_COLUMNS = (
    "inbound_body", "digits", "speech_result", "confidence", "status_code", "content_type", "call_status",
    "message_status",
)  # fmt: skip


def _output_text(value: Any) -> str | None:
    """A widget's whole output as JSON text (None if nested too deep for orjson)."""
    try:
        return _dumps(value).decode()
    except TypeError:
        return None
