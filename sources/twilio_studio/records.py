"""The engagements and executions resources, and their steps: what each run yields to dlt.

A run walks every flow's list (``extract.ListingWalker``), hands each page's new and changed
records to shared batches (``columnar.Batches``) and yields each full batch as Arrow tables, the
root first, with their hints the first time each table appears (``modes.WriteMode``); the per-flow
cursors (``cursors``) go to the resource state as each flow's walk completes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import dlt

from twilio_studio.accounts import AccountsRun, stamp_tables
from twilio_studio.columnar import (
    Batches,
    RecordTables,
    exact_file_format,
    parent_rows,
    quiet_json_notice,
    row_file_format,
)
from twilio_studio.cursors import FlowCursor, Window
from twilio_studio.duckdb_file import check_pipeline
from twilio_studio.extract import Listing, ListingWalker, StepFetcher
from twilio_studio.memory import few_malloc_arenas, load_policy, release_freed_memory
from twilio_studio.modes import TIMESTAMP, WriteMode
from twilio_studio.options import ValidOptions
from twilio_studio.runlock import hold_for_run

logger = logging.getLogger("twilio_studio")

Pseudonymize = Callable[[dict[str, Any]], dict[str, Any]]

ENGAGEMENT_COLUMNS: dict[str, Any] = {
    "sid": {"data_type": "text", "nullable": False},
    "date_created": dict(TIMESTAMP),
    "date_updated": dict(TIMESTAMP),
    "context": {"data_type": "json"},
    "_dlt_id": {"data_type": "text", "nullable": False},
}
EXECUTION_COLUMNS: dict[str, Any] = {
    **ENGAGEMENT_COLUMNS,
    "flow_version": {"data_type": "bigint"},
    "initiated_by": {"data_type": "text"},
}
STEP_COLUMNS: dict[str, Any] = {
    "sid": {"data_type": "text", "nullable": False},
    **{c: {"data_type": "text"} for c in ("widget", "event")},
    "step_index": {"data_type": "bigint"},
    "dwell_seconds": {"data_type": "double"},
    "is_terminal": {"data_type": "bool"},
    **{c: {"data_type": "text"} for c in ("name", "type", "transitioned_from", "transitioned_to", "parent_step_sid")},
    "date_created": dict(TIMESTAMP),
    "date_updated": dict(TIMESTAMP),
    "context": {"data_type": "json"},
}
NESTED_HINTS: dict[Any, Any] = {
    ("widgets",): dlt.mark.make_nested_hints(
        columns={
            "outputs": {"data_type": "json"},
            "position": {"data_type": "bigint"},
            "confidence": {"data_type": "double"},
            "status_code": {"data_type": "bigint"},
            **{
                c: {"data_type": "text"}
                for c in (
                    "inbound_body",
                    "digits",
                    "speech_result",
                    "content_type",
                    "call_status",
                    "message_status",
                )
            },
        }
    ),
    ("widgets", "fields"): dlt.mark.make_nested_hints(columns={"value": {"data_type": "text"}}),
    ("flow_data",): dlt.mark.make_nested_hints(columns={"value": {"data_type": "text"}}),
    ("flow_variables",): dlt.mark.make_nested_hints(columns={"value": {"data_type": "text"}}),
}
STEP_HINTS: dict[str, Any] = {
    "write_disposition": "merge", "primary_key": "sid", "columns": STEP_COLUMNS, "nested_hints": NESTED_HINTS,
}  # fmt: skip
ARROW_BATCH_ROWS = 1000  # engagements per Arrow batch: ~40,000 child rows at most, a few MB


def preflight() -> None:
    """Checks the pipeline at the start of extraction, before any request.

    Refuses a DuckDB file named like the dataset and takes the pipeline's run lock (released when
    the run ends); no-op outside a pipeline run.
    """
    if current_load_id() is None:
        return
    from dlt.common.configuration.container import Container
    from dlt.common.pipeline import PipelineContext

    context = Container()[PipelineContext]
    if not context.is_active():
        return
    pipeline = context.pipeline()
    check_pipeline(pipeline)
    hold_for_run(pipeline)


def current_load_id() -> str | None:
    """The load id of the package being extracted (None when iterating a source by hand)."""
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except Exception:  # CurrentLoadPackageStateNotAvailable outside a pipeline run
        return None


def package_created_at() -> datetime:
    """When the package being extracted was created: the time dlt's scd2 merge gives ``valid_from``."""
    try:
        created = dlt.current.load_package_state()["state"]["created_at"]
    except Exception:  # outside a pipeline run
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(created.timestamp(), tz=timezone.utc)


def changed_records(
    kind: Listing,
    run: AccountsRun,
    options: ValidOptions,
    window: Window,
    pseudonymize: Pseudonymize | None,
) -> Iterator[Any]:
    """Changed engagements or executions of every flow of the run's accounts, as Arrow tables."""
    preflight()
    few_malloc_arenas()  # the walk's threads share two heaps: a lower peak (twilio_studio.memory)
    state = run.cursors(dlt.current.resource_state())  # per account and flow
    sids = [f["sid"] for f in run.flow_items()]
    cursors = {sid: FlowCursor.from_state(state.get(sid)) for sid in sids}
    walker = ListingWalker(
        run.client, window, options.context_mode, run.max_concurrency, options.page_size, kind,
        stop_at_ended=options.stop_at_ended_pages, keep_card_data=options.keep_card_data,
    )  # fmt: skip

    def save(flow_sid: str, cursor: FlowCursor) -> None:
        state[flow_sid] = cursor.to_state()
        s = walker.stats[flow_sid]
        logger.info(
            "flow %s done: %d pages%s, %d %s read, %d loaded, %d contexts fetched in %.1f s",
            flow_sid, s.pages, " (the rest ended before the last run)" if s.stopped_early else "",
            s.seen, kind.name, s.emitted, s.contexts_fetched, s.seconds,
        )  # fmt: skip

    loaded_before = any(c.last_value for c in cursors.values()) or kind.name in dlt.current.source_schema().tables
    mode = WriteMode(options.write_mode).for_run(loaded_before)
    load_policy(merges=mode.merges)  # memory freed before the load; DuckDB's cap
    hints = table_hints(kind, mode)
    load_id = current_load_id()
    snapshot_at = datetime.now(timezone.utc) if mode.snapshots else None
    valid_from = package_created_at() if mode.stamps_validity else None
    quiet_json_notice()

    def new_batch() -> RecordTables:
        return RecordTables(
            kind.name,
            kind.owner,
            kind.extra,
            tombstones=mode.replaces_children and options.context_mode != "never",
            widget_fields=kind.widget_fields,
            versions=mode.versions,
            valid_from=valid_from,
            load_id=load_id,
            snapshot_at=snapshot_at,
        )

    def prepare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = run.keep(rows, kind.name, nested=False)  # a failed account's rows go
        return [pseudonymize(row) for row in rows] if pseudonymize is not None else rows

    # a few pages per Arrow table: each item dlt receives has a fixed cost, and a table per small
    # page (PageSize 100) made that cost most of a latency-bound run's CPU
    sink = Batches(new_batch, prepare, ARROW_BATCH_ROWS)
    for batch in walker.walk(sids, cursors, save, sink):
        for name, table in stamp_tables(list(batch.tables()), kind.name, kind.owner):
            # the hints once per table: dlt merges them into the schema; later batches only name it
            hinted = hints.pop(name, None)
            yield (
                dlt.mark.with_hints(table, hinted, create_table_variant=True)
                if hinted
                else dlt.mark.with_table_name(table, name)
            )
    run.raise_if_alone()
    # the walk's pages and batches are garbage now: hand their memory back before the load step
    release_freed_memory()


def table_hints(kind: Listing, mode: WriteMode) -> dict[str, Any]:
    """Each table's dlt hints for this run, by table name: the root's and its child tables'."""
    exact: dict[str, Any] = {"file_format": file_format} if (file_format := exact_file_format()) else {}
    hints = {
        name: dlt.mark.make_hints(table_name=name, **h, **exact)
        for name, h in mode.child_hints(kind.name, kind.owner).items()
    }
    columns = ENGAGEMENT_COLUMNS if kind.name == "engagements" else EXECUTION_COLUMNS
    hints[kind.name] = dlt.mark.make_hints(table_name=kind.name, **mode.root_hints(columns), **exact)
    return hints


def step_rows(
    parents: Any, kind: Listing, run: AccountsRun, options: ValidOptions, pseudonymize: Pseudonymize | None
) -> Iterator[Any]:
    """Steps of the engagements or executions this run loads: new or changed ones only."""
    parents = parent_rows(parents, kind.name)
    if not parents:
        return
    fetcher = StepFetcher(
        run.client, kind, options.context_mode, run.max_concurrency, keep_card_data=options.keep_card_data
    )
    try:
        rows = fetcher.rows(parents)
    finally:
        fetcher.close()
    rows = run.keep(rows, f"{kind.name[:-1]}_steps", nested=True)
    run.raise_if_alone()
    if pseudonymize is not None:
        rows = [pseudonymize(row) for row in rows]
    if rows:
        # named explicitly: a transformer's output otherwise takes the parent item's table hints
        name = f"{kind.name[:-1]}_steps"
        file_format = row_file_format()
        yield dlt.mark.with_hints(rows, dlt.mark.make_hints(table_name=name, **file_format)) if file_format \
            else dlt.mark.with_table_name(rows, name)  # fmt: skip
