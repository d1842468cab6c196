"""Where case 1a's time goes: the source's full load sampled with py-spy, every thread, by function.

    pip install py-spy   # a profiling tool only: the harness itself never needs it
    python -m benchmarks.profile_1a [--engagements 100000] [--workdir bench-results/profile]
    python -m benchmarks.profile_1a --flows 20 --engagements 20000 --latency 0.1 --page-size 100 \
        --context-mode inline      # the shape of case 2a

Starts the emulator in its own process (as ``benchmarks.run`` does), runs ``benchmarks.cases source``
under ``py-spy record --threads`` and prints, per thread group (main thread = dlt's extract and the
Arrow tables, ``studio-flow`` = page walks and context normalization, ``studio-context`` = Context
requests, ``dlt-pool`` = load jobs in DuckDB), the functions that hold the samples. Without py-spy it
falls back to cProfile, which sees the main thread only.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import source_cfg
from benchmarks.machine import REPO
from benchmarks.processes import EmulatorProcess, child_env

# functions worth a line in the summary, inclusive of what they call
FOCUS = [
    "Pipeline.extract", "Pipeline.normalize", "Pipeline.load", "twilio_studio_source.<locals>.runs",
    "RecordTables.add", "RecordTables.tables", "Columns.table", "ArrowExtractor.write_items",
    "ListingWalker._walk_flow", "StudioClient.pages", "StudioClient.get", "ListingWalker._rows",
    "engagement_row", "context_children", "widget_rows", "leaves", "map_rows", "orjson.loads",
    "_urllib3_request_context", "ListingWalker._fetch_context", "DuckDbCopyJob.run",
    "DuckDbSqlClient.execute_query", "_engagement_count",
]  # fmt: skip


def summarize(raw: Path, top: int = 25) -> str:
    """Per thread group: samples, the FOCUS functions (inclusive) and the top functions (self)."""
    total: collections.Counter[str] = collections.Counter()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    leaf: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        group = re.sub(r"\d+", "N", frames[0].split(": ", 1)[-1])
        total[group] += n
        names = [re.sub(r" \(.*", "", f) for f in frames[1:]]
        for name in set(names):
            inclusive[group][name] += n
        where = re.sub(r":\d+\)$", ")", re.sub(r" \(.*?(site-packages|sources)/", " (", frames[-1]))
        leaf[where] += n
    grand = sum(total.values())
    out = [f"{grand} samples (50 per second per busy thread)"]
    for group, n in total.most_common():
        out.append(f"\n{group}: {n} samples, {100 * n / grand:.0f}% of all")
        for name in sorted(FOCUS, key=lambda f: -inclusive[group][f]):
            if inclusive[group][name]:
                out.append(f"  {100 * inclusive[group][name] / n:5.1f}%  {name}")
    out.append(f"\nTop {top} functions by own samples (all threads):")
    out += [f"  {100 * n / grand:5.1f}%  {name}" for name, n in leaf.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Runs case 1a under py-spy; prints where each thread group's time goes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engagements", type=int, default=100_000)
    p.add_argument("--flows", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", default=str(REPO / "bench-results" / "profile"))
    p.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    p.add_argument("--latency", type=float, default=0.0, help="emulator seconds per request (case 2: 0.1)")
    p.add_argument("--page-size", type=int, default=None, help="source page_size (case 2: 100)")
    p.add_argument("--context-mode", default=None, help="source context_mode (case 2a: inline)")
    p.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)")
    args = p.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    spy = shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                     if (Path(sys.executable).parent / "py-spy").exists() else None)  # fmt: skip
    with EmulatorProcess(workdir, "profile", flows=args.flows, engagements=args.engagements // args.flows,
                         seed=args.seed, padding=0, latency=args.latency) as emu:  # fmt: skip
        options = {"page_size": args.page_size, "context_mode": args.context_mode}
        options = {k: v for k, v in options.items() if v is not None}
        cfg = {"base_url": emu.base_url, **source_cfg(workdir, "profile", **options)}
        (workdir / "config.json").write_text(json.dumps(cfg))
        case = [sys.executable, "-m", "benchmarks.cases", "source", str(workdir / "config.json"),
                str(workdir / "result.json")]  # fmt: skip
        if spy:
            raw = workdir / "1a.raw"
            gil = ["--gil"] if args.gil else []
            cmd = [spy, "record", "--threads", "--nonblocking", *gil, "-r", str(args.rate), "-f", "raw", "-o", str(raw),
                   "--", *case]  # fmt: skip
        else:
            prof = workdir / "1a.prof"
            cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), *case[1:]]
        with (workdir / "profile.log").open("w") as log:
            code = subprocess.run(cmd, cwd=workdir, env=child_env(), stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        print(f"the profiled run failed; see {workdir / 'profile.log'}", file=sys.stderr)
        return 1
    result = json.loads((workdir / "result.json").read_text())
    print(f"1a at {args.engagements:,} engagements: run {result['run_seconds']:.1f} s, steps "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result["steps"].items()))  # fmt: skip
    if spy:
        print(summarize(raw))
    else:
        import pstats

        print("py-spy not found: cProfile of the main thread only (extract's consumer side, normalize, load)")
        pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
