"""Flow definitions and revisions (Studio v2) as narrow tables: revisions, states and transitions.

A definition is ``{description, initial_state, flags, states: [{name, type, transitions: [{event,
next, conditions}], properties}]}``. Widget names and types are values in rows, never columns:
``properties`` and ``conditions`` stay whole as JSON, so no table grows wider with more widgets.
Revisions are immutable: one already loaded (numbers kept per flow in the resource state) is never
fetched again; each run lists a flow's revisions (one small page) and fetches only the new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import orjson

from twilio_studio.client import StudioApiError, StudioClient
from twilio_studio.context import parse_time, strip_nul

logger = logging.getLogger("twilio_studio")

REVISIONS_PAGE_SIZE = 100  # a flow has a few revisions to a few hundred; the API allows 1..1000
TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}

FLOW_DEFINITION_COLUMNS: dict[str, Any] = {
    "revision": {"data_type": "bigint"},
    "commit_message": {"data_type": "text"},
    "valid": {"data_type": "bool"},
    "definition": {"data_type": "json"},
}
REVISION_COLUMNS: dict[str, Any] = {
    "flow_sid": {"data_type": "text", "nullable": False},
    "revision": {"data_type": "bigint", "nullable": False},
    "status": {"data_type": "text"},
    "commit_message": {"data_type": "text"},
    "valid": {"data_type": "bool"},
    "date_created": dict(TIMESTAMP),
    "date_updated": dict(TIMESTAMP),
    "definition": {"data_type": "json"},
}
STATE_COLUMNS: dict[str, Any] = {
    "flow_sid": {"data_type": "text", "nullable": False},
    "revision": {"data_type": "bigint", "nullable": False},
    "name": {"data_type": "text", "nullable": False},
    "type": {"data_type": "text"},
    "position": {"data_type": "bigint"},
    "properties": {"data_type": "json"},
}
TRANSITION_COLUMNS: dict[str, Any] = {
    "flow_sid": {"data_type": "text", "nullable": False},
    "revision": {"data_type": "bigint", "nullable": False},
    "from_state": {"data_type": "text", "nullable": False},
    "position": {"data_type": "bigint", "nullable": False},
    "event": {"data_type": "text"},
    "to_state": {"data_type": "text"},
    "conditions": {"data_type": "json"},
}
TABLES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "flow_revisions": (("flow_sid", "revision"), REVISION_COLUMNS),
    "flow_states": (("flow_sid", "revision", "name"), STATE_COLUMNS),
    "flow_transitions": (("flow_sid", "revision", "from_state", "position"), TRANSITION_COLUMNS),
}


def _json(value: Any) -> Any:
    """A JSON value as stored: NULs removed (PostgreSQL's jsonb refuses them); {} and [] become null."""
    if value in ({}, [], None):
        return None
    if isinstance(value, (dict, list)):
        try:
            orjson.dumps(value)
        except TypeError:  # deeper than orjson's 254 levels: kept out rather than failing the run
            return None
        return strip_nul(value)
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value).replace("\x00", "")


def parse_definition(value: Any) -> dict[str, Any] | None:
    """A definition as a dict: JSON text is parsed, anything that is not an object is None."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def flow_definition_fields(body: dict[str, Any] | None) -> dict[str, Any]:
    """The v2 fields a ``flows`` row gains: the latest revision's number, message, validity, definition."""
    body = body or {}
    revision = body.get("revision")
    return {
        "revision": revision if isinstance(revision, int) and not isinstance(revision, bool) else None,
        "commit_message": _text(body.get("commit_message")),
        "valid": body.get("valid") if isinstance(body.get("valid"), bool) else None,
        "definition": _json(parse_definition(body.get("definition"))),
    }


def definition_rows(
    flow_sid: str, revision: int, definition: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``flow_states`` and ``flow_transitions`` rows of one revision's definition.

    A transition without ``next`` (or with ``""``) ends its branch: ``to_state`` is null. A state
    without a name, or a second state of the same name, is skipped (its name is the key).
    """
    states = (definition or {}).get("states")
    if not isinstance(states, list):
        return [], []
    state_rows: list[dict[str, Any]] = []
    transition_rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for position, state in enumerate(states):
        if not isinstance(state, dict) or not isinstance(state.get("name"), str) or not state["name"]:
            continue
        name = _text(state["name"]) or ""
        if name in seen:
            continue
        seen.add(name)
        state_rows.append(
            {
                "flow_sid": flow_sid,
                "revision": revision,
                "name": name,
                "type": _text(state.get("type")),  # an open set: new widget types load as they are
                "position": position,
                "properties": _json(state.get("properties")),
            }
        )
        transitions = state.get("transitions")
        for n, t in enumerate(transitions if isinstance(transitions, list) else []):
            if not isinstance(t, dict):
                continue
            nxt = t.get("next")
            transition_rows.append(
                {
                    "flow_sid": flow_sid,
                    "revision": revision,
                    "from_state": name,
                    "position": n,
                    "event": _text(t.get("event")),
                    "to_state": _text(nxt) if nxt else None,
                    "conditions": _json(t.get("conditions")),
                }
            )
    return state_rows, transition_rows


def revision_row(flow_sid: str, body: dict[str, Any], definition: dict[str, Any] | None) -> dict[str, Any]:
    """The ``flow_revisions`` row of one fetched revision."""
    return {
        "flow_sid": flow_sid,
        "revision": body["revision"],
        "status": _text(body.get("status")),
        "commit_message": _text(body.get("commit_message")),
        "valid": body.get("valid") if isinstance(body.get("valid"), bool) else None,
        "date_created": _time(body.get("date_created")),
        "date_updated": _time(body.get("date_updated")),
        "definition": _json(definition),
    }


def _time(value: Any) -> Any:
    try:
        return parse_time(value)
    except ValueError:
        return None


def _missing(error: StudioApiError) -> bool:
    return error.status == 404


class DefinitionReader:
    """Reads v2 flows and revisions of many flows at once, under the client's account-wide limit."""

    def __init__(self, client: StudioClient, max_concurrency: int) -> None:
        self.client = client
        self.max_concurrency = max_concurrency

    def _map(self, fn: Callable[[str], Any], sids: list[str]) -> list[Any]:
        return list(self._each(fn, sids))

    def _each(self, fn: Callable[[str], Any], sids: list[str]) -> Iterator[Any]:
        """``fn`` of each SID, in their order, each as soon as it and those before it are done.

        All are requested at once (as many at a time as ``max_concurrency``); a caller that stops early
        or fails cancels those not yet started and waits for those under way.
        """
        if not sids:
            return
        pool = ThreadPoolExecutor(min(self.max_concurrency, len(sids)), thread_name_prefix="studio-defs")
        try:
            yield from pool.map(fn, sids)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def flows(self, flow_sids: list[str]) -> dict[str, dict[str, Any]]:
        """``GET /v2/Flows/{sid}`` of each flow: the fields ``flows`` gains (empty for a flow v2 lacks)."""

        def one(sid: str) -> dict[str, Any]:
            try:
                body = self.client.get(self.client.url(f"/v2/Flows/{sid}"), f"flow {sid} definition")
            except StudioApiError as e:
                if not _missing(e):
                    raise
                logger.warning("flow %s: GET /v2/Flows/%s answered 404: loaded without its definition", sid, sid)
                return flow_definition_fields(None)
            return flow_definition_fields(body)

        return dict(zip(flow_sids, self._map(one, flow_sids), strict=True))

    def new_revisions(
        self, flow_sids: list[str], loaded: dict[str, list[int]]
    ) -> Iterator[tuple[str, list[int], list[dict[str, Any]]]]:
        """Per flow: every revision number it has now, and the rows of those not in ``loaded`` yet.

        Yields ``(flow_sid, numbers, [{"revision": row, "states": rows, "transitions": rows}, ...])``
        per flow, in the order of ``flow_sids``, flows read in parallel: each as soon as it is read, so
        that dlt's extract, which takes one item of each resource in turn, walks the engagement lists
        while the later flows' revisions are still being read.
        """

        def one(sid: str) -> tuple[str, list[int], list[dict[str, Any]]]:
            what = f"flow {sid} revisions"
            path = f"/v2/Flows/{sid}/Revisions"
            numbers: list[int] = []
            try:
                for page in self.client.pages(path, "revisions", what, {"PageSize": REVISIONS_PAGE_SIZE}):
                    for item in page:
                        n = item.get("revision") if isinstance(item, dict) else None
                        if isinstance(n, int) and not isinstance(n, bool):
                            numbers.append(n)
                        else:
                            logger.warning("%s: skipped a revision without a revision number", what)
            except StudioApiError as e:
                if not _missing(e):
                    raise
                logger.warning("flow %s: GET %s answered 404: no revisions loaded", sid, path)
                return sid, list(loaded.get(sid, [])), []
            known = set(loaded.get(sid, []))
            out = []
            for n in sorted(set(numbers) - known):
                body = self.client.get(self.client.url(f"{path}/{n}"), f"{what}, revision {n}")
                definition = parse_definition(body.get("definition"))
                body = {**body, "revision": n}
                states, transitions = definition_rows(sid, n, definition)
                out.append(
                    {"revision": revision_row(sid, body, definition), "states": states, "transitions": transitions}
                )
            return sid, sorted(known | set(numbers)), out

        yield from self._each(one, flow_sids)


def first_load_appends(table: str) -> Literal["merge", "append"]:
    """``merge`` for a table the destination has, ``append`` for its first load: nothing to merge with yet.

    A definition table's first load then skips dlt's staging dataset and its merge (at 20,000
    engagements, a fifth of the load step: BENCHMARKS.md); its keys are set all the same, so the next
    run merges. Called while dlt extracts a resource (the source's schema holds every table loaded).
    """
    import dlt

    return "merge" if table in dlt.current.source_schema().tables else "append"


def revision_tables(
    reader: DefinitionReader,
    flow_sids: list[str],
    state: dict[str, Any],
    keep: Callable[[list[dict[str, Any]], str, bool], list[dict[str, Any]]] | None = None,
) -> Iterator[Any]:
    """The ``flow_revisions``, ``flow_states`` and ``flow_transitions`` rows of revisions not loaded yet.

    ``state`` is the resource state: ``loaded_revisions`` keeps, per flow, the revision numbers already
    loaded; it is saved with the load package, so a failed run fetches them again next time.
    """
    import dlt  # the source module's dependency; kept local so the pure functions above need none

    from twilio_studio.columnar import row_file_format

    loaded: dict[str, list[int]] = state.setdefault("loaded_revisions", {})
    hinted: set[str] = set()
    fetched = 0
    for sid, numbers, revisions in reader.new_revisions(flow_sids, loaded):
        tables = {
            "flow_revisions": [r["revision"] for r in revisions],
            "flow_states": [s for r in revisions for s in r["states"]],
            "flow_transitions": [t for r in revisions for t in r["transitions"]],
        }
        for name, rows in tables.items():
            if keep is not None:  # the account's SID on each row; none of an account that failed
                rows = keep(rows, name, False)
            if not rows:
                continue
            if name in hinted:
                yield dlt.mark.with_table_name(rows, name)
                continue
            hinted.add(name)
            key, columns = TABLES[name]
            hints = dlt.mark.make_hints(
                table_name=name,
                write_disposition=first_load_appends(name),
                primary_key=list(key),
                columns=columns,
                **row_file_format(),
            )
            yield dlt.mark.with_hints(rows, hints, create_table_variant=True)
        fetched += len(revisions)
        loaded[sid] = numbers
    logger.info("flow revisions: %d new revisions of %d flows loaded", fetched, len(flow_sids))
