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
from datetime import datetime, timedelta
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from twilio_studio.accounts import AccountsReport, AccountsRun, account_report, validate_account_options
from twilio_studio.client import (
    ConfigurationError,
    PaginationError,
    RetryPolicy,
    StudioApiError,
    StudioError,
)
from twilio_studio.columnar import row_file_format
from twilio_studio.context import flow_row
from twilio_studio.cursors import Window
from twilio_studio.definitions import FLOW_DEFINITION_COLUMNS, DefinitionReader, first_load_appends, revision_tables
from twilio_studio.extract import ENGAGEMENTS, EXECUTIONS, Listing
from twilio_studio.modes import TIMESTAMP
from twilio_studio.options import SourceOptions, validate_options
from twilio_studio.privacy import Pseudonymizer
from twilio_studio.records import STEP_HINTS, changed_records, preflight, step_rows
from twilio_studio.runlock import RunInProgressError, run_lock
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
    def flows() -> Iterator[Any]:
        preflight()
        items = flow_items()
        v2 = definitions().flows([f["sid"] for f in items])  # GET /v2/Flows/{sid}: the definition
        rows = run.keep([{**flow_row(f), **v2.get(f["sid"], {})} for f in items], "flows", nested=False)
        hints = dlt.mark.make_hints(write_disposition=first_load_appends("flows"), **row_file_format())
        yield dlt.mark.with_hints(rows, hints)
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

    def runs(kind: Listing) -> Iterator[Any]:
        yield from changed_records(kind, run, options, window, pseudonymize)

    def steps(parents: Any, kind: Listing) -> Iterator[Any]:
        yield from step_rows(parents, kind, run, options, pseudonymize)

    # resource-level columns would reach every table the Arrow path writes: there, the root table
    # gets its columns with its first page instead
    engagement_kind = replace(ENGAGEMENTS, widget_fields=options.widget_fields)
    execution_kind = replace(EXECUTIONS, widget_fields=options.widget_fields)
    engagements = dlt.resource(runs, name="engagements")(engagement_kind)
    executions = dlt.resource(runs, name="executions", selected=False)(execution_kind)
    engagement_steps = dlt.transformer(steps, name="engagement_steps", selected=False, **STEP_HINTS)
    execution_steps = dlt.transformer(steps, name="execution_steps", selected=False, **STEP_HINTS)
    resources = [
        engagements,
        engagements | engagement_steps(kind=engagement_kind),
        executions,
        executions | execution_steps(kind=execution_kind),
    ]
    return [flows, flow_revisions, *resources]
