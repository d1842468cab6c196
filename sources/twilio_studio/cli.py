"""The ``twilio-studio`` command: run, demo, emulator, erase, report."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio_studio.client import StudioError
from twilio_studio.columnar import stored_counts
from twilio_studio.duckdb_file import check_names, default_duckdb_file, legacy_duckdb_file, pipeline_duckdb_file
from twilio_studio.progress import DEFAULT_PROGRESS_INTERVAL, PROGRESS_MODES
from twilio_studio.runlock import EX_TEMPFAIL, RunInProgressError, lock_of, run_lock
from twilio_studio.settings import (
    CONTEXT_MODES,
    DEFAULT_ACCOUNTS_BASE_URL,
    DEFAULT_BASE_URL,
    DEFAULT_CONTEXT_MODE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_TOTAL_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_WRITE_MODE,
    WIDGET_FIELDS_MODES,
    WRITE_MODES,
)

logger = logging.getLogger("twilio_studio")


class UserError(Exception):
    """An error the user can fix; printed as one line, no traceback."""


@dataclass
class RunSummary:
    """What one pipeline run wrote, for the terminal."""

    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    new: int = 0
    updated: int = 0

    def render(self, title: str) -> str:
        """The summary as lines for the terminal under ``title``: engagements written, then rows per table."""
        lines = [f"{title}: {self.rows.get('engagements', 0)} engagements written "
                 f"({self.new} new, {self.updated} updated) in {self.seconds:.1f} s"]  # fmt: skip
        width = max((len(t) for t in self.rows), default=10)
        for table, count in sorted(self.rows.items()):
            lines.append(f"  {table:<{width}}  {count:>9}")
        if not self.rows:
            lines.append("  nothing changed at the source: no rows written")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- pipeline
def make_pipeline(name: str, destination: Any, dataset: str, pipelines_dir: str | None = None) -> Any:
    """A dlt pipeline of that name, destination and dataset (in ``pipelines_dir`` when given)."""
    import dlt

    if pipelines_dir:
        return dlt.pipeline(name, pipelines_dir, destination=destination, dataset_name=dataset)
    return dlt.pipeline(pipeline_name=name, destination=destination, dataset_name=dataset)


def duckdb_file(name: str, dataset: str, configured: str | None) -> Path:
    """The DuckDB file of a CLI pipeline: the one the user configured, else ``<name>_data.duckdb`` here.

    ``configured`` is the file dlt resolved from the user's config; dlt's own default
    (``<name>.duckdb`` in the working directory) counts as not configured: it is named like the
    default dataset. Raises UserError where loading would be ambiguous or would leave the data of
    earlier runs behind.
    """
    legacy = Path.cwd() / legacy_duckdb_file(name)
    if configured is not None and Path(configured).resolve() != legacy.resolve():
        check_names(
            configured, dataset, "choose another --dataset, or another file in DESTINATION__DUCKDB__CREDENTIALS"
        )
        return Path(configured)
    target = Path.cwd() / default_duckdb_file(name)
    check_names(str(target), dataset, "choose another --dataset or --pipeline-name")
    if legacy.exists() and not target.exists():
        wal = legacy.with_name(legacy.name + ".wal")
        move = f"mv {legacy.name} {target.name}"
        if wal.exists():
            move += f" && mv {wal.name} {target.name}.wal"
        raise UserError(
            f"{legacy.name} holds what earlier versions loaded, but this version loads into {target.name} "
            f"(a file named like the dataset is ambiguous to DuckDB 2); nothing was changed: run `{move}` "
            "here, then run again (a pending load of the failed run then completes)"
        )
    if legacy.exists():
        logger.warning("%s is not used any more: this version loads into %s", legacy.name, target.name)
    return target


def cli_pipeline(
    name: str, destination: str, dataset: str, pipelines_dir: str | None, loads: bool = True
) -> tuple[Any, Path | None]:
    """The pipeline a CLI command runs, and its DuckDB file when the destination is DuckDB.

    ``loads``: the command will load into it.
    """
    pipeline = make_pipeline(name, destination, dataset, pipelines_dir)
    if destination != "duckdb":
        return pipeline, None
    import dlt

    path = duckdb_file(name, dataset, pipeline_duckdb_file(pipeline))
    if loads and not path.exists() and not pipeline.first_run:
        logger.warning(
            "pipeline %s loaded before, but %s does not exist: if the data of earlier runs is in another "
            "file, stop this run (Ctrl-C) and move that file here; dlt otherwise starts the pipeline over",
            name, path,
        )  # fmt: skip
    return make_pipeline(name, dlt.destinations.duckdb(str(path)), dataset, pipelines_dir), path


def _engagement_count(pipeline: Any) -> int:
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("engagements")
            rows = client.execute_sql(f"SELECT count(DISTINCT sid) FROM {table}")  # versions count once
        return int(rows[0][0]) if rows else 0
    except Exception:  # the table does not exist before the first run
        return 0


def run_pipeline(pipeline: Any, source: Any, refresh: bool = False) -> RunSummary:
    """Runs the source; new and updated engagements follow from the row counts before and after."""
    before = 0 if refresh else _engagement_count(pipeline)
    started = time.monotonic()
    kwargs: dict[str, Any] = {}
    if refresh:
        kwargs["refresh"] = "drop_sources"
    if pipeline.has_pending_data:
        # dlt's run() would load them and return without extracting: load them, then this run's data
        logger.warning("pipeline %s: loading the package(s) an earlier run left first", pipeline.pipeline_name)
        pipeline.run()
    pipeline.run(source, **kwargs)
    normalized = pipeline.last_trace.last_normalize_info if pipeline.last_trace else None
    counts = normalized.row_counts if normalized is not None else {}
    rows = stored_counts({k: v for k, v in counts.items() if not k.startswith("_dlt")}, pipeline.default_schema.tables)
    written = rows.get("engagements", 0)
    after = _engagement_count(pipeline)
    new = max(0, after - before)
    return RunSummary(time.monotonic() - started, rows, new=new, updated=max(0, written - new))


def causes(error: BaseException) -> list[BaseException]:
    """The exception and what caused it, outermost first (explicit causes, else unsuppressed contexts)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


ORIGINS = {"duckdb": "DuckDB", "psycopg": "PostgreSQL"}  # the database libraries' exceptions, by module
MAX_CAUSE_CHARS = 400
# what a database quotes from the data it could not take: PostgreSQL's "at or near <SQL>", phone
# numbers and e-mail addresses (a contact address is personal data; identifiers and paths stay)
NEAR_SQL = re.compile(r"\s+at or near\b.*$")
PHONE = re.compile(r"\+\d[\d ().-]{5,}\d|\b\d{9,}\b")  # E.164 and the like; dates and pids stay
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact(line: str) -> str:
    """A database's message line without the values it quotes from rows or SQL."""
    line = NEAR_SQL.sub(" (near a value not shown)", line)
    return EMAIL.sub("<address>", PHONE.sub("<number>", line))


def describe(error: BaseException) -> str:
    """One line for an exception: where it comes from and the first line of its message."""
    module = type(error).__module__.lstrip("_")
    origin = next((name for prefix, name in ORIGINS.items() if module.startswith(prefix)), type(error).__name__)
    first = redact(next((line.strip() for line in str(error).splitlines() if line.strip()), ""))
    if len(first) > MAX_CAUSE_CHARS:
        first = first[:MAX_CAUSE_CHARS] + "..."
    return f"{origin}: {first}" if first else origin


def explain(error: BaseException) -> str:
    """The message a user should see: our own error if one is in the chain, else the root cause.

    A failed dlt step (PipelineStepFailed) is named with its innermost exception, e.g. ``the load
    step failed: DuckDB: Binder Error: ...``: dlt's outer message spans many lines, and its first
    one ends in "with exception:". Only first lines are shown: database errors put row values on
    their DETAIL lines, and no error here carries credentials.
    """
    chain = causes(error)
    ours = next((e for e in chain if isinstance(e, StudioError)), None)
    if ours is not None:
        return str(ours)
    root = describe(chain[-1])
    step = getattr(error, "step", None)
    if isinstance(step, str) and type(error).__name__ == "PipelineStepFailed":
        return f"the {step} step failed: {root}"
    if len(chain) == 1:
        return root
    return f"{describe(error)} (caused by {root})"


# ---------------------------------------------------------------------------- commands
def progress_args(args: argparse.Namespace) -> None:
    """Checks --progress and --progress-interval (an env var's value included) before any request."""
    if args.progress not in PROGRESS_MODES:
        raise UserError(
            f"--progress (or TWILIO_STUDIO_PROGRESS) is {args.progress!r}: choose {', '.join(PROGRESS_MODES)}"
        )
    if not args.progress_interval > 0:
        raise UserError(f"--progress-interval is {args.progress_interval:g}: give a number of seconds above 0")


def progress_of(args: argparse.Namespace, pipeline: Any, title: str) -> contextlib.AbstractContextManager[Any]:
    """The progress display of one pipeline run, as --progress chooses (README "Progress")."""
    from twilio_studio.progress import shown_progress

    return shown_progress(pipeline, args.progress, title, args.progress_interval)


def cmd_run(args: argparse.Namespace) -> int:
    """``twilio-studio run``: loads the Studio history of the configured account(s); returns the exit code."""
    from twilio_studio import account_report, twilio_studio_source

    progress_args(args)

    options: dict[str, Any] = {}
    names = ("base_url", "page_size", "context_mode", "write_mode", "widget_fields", "max_concurrency",
             "start_date", "end_date", "lookback_seconds", "accounts_base_url", "max_total_concurrency")  # fmt: skip
    for name in names:
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.flow:
        options["flow_sids"] = args.flow
    if args.stop_at_ended_pages:
        options["stop_at_ended_pages"] = True
    if args.keep_card_data:
        options["keep_card_data"] = True
    if args.subaccounts and args.subaccount:
        raise UserError("--subaccounts all and --subaccount go not together: choose every subaccount or a list")
    if args.subaccounts or args.subaccount:
        options["subaccounts"] = args.subaccounts or args.subaccount
    source = twilio_studio_source(**options)  # credentials: .dlt/secrets.toml or env vars
    if args.resources:
        wanted = [r.strip() for r in args.resources.split(",") if r.strip()]
        unknown = sorted(set(wanted) - set(source.resources))
        if unknown:
            raise UserError(f"--resources: {', '.join(unknown)} unknown; choose from {', '.join(source.resources)}")
        source = source.with_resources(*wanted)
    from dlt.common.pipeline import get_dlt_pipelines_dir

    # the lock before dlt makes the pipeline's folder (two runs raced there: "File exists") and before
    # any request: a second run of this pipeline stops here; run_lock below takes it again
    with lock_of(args.pipelines_dir or get_dlt_pipelines_dir(), args.pipeline_name):
        pipeline, _ = cli_pipeline(args.pipeline_name, args.destination, args.dataset, args.pipelines_dir)
        title = f"{args.pipeline_name} -> {args.destination}:{args.dataset}"
        with run_lock(pipeline), account_report() as report, progress_of(args, pipeline, title):
            summary = run_pipeline(pipeline, source, refresh=args.full_refresh)
    print(summary.render(title))
    if "subaccounts" in options:
        print("per account (rows read):")
        for line in report.lines():
            print(f"  {line}")
    for sid, why in sorted(report.failed.items()):
        print(f"error: account {sid} did not load: {why}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``twilio-studio demo``: loads from a local emulator and writes the report; returns the exit code."""
    from twilio_studio import twilio_studio_source
    from twilio_studio.emulator import Dataset, Emulator
    from twilio_studio.report import build_report, duckdb_reader, render_text, write_report

    progress_args(args)
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "twilio_studio_demo.duckdb"
    for stale in (db, workdir / "twilio_studio_demo.duckdb.wal"):
        stale.unlink(missing_ok=True)
    dataset = Dataset(seed=args.seed, flows=args.flows, engagements_per_flow=args.engagements, traffic=args.traffic)
    with Emulator(dataset) as emu:
        print(f"Studio emulator on {emu.base_url}: {args.flows} flows x {args.engagements} engagements")
        creds = emu.credentials

        def source() -> Any:
            return twilio_studio_source(
                account_sid=creds.account_sid, auth_token=creds.auth_token, base_url=emu.base_url
            )

        import dlt

        pipeline = dlt.pipeline(
            pipeline_name="twilio_studio_demo",
            destination=dlt.destinations.duckdb(str(db)),
            dataset_name="twilio_studio",
            pipelines_dir=str(workdir / ".pipelines"),
        )
        with progress_of(args, pipeline, "First load"):
            first = run_pipeline(pipeline, source(), refresh=True)
        print(first.render("First load"))
        emu.advance(hours=args.advance_hours)
        print(f"\nThe emulator's clock moves on {args.advance_hours} h: engagements end, new ones arrive.")
        with progress_of(args, pipeline, "Incremental load"):
            second = run_pipeline(pipeline, source())
        print(second.render("Incremental load"))
    data = build_report(duckdb_reader(str(db), "twilio_studio"), "twilio_studio")
    print()
    print(render_text(data))
    html = workdir / "twilio_studio_report.html"
    write_report(data, html)
    print(f"\nDuckDB file: {db}\nReport:      {html}")
    return 0


def emulator_credentials(args: argparse.Namespace) -> Any:
    """The emulator's credentials: options, then Twilio's env vars, then the documented defaults."""
    from twilio_studio.emulator import Credentials
    from twilio_studio.settings import ACCOUNT_SID_RE, API_KEY_SID_RE

    def pick(option: str | None, *env: str, default: str) -> str:
        if option is not None:
            return option
        return next((os.environ[name] for name in env if os.environ.get(name)), default)

    defaults = Credentials()
    creds = Credentials(
        account_sid=pick(args.account_sid, "TWILIO_ACCOUNT_SID", default=defaults.account_sid),
        auth_token=pick(
            args.auth_token, "TWILIO_AUTH_TOKEN", "TWILIO_STUDIO_EMULATOR_AUTH_TOKEN", default=defaults.auth_token
        ),
        api_key_sid=pick(args.api_key_sid, "TWILIO_API_KEY", default=defaults.api_key_sid),
        api_key_secret=pick(args.api_key_secret, "TWILIO_API_SECRET", default=defaults.api_key_secret),
    )
    if not ACCOUNT_SID_RE.match(creds.account_sid):
        raise UserError("--account-sid (or TWILIO_ACCOUNT_SID) is not AC followed by 32 hex digits")
    if not API_KEY_SID_RE.match(creds.api_key_sid):
        raise UserError("--api-key-sid (or TWILIO_API_KEY) is not SK followed by 32 hex digits")
    for name, value in (("--auth-token", creds.auth_token), ("--api-key-secret", creds.api_key_secret)):
        if not value or any(c.isspace() or c == ":" for c in value):
            raise UserError(f"{name} must be non-empty, without spaces or ':'")
    return creds


def cmd_emulator(args: argparse.Namespace) -> int:
    """``twilio-studio emulator``: serves the local Studio API until interrupted; returns the exit code."""
    from twilio_studio.emulator import Dataset, Emulator, Faults

    credentials = emulator_credentials(args)  # checked before anything starts
    dataset = Dataset(seed=args.seed, flows=args.flows, engagements_per_flow=args.engagements,
                      payment_flows=args.payment_flows, account_sid=credentials.account_sid,
                      traffic=args.traffic)  # fmt: skip
    faults = Faults(
        latency=args.latency,
        max_concurrency=args.max_concurrency,
        retry_after=None if args.no_retry_after else args.retry_after,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        truncate_rate=args.truncate_rate,
        seed=args.seed,
    )
    credentials = emulator_credentials(args)
    emu = Emulator(dataset, host=args.host, port=args.port, credentials=credentials, faults=faults,
                   realtime=args.realtime)  # fmt: skip
    print(
        f"Studio emulator on http://{args.host}:{args.port} ({args.flows} flows x {args.engagements} "
        f"engagements, seed {args.seed}); account_sid {credentials.account_sid}, API key "
        f"{credentials.api_key_sid} (token and secret as given, never printed). Ctrl-C stops it.",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        emu.serve_forever()
    return 0


def _source_secret(name: str) -> Any:
    """A value of the source's config section (``sources.twilio_studio.<name>``), as ``run`` reads it."""
    import dlt

    return dlt.secrets.get(f"sources.twilio_studio.{name}")


def _twilio_client(base_url: str | None) -> Any:
    """A Studio client with the source's credentials (dlt config), checked before any request."""
    from twilio_studio.client import RetryPolicy, StudioClient
    from twilio_studio.options import SourceOptions, validate_options

    options = validate_options(
        SourceOptions(
            flow_sids=None, account_sid=_source_secret("account_sid"), auth_token=_source_secret("auth_token"),
            api_key_sid=_source_secret("api_key_sid"), api_key_secret=_source_secret("api_key_secret"),
            base_url=base_url or _source_secret("base_url") or DEFAULT_BASE_URL, page_size=DEFAULT_PAGE_SIZE,
            context_mode=DEFAULT_CONTEXT_MODE, write_mode=DEFAULT_WRITE_MODE, widget_fields="arrays",
            max_concurrency=DEFAULT_MAX_CONCURRENCY, start_date=None, end_date=None, lookback_seconds=0,
            max_attempts=RetryPolicy.max_attempts, request_timeout=RetryPolicy.timeout,
        )
    )  # fmt: skip
    return StudioClient(options.base_url, options.username, options.password)


def cmd_erase(args: argparse.Namespace) -> int:
    """``twilio-studio erase``: removes a contact's rows (with ``--in-twilio``, its runs too); returns the exit code."""
    from twilio_studio.erase import contact_values, erase_contact

    try:
        contact_values(args.contact, None)
    except ValueError as e:
        raise UserError(f"--contact: {e}") from None
    twilio = _twilio_client(args.base_url) if args.in_twilio else None
    if args.duckdb:
        if not Path(args.duckdb).exists():
            raise UserError(f"--duckdb: no such file: {args.duckdb}")
        import dlt

        destination = dlt.destinations.duckdb(args.duckdb)
        pipeline = make_pipeline(args.pipeline_name, destination, args.dataset, args.pipelines_dir)
    else:
        pipeline, path = cli_pipeline(
            args.pipeline_name, args.destination, args.dataset, args.pipelines_dir, loads=False
        )
        if path is not None and not path.exists():
            raise UserError(f"no DuckDB file {path}: pass the file `run` loaded into with --duckdb FILE")
    # a load running meanwhile could write the contact's rows again: erasure takes the run lock too
    with contextlib.nullcontext() if args.dry_run else run_lock(pipeline):
        try:
            report = erase_contact(
                pipeline, args.contact, pseudonymize_key=_source_secret("pseudonymize_key"), dry_run=args.dry_run,
                twilio=twilio,
            )  # fmt: skip
        except ValueError as e:
            raise UserError(str(e)) from None
    print(report.render())
    return 1 if report.failed_in_twilio else 0


def cmd_report(args: argparse.Namespace) -> int:
    """``twilio-studio report``: the usage report over a loaded dataset; returns the exit code."""
    if args.duckdb and not Path(args.duckdb).exists():
        raise UserError(f"--duckdb: no such file: {args.duckdb}")
    from twilio_studio.report import build_report, dlt_reader, duckdb_reader, render_text, write_report

    with reading_pipelines_dir(args.pipeline_name, args.pipelines_dir) as pipelines_dir:
        if args.duckdb:
            read = duckdb_reader(args.duckdb, args.dataset)
        elif args.destination == "duckdb":
            _, path = cli_pipeline(args.pipeline_name, args.destination, args.dataset, pipelines_dir, loads=False)
            if path is None or not path.exists():
                raise UserError(f"no DuckDB file {path}: load it with `twilio-studio run` first, or pass --duckdb FILE")
            read = duckdb_reader(str(path), args.dataset)
        else:
            read = dlt_reader(args.pipeline_name, args.destination, args.dataset, pipelines_dir)
        data = build_report(read, args.dataset, top_n=args.top)
    print(render_text(data))
    write_report(data, Path(args.output))
    print(f"\nReport: {Path(args.output).resolve()}")
    return 0


@contextlib.contextmanager
def reading_pipelines_dir(name: str, pipelines_dir: str | None) -> Iterator[str | None]:
    """The pipelines folder for a command that only reads, which must create no file.

    dlt makes a pipeline's folder (its local state) when it opens the pipeline: a pipeline that has
    none yet is opened in a temporary folder instead, removed when the command ends.
    """
    from dlt.common.pipeline import get_dlt_pipelines_dir

    if (Path(pipelines_dir or get_dlt_pipelines_dir()) / name).is_dir():
        yield pipelines_dir
        return
    with tempfile.TemporaryDirectory(prefix="twilio-studio-read-") as scratch:
        yield scratch


# ---------------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    """The command line parser of ``twilio-studio`` and its commands."""
    p = argparse.ArgumentParser(prog="twilio-studio", description="Load Twilio Studio engagement history with dlt.")
    p.add_argument("--log-level", default=os.environ.get("TWILIO_STUDIO_LOG_LEVEL", "INFO"),
                   help="DEBUG, INFO, WARNING or ERROR (env TWILIO_STUDIO_LOG_LEVEL; default INFO)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    def destination_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("--destination", default="duckdb", help="any dlt destination name (default duckdb)")
        s.add_argument("--dataset", default="twilio_studio", help="dataset (schema) name (default twilio_studio)")
        s.add_argument("--pipeline-name", default="twilio_studio", help="dlt pipeline name (default twilio_studio)")
        s.add_argument("--pipelines-dir", default=None, help="where dlt keeps pipeline state (default ~/.dlt)")

    def progress_options(s: argparse.ArgumentParser) -> None:
        s.add_argument("--progress", default=os.environ.get("TWILIO_STUDIO_PROGRESS", "auto"),
                       metavar="{" + ",".join(PROGRESS_MODES) + "}",
                       help="auto (default): a live display when standard error is a terminal, else log lines; "
                       "live, log or off to choose (env TWILIO_STUDIO_PROGRESS)")  # fmt: skip
        s.add_argument("--progress-interval", type=float, default=DEFAULT_PROGRESS_INTERVAL, metavar="SECONDS",
                       help="with log lines: seconds between two progress lines (default "
                       f"{DEFAULT_PROGRESS_INTERVAL:g}; one also at each dlt step and at the end)")  # fmt: skip

    run = sub.add_parser("run", help="load from Twilio (credentials from .dlt/secrets.toml or env vars)")
    destination_args(run)
    progress_options(run)
    run.add_argument("--flow", action="append", metavar="FW...", help="a Flow SID; repeat for more (default: all)")
    run.add_argument("--base-url", default=None, help=f"Studio host (default {DEFAULT_BASE_URL})")
    run.add_argument("--page-size", type=int, default=None, help=f"1..1000 (default {DEFAULT_PAGE_SIZE})")
    run.add_argument("--context-mode", choices=CONTEXT_MODES, default=None,
                     help=f"default {DEFAULT_CONTEXT_MODE}")  # fmt: skip
    run.add_argument("--write-mode", choices=WRITE_MODES, default=None,
                     help="merge (latest state), scd2 (every version) or append (change log); "
                     f"default {DEFAULT_WRITE_MODE}")  # fmt: skip
    run.add_argument("--widget-fields", choices=WIDGET_FIELDS_MODES, default=None,
                     help="scalars of widget outputs kept as field rows: arrays (default), all, none")  # fmt: skip
    run.add_argument("--max-concurrency", type=int, default=None,
                     help=f"requests in flight (default {DEFAULT_MAX_CONCURRENCY})")  # fmt: skip
    run.add_argument("--start-date", default=None, help="first run loads engagements updated from here (ISO 8601)")
    run.add_argument("--end-date", default=None, help="backfill up to here (ISO 8601); saved cursors stay")
    run.add_argument("--lookback-seconds", type=float, default=None, help="re-read this far behind the cursor")
    run.add_argument("--resources", default=None, metavar="A,B",
                     help="comma-separated: flows, engagements, engagement_steps, executions, execution_steps "
                     "(default flows,engagements)")  # fmt: skip
    run.add_argument("--stop-at-ended-pages", action="store_true",
                     help="stop each flow's walk at the first page whose engagements had all ended by the "
                     "last run (hourly runs read only the newest pages; relies on Twilio's newest-first "
                     "order, see README)")  # fmt: skip
    run.add_argument("--full-refresh", action="store_true", help="drop this source's tables and state first")
    run.add_argument("--keep-card-data", action="store_true",
                     help="store the card data of Capture Payments widgets instead of [redacted] "
                     "(PCI DSS scope: see README 'Security')")  # fmt: skip
    run.add_argument("--subaccounts", choices=["all"], default=None,
                     help="also load every active subaccount, each with its own credentials")  # fmt: skip
    run.add_argument("--subaccount", action="append", metavar="AC...",
                     help="load this account (a subaccount, or the credentials' own); repeat for more")  # fmt: skip
    run.add_argument(
        "--accounts-base-url",
        default=None,
        help=f"Twilio's core API, for the Accounts list (default {DEFAULT_ACCOUNTS_BASE_URL})",
    )
    run.add_argument("--max-total-concurrency", type=int, default=None,
                     help="with subaccounts: requests in flight over all accounts "
                     f"(default {DEFAULT_MAX_TOTAL_CONCURRENCY})")  # fmt: skip
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="emulator + two loads into a local DuckDB file + report; no account needed")
    demo.add_argument("--dir", default=".", help="where the DuckDB file and report go (default: here)")
    progress_options(demo)
    demo.add_argument("--flows", type=int, default=4, help="flows in the emulated account (default 4)")
    demo.add_argument("--engagements", type=int, default=1500, help="engagements per flow (default 1500)")
    demo.add_argument("--seed", type=int, default=7, help="the emulated data's seed (default 7)")
    demo.add_argument("--advance-hours", type=float, default=36.0,
                      help="how far the clock moves between the two loads (default 36)")  # fmt: skip
    demo.add_argument("--traffic", choices=("shaped", "flat"), default="shaped",
                      help="shaped (default): flows differing tenfold, hours, weekdays, bursts; "
                      "flat: evenly spaced")  # fmt: skip
    demo.set_defaults(func=cmd_demo)

    emu = sub.add_parser("emulator", help="run the Studio API emulator in the foreground")
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emu.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free one)")
    emu.add_argument("--seed", type=int, default=7, help="the emulated data's seed (default 7)")
    emu.add_argument("--flows", type=int, default=3, help="flows in the emulated account (default 3)")
    emu.add_argument("--engagements", type=int, default=1000, help="engagements per flow (default 1000)")
    emu.add_argument("--traffic", choices=("flat", "shaped"), default="flat",
                     help="flat (default): evenly spaced; shaped: flows differing tenfold, hours, "
                     "weekdays, bursts")  # fmt: skip
    emu.add_argument("--account-sid", default=None,
                     help="the account SID clients authenticate with (env TWILIO_ACCOUNT_SID; "
                     "default ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)")  # fmt: skip
    emu.add_argument("--auth-token", default=None,
                     help="its auth token (env TWILIO_AUTH_TOKEN; default emulator-auth-token)")  # fmt: skip
    emu.add_argument("--api-key-sid", default=None,
                     help="an API key SID accepted too (env TWILIO_API_KEY; "
                     "default SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa)")  # fmt: skip
    emu.add_argument("--api-key-secret", default=None,
                     help="that key's secret (env TWILIO_API_SECRET; default emulator-api-secret)")  # fmt: skip
    emu.add_argument("--payment-flows", type=int, default=0,
                     help="flows with a Capture Payments widget (card data in contexts), after the others")  # fmt: skip
    emu.add_argument("--realtime", action="store_true", help="the clock follows the wall clock")
    emu.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    emu.add_argument("--max-concurrency", type=int, default=None, help="above this many requests in flight: 429")
    emu.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429")
    emu.add_argument("--no-retry-after", action="store_true", help="send 429 without Retry-After")
    emu.add_argument("--error-rate", type=float, default=0.0, help="share of 500/503 answers")
    emu.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped connections")
    emu.add_argument("--truncate-rate", type=float, default=0.0, help="share of cut-short bodies")
    emu.set_defaults(func=cmd_emulator)

    erase = sub.add_parser("erase", help="remove every row of one contact from the destination (and Twilio)")
    destination_args(erase)
    erase.add_argument("--contact", required=True, metavar="ADDRESS",
                       help="the contact's address as Twilio shows it, e.g. +14155550100 or client:alice; "
                       "found by its keyed hash too when pseudonymize_key is configured")  # fmt: skip
    erase.add_argument("--duckdb", default=None, help="erase in this DuckDB file (instead of --destination)")
    erase.add_argument("--dry-run", action="store_true", help="print per table what would go; change nothing")
    erase.add_argument("--in-twilio", action="store_true",
                       help="also delete the contact's engagements and executions in Twilio (credentials as "
                       "for run), so no later load brings them back")  # fmt: skip
    erase.add_argument("--base-url", default=None, help=f"Studio host for --in-twilio (default {DEFAULT_BASE_URL})")
    erase.set_defaults(func=cmd_erase)

    rep = sub.add_parser("report", help="analytics over a loaded dataset: terminal tables and one HTML file")
    destination_args(rep)
    rep.add_argument("--duckdb", default=None, help="read this DuckDB file directly")
    rep.add_argument("--output", default="twilio_studio_report.html",
                     help="the HTML file to write (default twilio_studio_report.html)")  # fmt: skip
    rep.add_argument("--top", type=int, default=10, help="top values per flow-data key")
    rep.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``twilio-studio`` command line; returns the exit code."""
    args = parser().parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"error: --log-level {args.log_level!r} is not DEBUG, INFO, WARNING or ERROR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("twilio_studio").setLevel(level)
    try:
        return int(args.func(args))
    except Exception as e:
        busy = next((c for c in causes(e) if isinstance(c, RunInProgressError)), None)
        if busy is None:
            return failed(e)
        print(f"error: {busy}", file=sys.stderr)
        return EX_TEMPFAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def failed(error: Exception) -> int:
    """Prints an error as one line and returns the exit code: 2 for what the user can fix, else 1."""
    if isinstance(error, (UserError, StudioError)):
        print(f"error: {error}", file=sys.stderr)
        return 2
    # dlt wraps our errors: show ours, or the root cause, one line, no traceback
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("failure", exc_info=error)
    print(f"error: {explain(error)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
