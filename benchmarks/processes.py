"""The harness's child processes: the emulator's and each case's.

The emulator's (``benchmarks.emulator_proc``) and each case's (``benchmarks.cases``): their
environment, their exit and peak RSS, a memory watch that stops a runaway case, and the RSS peak
of each dlt step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.expected import visible
from benchmarks.machine import REPO
from twilio_studio.emulator import Subaccount
from twilio_studio.emulator.dataset import Dataset

# environment variables that would change what dlt or the source do: cases run with defaults
SCRUBBED_ENV_PREFIXES = ("SOURCES__", "DESTINATION__", "NORMALIZE__", "LOAD__", "EXTRACT__", "DATA_WRITER__",
                         "RUNTIME__", "TWILIO_STUDIO_")  # fmt: skip


def child_env() -> dict[str, str]:
    """The environment of a child process: no config that would change dlt or the source, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # no phoning home from the measured processes
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    # an installed package has its bytecode compiled (pip does it); a shell or CI that sets
    # PYTHONDONTWRITEBYTECODE would have every case compile this repository's modules again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_bytecode() -> None:
    """Compiles the repository's modules once, as ``pip install`` does for an installed package."""
    import compileall

    for folder in ("sources", "benchmarks"):
        compileall.compile_dir(str(REPO / folder), quiet=1)


def _wait4(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int, bool]:
    """Waits for ``proc`` with os.wait4: (exit code, peak RSS in kB, timed out)."""
    code, rss, timed_out, _ = wait4_usage(proc, timeout)
    return code, rss, timed_out


def wait4_usage(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, int, bool, float]:
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
    """Samples a process's RSS four times a second into a CSV timeline and kills it past ``limit_kb``.

    One runaway case must not push the machine (and its other users) into the OOM killer.
    """

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
        """Stops the sampling and waits for its thread."""
        self._stop.set()
        self._thread.join()


def phase_peaks(casedir: Path) -> tuple[dict[str, int], str | None]:
    """Peak RSS (kB) of each dlt step, and the step the case was in last.

    Read from the RSS timeline and the phases the case recorded.
    """
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
        """The emulator's clock now."""
        return datetime.fromisoformat(self._call("GET", "/_emulator/clock")["now"].replace("Z", "+00:00"))

    def advance(self, seconds: float) -> datetime:
        """Moves the emulator's clock ``seconds`` forward; returns the new time."""
        now = self._call("POST", f"/_emulator/clock?advance={seconds}")["now"]
        return datetime.fromisoformat(now.replace("Z", "+00:00"))

    def stats(self) -> dict[str, Any]:
        """The emulator's traffic counters (``/_emulator/stats``)."""
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
        """How many engagements of the emulator's datasets are visible at its clock's time."""
        now = self.clock()
        return sum(visible(d, now) for d in self.datasets)

    def stop(self) -> None:
        """Ends the emulator process (it serves until its stdin closes) and records its CPU and peak RSS."""
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
