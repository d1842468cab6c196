"""One benchmark case, run in a process of its own by ``benchmarks.run``.

Its command line::

    python -m benchmarks.cases {source|rest_api|floor} CONFIG.json RESULT.json

``source``   this project's ``twilio_studio_source`` with its defaults (plus what CONFIG overrides),
             loaded the way ``twilio-studio run`` loads it (``twilio_studio.cli.run_pipeline``:
             Parquet loader files for DuckDB).
``rest_api`` the baseline a dlt user would write: ``rest_api_source`` with flows as the parent
             resource, engagements as its child, a ``json_link`` paginator on
             ``meta.next_page_url``, ``incremental`` on ``date_updated``, merge on ``sid``, dlt
             defaults otherwise (``insert_values`` loader files into DuckDB).
``floor``    plain ``requests`` walking the same pages one after another, writing each page's raw
             JSON to a file, then DuckDB ``read_json`` of those files into a table.

The parent measures this process's wall time and peak RSS; this process writes RESULT.json with
its own timings (imports, run, dlt's extract / normalize / load steps) and the rows dlt says it
wrote. The parent counts what reached DuckDB afterwards, in its own process, so that verification
adds nothing to the measured process.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

ACCOUNT_SID = "AC" + "a" * 32  # the emulator's documented test credentials (not secrets)
AUTH_TOKEN = "emulator-auth-token"


def _steps(trace: Any) -> dict[str, float]:
    """Seconds of each dlt step (extract, normalize, load) of the last run.

    The load step counts until the run's trace ends: dlt stamps a step's end before the callbacks of
    its end run, and the one that closes the DuckDB file held through the load step (its checkpoint,
    ``duckdb_file.hold_through_load``) is part of the load.
    """
    out: dict[str, float] = {}
    steps = [s for s in trace.steps if s.step != "run" and s.started_at is not None and s.finished_at is not None]
    for i, step in enumerate(steps):
        end = step.finished_at
        if step.step == "load" and i == len(steps) - 1 and trace.finished_at is not None:
            end = max(end, trace.finished_at)
        out[step.step] = out.get(step.step, 0.0) + (end - step.started_at).total_seconds()
    return out


def watch_phases(path: Path, interval: float = 0.5) -> None:
    """Records the dlt step the main thread is in, so the harness can tell each step's peak RSS.

    Appends ``{"t": epoch, "phase": ...}`` to ``path`` whenever the main thread enters another dlt
    step (extract, normalize, load), read from its stack twice a second: the harness can then say
    which step a process was in when it hit the memory limit, and the peak RSS of each step.
    """
    main_id = threading.main_thread().ident
    steps = {"extract", "normalize", "load"}

    def loop() -> None:
        last = None
        while True:
            frame = sys._current_frames().get(main_id)  # type: ignore[arg-type]
            phase = None
            while frame is not None:
                code = frame.f_code
                if code.co_name in steps and code.co_filename.endswith(("dlt/pipeline/pipeline.py",)):
                    phase = code.co_name  # the outermost dlt step on the stack wins
                frame = frame.f_back
            phase = phase or "other"
            if phase != last:
                with path.open("a") as f:
                    f.write(json.dumps({"t": time.time(), "phase": phase}) + "\n")
                last = phase
            time.sleep(interval)

    threading.Thread(target=loop, name="phase-watch", daemon=True).start()


def source_and_pipeline(cfg: dict[str, Any]) -> tuple[Any, Any]:
    """This project's source with its defaults (plus what CONFIG overrides) and a DuckDB pipeline."""
    import dlt

    from twilio_studio import twilio_studio_source

    options = dict(cfg.get("source_options") or {})  # only what a case overrides; defaults otherwise
    if options.get("subaccounts"):  # the emulator serves the core API's Accounts list too
        options.setdefault("accounts_base_url", cfg["base_url"])
    source = twilio_studio_source(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, base_url=cfg["base_url"], **options)
    if cfg.get("resources"):
        source = source.with_resources(*cfg["resources"])
    pipeline = dlt.pipeline(
        pipeline_name=cfg["pipeline_name"],
        pipelines_dir=cfg["pipelines_dir"],
        destination=dlt.destinations.duckdb(cfg["duckdb"]),
        dataset_name="twilio_studio",
    )
    return source, pipeline


def run_source(cfg: dict[str, Any]) -> dict[str, Any]:
    """Loads with ``twilio_studio_source`` the way ``twilio-studio run`` does; returns the case's measurements."""
    import twilio_studio  # noqa: F401 - its imports (dlt, pyarrow) count as import time, not run time
    from twilio_studio.cli import run_pipeline

    imported = time.perf_counter()
    source, pipeline = source_and_pipeline(cfg)
    t0 = time.perf_counter()
    summary = run_pipeline(pipeline, source)
    run_seconds = time.perf_counter() - t0
    trace = pipeline.last_trace
    return {
        "import_seconds": imported - STARTED,
        "run_seconds": run_seconds,
        "steps": _steps(trace),
        "written": dict(summary.rows),  # what `twilio-studio run` reports (tombstone rows left out)
        "row_counts": dict(trace.last_normalize_info.row_counts),  # dlt's own count of rows written
        "new": summary.new,
        "updated": summary.updated,
    }


def run_library(cfg: dict[str, Any]) -> dict[str, Any]:
    """What README's Python example does: ``pipeline.run(twilio_studio_source(...))``, with defaults.

    dlt's and DuckDB's defaults: no loader format, no DuckDB settings, no run policy of the CLI's.
    """
    import twilio_studio  # noqa: F401 - its imports (dlt, pyarrow) count as import time, not run time
    from twilio_studio.columnar import stored_counts

    imported = time.perf_counter()
    source, pipeline = source_and_pipeline(cfg)
    t0 = time.perf_counter()
    pipeline.run(source)
    run_seconds = time.perf_counter() - t0
    trace = pipeline.last_trace
    counts = {k: v for k, v in trace.last_normalize_info.row_counts.items() if not k.startswith("_dlt")}
    return {
        "import_seconds": imported - STARTED,
        "run_seconds": run_seconds,
        "steps": _steps(trace),
        "written": stored_counts(counts, pipeline.default_schema.tables),
        "row_counts": dict(trace.last_normalize_info.row_counts),
    }


def rest_api_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``rest_api_source`` config a dlt user would write for flows and their engagements."""
    paginator = {"type": "json_link", "next_url_path": "meta.next_page_url"}
    return {
        "client": {
            "base_url": cfg["base_url"] + "/v1/",
            "auth": {"type": "http_basic", "username": ACCOUNT_SID, "password": AUTH_TOKEN},
        },
        "resource_defaults": {
            "write_disposition": "merge",
            "primary_key": "sid",
            "endpoint": {"params": {"PageSize": cfg["page_size"]}, "paginator": paginator},
        },
        "resources": [
            {"name": "flows", "endpoint": {"path": "Flows", "data_selector": "flows"}},
            {
                "name": "engagements",
                "endpoint": {
                    "path": "Flows/{resources.flows.sid}/Engagements",
                    "data_selector": "engagements",
                    "incremental": {
                        "cursor_path": "date_updated",
                        "initial_value": "2000-01-01T00:00:00Z",
                        # Studio sends `date_updated: null` for some ended engagements; dlt's default
                        # ("raise") stops the run on the first one, so a user has to set this
                        "on_cursor_value_missing": "include",
                    },
                },
            },
        ],
    }


def run_rest_api(cfg: dict[str, Any]) -> dict[str, Any]:
    """Loads with dlt's ``rest_api_source`` (the baseline); returns the case's measurements."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    imported = time.perf_counter()
    source = rest_api_source(rest_api_config(cfg))  # type: ignore[arg-type]
    pipeline = dlt.pipeline(
        pipeline_name=cfg["pipeline_name"],
        pipelines_dir=cfg["pipelines_dir"],
        destination=dlt.destinations.duckdb(cfg["duckdb"]),
        dataset_name="rest_api_naive",
    )
    kwargs: dict[str, Any] = {}
    if cfg.get("loader_file_format"):
        kwargs["loader_file_format"] = cfg["loader_file_format"]
    t0 = time.perf_counter()
    pipeline.run(source, **kwargs)
    run_seconds = time.perf_counter() - t0
    trace = pipeline.last_trace
    assert trace is not None and trace.last_normalize_info is not None, "dlt ran without a normalize step"
    written = {k: v for k, v in trace.last_normalize_info.row_counts.items() if not k.startswith("_dlt")}
    return {
        "import_seconds": imported - STARTED,
        "run_seconds": run_seconds,
        "steps": _steps(trace),
        "written": written,
        "row_counts": dict(trace.last_normalize_info.row_counts),
    }


def run_floor(cfg: dict[str, Any]) -> dict[str, Any]:
    """Walks the pages with plain ``requests`` and stores their raw JSON in DuckDB; returns the floor's measurements."""
    import duckdb
    import orjson
    import requests

    imported = time.perf_counter()
    pages_dir = Path(cfg["pages_dir"])
    pages_dir.mkdir(parents=True, exist_ok=True)
    session = requests.Session()
    session.auth = (ACCOUNT_SID, AUTH_TOKEN)
    base = cfg["base_url"]
    t0 = time.perf_counter()

    pages = 0

    def walk(url: str | None, key: str, save: bool) -> list[Any]:
        nonlocal pages
        items: list[Any] = []
        while url is not None:
            r = session.get(url, timeout=120)
            r.raise_for_status()
            body = orjson.loads(r.content)
            if save:
                (pages_dir / f"page_{pages:06d}.json").write_bytes(r.content)
                pages += 1
            else:
                items.extend(body[key])
            url = body["meta"]["next_page_url"]
        return items

    flows = walk(f"{base}/v1/Flows?PageSize=1000", "flows", save=False)
    for flow in flows:
        walk(f"{base}/v1/Flows/{flow['sid']}/Engagements?PageSize={cfg['page_size']}", "engagements", save=True)
    fetched = time.perf_counter()
    con = duckdb.connect(cfg["duckdb"])
    # every engagement field typed as Twilio documents it; context kept as the raw JSON
    engagement = (
        "STRUCT(sid VARCHAR, account_sid VARCHAR, flow_sid VARCHAR, contact_sid VARCHAR, "
        "contact_channel_address VARCHAR, context JSON, status VARCHAR, date_created TIMESTAMPTZ, "
        "date_updated TIMESTAMPTZ, url VARCHAR, links JSON)"
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE engagements AS
        SELECT unnest(e) FROM (
            SELECT unnest(engagements) AS e
            FROM read_json('{pages_dir}/*.json', format = 'auto',
                           columns = {{engagements: '{engagement}[]'}}, maximum_object_size = 268435456)
        )"""
    )
    loaded = time.perf_counter()
    con.close()
    return {
        "import_seconds": imported - STARTED,
        "run_seconds": loaded - t0,
        "steps": {"fetch": fetched - t0, "read_json": loaded - fetched},
        "pages": pages,
        "bytes": sum(p.stat().st_size for p in pages_dir.iterdir()),
    }


def vm_hwm_kb() -> int | None:
    """This process's peak RSS since it started (Linux's VmHWM, kB); None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
    except OSError:
        return None


CASES = {"source": run_source, "library": run_library, "rest_api": run_rest_api, "floor": run_floor}


def main(argv: list[str]) -> int:
    """Runs the case named in ``argv`` (kind, config file, result file) and writes its result; returns the exit code."""
    kind, config, result = argv
    cfg = json.loads(Path(config).read_text())
    watch_phases(Path(result).with_name("phases.jsonl"))
    out = CASES[kind](cfg)
    out["process_seconds_inside"] = time.perf_counter() - STARTED
    out["vm_hwm_kb"] = vm_hwm_kb()
    Path(result).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
