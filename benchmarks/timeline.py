"""Where a full load waits: requests at the API by kind, our CPU and the emulator's, bin by bin.

    python -m benchmarks.timeline [--shape light] [--flows 10] [--engagements 4000] [--path library|cli]
                                  [--bin 0.5] [--json FILE]

The emulator runs in its own process (``benchmarks.emulator_proc``); this process loads its
engagements with this project's source, from Python (``pipeline.run``, dlt's defaults) or the way
``twilio-studio run`` does (``run_pipeline``), as ``benchmarks.cases`` loads them. Every request of the
source's client is recorded: when it got its request slot, when its answer ended, and its route (the
emulator process's names: ``engagement_pages``, ``contexts``, ...).
Both processes' CPU is sampled 4 times a second. Printed per bin: list pages and Context requests at
the API (slot held) on average, answers ended, and each process's CPU as a share of one core. Then
the extract's wall over the emulator's CPU during the run: the emulator's pages are most of a load's
work, and the ratio moves less with the machine's speed than either time alone (1.0: the walk kept
the emulator busy throughout).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.cases import source_and_pipeline
from benchmarks.emulator_proc import ROUTES
from benchmarks.processes import EmulatorProcess

Events = list[tuple[float, float, str]]  # (slot taken, answer ended, route), seconds from the start
Samples = list[tuple[float, float, float]]  # (time, our CPU s, the emulator's CPU s)


def record_requests(t0: float) -> Events:
    """Wraps the client's request so that each one appends (slot taken, answer ended, its route)."""
    from twilio_studio import client

    events: Events = []
    local = threading.local()
    acquire, attempt = client.AdaptiveLimit.acquire, client.StudioClient._attempt

    def timed_acquire(self: Any, ahead: bool = False) -> None:
        acquire(self, ahead)
        local.taken = time.perf_counter() - t0

    def timed_attempt(self: Any, url: str, ahead: bool = False) -> Any:
        try:
            return attempt(self, url, ahead)
        finally:
            path = urlsplit(url).path
            route = next((name for name, pattern in ROUTES if pattern.search(path)), "other")
            events.append((local.taken, time.perf_counter() - t0, route))

    client.AdaptiveLimit.acquire = timed_acquire  # type: ignore[method-assign]
    client.StudioClient._attempt = timed_attempt  # type: ignore[method-assign]
    return events


def bins(events: Events, samples: Samples, end: float, width: float) -> list[dict[str, float]]:
    """Per bin of ``width`` seconds: requests at the API by route, answers ended, both processes' CPU %."""
    out = []
    for i in range(int(end / width) + 1):
        a, b = i * width, (i + 1) * width
        row: dict[str, float] = {"t": round(a, 2)}
        for route in ("engagement_pages", "contexts"):
            held = sum(min(b, e) - max(a, s) for s, e, r in events if r == route and s < b and e > a)
            row[f"{route}_at_api"] = round(held / width, 1)
            row[f"{route}_ended"] = sum(1 for _, e, r in events if r == route and a <= e < b)
        inside = [s for s in samples if a <= s[0] <= b + 0.26]
        dt = inside[-1][0] - inside[0][0] if len(inside) >= 2 else 0.0
        row["ours_cpu_pct"] = round((inside[-1][1] - inside[0][1]) / dt * 100) if dt else 0
        row["emulator_cpu_pct"] = round((inside[-1][2] - inside[0][2]) / dt * 100) if dt else 0
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs one load against a fresh emulator process and prints its timeline."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="light", choices=("light", "default", "heavy"))
    p.add_argument("--flows", type=int, default=10)
    p.add_argument("--engagements", type=int, default=4000, help="per flow (default 4000: 4 pages each)")
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--path", default="library", choices=("library", "cli"))
    p.add_argument("--bin", type=float, default=0.5, help="seconds per printed line")
    p.add_argument("--json", type=Path, help="also write the bins and totals here")
    args = p.parse_args(argv)

    with (
        tempfile.TemporaryDirectory() as work,
        EmulatorProcess(
            Path(work), "timeline", flows=args.flows, engagements=args.engagements, seed=7, padding=0, shape=args.shape
        ) as emulator,
    ):
        t0 = time.perf_counter()
        samples: Samples = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter() - t0, time.process_time(), emulator.cpu_seconds()))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        from twilio_studio.cli import run_pipeline

        events = record_requests(t0)
        source, pipeline = source_and_pipeline({
            "base_url": emulator.base_url, "pipeline_name": "timeline", "pipelines_dir": work,
            "duckdb": str(Path(work) / "timeline.duckdb"), "source_options": {"page_size": args.page_size},
        })  # fmt: skip
        started = time.perf_counter() - t0
        if args.path == "cli":
            run_pipeline(pipeline, source)
        else:
            pipeline.run(source)
        ended = time.perf_counter() - t0
        stop.set()
        sampler.join()
        trace = pipeline.last_trace
        assert trace is not None
        steps = {s.step: (s.finished_at - s.started_at).total_seconds() for s in trace.steps if s.finished_at}

    rows = bins(events, samples, ended, args.bin)
    for r in rows:
        print(
            f"{r['t']:6.1f} s  list pages at the API {r['engagement_pages_at_api']:4.1f}  "
            f"contexts {r['contexts_at_api']:5.1f}  "
            f"ended: pages {r['engagement_pages_ended']:2.0f} contexts {r['contexts_ended']:3.0f}  "
            f"CPU: ours {r['ours_cpu_pct']:4.0f}%  emulator {r['emulator_cpu_pct']:4.0f}%"
        )
    during = [s for s in samples if started <= s[0] <= ended]
    emulator_cpu = during[-1][2] - during[0][2]
    totals = {
        "run_seconds": round(ended - started, 2),
        "steps": {k: round(v, 2) for k, v in steps.items()},
        "requests": {route: sum(1 for *_, r in events if r == route) for route in {r for *_, r in events}},
        "ours_cpu_seconds": round(during[-1][1] - during[0][1], 2),
        "emulator_cpu_seconds": round(emulator_cpu, 2),
        "extract_over_emulator_cpu": round(steps["extract"] / emulator_cpu, 2) if emulator_cpu else None,
    }
    print(json.dumps(totals))
    if args.json:
        args.json.write_text(json.dumps({"bins": rows, "totals": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
