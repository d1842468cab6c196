"""An Airflow DAG: one dlt task group per Twilio account, built with dlt's ``PipelineTasksGroup``.

Put this file in Airflow's dags folder, with this package installed (``pip install twilio-studio-dlt``
and ``apache-airflow``). The accounts are ``TWILIO_STUDIO_ACCOUNTS`` (comma-separated Account SIDs)
or, when unset, every active account the credentials list (the Accounts list, read when the DAG is
parsed). Credentials come from dlt's config as for any run (``SOURCES__TWILIO_STUDIO__ACCOUNT_SID``,
``SOURCES__TWILIO_STUDIO__AUTH_TOKEN``, ...); the destination from ``TWILIO_STUDIO_DESTINATION``.

Each account runs its own pipeline, ``twilio_studio_<account SID>``, so its cursors live in the
destination under that name and account tasks never share state. Within an account, the source is
decomposed with ``serialize``: flows, then engagements (with steps, when selected) as tasks one after
another on the same pipeline; dlt's ``parallel`` mode would run them at once on one pipeline state,
which the per-flow cursors of the engagements resource must not share with a concurrent task.
An account that does not load fails its own task (the source raises a run's only account's failure).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import dlt
from airflow.sdk import DAG
from dlt.helpers.airflow_helper import PipelineTasksGroup

from twilio_studio import twilio_studio_source
from twilio_studio.accounts import accounts_of


class AccountTasksGroup(PipelineTasksGroup):  # type: ignore[misc]
    """dlt's task group, with task ids that name the account's pipeline.

    The ids read ``twilio_studio_ac..-flows`` instead of the source's name numbered in order.
    """

    def _task_name(self, pipeline: Any, data: Any) -> str:
        return f"{pipeline.pipeline_name}-{'-'.join(data.selected_resources)}"


def studio_dag(
    accounts: Sequence[str],
    *,
    destination: Any = "duckdb",
    dataset_name: str = "twilio_studio",
    source_options: Mapping[str, Any] | None = None,
    resources: Sequence[str] = ("flows", "engagements"),
    dag_id: str = "twilio_studio",
    schedule: str | None = "@hourly",
    max_active_tasks: int = 8,
    wipe_local_data: bool = True,
) -> DAG:
    """The DAG: a task per account and resource group, running that account's own pipeline.

    ``wipe_local_data=False`` only for ``dag.test()``, where every task runs in one process with the
    pipeline objects of one parse: a wiped working folder would be gone for the account's next task.
    """
    options = dict(source_options or {})
    with DAG(
        dag_id,
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_tasks=max_active_tasks,
        default_args={"retries": 0},
    ) as dag:
        # the group first: it gives the pipelines created after it a fresh working directory
        group = AccountTasksGroup(dag_id, use_data_folder=False, wipe_local_data=wipe_local_data)
        for account in accounts:
            pipeline = dlt.pipeline(
                pipeline_name=f"twilio_studio_{account.lower()}", destination=destination, dataset_name=dataset_name
            )
            source = twilio_studio_source(**options, subaccounts=[account]).with_resources(*resources)
            group.add_run(
                pipeline,
                source,
                decompose="serialize",
                trigger_rule="all_done",
            )
    return dag


def _accounts() -> list[str]:
    given = [s.strip() for s in os.environ.get("TWILIO_STUDIO_ACCOUNTS", "").split(",") if s.strip()]
    if given:
        return given
    creds = {k: dlt.secrets.get(f"sources.twilio_studio.{k}") for k in ("account_sid", "auth_token", "api_key_sid",
                                                                         "api_key_secret")}  # fmt: skip
    return [a.sid for a in accounts_of(**creds)]


if os.environ.get("TWILIO_STUDIO_DAG", "1") == "1":  # the tests build their own DAG with studio_dag()
    dag = studio_dag(
        _accounts(),
        destination=os.environ.get("TWILIO_STUDIO_DESTINATION", "duckdb"),
        wipe_local_data=os.environ.get("TWILIO_STUDIO_DAG_WIPE_LOCAL_DATA", "1") == "1",
    )
