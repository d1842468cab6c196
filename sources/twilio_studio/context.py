"""Turns a Studio engagement and its free-form ``context`` into rows of fixed-width tables.

Pure functions, no I/O. Studio's context holds maps keyed by names the user chose (widget names,
``flow.data`` keys, ``flow.variables``). Flattened as columns, every new widget name would add
columns (dlt's default), so a busy account breaks PostgreSQL's 1,600-column limit. Here every such
name is a row value instead, and every scalar inside becomes one row of a ``fields`` table whose
``path`` says where it sat (``parsed.orders[1].total``): arrays become rows, never columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

# Widget outputs common enough to deserve a typed column; everything is also in `fields`.
TYPED_OUTPUTS: dict[str, tuple[tuple[str, ...], type]] = {
    "inbound_body": (("inbound", "Body"), str),  # send-and-wait-for-reply: what they answered
    "digits": (("Digits",), str),  # gather-input-on-call: keys pressed
    "speech_result": (("SpeechResult",), str),  # gather-input-on-call: what they said
    "confidence": (("Confidence",), float),
    "status_code": (("status_code",), int),  # make-http-request, run-function
    "content_type": (("content_type",), str),
    "call_status": (("DialCallStatus",), str),  # connect-call-to
    "message_status": (("status",), str),  # send-message
}
TRIGGER_TYPES = ("message", "call", "request", "subflow", "conversation")
MAX_DEPTH = 64  # deeper structures stay whole in their JSON column, not as field rows
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parse_time(value: Any) -> datetime | None:
    """Parses Twilio's ISO 8601 UTC times (``2017-11-06T12:00:00Z``); None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"not an ISO 8601 time: {type(value).__name__}")
    return datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)


def scalar_text(value: Any) -> tuple[str | None, str]:
    """A scalar as (text, type): ``True`` -> ("true", "boolean"), ``None`` -> (None, "null")."""
    if value is None:
        return None, "null"
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode(), "number"
    return str(value).replace("\x00", ""), "string"


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, str | None, str]]:
    """Every scalar under ``value`` as (path, text, type); empty maps and arrays yield one row."""
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        p, v, depth = stack.pop()
        if isinstance(v, dict) and v and depth < MAX_DEPTH:
            items = [(f"{p}.{k}" if p else str(k), child) for k, child in v.items()]
            stack.extend((cp, cv, depth + 1) for cp, cv in reversed(items))
        elif isinstance(v, list) and v and depth < MAX_DEPTH:
            stack.extend((f"{p}[{n}]", child, depth + 1) for n, child in reversed(list(enumerate(v))))
        elif isinstance(v, (dict, list)):
            yield p, _json_text(v), "object" if isinstance(v, dict) else "array"
        else:
            text, kind = scalar_text(v)
            yield p, text, kind


def strip_nul(value: Any) -> Any:
    """A copy of a JSON value with NUL characters removed from every string, keys included."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def _json_text(value: dict[str, Any] | list[Any]) -> str | None:
    """Compact JSON of what lies below MAX_DEPTH; None for empty or too deep to serialize."""
    if not value:
        return None
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson refuses structures nested deeper than 254 levels
        return None


def _has_array(value: Any) -> bool:
    """Whether a non-empty array sits anywhere below ``value`` (cheap: no rows are built)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            if v:
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
    return False


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _typed(value: Any, kind: type) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return None
    if kind is str:
        return str(value).replace("\x00", "")
    try:
        converted = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if kind is int and not INT64_MIN <= converted <= INT64_MAX:
        return None  # a BIGINT column cannot hold it
    return converted


def widget_rows(
    widgets: Any, sid: str, flow_sid: str, owner: str = "engagement_sid", fields: str = "arrays"
) -> list[dict[str, Any]]:
    """One row per widget the engagement reached, in the order Studio recorded them.

    ``fields`` chooses the scalars of each output that also become ``fields`` rows: ``arrays`` (those
    inside arrays, which JSON paths on ``outputs`` cannot list), ``all``, or ``none``.
    """
    if not isinstance(widgets, dict):
        return []
    rows = []
    for position, (name, output) in enumerate(widgets.items()):
        row: dict[str, Any] = {
            owner: sid,
            "flow_sid": flow_sid,
            "name": str(name),
            "position": position,
        }
        for column, (path, kind) in TYPED_OUTPUTS.items():
            row[column] = _typed(_dig(output, path), kind)
        row["outputs"] = output
        row["fields"] = (
            []
            if fields == "none" or (fields == "arrays" and not _has_array(output))
            else [
                {owner: sid, "widget": str(name), "path": p, "value": text, "value_type": kind}
                for p, text, kind in leaves(output)
                if fields == "all" or "[" in p
            ]
        )
        rows.append(row)
    return rows


def map_rows(values: Any, sid: str, flow_sid: str, owner: str = "engagement_sid") -> list[dict[str, Any]]:
    """One row per scalar under each key of a user-keyed map (``flow.data``, ``flow.variables``)."""
    if not isinstance(values, dict):
        return []
    rows = []
    for key, value in values.items():
        for p, text, kind in leaves(value):
            rows.append(
                {
                    owner: sid,
                    "flow_sid": flow_sid,
                    "key": str(key),
                    "path": p,
                    "value": text,
                    "value_type": kind,
                }
            )
    return rows


def coerce_context(context: Any) -> dict[str, Any] | None:
    """Context as a dict: JSON text is parsed; anything else that is not an object becomes None."""
    if isinstance(context, str):
        try:
            context = orjson.loads(context)
        except orjson.JSONDecodeError:
            return None
    return context if isinstance(context, dict) else None


def trigger_type(context: dict[str, Any] | None) -> str | None:
    """The trigger's type a context names (``message``, ``call``, ...); None without a trigger."""
    trigger = (context or {}).get("trigger")
    if isinstance(trigger, dict):
        for kind in TRIGGER_TYPES:
            if kind in trigger:
                return kind
        return next(iter(trigger), None)
    return None


def context_children(
    context: dict[str, Any] | None, sid: str, flow_sid: str, owner: str, fields: str = "arrays"
) -> dict[str, Any]:
    """The child rows of a context: widgets (with their fields), flow data and flow variables."""
    flow = (context or {}).get("flow")
    flow = flow if isinstance(flow, dict) else {}
    return {
        "widgets": widget_rows((context or {}).get("widgets"), sid, flow_sid, owner, fields),
        "flow_data": map_rows(flow.get("data"), sid, flow_sid, owner),
        "flow_variables": map_rows(flow.get("variables"), sid, flow_sid, owner),
    }


def engagement_row(
    item: dict[str, Any],
    context: dict[str, Any] | None,
    owner: str = "engagement_sid",
    extra: tuple[str, ...] = (),
    fields: str = "arrays",
    children: bool = True,
) -> dict[str, Any]:
    """An ``engagements`` (or ``executions``) row with its nested child rows (``children``).

    ``owner`` names the child rows' link column; ``extra`` adds fields only some versions have
    (``flow_version`` and ``initiated_by`` of v2 executions). Without ``children`` the row keeps
    its context for ``children.ChildTables``, which derives the same child rows in DuckDB.
    """
    sid = item["sid"]
    flow_sid = item["flow_sid"]
    row = {
        "sid": sid,
        "account_sid": item.get("account_sid"),
        "flow_sid": flow_sid,
        "contact_sid": item.get("contact_sid"),
        "contact_channel_address": item.get("contact_channel_address"),
        "status": item.get("status"),
        "date_created": parse_time(item.get("date_created")),
        "date_updated": parse_time(item.get("date_updated")),
        "url": item.get("url"),
        **{name: item.get(name) for name in extra},
        "trigger_type": trigger_type(context),
        "context": context,
    }
    if children:
        row.update(context_children(context, sid, flow_sid, owner, fields))
    return row


def step_row(
    item: dict[str, Any], context: dict[str, Any] | None, parent: str, fields: str = "arrays"
) -> dict[str, Any]:
    """An ``engagement_steps`` / ``execution_steps`` row: one widget that ran, its event, where it went.

    As Twilio's spec defines a step: ``transitioned_from`` is the widget executed (``widget``),
    ``name`` the event it ended with (``event``), ``transitioned_to`` the next widget or ``Ended``
    (``is_terminal``) and ``type`` the executed widget's type. ``step_index`` and ``dwell_seconds``
    need all of a parent's steps: ``steps.order_steps`` sets them.
    """
    sid = item["sid"]
    flow_sid = item.get("flow_sid") or ""
    transitioned_to = item.get("transitioned_to")
    row = {
        "sid": sid,
        "account_sid": item.get("account_sid"),
        "flow_sid": flow_sid,
        parent: item.get(parent),
        "widget": item.get("transitioned_from"),
        "event": item.get("name"),
        "step_index": None,
        "dwell_seconds": None,
        "is_terminal": transitioned_to == "Ended" if isinstance(transitioned_to, str) else None,
        "name": item.get("name"),
        "type": item.get("type"),
        "transitioned_from": item.get("transitioned_from"),
        "transitioned_to": transitioned_to,
        "parent_step_sid": item.get("parent_step_sid"),
        "date_created": parse_time(item.get("date_created")),
        "date_updated": parse_time(item.get("date_updated")),
        "url": item.get("url"),
        "context": context,
    }
    row.update(context_children(context, sid, flow_sid, "step_sid", fields))
    return row


def flow_row(item: dict[str, Any]) -> dict[str, Any]:
    """The ``flows`` row: the flow's own fields, links dropped (they are derived from url)."""
    return {
        "sid": item["sid"],
        "account_sid": item.get("account_sid"),
        "friendly_name": item.get("friendly_name"),
        "status": item.get("status"),
        "version": item.get("version"),
        "date_created": _time_or_none(item.get("date_created")),
        "date_updated": _time_or_none(item.get("date_updated")),
        "url": item.get("url"),
    }


def _time_or_none(value: Any) -> datetime | None:
    """A flow's dates are descriptive only: an unreadable one is stored as null, not a failed run."""
    try:
        return parse_time(value)
    except ValueError:
        return None
