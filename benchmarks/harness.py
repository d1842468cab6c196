"""The run: ``run_all`` is a loop over ``benchmarks.catalogue``, each case in a process of its own.

Per group an emulator process, per case a process of its own (``run_case``) whose wall time, peak
RSS, CPU and emulator traffic are measured, and whose DuckDB file is read back here
(``inspect_db``) to check it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.catalogue import PATHS, CaseDef, Group, Sizes, catalogue, sizes_of
from benchmarks.expected import ChangeModel, ChangePlan, pages_that_can_change
from benchmarks.machine import load_average, machine_busy_seconds, own_cpu_seconds
from benchmarks.processes import EmulatorProcess, MemoryWatch, child_env, compile_bytecode, phase_peaks, wait4_usage
from twilio_studio.emulator.dataset import Dataset

SCHEMAS = {"source": "twilio_studio", "library": "twilio_studio", "rest_api": "rest_api_naive",
           "floor": "main"}  # DuckDB schema per kind  # fmt: skip
CHILD_TABLES = ("engagements__flow_data", "engagements__flow_variables", "engagements__widgets",
                "engagements__widgets__fields")  # the context's child tables  # fmt: skip


@dataclass
class Case:
    """What one case measured and checked: the harness fills it, the targets and tables read it."""

    id: str
    title: str
    kind: str  # source (the CLI's run_pipeline) | library (pipeline.run) | rest_api | floor
    scenario: str
    shape: str = "default"  # the emulator's context shape
    wall_seconds: float = 0.0
    peak_rss_kb: int = 0
    exit_code: int | None = None
    timed_out: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    expected_rows: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    emulator: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    killed: str = ""  # the memory watch stopped it
    cpu_seconds: float = 0.0  # user + system CPU of the case's process
    others_cpu_seconds: float = 0.0  # CPU the rest of the machine used during the case
    loadavg_before: float = 0.0
    phase_peaks_kb: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the case exited 0 in time and every check of its result passed."""
        return self.exit_code == 0 and not self.timed_out and bool(self.checks) and all(self.checks.values())

    @property
    def rss_mb(self) -> float:
        """The case's peak RSS in MB."""
        return self.peak_rss_kb * 1024 / 1e6

    @property
    def db_rows(self) -> int | None:
        """Engagements the case's DuckDB file holds; None if it was not read."""
        value = self.result.get("db", {}).get("engagements")
        return None if value is None else int(value)

    def step(self, name: str) -> float | None:
        """Seconds the case spent in the step ``name``; None if it did not report that step."""
        value = self.result.get("steps", {}).get(name)
        return None if value is None else float(value)

    @property
    def child_rows(self) -> int | None:
        """Rows in the four context child tables after the case (tombstones excluded)."""
        value = self.result.get("db", {}).get("child_rows_total")
        return None if value is None else int(value)


def run_case(
    case: Case,
    cfg: dict[str, Any],
    emu: EmulatorProcess,
    workdir: Path,
    timeout: float,
    max_rss_kb: int,
    fingerprint: bool = False,
) -> Case:
    """Runs one case in its own process against ``emu``; fills wall time, peak RSS and the result.

    The result's ``fingerprint`` is also a digest of every table's contents, to compare two loads.
    """
    casedir = workdir / case.id
    casedir.mkdir(parents=True, exist_ok=True)
    config, result = casedir / "config.json", casedir / "result.json"
    result.unlink(missing_ok=True)
    cfg = {"base_url": emu.base_url, **cfg}
    config.write_text(json.dumps(cfg, indent=2))
    stats_before, cpu_before, routes_before = emu.stats(), emu.cpu_seconds(), emu.routes()
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    case.loadavg_before = load_average()
    print(f"[{case.id}] {case.title} ...", flush=True)
    (casedir / "phases.jsonl").unlink(missing_ok=True)
    with (casedir / "stdout.log").open("w") as out, (casedir / "stderr.log").open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.cases", case.kind, str(config), str(result)],
                                stdout=out, stderr=err, cwd=casedir, env=child_env())  # fmt: skip
        watch = MemoryWatch(proc, max_rss_kb, casedir / "rss.csv")
        try:
            case.exit_code, case.peak_rss_kb, case.timed_out, case.cpu_seconds = wait4_usage(proc, timeout)
        except BaseException:  # Ctrl-C or a harness error: never leave a case running
            proc.kill()
            raise
        finally:
            watch.stop()
        case.wall_seconds = time.perf_counter() - started
    case.phase_peaks_kb, last_phase = phase_peaks(casedir)
    if watch.killed_at_kb:
        case.killed = (f"killed at {watch.killed_at_kb * 1024 / 1e9:.1f} GB RSS (limit "
                       f"{max_rss_kb * 1024 / 1e9:.1f} GB) after {watch.killed_after:.0f} s, "
                       f"during dlt's {last_phase} step")  # fmt: skip
    stats_after, cpu_after, routes_after = emu.stats(), emu.cpu_seconds(), emu.routes()
    # CPU the rest of the machine used meanwhile (other users' work): contention, not this case
    case.others_cpu_seconds = max(0.0, machine_busy_seconds() - busy_before - case.cpu_seconds
                                  - (cpu_after - cpu_before) - (own_cpu_seconds() - own_before))  # fmt: skip
    by_status = {
        k: v - int(stats_before["by_status"].get(k, 0))
        for k, v in ((k, int(v)) for k, v in stats_after["by_status"].items())
        if v - int(stats_before["by_status"].get(k, 0))
    }
    case.emulator = {
        "requests": int(stats_after["requests"]) - int(stats_before["requests"]),
        "by_status": by_status,
        "max_in_flight": stats_after["max_in_flight"],
        "cpu_seconds": round(cpu_after - cpu_before, 2),
        "routes": {k: n for k, v in routes_after.items() if (n := v - routes_before.get(k, 0))},
    }
    if result.exists():
        case.result = json.loads(result.read_text())
        # ru_maxrss also counts the harness's own size when it forked the case (Linux carries the
        # high-water mark across exec); the case's VmHWM is its own address space's peak only
        if case.result.get("vm_hwm_kb"):
            case.peak_rss_kb = int(case.result["vm_hwm_kb"])
    if case.exit_code == 0 and cfg.get("duckdb") and Path(cfg["duckdb"]).exists():
        try:
            case.result["db"] = inspect_db(cfg["duckdb"], SCHEMAS[case.kind], fingerprint)
        except Exception as e:  # reported as a failed verification, not a crash of the harness
            case.error = f"could not read {cfg['duckdb']}: {e}"
    if case.killed:
        case.error = case.killed
    elif case.exit_code != 0 or case.timed_out:
        tail = (casedir / "stderr.log").read_text(errors="replace").strip().splitlines()[-5:]
        case.error = ("timed out; " if case.timed_out else f"exit {case.exit_code}; ") + " | ".join(tail)[-300:]
    if case.kind == "rest_api" and case.result.get("db"):
        db = case.result["db"]
        case.notes.append(f"dlt's default flattening made {db.get('tables')} tables; engagements has "
                          f"{db.get('engagement_columns')} columns")  # fmt: skip
    if case.kind != "floor" and case.phase_peaks_kb:
        peaks = ", ".join(f"{k} {v * 1024 / 1e6:,.0f} MB" for k, v in case.phase_peaks_kb.items() if k != "other")
        case.notes.append(f"peak RSS by dlt step: {peaks}; case CPU {case.cpu_seconds:.1f} s")
    status = "ok" if case.exit_code == 0 else f"FAILED ({case.error})"
    print(f"[{case.id}] {case.wall_seconds:.1f} s, peak RSS {case.rss_mb:.0f} MB: {status}", flush=True)
    return case


def _columns(con: Any, schema: str, catalog: str, table: str) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_catalog = ? "
        "AND table_name = ? ORDER BY ordinal_position", [schema, catalog, table]).fetchall()]  # fmt: skip


def _digest(con: Any, schema: str, catalog: str, table: str) -> str:
    """Rows and an order-free digest of a table's data columns.

    dlt's own ids and load ids are left out (they differ between two loads of the same data), and so
    are tombstones.
    """
    columns = _columns(con, schema, catalog, table)
    data = [c for c in columns if not c.startswith("_dlt") and c != "_tombstone"]
    where = " WHERE _tombstone IS NOT TRUE" if "_tombstone" in columns else ""
    args = ", ".join(f'"{c}"' for c in data)
    n, h = con.execute(f'SELECT count(*), sum(hash({args}))::VARCHAR FROM "{schema}"."{table}"{where}').fetchone()
    return f"{n}:{h}"


def inspect_db(path: str, schema: str, fingerprint: bool = False) -> dict[str, Any]:
    """What a case left in its DuckDB file, read here (read-only) rather than in the measured process."""
    import duckdb

    out: dict[str, Any] = {}
    with duckdb.connect(path, read_only=True) as con:
        catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_catalog = ?",
            [schema, catalog]).fetchall() if not r[0].startswith("_dlt")]  # fmt: skip
        for table in tables:
            out[table] = int(con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0])  # type: ignore[index]
        if "engagements" in tables:
            e = f'"{schema}"."engagements"'
            out["distinct_sid"] = int(con.execute(f"SELECT count(DISTINCT sid) FROM {e}").fetchone()[0])  # type: ignore[index]
            columns = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_catalog = ? "
                "AND table_name = 'engagements'", [schema, catalog]).fetchall()]  # fmt: skip
            out["engagement_columns"] = len(columns)
            if "context" in columns:  # the naive source flattens context into columns instead
                out["empty_context"] = int(con.execute(
                    f"SELECT count(*) FROM {e} WHERE context IS NULL OR context::VARCHAR = '{{}}'").fetchone()[0])  # type: ignore[index]  # fmt: skip
        children = {}
        for table in CHILD_TABLES:
            if table in tables:
                where = " WHERE _tombstone IS NOT TRUE" if "_tombstone" in _columns(con, schema, catalog, table) else ""
                children[table] = int(con.execute(f'SELECT count(*) FROM "{schema}"."{table}"{where}').fetchone()[0])  # type: ignore[index]
        if children:
            out["child_rows"], out["child_rows_total"] = children, sum(children.values())
        if fingerprint and "engagements" in tables:
            out["sids_md5"] = con.execute(
                f'SELECT md5(string_agg(sid, \',\' ORDER BY sid)) FROM "{schema}"."engagements"').fetchone()[0]  # type: ignore[index]  # fmt: skip
            out["digest"] = {table: _digest(con, schema, catalog, table) for table in sorted(tables)}
        out["tables"] = len(tables)
    return out


def check_rows(case: Case, expected: int) -> None:
    """The case left exactly the engagements the emulator shows, each sid once."""
    case.expected_rows = expected
    db = case.result.get("db", {})
    case.checks["rows"] = db.get("engagements") == expected
    case.checks["distinct sids"] = db.get("distinct_sid") == expected


def source_cfg(workdir: Path, name: str, **options: Any) -> dict[str, Any]:
    """The config of a case that runs this source: its pipeline, DuckDB file and source options."""
    return {
        "pipeline_name": name,
        "pipelines_dir": str(workdir / "pipelines"),
        "duckdb": str(workdir / f"{name}.duckdb"),
        "source_options": options,
    }


def copy_pipeline(workdir: Path, name: str, to_dir: str, to_db: str) -> dict[str, Any]:
    """A copy of a finished case's pipeline (local state and DuckDB file).

    It is the config of a case that starts from the same state.
    """
    pipelines = workdir / to_dir
    shutil.rmtree(pipelines, ignore_errors=True)
    shutil.copytree(workdir / "pipelines" / name, pipelines / name)
    for suffix in ("", ".wal"):
        if (workdir / f"{name}.duckdb{suffix}").exists():
            shutil.copyfile(workdir / f"{name}.duckdb{suffix}", workdir / f"{to_db}.duckdb{suffix}")
    return {"pipeline_name": name, "pipelines_dir": str(pipelines), "duckdb": str(workdir / f"{to_db}.duckdb")}


@dataclass
class Run:
    """One run of the catalogue: its options, and the cases and emulators measured so far."""

    args: argparse.Namespace
    sizes: Sizes
    workdir: Path
    only: set[str] | None
    cases: list[Case] = field(default_factory=list)
    plan: ChangePlan | None = None
    emulators: list[dict[str, Any]] = field(default_factory=list)
    copies: dict[str, dict[str, Any]] = field(default_factory=dict)  # case id -> the pipeline it starts from
    can_change: int = 0  # list pages that can hold changes after the clock moved (from the Dataset)

    @property
    def limit_kb(self) -> int:
        """The RSS (kB) at which a case's process is stopped (``--max-rss-gb``)."""
        return int(self.args.max_rss_gb * 1e9 / 1024)

    def case(self, case_id: str | None) -> Case | None:
        """The measured case with id ``case_id``; None if there is none."""
        return next((c for c in self.cases if c.id == case_id), None)

    def selected(self, group: Group) -> list[CaseDef]:
        """The group's cases this run runs: --only's and those they run with, in the group's order."""
        if group.if_not_ok is not None:
            return list(group.cases)
        if self.only is None:
            return list(group.cases)
        wanted = {c.id for c in group.cases if c.id in self.only}
        wanted |= {other for c in group.cases if c.id in wanted for other in c.runs_with}
        return [c for c in group.cases if c.id in wanted]

    def config(self, spec: CaseDef) -> dict[str, Any]:
        """The config file of a case's process (``benchmarks.cases``)."""
        s, workdir = self.sizes, self.workdir
        sized = {} if spec.page_size is None else {"page_size": spec.page_size}
        if spec.kind == "floor":
            return {"duckdb": str(workdir / f"{spec.name}.duckdb"), "pages_dir": str(workdir / "floor-pages"),
                    "page_size": spec.page_size or s.page_size}  # fmt: skip
        if spec.kind == "rest_api":
            return {"pipeline_name": spec.name, "pipelines_dir": str(workdir / "pipelines"),
                    "duckdb": str(workdir / f"{spec.name}.duckdb"), **sized, **spec.options}  # fmt: skip
        if spec.starts_from is not None:
            cfg = {**self.copies[spec.id], "source_options": {**sized, **spec.options}}
        else:
            cfg = source_cfg(workdir, spec.name, **sized, **spec.options)
        if spec.resources is not None:
            cfg["resources"] = list(spec.resources)
        return cfg


def emulator_info(emu: EmulatorProcess) -> dict[str, Any]:
    """What the results say of one emulator process."""
    return {"name": emu.name, "flows": emu.flows, "engagements_per_flow": emu.engagements_per_flow,
            "latency": emu.latency, "max_concurrency": emu.max_concurrency, "padding": emu.padding,
            "peak_rss_kb": emu.peak_rss_kb, "cpu_seconds": round(emu.final_cpu_seconds, 1),
            "shape": emu.shape}  # fmt: skip


def advance_clock(run: Run, group: Group, emu: EmulatorProcess) -> None:
    """Prepares the incremental cases: copies of the pipelines they start from, then a clock move.

    Before the first incremental case: copies of the pipelines later cases start from, then the
    clock moves so that ``change_share`` of the engagements change.
    """
    s = run.sizes
    for spec in group.cases:
        if spec.starts_from is not None:
            origin = next(c for c in group.cases if c.id == spec.starts_from)
            run.copies[spec.id] = copy_pipeline(run.workdir, origin.name, f"pipelines-{spec.id}",
                                                f"{origin.name}_{spec.id}")  # fmt: skip
    total = emu.visible()
    print(f"[3] computing the clock advance that changes {s.change_share:.0%} of {total} engagements", flush=True)
    before = emu.clock()
    run.plan = ChangeModel(emu.dataset, before).advance_for(s.change_share)
    after = emu.advance(run.plan.advance_seconds)
    run.can_change = pages_that_can_change(emu.dataset, before, after, s.page_size)


def verify(run: Run, spec: CaseDef, c: Case, total: int) -> None:
    """Checks a finished case as its definition says (``CaseDef.verify``)."""
    if spec.verify == "incremental":
        verify_incremental(run, spec, c)
        return
    check_rows(c, total)
    if spec.verify != "load" or spec.kind not in PATHS:
        return
    c.checks["rows written"] = c.result.get("written", {}).get("engagements") == total
    c.checks["contexts filled"] = c.result.get("db", {}).get("empty_context") == 0
    same = run.case(spec.same_children_as)
    if same is not None and same.ok:  # both paths, and every write mode, load the same context rows
        c.checks["child rows as " + same.id] = c.result.get("db", {}).get("child_rows") == same.result[
            "db"].get("child_rows")  # fmt: skip
    rows = ", ".join(f"{k} {v:,}" for k, v in sorted(c.result.get("written", {}).items()))
    c.notes.append(f"{c.emulator.get('requests'):,} API requests ({c.emulator.get('routes')}); "
                   f"rows written: {rows}")  # fmt: skip


def verify_incremental(run: Run, spec: CaseDef, c: Case) -> None:
    """3 and 3s: exactly the changed rows written, every visible row there once (3s: the same tables as 3)."""
    plan = run.plan
    assert plan is not None, "an incremental case runs after the clock moved"
    c.expected_rows = plan.changed
    db = c.result.get("db", {})
    c.checks["only changed rows written"] = c.result.get("written", {}).get("engagements") == plan.changed
    c.checks["rows"] = db.get("engagements") == plan.visible_after
    c.checks["distinct sids"] = db.get("distinct_sid") == plan.visible_after
    c.result["pages_that_can_change"] = run.can_change
    pages = c.emulator.get("routes", {}).get("engagement_pages", 0)
    c.notes.append(f"{pages} list pages read ({run.can_change} can hold changes: from the Dataset), "
                   f"{c.emulator.get('routes')}; rows written {c.result.get('written')}")  # fmt: skip
    walk = run.case(spec.same_rows_as)
    if walk is not None and walk.exit_code == 0:
        mine, theirs = db, walk.result.get("db", {})
        c.checks[f"same rows as {walk.id}"] = bool(mine.get("digest")) and all(
            mine.get(k) == theirs.get(k) for k in ("digest", "sids_md5", "child_rows")
        )
        c.checks[f"same rows written as {walk.id}"] = c.result.get("written") == walk.result.get("written")


def run_group(run: Run, group: Group, specs: list[CaseDef]) -> None:
    """The group's emulator, and its cases one after another against it."""
    args, workdir, timeout = run.args, run.workdir, run.args.case_timeout
    with EmulatorProcess(workdir, group.name, seed=args.seed, padding=args.context_padding,
                         **group.emulator) as emu:  # fmt: skip
        total = emu.visible()
        for spec in specs:
            if spec.advance_clock:
                advance_clock(run, group, emu)
            if spec.kind == "floor":
                shutil.rmtree(workdir / "floor-pages", ignore_errors=True)
            title = spec.title.format(total=total, advance=run.plan.advance_seconds if run.plan else None)
            case = Case(spec.id, title, spec.kind, spec.scenario or group.name, shape=spec.shape)
            c = run_case(case, run.config(spec), emu, workdir, timeout, run.limit_kb,
                         fingerprint=spec.verify == "incremental")  # fmt: skip
            if spec.kind == "floor" and not args.keep_files:
                shutil.rmtree(workdir / "floor-pages", ignore_errors=True)
            verify(run, spec, c, total)
            run.cases.append(c)
    run.emulators.append(emulator_info(emu))


def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Runs the catalogue (or --only's cases of it); returns the sizes, cases, change plan and emulators."""
    s = sizes_of(args)
    only = {x.strip() for x in args.only.split(",") if x.strip()} if args.only else None
    groups = catalogue(s, args)
    known = {c.id for g in groups if g.if_not_ok is None for c in g.cases}
    if only is not None and only - known:
        raise SystemExit(f"--only: no case {', '.join(sorted(only - known))} with --shapes {','.join(s.shapes)}; "
                         f"the cases are {', '.join(sorted(known))}")  # fmt: skip
    run = Run(args, s, workdir, only)
    compile_bytecode()  # not timed: a user's installed package has it
    for group in groups:
        if not group.enabled:
            continue
        if group.if_not_ok is not None:
            case = run.case(group.if_not_ok)
            if case is None or case.ok:
                continue
        specs = run.selected(group)
        if specs:
            run_group(run, group, specs)
    return {"sizes": asdict(s), "cases": run.cases, "plan": run.plan, "emulators": run.emulators}


def context_bytes(s: Sizes, seed: int, padding: int, shape: str = "default") -> dict[str, int]:
    """Average size of a list item and of its context, as the emulator renders them (a sample)."""
    import orjson

    from twilio_studio.emulator.api import Credentials, StudioApi

    ds = Dataset(seed=seed, flows=s.flows, engagements_per_flow=s.per_flow, context_padding=padding,
                 context_shape=shape)  # fmt: skip
    api = StudioApi(ds, Credentials(), lambda: ds.start)
    items: list[dict[str, Any]] = []
    for flow in ds.flows:
        body = orjson.loads(api.handle("http://127.0.0.1", f"/v1/Flows/{flow.sid}/Engagements",
                                       "PageSize=200").body)["engagements"]  # fmt: skip
        items.extend(e for e in body if e["context"])
    n = max(1, len(items))
    return {"engagement": sum(len(orjson.dumps(e)) for e in items) // n,
            "context": sum(len(orjson.dumps(e["context"])) for e in items) // n}  # fmt: skip
