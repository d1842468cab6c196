"""Dagster assets for Twilio Studio, one partition per account (``pip install 'twilio-studio-dlt[dagster]'``).

    from dagster import Definitions
    from dagster_dlt import DagsterDltResource
    from twilio_studio.dagster import twilio_studio_assets

    assets = twilio_studio_assets(destination="duckdb", dataset_name="twilio_studio")
    defs = Definitions(assets=[assets], resources={"dlt": DagsterDltResource()})

Each partition is one account (the credentials' own and each active subaccount, from the Accounts
list when the definitions load, or the SIDs given). A partition runs its own dlt pipeline,
``<pipeline_name>_<account SID>``, into the shared dataset: its state (cursors) lives in the
destination's ``_dlt_pipeline_state`` under that name, so partitions run at the same time, on one
machine or many, never share or move each other's cursors. A partition whose account does not
load fails (Dagster's ``Failure``) after loading nothing of it, and the others are not touched.
"""

# no `from __future__ import annotations`: Dagster reads the type of `context` at definition time
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import dlt
from dagster import AssetExecutionContext
from dagster_dlt import DagsterDltResource, dlt_assets

from twilio_studio import account_report, twilio_studio_source
from twilio_studio.accounts import accounts_of
from twilio_studio.destinations import destination_kind
from twilio_studio.settings import DEFAULT_ACCOUNTS_BASE_URL

__all__ = ["account_partitions", "twilio_studio_assets"]

CREDENTIAL_KEYS = ("account_sid", "auth_token", "api_key_sid", "api_key_secret")
# dagster-dlt reads only resource names and hints from the source given at definition time; these
# placeholders (the form of an Account SID, no real account) let it be built without any secret
DEFINITION_ONLY = {"account_sid": "AC" + "0" * 32, "auth_token": "definitions-only"}
# DuckDB takes one writer at a time: partitions in one process extract at once, and load in turn
_DUCKDB_LOAD = threading.Lock()


def _load_in_turn(pipeline: Any) -> None:
    """Makes this pipeline's load step wait for the other partitions' in this process.

    DuckDB takes one writer at a time (two concurrent loads fail on a write-write conflict), while the
    walks, which take most of a run, go on at once. ``pipeline.run`` calls ``self.load``, found here
    first.
    """
    load = pipeline.load

    def load_in_turn(*args: Any, **kwargs: Any) -> Any:
        with _DUCKDB_LOAD:
            return load(*args, **kwargs)

    pipeline.load = load_in_turn


def _credentials(options: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials from the options given, else from dlt's config (``.dlt/secrets.toml``, env vars)."""
    found = {}
    for key in CREDENTIAL_KEYS:
        value = options.get(key)
        if value is None:
            value = dlt.secrets.get(f"sources.twilio_studio.{key}")
        found[key] = value
    return found


def account_partitions(
    accounts: Sequence[str] | None = None, source_options: Mapping[str, Any] | None = None
) -> dg.StaticPartitionsDefinition:
    """One partition per account: those given, else every active account of the Accounts list."""
    options = dict(source_options or {})
    if accounts is None:
        base = options.get("accounts_base_url", DEFAULT_ACCOUNTS_BASE_URL)
        accounts = [a.sid for a in accounts_of(**_credentials(options), accounts_base_url=base)]
    return dg.StaticPartitionsDefinition(sorted(dict.fromkeys(accounts)))


def twilio_studio_assets(
    *,
    destination: Any = "duckdb",
    dataset_name: str = "twilio_studio",
    pipeline_name: str = "twilio_studio",
    pipelines_dir: str | None = None,
    accounts: Sequence[str] | None = None,
    resources: Sequence[str] = ("flows", "engagements"),
    source_options: Mapping[str, Any] | None = None,
    name: str = "twilio_studio",
    group_name: str | None = "twilio_studio",
) -> dg.AssetsDefinition:
    """Assets for the source's resources, partitioned by account.

    Args:
        destination: A dlt destination (name or object) shared by every partition.
        dataset_name: The dataset every account loads into (rows carry ``account_sid``).
        pipeline_name: Each partition's pipeline is ``<pipeline_name>_<account SID, lower case>``.
        pipelines_dir: Where dlt keeps the pipelines' working state (default ``~/.dlt``).
        accounts: The partitions' Account SIDs; None lists the active accounts of the credentials.
        resources: The source's resources to materialize (``flows``, ``engagements``, ...).
        source_options: Options of ``twilio_studio_source`` (credentials, base_url, write_mode, ...);
            ``subaccounts`` is set per partition.
        name: The op's name.
        group_name: The assets' group.
    """
    options = {k: v for k, v in dict(source_options or {}).items() if k != "subaccounts"}
    partitions = account_partitions(accounts, options)
    spec_options = {**options, **DEFINITION_ONLY, "api_key_sid": None, "api_key_secret": None}
    spec_source = twilio_studio_source(**spec_options).with_resources(*resources)

    where: dict[str, Any] = {"pipelines_dir": pipelines_dir} if pipelines_dir else {}

    def pipeline_of(account: str) -> Any:
        name = f"{pipeline_name}_{account.lower()}"
        return dlt.pipeline(pipeline_name=name, destination=destination, dataset_name=dataset_name, **where)

    spec_pipeline = dlt.pipeline(
        pipeline_name=pipeline_name, destination=destination, dataset_name=dataset_name, **where
    )

    @dlt_assets(
        dlt_source=spec_source, dlt_pipeline=spec_pipeline, name=name, group_name=group_name, partitions_def=partitions
    )
    def twilio_studio_partition(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
        account = context.partition_key
        source = twilio_studio_source(**options, subaccounts=[account]).with_resources(*resources)
        pipeline = pipeline_of(account)
        if destination_kind(pipeline.destination) == "duckdb":
            _load_in_turn(pipeline)
        with account_report() as report:
            # dagster-dlt runs the pipeline as its events are read: read them all, then decide
            # no loader_file_format: the source picks its tables' (columnar.exact_file_format)
            events = list(dlt.run(context=context, dlt_source=source, dlt_pipeline=pipeline))
        if report.failed:
            why = "; ".join(f"{sid}: {message}" for sid, message in sorted(report.failed.items()))
            raise dg.Failure(description=f"account {account} did not load ({why})")
        context.log.info("account %s: %s", account, "; ".join(report.lines()) or "nothing to load")
        yield from events

    return twilio_studio_partition
