"""Benchmark harness: this source vs. a naive dlt ``rest_api`` source vs. a floor, against the emulator.

    python -m benchmarks.run [--engagements 100000] [--big 400000] [--out BENCHMARKS.md] [--quick]

Every case runs in a process of its own (``benchmarks.cases``); the emulator runs in another one
(``benchmarks.emulator_proc``) so its CPU is not charged to the measured process. For each case the
harness measures the process's wall time and peak RSS (its own ``VmHWM``; ``ru_maxrss`` if it died),
checks the rows that reached DuckDB against the emulator's own count, then prints a table and, with
``--out``, writes the results (machine, versions, command) into a Markdown file.
The cases are rows of ``benchmarks.catalogue``; ``benchmarks.harness`` runs them in a loop,
``benchmarks.targets`` judges them, ``benchmarks.render`` writes the tables.

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
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from benchmarks.catalogue import SHAPES, shape_list, sizes_of
from benchmarks.harness import context_bytes, run_all
from benchmarks.machine import REPO, default_max_rss_gb, machine
from benchmarks.render import SHAPE_HEADER, report, shape_rows, write_markdown
from benchmarks.targets import targets


def parser() -> argparse.ArgumentParser:
    """The command line: sizes, the cases to run, where results go."""
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark the command line asks for and reports it; returns the exit code."""
    args = parser().parse_args(argv)

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
