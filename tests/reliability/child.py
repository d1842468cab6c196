"""One pipeline run in a process of its own, for the kill -9 tests.

    python tests/reliability/child.py BASE_URL WORKDIR KILL_AT [WRITE_MODE]

Loads the emulator at BASE_URL (credentials from the SOURCES__TWILIO_STUDIO__* env vars) into
WORKDIR/killed.duckdb, with dlt's state under WORKDIR/pipelines. KILL_AT is ``none`` or the point at
which the run stops to be killed: it prints ``KILL-POINT <name>`` and waits, and the test process
sends it SIGKILL (what ``kill -9`` sends). The points are hooks around dlt's and the client's own
functions, so the kill lands deterministically inside the phase:

- ``extract``: the seventh engagement page is being requested (other pages are already written)
- ``normalize``: the second extracted file is being normalized (the first one's output is written)
- ``load_copy``: a child table's file has been copied into the staging dataset and committed, but
  dlt has not yet recorded the job as done (``load_copy_root``: the same for the engagements table)
- ``load_merge``: the merge into the engagement tables has run, before its transaction commits
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import dlt

KILL_POINTS = ("extract", "normalize", "load_copy", "load_copy_root", "load_merge")
PAGE_SIZE = 10


def wait_to_be_killed(point: str) -> None:
    """Tells the parent the kill point is reached, then waits for SIGKILL."""
    print(f"KILL-POINT {point}", flush=True)
    time.sleep(120)
    raise SystemExit(f"{point}: the test should have killed this process")


_calls: dict[str, int] = {}
_calls_lock = threading.Lock()


def nth(name: str) -> int:
    """How many times ``name`` was counted, this call included (thread-safe)."""
    with _calls_lock:
        _calls[name] = _calls.get(name, 0) + 1
        return _calls[name]


def arm_extract(point: str) -> None:
    """Stops the run at the 7th engagement list page it requests."""
    from concurrent.futures import Future

    import orjson

    from twilio_studio.client import Attempt, Parse, StudioClient

    get = StudioClient.get

    def hooked_get(
        self: StudioClient, url: str, what: str, parse: Parse = orjson.loads, first: Future[Attempt] | None = None
    ) -> dict[str, Any]:
        if "/Engagements?" in url and nth("page") == 7:
            wait_to_be_killed(point)  # before the 7th page is read (its request may be out already)
        return get(self, url, what, parse, first)

    StudioClient.get = hooked_get  # type: ignore[method-assign]


def arm_normalize(point: str) -> None:
    """Stops the run as normalize starts its 2nd file."""
    from dlt.normalize.items_normalizers import ArrowItemsNormalizer, JsonLItemsNormalizer

    for cls in (JsonLItemsNormalizer, ArrowItemsNormalizer):

        def hooked_call(self: Any, *args: Any, __call: Any = cls.__call__) -> Any:
            if nth("file") == 2:
                wait_to_be_killed(point)
            return __call(self, *args)

        setattr(cls, "__call__", hooked_call)  # noqa: B010  (both classes, one hook)


def arm_load_copy(point: str) -> None:
    """Stops the run once a copy job of engagements (load_copy_root) or its widgets committed its rows."""
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    run = DuckDbCopyJob.run
    table = "engagements" if point == "load_copy_root" else "engagements__widgets"

    def hooked_run(self: DuckDbCopyJob) -> None:
        run(self)  # the rows are in the staging table, committed
        if self.load_table_name == table:
            wait_to_be_killed(point)

    DuckDbCopyJob.run = hooked_run  # type: ignore[method-assign]


def arm_load_merge(point: str) -> None:
    """Stops the run as the engagements merge is about to commit."""
    from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient
    from dlt.destinations.job_client_impl import SqlLoadJob

    merging = threading.local()
    run_sql, commit = SqlLoadJob.run, DuckDbSqlClient.commit_transaction

    def hooked_sql(self: SqlLoadJob) -> None:
        merging.engagements = Path(self._file_path).name.startswith("engagements.")
        try:
            run_sql(self)
        finally:
            merging.engagements = False

    def hooked_commit(self: DuckDbSqlClient) -> None:
        if getattr(merging, "engagements", False):
            wait_to_be_killed(point)
        commit(self)

    SqlLoadJob.run = hooked_sql  # type: ignore[method-assign]
    DuckDbSqlClient.commit_transaction = hooked_commit  # type: ignore[method-assign]


ARMS = {"extract": arm_extract, "normalize": arm_normalize, "load_copy": arm_load_copy,
        "load_copy_root": arm_load_copy, "load_merge": arm_load_merge}  # fmt: skip


def arm(point: str) -> None:
    """Installs the hook that stops the run at ``point`` (``none``: no hook)."""
    if point == "none":
        return
    if point not in ARMS:
        raise SystemExit(f"unknown kill point {point!r}; use none or one of {', '.join(KILL_POINTS)}")
    ARMS[point](point)


def main(base_url: str, workdir: str, point: str, write_mode: str = "merge") -> None:
    """Runs the pipeline the parent attaches to, armed to stop at ``point``."""
    from twilio_studio import twilio_studio_source

    arm(point)
    pipeline = dlt.pipeline(
        pipeline_name="killed",
        destination=dlt.destinations.duckdb(str(Path(workdir) / "killed.duckdb")),
        dataset_name="twilio_studio",
        pipelines_dir=str(Path(workdir) / "pipelines"),
    )
    source = twilio_studio_source(base_url=base_url, page_size=PAGE_SIZE, write_mode=write_mode)
    pipeline.run(source, loader_file_format="parquet")
    print("DONE", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
