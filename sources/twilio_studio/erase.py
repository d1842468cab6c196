"""Erasure of one contact: every row the connector wrote for a contact address, in any dlt SQL destination.

The contact's runs are the ``engagements`` and ``executions`` rows whose ``contact_channel_address``
(or, for executions, ``initiated_by``) is the address or its keyed hash (``pseudonymize_key``).
With them go every child table row of those runs (``__widgets``, ``__widgets__fields``,
``__flow_data``, ``__flow_variables``), their steps and the steps' child tables, in every version a
``scd2`` or ``append`` dataset keeps, in the dataset and in dlt's staging dataset (which keeps the
last load's rows). Statements go through dlt's ``sql_client``, so any SQL destination dlt loads
works. Optionally the runs are deleted in Twilio too, so no later load can bring them back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests

from twilio_studio.client import RetryPolicy, StudioClient, _error_code
from twilio_studio.privacy import Pseudonymizer

logger = logging.getLogger("twilio_studio")

# root table -> (owner column of its child rows, its steps table, extra columns naming the contact)
ROOTS = {
    "engagements": ("engagement_sid", "engagement_steps", ()),
    "executions": ("execution_sid", "execution_steps", ("initiated_by",)),
}
STEP_OWNER = "step_sid"  # the link column of a steps table's child rows
BATCH = 500  # SIDs per IN (...) list: well inside every destination's parameter limit


@dataclass(frozen=True)
class Run:
    """One engagement or execution of the contact, as the destination holds it."""

    root: str  # engagements | executions
    sid: str
    flow_sid: str | None


@dataclass
class ErasureReport:
    """What an erasure removed (or, in a dry run, would remove)."""

    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)  # "dataset.table" -> rows
    runs: list[Run] = field(default_factory=list)
    deleted_in_twilio: list[str] = field(default_factory=list)  # SIDs gone from Twilio (or already gone)
    failed_in_twilio: dict[str, str] = field(default_factory=dict)  # SID -> why not

    @property
    def total(self) -> int:
        """Rows in all tables."""
        return sum(self.rows.values())

    def render(self) -> str:
        """The report as text for the terminal: rows removed per table, then what was (not) deleted in Twilio."""
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {self.total} rows of {len(self.runs)} runs (engagements/executions) of the contact"]
        width = max((len(t) for t in self.rows), default=10)
        for table, count in sorted(self.rows.items()):
            lines.append(f"  {table:<{width}}  {count:>9}")
        if self.deleted_in_twilio:
            verb = "would delete" if self.dry_run else "deleted"
            lines.append(f"in Twilio: {verb} {len(self.deleted_in_twilio)} engagements/executions")
        for sid, why in sorted(self.failed_in_twilio.items()):
            lines.append(f"in Twilio: could not delete {sid}: {why}")
        return "\n".join(lines)


def contact_values(address: str, pseudonymize_key: str | None) -> list[str]:
    """The values a contact's address is stored as: itself, and its keyed hash when a key is set."""
    if not address.strip():
        raise ValueError("the contact address is empty: give the address as Twilio shows it, e.g. +14155550100")
    values = [address]
    if pseudonymize_key:
        values.append(Pseudonymizer(pseudonymize_key).token(address))
    return values


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), BATCH):
        yield values[start : start + BATCH]


class _Tables:
    """The connector's tables in one dataset, with their columns (from dlt's schema)."""

    def __init__(self, schema_tables: dict[str, Any]) -> None:
        self.columns = {name: set(t.get("columns", {})) for name, t in schema_tables.items()}

    def children(self, parent: str) -> list[str]:
        """Tables nested under ``parent`` (``parent__x``, ``parent__x__y``), deepest first."""
        found = [name for name in self.columns if name.startswith(parent + "__")]
        return sorted(found, key=lambda n: n.count("__"), reverse=True)


class Eraser:
    """Finds and removes one contact's rows through a dlt ``sql_client``."""

    def __init__(self, sql_client: Any, schema_tables: dict[str, Any]) -> None:
        self.client = sql_client
        self.tables = _Tables(schema_tables)

    def _table(self, name: str) -> str:
        return str(self.client.make_qualified_table_name(name))

    def _col(self, name: str) -> str:
        return str(self.client.escape_column_name(name))

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in (self.client.execute_sql(sql, *args) or [])]

    def exists(self, table: str) -> bool:
        """Whether the destination has the table ``table`` of this dataset."""
        try:
            self._rows(f"SELECT 1 FROM {self._table(table)} WHERE 1 = 0")
        except Exception:  # dlt wraps each destination's "no such table" differently
            return False
        return True

    def find_runs(self, values: Sequence[str]) -> list[Run]:
        """The loaded runs (engagements, executions) whose contact address is one of ``values``."""
        runs: list[Run] = []
        marks = ", ".join(["%s"] * len(values))
        for root, (_, _, extra) in ROOTS.items():
            columns = self.tables.columns.get(root)
            if columns is None or "contact_channel_address" not in columns or not self.exists(root):
                continue
            where = " OR ".join(
                f"{self._col(c)} IN ({marks})" for c in ("contact_channel_address", *extra) if c in columns
            )
            args = list(values) * where.count(" IN (")
            rows = self._rows(
                f"SELECT DISTINCT {self._col('sid')}, {self._col('flow_sid')} FROM {self._table(root)} WHERE {where}",
                *args,
            )
            runs.extend(Run(root, sid, flow) for sid, flow in rows)
        return runs

    def _where_in(self, table: str, column: str, values: Sequence[str], delete: bool) -> int:
        """Counts (or deletes, returning how many) the rows of ``table`` whose ``column`` is in ``values``."""
        total = 0
        for chunk in _chunks(values):
            condition = f"{self._col(column)} IN ({', '.join(['%s'] * len(chunk))})"
            count = self._rows(f"SELECT count(*) FROM {self._table(table)} WHERE {condition}", *chunk)[0][0]
            if delete and count:
                self.client.execute_sql(f"DELETE FROM {self._table(table)} WHERE {condition}", *chunk)
            total += int(count)
        return total

    def _sids(self, table: str, column: str, values: Sequence[str]) -> list[str]:
        out: list[str] = []
        for chunk in _chunks(values):
            condition = f"{self._col(column)} IN ({', '.join(['%s'] * len(chunk))})"
            query = f"SELECT DISTINCT {self._col('sid')} FROM {self._table(table)} WHERE {condition}"
            out.extend(str(r[0]) for r in self._rows(query, *chunk))
        return out

    def erase(self, runs: Iterable[Run], delete: bool) -> dict[str, int]:
        """Rows per table of these runs, children first; deleted unless ``delete`` is false."""
        counts: dict[str, int] = {}
        for root, (owner, steps, _) in ROOTS.items():
            # engagements and executions are one run in two APIs: a SID found in either goes from both
            sids = sorted({r.sid for r in runs})
            if not sids:
                continue
            if steps in self.tables.columns and self.exists(steps):
                step_sids = self._sids(steps, owner, sids)
                for child in self.tables.children(steps):
                    if STEP_OWNER in self.tables.columns[child] and self.exists(child):
                        counts[child] = self._where_in(child, STEP_OWNER, step_sids, delete) if step_sids else 0
                counts[steps] = self._where_in(steps, owner, sids, delete)
            for child in self.tables.children(root):
                if owner in self.tables.columns[child] and self.exists(child):
                    counts[child] = self._where_in(child, owner, sids, delete)
            if self.exists(root):
                counts[root] = self._where_in(root, "sid", sids, delete)
        return counts


def erase_contact(
    pipeline: Any,
    address: str,
    *,
    pseudonymize_key: str | None = None,
    dry_run: bool = False,
    twilio: StudioClient | None = None,
) -> ErasureReport:
    """Removes every row of the contact ``address`` from the pipeline's dataset (and its staging dataset).

    Args:
        pipeline: The dlt pipeline that loaded the data (its destination and dataset are used).
        address: The contact's channel address as Twilio shows it (``+14155550100``, ``client:alice``).
        pseudonymize_key: The key the data was loaded with, if any: rows are found by the keyed hash too.
        dry_run: Count what would go; change nothing (neither in the destination nor in Twilio).
        twilio: A client for the account: the contact's engagements and executions are deleted in
            Twilio as well (before the rows, so a re-run after a failure finds them again).

    Returns:
        Rows per ``dataset.table``, the runs found, and what was (or could not be) deleted in Twilio.
    """
    values = contact_values(address, pseudonymize_key)
    report = ErasureReport(dry_run=dry_run)
    schema_tables = _schema_tables(pipeline)
    with pipeline.sql_client() as client:
        eraser = Eraser(client, schema_tables)
        datasets = [client.dataset_name]
        with client.with_staging_dataset():
            staging = client.dataset_name if client.has_dataset() else None
        runs = eraser.find_runs(values)
        if staging:
            with client.with_staging_dataset():
                known = {(r.root, r.sid) for r in runs}
                runs += [r for r in eraser.find_runs(values) if (r.root, r.sid) not in known]
            datasets.append(staging)
        report.runs = runs
        if twilio is not None:
            found = {r.sid for r in runs}
            in_twilio = runs + [r for r in twilio_runs(twilio, address) if r.sid not in found]
            _delete_in_twilio(twilio, in_twilio, report, dry_run)
        for dataset in datasets:
            with client.with_alternative_dataset_name(dataset):
                counts = eraser.erase(runs, delete=not dry_run)
            report.rows.update({f"{dataset}.{t}": n for t, n in counts.items() if n})
    logger.info("erasure: %d rows of %d runs%s", report.total, len(runs), " (dry run)" if dry_run else "")
    return report


def _schema_tables(pipeline: Any) -> dict[str, Any]:
    """The connector's tables as dlt's schema knows them; restored from the destination if needed."""
    if not pipeline.default_schema_name:
        pipeline.sync_destination()
    if not pipeline.default_schema_name:
        raise ValueError(
            f"pipeline {pipeline.pipeline_name!r} has no schema here or in its destination: nothing was loaded "
            "with this pipeline name, dataset and destination"
        )
    tables: dict[str, Any] = pipeline.default_schema.data_tables()
    return {t["name"]: t for t in tables}  # type: ignore[index]


# ---------------------------------------------------------------------------- Twilio
def twilio_runs(client: StudioClient, address: str) -> list[Run]:
    """The contact's runs Twilio holds now (loaded or not yet).

    Every flow's v2 Executions list, read as a load reads it, filtered by ``contact_channel_address``.
    """
    runs: list[Run] = []
    for flows in client.pages("/v1/Flows", "flows", "erasure: flow discovery", {"PageSize": 1000}):
        for flow in flows:
            sid = flow.get("sid") if isinstance(flow, dict) else None
            if not isinstance(sid, str):
                continue
            path = f"/v2/Flows/{sid}/Executions"
            for page in client.pages(path, "executions", f"erasure: flow {sid}", {"PageSize": 1000}):
                runs.extend(
                    Run("executions", item["sid"], sid)
                    for item in page
                    if isinstance(item, dict) and item.get("contact_channel_address") == address and item.get("sid")
                )
    return runs


def _delete_in_twilio(client: StudioClient, runs: list[Run], report: ErasureReport, dry_run: bool) -> None:
    """Deletes each of the contact's runs in Twilio: one DELETE per run.

    DeleteExecution (v2) for runs the destination holds as executions, DeleteEngagement (v1) for the
    others (they are the same run in Twilio).
    """
    by_sid: dict[str, Run] = {}
    for run in runs:
        if run.flow_sid and (run.sid not in by_sid or run.root == "executions"):
            by_sid[run.sid] = run
    for sid, run in sorted(by_sid.items()):
        path = (
            f"/v2/Flows/{run.flow_sid}/Executions/{sid}"
            if run.root == "executions"
            else f"/v1/Flows/{run.flow_sid}/Engagements/{sid}"
        )
        if dry_run:
            report.deleted_in_twilio.append(sid)
            continue
        why = delete_resource(client, path)
        if why is None:
            report.deleted_in_twilio.append(sid)
        else:
            report.failed_in_twilio[sid] = why


def delete_resource(client: StudioClient, path: str) -> str | None:
    """DELETEs one resource, retrying 429 and 5xx; None when it is gone (204, or 404: gone already)."""
    url = client.url(path)
    policy: RetryPolicy = client.retry
    reason = ""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            response = client._session().delete(url, timeout=policy.timeout, allow_redirects=False)
        except requests.RequestException as e:
            reason = f"a network error ({type(e).__name__})"
        else:
            if response.status_code in (204, 404):
                return None
            code = _error_code(response.content)
            reason = f"HTTP {response.status_code}" + (f" (Twilio error {code})" if code else "")
            if response.status_code not in (429, 500, 502, 503, 504):
                return reason
        if attempt < policy.max_attempts:
            time.sleep(policy.delay(attempt, None))
    return f"{reason} after {policy.max_attempts} attempts"
