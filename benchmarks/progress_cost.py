"""What the CLI's progress display costs: CPU per live frame and per log line, and per run end to end.

    python -m benchmarks.progress_cost [--runs 3] [--flows 4] [--engagements 10000]

First, in this process: the CPU time of one live frame (a snapshot of 4, 100 and 2,000 flows, its
table rendered for a 120-column terminal) and of one ``--progress log`` line. Then, with ``--runs``
above 0, ``twilio-studio run`` against an emulator in a process of its own, the modes taking turns:
``off`` and ``live`` in a pseudo-terminal, ``log`` in a pipe; each run's CPU time (user + system, the
child's own rusage, steadier than wall time on a shared machine) and wall time, and the medians.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from rich.console import Console

from twilio_studio.progress import REFRESHES_PER_SECOND, Rates, live_view, summary_line
from twilio_studio.watch import FlowProgress, Snapshot, StepProgress

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "emulator-auth-token"
MODES = (("off", True), ("live", True), ("log", False))  # (--progress, in a pseudo-terminal)


def frame_costs(repeat: int = 200) -> None:
    """Prints what one frame of the progress display costs to render, for 4, 100 and 2,000 flows."""
    for flows in (4, 100, 2000):
        walks = tuple(
            FlowProgress(f"FW{i:032x}", "engagements", 40, 40_000, 39_000, i % 2 == 0, 3.0) for i in range(flows)
        )
        step = StepProgress("extract", {"Resources": 1}, {"Resources": 3}, False, 0.0)
        snap = Snapshot(walks, 5000, 3, 8, 8, (step,))
        rates = Rates(time.monotonic())
        console = Console(file=io.StringIO(), force_terminal=True, width=120)
        started = time.process_time()
        for _ in range(repeat):
            now = time.monotonic()
            rates.observe(snap, now)
            console.print(live_view(snap, rates, now, "benchmark"))
        frame = (time.process_time() - started) / repeat
        started = time.process_time()
        for _ in range(repeat):
            summary_line(snap, rates, time.monotonic())
        line = (time.process_time() - started) / repeat
        share = frame * REFRESHES_PER_SECOND * 100
        print(
            f"{flows:>5} flows: a live frame {frame * 1000:.1f} ms CPU ({share:.1f}% of a core at "
            f"{REFRESHES_PER_SECOND} a second), a log line {line * 1000:.3f} ms"
        )


def start_emulator(flows: int, engagements: int) -> tuple[subprocess.Popen[str], str]:
    """Starts an emulator process with ``flows`` flows of ``engagements`` each; returns it and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.emulator_proc", "--flows", str(flows), "--engagements", str(engagements)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, str(json.loads(proc.stdout.readline())["base_url"])


def one_run(base_url: str, mode: str, terminal: bool, workdir: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `twilio-studio run --progress MODE` from scratch."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")}
    env.update(
        SOURCES__TWILIO_STUDIO__ACCOUNT_SID=ACCOUNT_SID, SOURCES__TWILIO_STUDIO__AUTH_TOKEN=AUTH_TOKEN,
        SOURCES__TWILIO_STUDIO__BASE_URL=base_url, TERM="xterm-256color",
    )  # fmt: skip
    args = [sys.executable, "-m", "twilio_studio.cli", "run", "--pipelines-dir", str(workdir / "p"), "--progress", mode]
    started = time.monotonic()
    if terminal:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        proc = subprocess.Popen(args, cwd=workdir, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        while True:  # the terminal's reader: what a user's terminal would read
            try:
                if not os.read(master, 65536):
                    break
            except OSError:  # EIO: the child closed the terminal
                break
        _, status, usage = os.wait4(proc.pid, 0)
        os.close(master)
    else:
        proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"twilio-studio run --progress {mode} failed with exit code {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started


def run_costs(runs: int, flows: int, engagements: int) -> None:
    """Prints the CPU and wall time of ``runs`` end-to-end runs in each progress mode."""
    emulator, base_url = start_emulator(flows, engagements)
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode, _ in MODES}
    try:
        with tempfile.TemporaryDirectory(prefix="progress-cost-") as tmp:
            for n in range(runs):
                for mode, terminal in MODES:
                    cpu, wall = one_run(base_url, mode, terminal, Path(tmp) / mode)
                    results[mode].append((cpu, wall))
                    print(f"run {n + 1}, --progress {mode:<4}: {cpu:6.1f} s CPU, {wall:6.1f} s wall", flush=True)
    finally:
        assert emulator.stdin is not None
        emulator.stdin.close()
        emulator.wait(timeout=30)
    for mode, _ in MODES:
        cpu = statistics.median(c for c, _ in results[mode])
        wall = statistics.median(w for _, w in results[mode])
        print(f"median --progress {mode:<4}: {cpu:6.1f} s CPU, {wall:6.1f} s wall")


def main() -> None:
    """Measures the progress display's cost: frame costs, then end-to-end runs unless ``--runs 0``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="end-to-end runs per mode (0: frame costs only)")
    p.add_argument("--flows", type=int, default=4)
    p.add_argument("--engagements", type=int, default=10_000, help="engagements per flow")
    args = p.parse_args()
    frame_costs()
    if args.runs > 0:
        run_costs(args.runs, args.flows, args.engagements)


if __name__ == "__main__":
    main()
