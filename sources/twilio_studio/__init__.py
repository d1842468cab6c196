"""dlt source for Twilio Studio: flows and engagements, with each engagement's context as tables.

from twilio_studio import run_lock, twilio_studio_source
pipeline = dlt.pipeline(pipeline_name="twilio_studio", dataset_name="twilio_studio",
                        destination=dlt.destinations.duckdb("twilio_studio_data.duckdb"))
with run_lock(pipeline):
    pipeline.run(twilio_studio_source())
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from twilio_studio.accounts import AccountsReport, AccountsRun, account_report, stamp_tables, validate_account_options
from twilio_studio.client import (
    ConfigurationError,
    PaginationError,
    RetryPolicy,
    StudioApiError,
    StudioError,
)
from twilio_studio.columnar import Batches, RunTables, exact_file_format, parent_rows, quiet_json_notice, table_hints
from twilio_studio.context import flow_row
from twilio_studio.definitions import FLOW_DEFINITION_COLUMNS, DefinitionReader, revision_tables
from twilio_studio.duckdb_file import check_pipeline
from twilio_studio.extract import ENGAGEMENTS, EXECUTIONS, EngagementWalker, FlowCursor, RunKind, StepFetcher, Window
from twilio_studio.memory import few_malloc_arenas, load_policy, release_freed_memory
from twilio_studio.options import SourceOptions, validate_options
from twilio_studio.privacy import Pseudonymizer
from twilio_studio.runlock import RunInProgressError, hold_for_run, run_lock
from twilio_studio.settings import (
    ACCOUNT_SID_RE,
    DEFAULT_ACCOUNTS_BASE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_CONTEXT_MODE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_TOTAL_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WIDGET_FIELDS,
    DEFAULT_WRITE_MODE,
)

__all__ = [
    "AccountsReport",
    "ConfigurationError",
    "PaginationError",
    "RunInProgressError",
    "StudioApiError",
    "StudioError",
    "account_report",
    "run_lock",
    "twilio_studio_source",
]

logger = logging.getLogger("twilio_studio")

TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}  # copied per column: dlt adds keys
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


# scd2 retires only the versions of the SIDs a run loads (merge_key): a run carries changed
# engagements only, and rows Twilio dropped after 30 days must stay current, not be closed as deleted.
WRITE_HINTS: dict[str, dict[str, Any]] = {
    "merge": {"write_disposition": "merge", "primary_key": "sid"},
    "scd2": {
        "write_disposition": {
            "disposition": "merge",
            "strategy": "scd2",
            "validity_column_names": ["valid_from", "valid_to"],
        },
        "merge_key": "sid",
    },
    "append": {
        "write_disposition": "append",
        "columns": {**ENGAGEMENT_COLUMNS, "snapshot_at": dict(TIMESTAMP)},
    },
    # the first load of merge and scd2 (see runs): appended, keyed as the mode keys it from the
    # second run on; scd2's rows carry the validity dlt's scd2 merge would have given them
    "first": {"write_disposition": "append", "primary_key": "sid"},
    "first_scd2": {
        "write_disposition": "append",
        "merge_key": "sid",
        "columns": {**ENGAGEMENT_COLUMNS, "valid_from": dict(TIMESTAMP), "valid_to": dict(TIMESTAMP)},
    },
}


ARROW_BATCH_ROWS = 1000  # engagements per Arrow batch: ~40,000 child rows at most, a few MB


def preflight() -> None:
    """At the start of extraction, before any request: refuses a DuckDB file named like the dataset
    and takes the pipeline's run lock (released when the run ends); no-op outside a pipeline run."""
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


@dlt.source(name="twilio_studio", max_table_nesting=2)
def twilio_studio_source(
    flow_sids: str | Sequence[str] | None = dlt.config.value,
    account_sid: str | None = dlt.secrets.value,
    auth_token: str | None = dlt.secrets.value,
    api_key_sid: str | None = dlt.secrets.value,
    api_key_secret: str | None = dlt.secrets.value,
    pseudonymize_key: str | None = dlt.secrets.value,
    base_url: str = DEFAULT_BASE_URL,
    page_size: int = DEFAULT_PAGE_SIZE,
    context_mode: str = DEFAULT_CONTEXT_MODE,
    write_mode: str = DEFAULT_WRITE_MODE,
    widget_fields: str = DEFAULT_WIDGET_FIELDS,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    start_date: str | datetime | None = None,
    end_date: str | datetime | None = None,
    lookback_seconds: float = 0,
    max_attempts: int = RetryPolicy.max_attempts,
    request_timeout: float = RetryPolicy.timeout,
    stop_at_ended_pages: bool = False,
    keep_card_data: bool = False,
    subaccounts: str | Sequence[str] | None = None,
    accounts_base_url: str = DEFAULT_ACCOUNTS_BASE_URL,
    subaccount_auth_tokens: dict[str, str] | None = dlt.secrets.value,
    max_total_concurrency: int = DEFAULT_MAX_TOTAL_CONCURRENCY,
) -> Sequence[DltResource]:
    """Loads Studio flows and engagements (latest state per engagement, merged on sid).

    Args:
        flow_sids: Flows to load (``FW...``); None discovers every flow of the account.
        account_sid: Twilio Account SID (``AC...``); with ``auth_token``.
        auth_token: The account's auth token.
        api_key_sid: An API key SID (``SK...``), Twilio's advice for production; with ``api_key_secret``.
        api_key_secret: The API key's secret.
        pseudonymize_key: When set, contact addresses (``contact_channel_address`` and every address in
            the context, its fields and flow data) are replaced by ``hmac:`` + a keyed SHA-256 hash.
        base_url: Studio host; the default is Twilio's, tests point it at the emulator.
        page_size: Records per list page, 1 to 1000.
        context_mode: ``fetch_missing`` (read the Context endpoint when a list item has none),
            ``inline`` (only what the list carries) or ``never`` (load no context at all).
        write_mode: ``merge`` (latest state per sid), ``scd2`` (every version, with ``valid_from`` and
            ``valid_to``; child rows belong to their version) or ``append`` (each run appends the changed
            engagements with ``snapshot_at``, the run's time).
        widget_fields: Scalars of widget outputs that also become ``__widgets__fields`` rows: ``arrays``
            (those inside arrays, which JSON paths on ``outputs`` cannot list), ``all`` or ``none``.
        max_concurrency: Requests in flight at once for the whole account (flows and contexts).
        start_date: A flow's first run loads engagements updated at or after this time.
        end_date: Load only engagements updated before this time (a backfill); saved cursors stay.
        lookback_seconds: Re-read engagements this far behind a flow's saved cursor (late updates).
        max_attempts: Attempts per request before a run fails (429, 5xx, resets, timeouts).
        request_timeout: Seconds to wait for one response.
        stop_at_ended_pages: Stop a flow's walk at the first list page whose engagements were all
            created before the oldest one still active at the last run (they had all ended, and
            ended ones never change): hourly runs read only the newest pages. Relies on Twilio
            listing newest first, which its docs do not promise: where a list is seen out of that
            order, the walk reads every page and logs it once. Off by default.
        keep_card_data: Keep the card data of Capture Payments widgets (card number, expiry date,
            security code, postal code, payment token). By default each is replaced by
            ``[redacted]`` in every context before it is normalized or written.
        subaccounts: None (only the credentials' own account), ``"all"`` (it and every active subaccount)
            or a list of Account SIDs; each is read with its own SID and auth token (README "Subaccounts").
        accounts_base_url: Twilio's core API, where the Accounts list is read; tests point it at the emulator.
        subaccount_auth_tokens: Auth tokens by Account SID, for subaccounts whose token the Accounts list
            does not give (a parent signed in with an API key).
        max_total_concurrency: With ``subaccounts``: requests in flight for the whole run, over all
            accounts (each account stays within ``max_concurrency``).

    Returns:
        Resources ``flows``, ``flow_revisions`` (tables ``flow_revisions``, ``flow_states``,
        ``flow_transitions``) and ``engagements`` (selected by default), and ``engagement_steps``,
        ``executions`` (Studio v2) and ``execution_steps``: pick them with ``source.with_resources(...)``.
    """
    options = validate_options(
        SourceOptions(
            flow_sids=flow_sids,
            account_sid=account_sid,
            auth_token=auth_token,
            api_key_sid=api_key_sid,
            api_key_secret=api_key_secret,
            base_url=base_url,
            page_size=page_size,
            context_mode=context_mode,
            write_mode=write_mode,
            widget_fields=widget_fields,
            max_concurrency=max_concurrency,
            start_date=start_date,
            end_date=end_date,
            lookback_seconds=lookback_seconds,
            max_attempts=max_attempts,
            request_timeout=request_timeout,
            stop_at_ended_pages=stop_at_ended_pages,
            keep_card_data=keep_card_data,
        )
    )
    # the accounts to read (one unless `subaccounts`), each with a client of its own credentials
    run = AccountsRun(
        options,
        validate_account_options(subaccounts, accounts_base_url, subaccount_auth_tokens, max_total_concurrency),
        options.username if ACCOUNT_SID_RE.match(options.username) else None,
    )
    flow_items = run.flow_items

    # typed Any: with pydantic installed (the dagster extra), dlt's `columns` union no longer takes a plain dict
    flow_columns: Any = {"date_created": dict(TIMESTAMP), "date_updated": dict(TIMESTAMP)}

    flow_columns.update(FLOW_DEFINITION_COLUMNS)

    def definitions() -> DefinitionReader:
        flow_items()  # discovers the accounts: run.client is set from here on
        return DefinitionReader(run.client, run.max_concurrency)

    @dlt.resource(name="flows", write_disposition="merge", primary_key="sid", columns=flow_columns)
    def flows() -> Iterator[list[dict[str, Any]]]:
        preflight()
        items = flow_items()
        v2 = definitions().flows([f["sid"] for f in items])  # GET /v2/Flows/{sid}: the definition
        yield run.keep([{**flow_row(f), **v2.get(f["sid"], {})} for f in items], "flows", nested=False)
        run.raise_if_alone()

    # each of its three tables gets its keys and columns with its first rows: resource-level hints
    # would reach all three
    @dlt.resource(name="flow_revisions")
    def flow_revisions() -> Iterator[Any]:
        """Revisions not loaded yet, with their states and transitions (tables flow_states, flow_transitions)."""
        preflight()
        sids = [f["sid"] for f in flow_items()]
        yield from revision_tables(definitions(), sids, dlt.current.resource_state(), run.keep)

    pseudonymize = Pseudonymizer(pseudonymize_key) if pseudonymize_key else None
    window = Window(options.start_date, options.end_date, timedelta(seconds=options.lookback_seconds))

    def runs(kind: RunKind) -> Iterator[Any]:
        """Changed engagements or executions of every flow, with per-flow cursors in the state."""
        preflight()
        few_malloc_arenas()  # the walk's threads share two heaps: a lower peak (twilio_studio.memory)
        state = run.cursors(dlt.current.resource_state())  # per account and flow
        sids = [f["sid"] for f in flow_items()]
        cursors = {sid: FlowCursor.from_state(state.get(sid)) for sid in sids}
        walker = EngagementWalker(
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

        snapshot_at = datetime.now(timezone.utc) if options.write_mode == "append" else None
        versions = options.write_mode == "scd2"  # every version its own child rows, keyed by its hash
        # The first load of these tables has nothing to merge with: it appends (no staging copy,
        # no de-duplication: that merge was most of a full load's load step, BENCHMARKS.md)
        write_mode = options.write_mode
        first = write_mode in ("merge", "scd2") and not any(c.last_value for c in cursors.values())
        if first and kind.name not in dlt.current.source_schema().tables:
            write_mode = "first" if write_mode == "merge" else "first_scd2"
        valid_from = package_created_at() if write_mode == "first_scd2" else None
        load_policy(merges=write_mode in ("merge", "scd2"))  # memory freed before the load; DuckDB's cap
        exact: dict[str, Any] = {"file_format": file_format} if (file_format := exact_file_format()) else {}
        hints = {
            name: dlt.mark.make_hints(table_name=name, **h, **exact)
            for name, h in table_hints(kind.name, kind.owner, write_mode).items()
        }
        root = dict(WRITE_HINTS[write_mode])
        root["columns"] = {
            **(ENGAGEMENT_COLUMNS if kind.name == "engagements" else EXECUTION_COLUMNS),
            **root.get("columns", {}),
        }
        hints[kind.name] = dlt.mark.make_hints(table_name=kind.name, **root, **exact)
        load_id = current_load_id()
        quiet_json_notice()

        def new_batch() -> RunTables:
            return RunTables(
                kind.name,
                kind.owner,
                kind.extra,
                tombstones=write_mode == "merge" and options.context_mode != "never",
                widget_fields=kind.widget_fields,
                versions=versions,
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
        for batch in walker.run(sids, cursors, save, sink):
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

    def steps(parents: Any, kind: RunKind) -> Iterator[Any]:
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
            yield dlt.mark.with_table_name(rows, f"{kind.name[:-1]}_steps")

    # resource-level columns would reach every table the Arrow path writes: there, the root table
    # gets its columns with its first page instead
    engagement_kind = replace(ENGAGEMENTS, widget_fields=options.widget_fields)
    execution_kind = replace(EXECUTIONS, widget_fields=options.widget_fields)
    engagements = dlt.resource(runs, name="engagements")(engagement_kind)
    executions = dlt.resource(runs, name="executions", selected=False)(execution_kind)
    step_hints: dict[str, Any] = {
        "write_disposition": "merge", "primary_key": "sid", "columns": STEP_COLUMNS, "nested_hints": NESTED_HINTS,
    }  # fmt: skip
    engagement_steps = dlt.transformer(steps, name="engagement_steps", selected=False, **step_hints)
    execution_steps = dlt.transformer(steps, name="execution_steps", selected=False, **step_hints)
    resources = [
        engagements,
        engagements | engagement_steps(kind=engagement_kind),
        executions,
        executions | execution_steps(kind=execution_kind),
    ]
    return [flows, flow_revisions, *resources]
