"""Benchmark harness: this source vs. a naive dlt ``rest_api`` source vs. a floor, against the emulator.

    python -m benchmarks.run [--engagements 100000] [--big 400000] [--out BENCHMARKS.md] [--quick]

Every case runs in a process of its own (``benchmarks.cases``); the emulator runs in another one
(``benchmarks.emulator_proc``) so its CPU is not charged to the measured process. For each case the
harness measures the process's wall time and peak RSS (its own ``VmHWM``; ``ru_maxrss`` if it died),
checks the rows that reached DuckDB against the emulator's own count, then prints a table and, with
``--out``, writes the results (machine, versions, command) into a Markdown file.

Cases (full loads: 100,000 engagements, zero latency, PageSize 1000; ``.light`` / ``.heavy``: the same
case on that context shape, no suffix: the emulator's default shape; ``--shapes`` picks the shapes):
  1a[.shape]  full load, CLI path (``twilio_studio.cli.run_pipeline``, what ``twilio-studio run`` does)
  1l[.shape]  full load, library path (``pipeline.run(twilio_studio_source(...))``, dlt's and DuckDB's
              defaults, as README's Python example); must load the same child rows as 1a
  1c[.shape]  floor: plain requests writing raw JSON pages, then DuckDB ``read_json``
  1b  full load, naive ``rest_api_source`` with dlt's defaults (``insert_values`` into DuckDB)
  1b+ the same naive source with only ``loader_file_format="parquet"`` added (for orientation)
  1a4.heavy, 1l4.heavy  1a / 1l at ``--big`` engagements on ``--big-shape`` (peak RSS vs 100,000)
  1l-scd2.heavy, 1l-append.heavy  1l with ``write_mode`` scd2 / append on ``--write-shape`` (vs merge)
  2a  latency-bound: 20 flows, 200 pages of 20, 100 ms per request, ``context_mode="inline"``
  2a+ 2a with pages of 100 (20,000 engagements: normalizing them takes longer than the latency; info)
  2b  the same with the default ``context_mode`` (fetch_missing: ~5% extra context requests)
  2c  the same as 2b with the emulator's concurrency cap below ours (it answers 429)
  3   incremental: after 1a, the emulator's clock moves so ~1% of engagements change; 1a again
  3s  3 with ``stop_at_ended_pages=True`` on a copy of 1a's state: fewer list pages, the same rows
  4a  steps: engagements + engagement_steps for 2,000 new (changed) parents, 50 ms per request
  4b  4a again with nothing changed: no step request may be sent
  1a-s, 1l-s, 1b-s  only when 1b does not finish (memory guard, timeout): all three at --baseline-fallback
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.expected import ChangeModel, ChangePlan, pages_that_can_change, visible
from twilio_studio.emulator import Subaccount
from twilio_studio.emulator.dataset import Dataset
from twilio_studio.settings import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_TOTAL_CONCURRENCY, DEFAULT_PAGE_SIZE

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- benchmark-results:begin -->", "<!-- benchmark-results:end -->"
# environment variables that would change what dlt or the source do: cases run with defaults
SCRUBBED_ENV_PREFIXES = ("SOURCES__", "DESTINATION__", "NORMALIZE__", "LOAD__", "EXTRACT__", "DATA_WRITER__",
                         "RUNTIME__", "TWILIO_STUDIO_")  # fmt: skip


# ---------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")  # fmt: skip
    mem_kb = next((int(line.split()[1]) for line in read("/proc/meminfo").splitlines()
                   if line.startswith("MemTotal:")), 0)  # fmt: skip
    versions = {}
    for package in ("dlt", "duckdb", "pyarrow", "requests", "orjson"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        commit = f"{commit}{' + uncommitted changes' if dirty else ''}" if commit else "-"
    except (OSError, subprocess.SubprocessError):
        commit = "-"
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def default_max_rss_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) * 1024 / 1e9 / 2, 1)
    except OSError:
        pass
    return 8.0


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no phoning home from the measured processes
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _wait4(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int, bool]:
    """Waits for ``proc`` with os.wait4: (exit code, peak RSS in kB, timed out)."""
    code, rss, timed_out, _ = _wait4_usage(proc, timeout)
    return code, rss, timed_out


def _wait4_usage(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int, bool, float]:
    """Waits for ``proc`` with os.wait4: (exit code, peak RSS in kB, timed out, CPU seconds)."""
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: keep Popen from waiting again
    return code, int(usage.ru_maxrss), timed_out.is_set(), usage.ru_utime + usage.ru_stime


def rss_kb(pid: int) -> int:
    """Current resident set of a process in kB (Linux /proc; 0 when unknown or gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class MemoryWatch:
    """Samples a process's RSS four times a second into a CSV timeline and kills the process when
    it passes ``limit_kb``: one runaway case must not push the machine (and its other users) into
    the OOM killer."""

    def __init__(self, proc: subprocess.Popen[Any], limit_kb: int, timeline: Path, interval: float = 0.25) -> None:
        self.proc, self.limit_kb, self.timeline, self.interval = proc, limit_kb, timeline, interval
        self.killed_at_kb = 0
        self.killed_after = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        started = time.perf_counter()
        with self.timeline.open("w") as out:
            out.write("epoch,seconds,rss_kb\n")
            while not self._stop.is_set():
                kb = rss_kb(self.proc.pid)
                elapsed = time.perf_counter() - started
                out.write(f"{time.time():.2f},{elapsed:.2f},{kb}\n")
                if self.limit_kb and kb > self.limit_kb and not self.killed_at_kb:
                    self.killed_at_kb, self.killed_after = kb, elapsed
                    self.proc.kill()
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def phase_peaks(casedir: Path) -> tuple[dict[str, int], str | None]:
    """Peak RSS (kB) of each dlt step, from the RSS timeline and the phases the case recorded; and
    the step the case was in last."""
    try:
        phases = [json.loads(line) for line in (casedir / "phases.jsonl").read_text().splitlines() if line]
        samples = [line.split(",") for line in (casedir / "rss.csv").read_text().splitlines()[1:]]
    except OSError:
        return {}, None
    peaks: dict[str, int] = {}
    for epoch, _, kb in samples:
        current = None
        for p in phases:
            if p["t"] <= float(epoch):
                current = p["phase"]
        if current is not None:
            peaks[current] = max(peaks.get(current, 0), int(kb))
    return peaks, (phases[-1]["phase"] if phases else None)


# ---------------------------------------------------------------------------- emulator
class EmulatorProcess:
    """``benchmarks.emulator_proc`` in a child process: start, wait for its port, control, stop."""

    def __init__(self, workdir: Path, name: str, *, flows: int, engagements: int, seed: int, padding: int,
                 latency: float = 0.0, max_concurrency: int | None = None, shape: str = "default",
                 subaccounts: int = 0) -> None:  # fmt: skip
        self.name = name
        self.flows, self.engagements_per_flow, self.seed, self.padding = flows, engagements, seed, padding
        self.latency, self.max_concurrency, self.shape = latency, max_concurrency, shape
        self.log = workdir / f"emulator-{name}.log"
        self.dataset = Dataset(seed=seed, flows=flows, engagements_per_flow=engagements, context_padding=padding,
                               context_shape=shape)  # fmt: skip
        self.peak_rss_kb = 0
        self.final_cpu_seconds = 0.0
        cmd = [sys.executable, "-m", "benchmarks.emulator_proc", "--flows", str(flows), "--engagements",
               str(engagements), "--seed", str(seed), "--context-padding", str(padding),
               "--latency", str(latency), "--context-shape", shape]  # fmt: skip
        if max_concurrency is not None:
            cmd += ["--max-concurrency", str(max_concurrency)]
        # the same subaccounts as benchmarks.emulator_proc builds: what they show is counted here
        self.datasets = [self.dataset] + [
            sub.dataset for sub in Subaccount.generate(subaccounts, seed=seed + 1000, flows=flows,
                                                       engagements_per_flow=engagements, context_padding=padding)
        ]  # fmt: skip
        if subaccounts:
            cmd += ["--subaccounts", str(subaccounts)]
        self.command = cmd
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         cwd=workdir, env=child_env(), text=True)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the emulator did not start; see {self.log}")
        self.base_url = json.loads(line)["base_url"]
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.clock()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _call(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.base_url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30) as r:
            return dict(json.loads(r.read()))

    def clock(self) -> datetime:
        return datetime.fromisoformat(self._call("GET", "/_emulator/clock")["now"].replace("Z", "+00:00"))

    def advance(self, seconds: float) -> datetime:
        now = self._call("POST", f"/_emulator/clock?advance={seconds}")["now"]
        return datetime.fromisoformat(now.replace("Z", "+00:00"))

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/stats")

    def routes(self) -> dict[str, int]:
        """API requests so far by route (list pages, contexts, steps), asked over the emulator's stdin."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("routes\n")
        self.proc.stdin.flush()
        return {k: int(v) for k, v in json.loads(self.proc.stdout.readline()).items()}

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def visible(self) -> int:
        now = self.clock()
        return sum(visible(d, now) for d in self.datasets)

    def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        self.final_cpu_seconds = self.cpu_seconds()
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the emulator serves until its stdin closes
        _, self.peak_rss_kb, _ = _wait4(self.proc, 30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- cases
SCHEMAS = {"source": "twilio_studio", "library": "twilio_studio", "rest_api": "rest_api_naive",
           "floor": "main"}  # DuckDB schema per kind  # fmt: skip
PATHS = {"source": "CLI", "library": "library"}  # the two ways users load, as the targets name them
CHILD_TABLES = ("engagements__flow_data", "engagements__flow_variables", "engagements__widgets",
                "engagements__widgets__fields")  # the context's child tables  # fmt: skip
SHAPES = ("light", "default", "heavy")  # Dataset(context_shape=...)


def shaped(case_id: str, shape: str) -> str:
    """A case's id on a context shape: ``1a`` on the default shape, ``1a.heavy`` on the heavy one."""
    return case_id if shape == "default" else f"{case_id}.{shape}"


@dataclass
class Case:
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
        return self.exit_code == 0 and not self.timed_out and bool(self.checks) and all(self.checks.values())

    @property
    def rss_mb(self) -> float:
        return self.peak_rss_kb * 1024 / 1e6

    @property
    def db_rows(self) -> int | None:
        value = self.result.get("db", {}).get("engagements")
        return None if value is None else int(value)

    def step(self, name: str) -> float | None:
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
    """Runs one case in its own process against ``emu``; fills wall time, peak RSS and the result
    (``fingerprint``: also a digest of every table's contents, to compare two loads)."""
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
            case.exit_code, case.peak_rss_kb, case.timed_out, case.cpu_seconds = _wait4_usage(proc, timeout)
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
    """Rows and an order-free digest of a table's data columns (dlt's own ids and load ids left out,
    they differ between two loads of the same data; tombstones left out)."""
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
    case.expected_rows = expected
    db = case.result.get("db", {})
    case.checks["rows"] = db.get("engagements") == expected
    case.checks["distinct sids"] = db.get("distinct_sid") == expected


# ---------------------------------------------------------------------------- the run
@dataclass
class Sizes:
    flows: int
    engagements: int  # in all, case 1 and 3
    big: int  # in all, case 1a at volume; 0 skips it
    page_size: int
    latency_flows: int
    latency_pages: int
    latency_page_size: int
    latency: float
    throttle_cap: int
    change_share: float
    steps_parents: int = 2000  # case 4: engagements whose steps are read
    steps_latency: float = 0.05
    heavy_page_size: int = 100  # case 2a+: the same pages, bigger
    shapes: tuple[str, ...] = SHAPES  # case 1: context shapes of the full loads
    big_shape: str = "heavy"  # case 1a4/1l4: the shape at --big
    write_shape: str = "heavy"  # case 1l-scd2/1l-append: the shape of the write-mode comparison
    accounts: int = 50  # case 5: the parent and its subaccounts, each with account_flows flows
    account_flows: int = 2
    account_engagements: int = 100  # per flow
    account_page_size: int = 25
    account_latency: float = 0.05

    @property
    def per_flow(self) -> int:
        return self.engagements // self.flows

    @property
    def latency_per_flow(self) -> int:
        return self.latency_pages // self.latency_flows * self.latency_page_size


def sizes_of(args: argparse.Namespace) -> Sizes:
    shapes = {"shapes": tuple(args.shapes), "big_shape": args.big_shape, "write_shape": args.write_shape}
    if args.quick:
        return Sizes(flows=4, engagements=600, big=2400, page_size=50, latency_flows=4, latency_pages=8,
                     latency_page_size=25, latency=0.02, throttle_cap=2, change_share=args.change_share,
                     steps_parents=40, steps_latency=0.01, heavy_page_size=50, accounts=5,
                     account_engagements=20, account_page_size=10, account_latency=0.01, **shapes)  # fmt: skip
    return Sizes(args.flows, args.engagements, args.big, args.page_size, args.latency_flows, args.latency_pages,
                 args.latency_page_size, args.latency, args.throttle_cap, args.change_share, **shapes)  # fmt: skip


def shape_list(value: str) -> list[str]:
    """``--shapes``: comma-separated context shapes, each one of SHAPES."""
    shapes = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in shapes if x not in SHAPES]
    if unknown or not shapes:
        raise argparse.ArgumentTypeError(f"{value!r}: give one or more of {', '.join(SHAPES)}, comma-separated")
    return [x for x in SHAPES if x in shapes]


def source_cfg(workdir: Path, name: str, **options: Any) -> dict[str, Any]:
    return {
        "pipeline_name": name,
        "pipelines_dir": str(workdir / "pipelines"),
        "duckdb": str(workdir / f"{name}.duckdb"),
        "source_options": options,
    }


@dataclass(frozen=True)
class Spec:
    """One full-load case of the catalogue: what it runs; ``run_all`` runs every spec alike."""

    id: str
    title: str
    kind: str  # source | library | rest_api | floor
    name: str  # pipeline name and DuckDB file
    options: dict[str, Any] = field(default_factory=dict)  # source options (rest_api: case config)
    shape: str = "default"
    same_children_as: str | None = None  # a case whose child tables this one must match row for row


def full_load_specs(shape: str, s: Sizes, args: argparse.Namespace) -> list[Spec]:
    """The full loads on one context shape, in the order they run against that shape's emulator."""
    sfx = "" if shape == "default" else f"_{shape}"
    cli, lib = shaped("1a", shape), shaped("1l", shape)
    specs = [
        Spec(cli, f"full load, CLI path (run_pipeline), {shape} shape", "source", f"studio_full{sfx}", shape=shape),
        Spec(lib, f"full load, library path (pipeline.run, dlt's defaults), {shape} shape", "library",
             f"library_full{sfx}", shape=shape, same_children_as=cli),
    ]  # fmt: skip
    if shape == "default":
        specs.append(Spec("1b", "full load: naive rest_api_source, dlt defaults", "rest_api", "naive"))
        if not args.no_parquet_baseline:
            specs.append(Spec("1b+", "naive rest_api_source + parquet loader files (info)", "rest_api",
                              "naive_parquet", {"loader_file_format": "parquet"}))  # fmt: skip
    specs.append(Spec(shaped("1c", shape), f"floor: requests + raw JSON + DuckDB read_json, {shape} shape", "floor",
                      f"floor{sfx}", shape=shape))  # fmt: skip
    if shape == s.write_shape:
        for mode in ("scd2", "append"):
            specs.append(Spec(shaped(f"1l-{mode}", shape), f"1l with write_mode={mode}, {shape} shape", "library",
                              f"library_{mode}{sfx}", {"write_mode": mode}, shape, same_children_as=lib))  # fmt: skip
    return specs


def copy_pipeline(workdir: Path, name: str, to_dir: str, to_db: str) -> dict[str, Any]:
    """A copy of a finished case's pipeline (local state and DuckDB file): the config of a case that
    starts from the same state."""
    pipelines = workdir / to_dir
    shutil.rmtree(pipelines, ignore_errors=True)
    shutil.copytree(workdir / "pipelines" / name, pipelines / name)
    for suffix in ("", ".wal"):
        if (workdir / f"{name}.duckdb{suffix}").exists():
            shutil.copyfile(workdir / f"{name}.duckdb{suffix}", workdir / f"{to_db}.duckdb{suffix}")
    return {"pipeline_name": name, "pipelines_dir": str(pipelines), "duckdb": str(workdir / f"{to_db}.duckdb")}


def run_incremental(args: argparse.Namespace, s: Sizes, emu: EmulatorProcess, workdir: Path, cases: list[Case],
                    timeout: float, limit: int) -> ChangePlan:  # fmt: skip
    """Cases 3 and 3s: after 1a, the clock moves so that ``change_share`` of the engagements change;
    1a's pipeline runs again (3, every page), and a copy of its state taken before runs with
    ``stop_at_ended_pages`` (3s). Both must leave exactly the same rows."""
    copy = copy_pipeline(workdir, "studio_full", "pipelines-3s", "studio_full_3s")
    total = emu.visible()
    print(f"[3] computing the clock advance that changes {s.change_share:.0%} of {total} engagements", flush=True)
    before = emu.clock()
    plan = ChangeModel(emu.dataset, before).advance_for(s.change_share)
    after = emu.advance(plan.advance_seconds)
    can_change = pages_that_can_change(emu.dataset, before, after, s.page_size)
    full = source_cfg(workdir, "studio_full", page_size=s.page_size)
    stop = {**copy, "source_options": {"page_size": s.page_size, "stop_at_ended_pages": True}}
    for case_id, title, cfg in (
        ("3", f"incremental: +{plan.advance_seconds} s on the clock, CLI path, every page", full),
        ("3s", "3 with stop_at_ended_pages=True, from a copy of the same state", stop),
    ):
        c = run_case(Case(case_id, title, "source", "full"), cfg, emu, workdir, timeout, limit, fingerprint=True)
        c.expected_rows = plan.changed
        db = c.result.get("db", {})
        c.checks["only changed rows written"] = c.result.get("written", {}).get("engagements") == plan.changed
        c.checks["rows"] = db.get("engagements") == plan.visible_after
        c.checks["distinct sids"] = db.get("distinct_sid") == plan.visible_after
        c.result["pages_that_can_change"] = can_change
        pages = c.emulator.get("routes", {}).get("engagement_pages", 0)
        c.notes.append(f"{pages} list pages read ({can_change} can hold changes: from the Dataset), "
                       f"{c.emulator.get('routes')}; rows written {c.result.get('written')}")  # fmt: skip
        if case_id == "3s":
            walk = next((x for x in cases if x.id == "3"), None)
            if walk is not None and walk.exit_code == 0:
                mine, theirs = db, walk.result.get("db", {})
                c.checks["same rows as 3"] = bool(mine.get("digest")) and all(
                    mine.get(k) == theirs.get(k) for k in ("digest", "sids_md5", "child_rows")
                )
                c.checks["same rows written as 3"] = c.result.get("written") == walk.result.get("written")
        cases.append(c)
    return plan


def run_all(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    s = sizes_of(args)
    only = {x.strip() for x in args.only.split(",") if x.strip()} if args.only else None
    known = {x.id for shape in s.shapes for x in full_load_specs(shape, s, args)}
    known |= {
        shaped("1a4", s.big_shape),
        shaped("1l4", s.big_shape),
        "2a",
        "2a+",
        "2b",
        "2c",
        "3",
        "3s",
        "4a",
        "4b",
        "5",
    }
    if only is not None and only - known:
        raise SystemExit(f"--only: no case {', '.join(sorted(only - known))} with --shapes {','.join(s.shapes)}; "
                         f"the cases are {', '.join(sorted(known))}")  # fmt: skip

    def wanted(case_id: str) -> bool:
        return only is None or case_id in only

    cases: list[Case] = []
    plan: ChangePlan | None = None
    emulators: list[dict[str, Any]] = []
    t = args.case_timeout
    limit = int(args.max_rss_gb * 1e9 / 1024)  # kB

    def emulator_info(emu: EmulatorProcess) -> dict[str, Any]:
        return {"name": emu.name, "flows": emu.flows, "engagements_per_flow": emu.engagements_per_flow,
                "latency": emu.latency, "max_concurrency": emu.max_concurrency, "padding": emu.padding,
                "peak_rss_kb": emu.peak_rss_kb, "cpu_seconds": round(emu.final_cpu_seconds, 1),
                "shape": emu.shape}  # fmt: skip

    # ---- 1, 3, 5: full loads on each context shape (one emulator per shape), from one catalogue
    def full_cfg(spec: Spec) -> dict[str, Any]:
        if spec.kind in ("source", "library"):
            return source_cfg(workdir, spec.name, page_size=s.page_size, **spec.options)
        if spec.kind == "floor":
            return {"duckdb": str(workdir / f"{spec.name}.duckdb"), "pages_dir": str(workdir / "floor-pages"),
                    "page_size": s.page_size}  # fmt: skip
        return {"pipeline_name": spec.name, "pipelines_dir": str(workdir / "pipelines"),
                "duckdb": str(workdir / f"{spec.name}.duckdb"), "page_size": s.page_size, **spec.options}  # fmt: skip

    def run_spec(spec: Spec, emu: EmulatorProcess, total: int, scenario: str) -> Case:
        if spec.kind == "floor":
            shutil.rmtree(workdir / "floor-pages", ignore_errors=True)
        c = run_case(Case(spec.id, spec.title, spec.kind, scenario, shape=spec.shape), full_cfg(spec), emu,
                     workdir, t, limit)  # fmt: skip
        if spec.kind == "floor" and not args.keep_files:
            shutil.rmtree(workdir / "floor-pages", ignore_errors=True)
        check_rows(c, total)
        if spec.kind in PATHS:
            c.checks["rows written"] = c.result.get("written", {}).get("engagements") == total
            c.checks["contexts filled"] = c.result.get("db", {}).get("empty_context") == 0
            same = next((x for x in cases if x.id == spec.same_children_as and x.ok), None)
            if same is not None:  # both paths, and every write mode, load the same context rows
                c.checks["child rows as " + same.id] = c.result.get("db", {}).get("child_rows") == same.result[
                    "db"].get("child_rows")  # fmt: skip
            rows = ", ".join(f"{k} {v:,}" for k, v in sorted(c.result.get("written", {}).items()))
            c.notes.append(f"{c.emulator.get('requests'):,} API requests ({c.emulator.get('routes')}); "
                           f"rows written: {rows}")  # fmt: skip
        cases.append(c)
        return c

    for shape in s.shapes:
        specs = [x for x in full_load_specs(shape, s, args) if wanted(x.id)]
        incremental = shape == "default" and (wanted("3") or wanted("3s"))
        if incremental and not any(x.id == "1a" for x in specs):  # 3 and 3s start from 1a's state
            specs.insert(0, next(x for x in full_load_specs(shape, s, args) if x.id == "1a"))
        if not specs:
            continue
        name = "full" if shape == "default" else f"full.{shape}"
        with EmulatorProcess(workdir, name, flows=s.flows, engagements=s.per_flow, seed=args.seed,
                             padding=args.context_padding, shape=shape) as emu:  # fmt: skip
            total = emu.visible()
            for spec in specs:
                run_spec(spec, emu, total, name)
            if incremental:
                plan = run_incremental(args, s, emu, workdir, cases, t, limit)
        emulators.append(emulator_info(emu))

    # ---- 1b did not finish (memory guard or timeout): both paths and 1b again at a size 1b can finish
    naive = next((c for c in cases if c.id == "1b"), None)
    fallback = min(args.baseline_fallback, s.engagements)
    if naive is not None and not naive.ok and fallback and fallback < s.engagements:
        n = fallback // s.flows
        with EmulatorProcess(workdir, "scaled", flows=s.flows, engagements=n, seed=args.seed,
                             padding=args.context_padding) as emu:  # fmt: skip
            total = emu.visible()
            scaled = [
                Spec("1a-s", f"1a at {total:,} engagements (1b did not finish)", "source", "studio_scaled"),
                Spec("1l-s", f"1l at {total:,} engagements", "library", "library_scaled", same_children_as="1a-s"),
                Spec("1b-s", f"1b at {total:,} engagements", "rest_api", "naive_scaled"),
            ]
            for spec in scaled:
                run_spec(spec, emu, total, "scaled")
        emulators.append(emulator_info(emu))

    # ---- both paths at volume: peak RSS must not grow with the number of engagements
    big = [x for x in (Spec(shaped("1a4", s.big_shape), f"1a{'' if s.big_shape == 'default' else '.' + s.big_shape} "
                            f"at {s.big:,} engagements", "source", "studio_big", shape=s.big_shape),
                       Spec(shaped("1l4", s.big_shape), f"1l{'' if s.big_shape == 'default' else '.' + s.big_shape} "
                            f"at {s.big:,} engagements", "library", "library_big", shape=s.big_shape))
           if wanted(x.id)]  # fmt: skip
    if s.big and big:
        with EmulatorProcess(workdir, "big", flows=s.flows, engagements=s.big // s.flows, seed=args.seed,
                             padding=args.context_padding, shape=s.big_shape) as emu:  # fmt: skip
            total = emu.visible()
            for spec in big:
                run_spec(spec, emu, total, "big")
        emulators.append(emulator_info(emu))

    def one_case(case_id: str, title: Callable[[int], str], scenario: str, cfg: dict[str, Any],
                 group: str | None = None, **emulator: Any) -> None:  # fmt: skip
        """A case of this source against an emulator of its own (``scenario``; ``group``: the case's
        scenario label, if another), its rows checked against what the emulator shows."""
        with EmulatorProcess(workdir, scenario, seed=args.seed, padding=args.context_padding, **emulator) as emu:
            total = emu.visible()
            c = run_case(Case(case_id, title(total), "source", group or scenario), cfg, emu, workdir, t, limit)
            check_rows(c, total)
            cases.append(c)
        emulators.append(emulator_info(emu))

    # ---- 2: latency-bound walks, then a concurrency cap below ours
    latency_cases = [("2a", "latency-bound: this source, context_mode=inline", {"context_mode": "inline"}),
                     ("2b", "latency-bound: this source, defaults (fetch_missing)", {})]  # fmt: skip
    if any(wanted(c) for c, _, _ in latency_cases):
        with EmulatorProcess(workdir, "latency", flows=s.latency_flows, engagements=s.latency_per_flow,
                             seed=args.seed, padding=args.context_padding, latency=s.latency) as emu:  # fmt: skip
            total = emu.visible()
            for case_id, title, options in latency_cases:
                if wanted(case_id):
                    cfg = source_cfg(workdir, f"studio_{case_id}", page_size=s.latency_page_size, **options)
                    c = run_case(Case(case_id, title, "source", "latency"), cfg, emu, workdir, t, limit)
                    check_rows(c, total)
                    cases.append(c)
        emulators.append(emulator_info(emu))
    if wanted("2a+"):
        one_case("2a+", lambda total: f"2a with pages of {s.heavy_page_size} ({total:,} engagements; info)",
                 "latency-heavy",
                 source_cfg(workdir, "studio_2a_heavy", page_size=s.heavy_page_size, context_mode="inline"),
                 group="latency", flows=s.latency_flows,
                 engagements=s.latency_pages // s.latency_flows * s.heavy_page_size, latency=s.latency)  # fmt: skip
    if wanted("2c"):
        one_case("2c", lambda _: f"latency-bound, emulator cap {s.throttle_cap} < ours {DEFAULT_MAX_CONCURRENCY} "
                 "(429s), defaults", "throttled", source_cfg(workdir, "studio_2c", page_size=s.latency_page_size),
                 group="latency", flows=s.latency_flows, engagements=s.latency_per_flow, latency=s.latency,
                 max_concurrency=s.throttle_cap)  # fmt: skip

    # ---- 4: steps of changed parents, latency-bound; then a rerun with nothing changed
    if wanted("4a") or wanted("4b"):
        with EmulatorProcess(workdir, "steps", flows=2, engagements=s.steps_parents // 2, seed=args.seed,
                             padding=args.context_padding, latency=s.steps_latency) as emu:  # fmt: skip
            total = emu.visible()
            cfg = source_cfg(workdir, "studio_steps")
            cfg["resources"] = ["flows", "engagements", "engagement_steps"]
            for case_id, title in (("4a", f"steps of {total:,} new parents, {s.steps_latency * 1000:.0f} ms latency"),
                                   ("4b", "4a again, nothing changed: no step requests")):  # fmt: skip
                c = run_case(Case(case_id, title, "source", "steps"), cfg, emu, workdir, t, limit)
                check_rows(c, total)
                cases.append(c)
        emulators.append(emulator_info(emu))

    # ---- 5: many accounts (subaccounts="all"), each read with its own credentials, latency-bound
    if wanted("5"):
        one_case("5", lambda total: f"{s.accounts} accounts x {s.account_flows} flows, "
                 f"{s.account_latency * 1000:.0f} ms latency, subaccounts=all ({total:,} engagements)", "accounts",
                 source_cfg(workdir, "studio_accounts", subaccounts="all", page_size=s.account_page_size),
                 flows=s.account_flows, engagements=s.account_engagements, latency=s.account_latency,
                 subaccounts=s.accounts - 1)  # fmt: skip

    return {"sizes": asdict(s), "cases": cases, "plan": plan, "emulators": emulators}


# ---------------------------------------------------------------------------- targets
@dataclass
class Target:
    name: str
    goal: str
    measured: str
    passed: bool | None  # None: not measured in this run


def ratio(x: float, y: float) -> float:
    return x / y if y else float("inf")


WALL_VS_FLOOR, RSS_MB, BIG_RSS, NAIVE, LOAD_SHARE, WRITE_MODES = 1.5, 500, 1.2, 8, 0.25, 1.5  # issue #17
HEAVY_CHILD_ROWS = 30  # the heavy shape's least child rows per engagement (issue #17)


def per_shape(c: Case, floor: Case | None) -> dict[str, float | None]:
    """Child rows per engagement and the cost of each child row: (wall - the shape's floor wall) /
    child rows, in microseconds (what the connector adds over fetching and storing raw JSON)."""
    rows = c.child_rows
    per = rows / c.expected_rows if rows is not None and c.expected_rows else None
    cost = ((c.wall_seconds - floor.wall_seconds) / rows * 1e6) if rows and floor and floor.ok else None
    return {"child_rows_per_engagement": per, "us_per_child_row": cost}


def full_load_targets(by_id: dict[str, Case], s: Sizes) -> list[Target]:
    """Issue #17's targets for the full loads: per shape and path, at volume, the naive baseline."""
    out: list[Target] = []
    for shape in s.shapes:
        floor = by_id.get(shaped("1c", shape))
        for kind, base in (("library", "1l"), ("source", "1a")):
            c = by_id.get(shaped(base, shape))
            if c is None or not c.ok:
                continue
            who = f"1: {shape}, {PATHS[kind]} ({c.id})"
            if floor and floor.ok:
                r = ratio(c.wall_seconds, floor.wall_seconds)
                out.append(Target(f"{who} wall vs floor ({floor.id})", f"<= {WALL_VS_FLOOR}x",
                                  f"{r:.2f}x ({c.wall_seconds:.1f} s / {floor.wall_seconds:.1f} s)",
                                  r <= WALL_VS_FLOOR))  # fmt: skip
            out.append(Target(f"{who} peak RSS at {c.expected_rows:,}", f"<= {RSS_MB} MB", f"{c.rss_mb:.0f} MB",
                              c.rss_mb <= RSS_MB))  # fmt: skip
            load, run = c.step("load"), c.result.get("run_seconds")
            if load is not None and run:
                share = load / run
                out.append(Target(f"{who} load step share of the run", f"<= {LOAD_SHARE:.0%}",
                                  f"{share:.0%} ({load:.1f} s of {run:.1f} s)", share <= LOAD_SHARE))  # fmt: skip
        cli = by_id.get(shaped("1a", shape))
        if shape == "heavy" and cli and cli.ok and cli.child_rows is not None and cli.expected_rows:
            per = cli.child_rows / cli.expected_rows
            out.append(Target("1: heavy shape child rows per engagement", f">= {HEAVY_CHILD_ROWS}",
                              f"{per:.1f}", per >= HEAVY_CHILD_ROWS))  # fmt: skip
    for kind, base in (("library", "1l"), ("source", "1a")):
        small, big = by_id.get(shaped(base, s.big_shape)), by_id.get(shaped(base + "4", s.big_shape))
        if small and big and small.ok and big.ok:
            r = ratio(big.peak_rss_kb, small.peak_rss_kb)
            out.append(Target(f"1: {s.big_shape}, {PATHS[kind]} peak RSS at {big.expected_rows:,} ({big.id}) vs "
                              f"{small.expected_rows:,} ({small.id})", f"<= {BIG_RSS}x",
                              f"{r:.2f}x ({big.rss_mb:.0f} MB / {small.rss_mb:.0f} MB)", r <= BIG_RSS))  # fmt: skip
    b = by_id.get("1b")
    for kind, base in (("library", "1l"), ("source", "1a")):
        a = by_id.get(base)
        if not (a and b and a.ok):
            continue
        name = f"1: naive (1b) wall vs {PATHS[kind]} ({base})"
        if b.ok:
            r = ratio(b.wall_seconds, a.wall_seconds)
            out.append(Target(name, f">= {NAIVE}x", f"{r:.2f}x ({b.wall_seconds:.1f} s / {a.wall_seconds:.1f} s)",
                              r >= NAIVE))  # fmt: skip
            continue
        a_s, b_s = by_id.get(base + "-s"), by_id.get("1b-s")
        scaled = ""
        passed: bool | None = None
        if a_s and b_s and a_s.ok and b_s.ok:
            r = ratio(b_s.wall_seconds, a_s.wall_seconds)
            scaled = (f"; at {a_s.expected_rows:,} engagements {r:.2f}x ({b_s.wall_seconds:.1f} s / "
                      f"{a_s.wall_seconds:.1f} s, peak RSS {b_s.rss_mb:,.0f} MB / {a_s.rss_mb:,.0f} MB)")  # fmt: skip
            passed = r >= NAIVE
        out.append(Target(name, f">= {NAIVE}x", f"1b did not finish at {a.expected_rows:,}: "
                          f"{b.error or 'failed'}{scaled}", passed))  # fmt: skip
    merge = by_id.get(shaped("1l", s.write_shape))
    for mode in ("scd2", "append"):
        c = by_id.get(shaped(f"1l-{mode}", s.write_shape))
        if c and merge and c.ok and merge.ok:
            r = ratio(c.wall_seconds, merge.wall_seconds)
            out.append(Target(f"5: {s.write_shape}, library, write_mode={mode} ({c.id}) wall vs merge ({merge.id})",
                              f"<= {WRITE_MODES}x", f"{r:.2f}x ({c.wall_seconds:.1f} s / {merge.wall_seconds:.1f} s)",
                              r <= WRITE_MODES))  # fmt: skip
    return out


def targets(run: dict[str, Any], s: Sizes) -> list[Target]:
    by_id: dict[str, Case] = {c.id: c for c in run["cases"]}
    out = full_load_targets(by_id, s)
    a = by_id.get("1a")
    for case_id in ("2a", "2b", "2a+"):
        c = by_id.get(case_id)
        if c and c.ok and s.latency > 0:
            requests = int(c.emulator.get("by_status", {}).get("200", 0))
            ideal = requests / DEFAULT_MAX_CONCURRENCY * s.latency
            extract = c.step("extract") or c.wall_seconds
            r = ratio(extract, ideal)
            c.notes.append(f"ideal {ideal:.2f} s = {requests} requests / {DEFAULT_MAX_CONCURRENCY} x {s.latency} s")
            if case_id == "2a+":  # for orientation: CPU-bound, see BENCHMARKS.md
                c.notes.append(f"extract {r:.2f}x the ideal ({extract:.2f} s / {ideal:.2f} s)")
                continue
            out.append(Target(f"2: {case_id} extract wall vs ideal", "<= 1.5x",
                              f"{r:.2f}x ({extract:.2f} s / ideal {ideal:.2f} s, {requests} requests)",
                              r <= 1.5))  # fmt: skip
    c = by_id.get("2c")
    if c:
        throttled = int(c.emulator.get("by_status", {}).get("429", 0))
        out.append(Target("2: cap below ours (429s): every row", "all rows",
                          f"{c.db_rows} of {c.expected_rows} rows, {throttled} answers 429, "
                          f"{c.wall_seconds:.1f} s", c.ok))  # fmt: skip
    c = by_id.get("4a")
    if c and c.ok and s.steps_latency > 0:
        requests = int(c.emulator.get("by_status", {}).get("200", 0))
        ideal = requests / DEFAULT_MAX_CONCURRENCY * s.steps_latency
        extract = c.step("extract") or c.wall_seconds
        r = ratio(extract, ideal)
        c.notes.append(f"ideal {ideal:.2f} s = {requests} requests / {DEFAULT_MAX_CONCURRENCY} x {s.steps_latency} s")
        measured = f"{r:.2f}x ({extract:.2f} s / ideal {ideal:.2f} s, {requests} requests)"
        out.append(Target("4: 4a steps extract wall vs ideal", "<= 1.5x", measured, r <= 1.5))
    c = by_id.get("4b")
    if c:
        requests = int(c.emulator.get("by_status", {}).get("200", 0))
        written = c.result.get("written", {})
        # the flows list, each flow's v2 fetch (its definition, for the flows table) and its pages
        lists = 1 + 2 + 2 * -(-(s.steps_parents // 2) // DEFAULT_PAGE_SIZE)
        out.append(Target("4: rerun with nothing changed sends no step request", "0 step requests",
                          f"{requests} requests (the {lists} flow and list pages), steps rows written: "
                          f"{written.get('engagement_steps', 0)}",
                          c.ok and requests == lists and not written.get("engagement_steps")))  # fmt: skip
    c = by_id.get("5")
    if c and c.ok and s.account_latency > 0:
        # the ideal at the default limits: every request within the run's bound (each account's own
        # limit, 8, is not the binding one at 50 accounts), and no sooner than one flow's chain of
        # requests (Accounts list, flows list, its pages one after another)
        requests = int(c.emulator.get("by_status", {}).get("200", 0))
        pages = -(-s.account_engagements // s.account_page_size)
        ideal = max(requests / DEFAULT_MAX_TOTAL_CONCURRENCY, 2 + pages) * s.account_latency
        extract = c.step("extract") or c.wall_seconds
        r = ratio(extract, ideal)
        c.notes.append(f"ideal {ideal:.2f} s = max({requests} requests / {DEFAULT_MAX_TOTAL_CONCURRENCY}, "
                       f"{2 + pages} requests in a row) x {s.account_latency} s")  # fmt: skip
        measured = f"{r:.2f}x ({extract:.2f} s / ideal {ideal:.2f} s, {requests} requests)"
        out.append(Target(f"5: {s.accounts} accounts extract wall vs ideal", "<= 1.5x", measured, r <= 1.5))
    inc, plan = by_id.get("3"), run.get("plan")
    if inc and plan is not None:
        written = inc.result.get("written", {}).get("engagements")
        full_time = f", {ratio(inc.wall_seconds, a.wall_seconds):.0%} of the full load's time" if a else ""
        out.append(Target("3: incremental writes only changed rows", "= changed",
                          f"{written} written, {plan.changed} changed ({plan.new} new + {plan.updated} updated)"
                          f"{full_time}", inc.ok))  # fmt: skip
    stop = by_id.get("3s")
    if inc and stop and plan is not None:
        pages = {c.id: c.emulator.get("routes", {}).get("engagement_pages", 0) for c in (inc, stop)}
        can = int(stop.result.get("pages_that_can_change", 0))
        lookahead = s.flows  # one page per flow past the last that can change: it shows the walk may stop
        same = stop.checks.get("same rows as 3", False) and stop.checks.get("same rows written as 3", False)
        out.append(Target("3: stop_at_ended_pages (3s) reads only the pages that can hold changes, same rows as 3",
                          f"<= {can} + {lookahead} list pages, identical tables",
                          f"{pages['3s']} list pages vs {pages['3']} ({can} can hold changes); "
                          f"{stop.result.get('written', {}).get('engagements')} vs "
                          f"{inc.result.get('written', {}).get('engagements')} engagements written; "
                          f"{stop.wall_seconds:.1f} s vs {inc.wall_seconds:.1f} s; tables "
                          f"{'identical' if same else 'DIFFER'}",
                          stop.ok and inc.ok and same and pages["3s"] <= can + lookahead))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- output
def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def case_rows(cases: list[Case]) -> list[list[str]]:
    rows = []
    for c in cases:
        steps = c.result.get("steps", {})
        split = (
            "/".join(fmt(steps.get(k)) for k in ("extract", "normalize", "load"))
            if c.kind != "floor"
            else (f"fetch {fmt(steps.get('fetch'))} / read_json {fmt(steps.get('read_json'))}")
        )
        rows.append([
            c.id, c.title, fmt(c.wall_seconds), fmt(c.result.get("run_seconds")), split, f"{c.rss_mb:.0f}",
            f"{c.db_rows if c.db_rows is not None else '-'} / {c.expected_rows}"
            if c.id not in ("3", "3s")
            else f"{c.result.get('written', {}).get('engagements', '-')} / {c.expected_rows} written",
            "yes" if c.ok else ("did not finish: " + c.killed) if c.killed
            else ("NO: " + (c.error[:80] or ", ".join(k for k, v in c.checks.items() if not v))),
        ])  # fmt: skip
    return rows


CASE_HEADER = ["case", "what", "wall s", "run s", "extract/normalize/load s", "peak RSS MB", "engagements",
               "verified"]  # fmt: skip


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def target_rows(ts: list[Target]) -> list[list[str]]:
    return [[t.name, t.goal, t.measured, "n/a" if t.passed is None else "PASS" if t.passed else "FAIL"] for t in ts]


def emulator_rows(run: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in run["cases"]:
        e = c.emulator
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(e.get("by_status", {}).items()))
        rows.append([c.id, str(e.get("requests", "-")), statuses, str(e.get("max_in_flight", "-")),
                     fmt(e.get("cpu_seconds")), f"{100 * e.get('cpu_seconds', 0) / c.wall_seconds:.0f}%"
                     if c.wall_seconds else "-", fmt(c.cpu_seconds), fmt(c.others_cpu_seconds),
                     fmt(c.loadavg_before, 2)])  # fmt: skip
    return rows


EMULATOR_HEADER = ["case", "API requests", "by status", "max in flight (so far)", "emulator CPU s",
                   "emulator CPU / wall", "case CPU s", "others' CPU s", "load before"]  # fmt: skip


SHAPE_HEADER = ["shape", "list item B", "context B", "child rows / engagement", "floor wall s",
                "library wall s (x floor)", "CLI wall s (x floor)", "library us / child row",
                "CLI us / child row"]  # fmt: skip


def shape_rows(run: dict[str, Any]) -> list[list[str]]:
    """Per context shape: its size, child rows per engagement (counted in the CLI's DuckDB file: the
    four child tables, tombstones excluded, / engagements) and each path's cost per child row."""
    by_id: dict[str, Case] = {c.id: c for c in run["cases"]}
    rows = []
    for shape in run["sizes"]["shapes"]:
        floor, lib, cli = (by_id.get(shaped(x, shape)) for x in ("1c", "1l", "1a"))
        measured = [c for c in (cli, lib) if c is not None and c.ok and c.child_rows is not None]
        if not measured and not (floor and floor.ok):
            continue
        size = run.get("context_bytes", {}).get(shape, {})
        per = per_shape(measured[0], floor)["child_rows_per_engagement"] if measured else None
        rows.append([shape, f"{size.get('engagement', 0):,}", f"{size.get('context', 0):,}", fmt(per),
                     fmt(floor.wall_seconds) if floor and floor.ok else "-", _wall(lib, floor), _wall(cli, floor),
                     _cost(lib, floor), _cost(cli, floor)])  # fmt: skip
    return rows


def _wall(c: Case | None, floor: Case | None) -> str:
    if c is None or not c.ok:
        return "-"
    x = f" ({ratio(c.wall_seconds, floor.wall_seconds):.2f}x)" if floor and floor.ok else ""
    return f"{c.wall_seconds:.1f}{x}"


def _cost(c: Case | None, floor: Case | None) -> str:
    return fmt(per_shape(c, floor)["us_per_child_row"], 2) if c is not None and c.ok else "-"


def throughput(run: dict[str, Any]) -> str:
    floor = next((c for c in run["cases"] if c.id == "1c" and c.ok), None)
    if floor is None:
        return ""
    fetch = floor.result["steps"]["fetch"]
    mb = floor.result.get("bytes", 0) / 1e6
    return (f"Emulator throughput (the floor's sequential walk, one connection): {floor.db_rows / fetch:,.0f} "
            f"engagements/s, {mb / fetch:.1f} MB/s of JSON ({floor.result.get('pages')} pages, {mb:.0f} MB, "
            f"{fetch:.1f} s; {floor.emulator.get('cpu_seconds', 0):.1f} s of emulator CPU).")  # fmt: skip


def report(run: dict[str, Any], m: dict[str, Any], command: str, s: Sizes, ts: list[Target], markdown: bool) -> str:
    table = md_table if markdown else text_table
    v = m["versions"]
    lines = [
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, {m['os']}",
        f"Versions: Python {m['python']}, dlt {v['dlt']}, duckdb {v['duckdb']}, pyarrow {v['pyarrow']}, "
        f"requests {v['requests']}, orjson {v['orjson']}; commit {m['commit']}; {m['date']}",
        f"Command: `{command}`" if markdown else f"Command: {command}",
        f"Sizes: case 1/3 {s.flows} flows x {s.per_flow:,} engagements, PageSize {s.page_size}, zero latency, "
        f"shapes {', '.join(s.shapes)}; {s.big_shape} shape at {s.big:,} "
        f"(1a4/1l4); write modes on the {s.write_shape} shape"
        + f"; case 2 {s.latency_flows} flows x {s.latency_per_flow:,} engagements, PageSize {s.latency_page_size}, "
        f"{s.latency * 1000:.0f} ms per request, our max_concurrency {DEFAULT_MAX_CONCURRENCY}, "
        f"emulator cap in 2c {s.throttle_cap}.",
    ]
    if markdown:
        lines = [f"- {x}" for x in lines]
    out = "\n".join(lines) + "\n\n"
    out += ("### Cases\n\n" if markdown else "") + table(CASE_HEADER, case_rows(run["cases"])) + "\n\n"
    shapes = shape_rows(run)
    if shapes:
        out += ("### Context shapes\n\n" if markdown else "Context shapes\n") + table(SHAPE_HEADER, shapes)
        out += (
            "\n\nus / child row: (the case's wall - the shape's floor wall) / child rows; child rows counted "
            "in the DuckDB file after the load (four child tables, tombstones excluded).\n\n"
        )
    out += ("### Targets\n\n" if markdown else "Targets\n") + table(["target", "goal", "measured", ""],
                                                                  target_rows(ts)) + "\n\n"  # fmt: skip
    out += ("### Emulator and machine\n\n" if markdown else "Emulator (separate process) and machine\n") + table(
        EMULATOR_HEADER, emulator_rows(run)) + "\n"  # fmt: skip
    tp = throughput(run)
    if tp:
        out += "\n" + tp + "\n"
    for c in run["cases"]:
        for note in c.notes:
            out += ("\n- " if markdown else "\n") + f"{c.id}: {note}"
    return out.rstrip() + "\n"


def write_markdown(path: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block + tail)
            return
    path.write_text("# Benchmarks\n\nWritten by `python -m benchmarks.run` (see benchmarks/run.py).\n\n" + block + "\n")


def context_bytes(s: Sizes, seed: int, padding: int, shape: str = "default") -> dict[str, int]:
    """Average size of a list item and of its context, as the emulator renders them (a sample)."""
    import orjson

    from twilio_studio.emulator.api import Credentials, StudioApi

    ds = Dataset(seed=seed, flows=s.flows, engagements_per_flow=s.per_flow, context_padding=padding,
                 context_shape=shape)  # fmt: skip
    api = StudioApi(ds, Credentials(), lambda: ds.start)
    items = []
    for flow in ds.flows:
        body = orjson.loads(api.handle("http://127.0.0.1", f"/v1/Flows/{flow.sid}/Engagements",
                                       "PageSize=200").body)["engagements"]  # fmt: skip
        items.extend(e for e in body if e["context"])
    n = max(1, len(items))
    return {"engagement": sum(len(orjson.dumps(e)) for e in items) // n,
            "context": sum(len(orjson.dumps(e["context"])) for e in items) // n}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))  # fmt: skip
    p.add_argument("--engagements", type=int, default=100_000, help="case 1 and 3, in all (default 100000)")
    p.add_argument("--big", type=int, default=400_000,
                   help="1a4/1l4: both paths at this volume, for the RSS check (default 400000); 0: skip")  # fmt: skip
    p.add_argument("--flows", type=int, default=10, help="flows for case 1 and 3 (default 10)")
    p.add_argument("--page-size", type=int, default=1000, help="case 1 and 3 PageSize (default 1000)")
    p.add_argument("--context-padding", type=int, default=0,
                   help="Dataset(context_padding=N): N extra array rows in each context (default 0)")  # fmt: skip
    p.add_argument("--latency-flows", type=int, default=20)
    p.add_argument("--latency-pages", type=int, default=200, help="case 2 pages in all")
    p.add_argument("--latency-page-size", type=int, default=20, help="case 2 PageSize (2a+: 100)")
    p.add_argument("--latency", type=float, default=0.1, help="case 2 seconds per request (default 0.1)")
    p.add_argument("--throttle-cap", type=int, default=4, help="case 2c emulator concurrency cap (default 4)")
    p.add_argument("--change-share", type=float, default=0.01, help="case 3 share of engagements that change")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds, for the smoke test)")
    p.add_argument("--only", default=None,
                   help="comma-separated case ids (see above), e.g. 1a,1l,1c, 1l.heavy,1l-scd2.heavy or 5")  # fmt: skip
    p.add_argument("--shapes", type=shape_list, default=list(SHAPES),
                   help="context shapes of the case 1 full loads (default light,default,heavy); 1b, 3 and 3s "
                        "run on the default shape")  # fmt: skip
    p.add_argument("--big-shape", choices=SHAPES, default="heavy",
                   help="the context shape of 1a4/1l4 at --big (default heavy; default is faster)")  # fmt: skip
    p.add_argument("--write-shape", choices=SHAPES, default="heavy",
                   help="the shape of 1l-scd2/1l-append vs 1l (default heavy; it must be in --shapes)")  # fmt: skip
    p.add_argument("--no-parquet-baseline", action="store_true", help="skip case 1b+")
    p.add_argument("--baseline-fallback", type=int, default=20_000,
                   help="when 1b does not finish, run 1a and 1b again at this many engagements (0: never)")  # fmt: skip
    p.add_argument("--workdir", default=str(REPO / "bench-results"), help="DuckDB files, logs (default bench-results/)")
    p.add_argument("--out", default=None, help="write the results into this Markdown file (e.g. BENCHMARKS.md)")
    p.add_argument("--json", default=None, help="write the raw results as JSON here")
    p.add_argument("--case-timeout", type=float, default=1800.0, help="seconds before a case is killed (1800)")
    p.add_argument("--max-rss-gb", type=float, default=default_max_rss_gb(),
                   help="kill a case whose RSS passes this (default: half the machine's memory)")  # fmt: skip
    p.add_argument("--keep-files", action="store_true", help="keep the floor's raw JSON pages")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails, not only when a case does")
    args = p.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    # every DuckDB file of an earlier run: a pipeline restores its state from its destination, so a
    # stale file would make a "full" load incremental
    for stale in ["pipelines", "pipelines-3s", "floor-pages", *(p.name for p in workdir.glob("*.duckdb*"))]:
        target = workdir / stale
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    m = machine()
    s = sizes_of(args)
    started = time.perf_counter()
    run = run_all(args, workdir)
    run["context_bytes"] = {shape: context_bytes(s, args.seed, args.context_padding, shape) for shape in s.shapes}
    ts = targets(run, s)
    print()
    print(report(run, m, command, s, ts, markdown=False))
    print(f"(harness total {time.perf_counter() - started:.0f} s; logs and DuckDB files in {workdir})")
    if args.out:
        write_markdown(Path(args.out), report(run, m, command, s, ts, markdown=True))
        print(f"results written into {args.out}")
    if args.json:
        plan = run["plan"]
        Path(args.json).write_text(json.dumps({
            "machine": m, "command": command, "sizes": run["sizes"], "context_bytes": run["context_bytes"],
            "plan": None if plan is None else {**asdict(plan), "changed": plan.changed},
            "cases": [{**asdict(c), "ok": c.ok, "rss_mb": c.rss_mb} for c in run["cases"]],
            "targets": [asdict(t) for t in ts], "emulators": run["emulators"],
            "shapes": [dict(zip(SHAPE_HEADER, r, strict=True)) for r in shape_rows(run)],
        }, indent=2, default=str))  # fmt: skip
    # a case the memory guard stopped is a result (reported as not finished), not a broken harness
    failed_cases = [c.id for c in run["cases"] if not c.ok and not c.killed]
    if failed_cases:
        print(f"cases that failed or did not verify: {', '.join(failed_cases)}", file=sys.stderr)
        return 1
    if args.strict and not all(t.passed for t in ts):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
