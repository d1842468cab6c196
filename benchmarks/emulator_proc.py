"""The Studio emulator in a process of its own, for the benchmark harness.

    python -m benchmarks.emulator_proc --flows 10 --engagements 10000 [--context-padding N]
                                       [--latency S] [--max-concurrency N] [--seed 7] [--subaccounts N]

Binds a free loopback port, prints one JSON line ``{"base_url": ..., "pid": ...}`` once it accepts
connections, and serves until its stdin closes (so it never outlives the harness) or SIGTERM. Each
line ``routes`` on stdin is answered with one JSON line on stdout: the API requests so far by route
(``flows``, ``engagement_pages``, ``contexts``, ``steps``, ``other``), which the emulator's HTTP stats
do not split.
``twilio-studio emulator`` would do too, but it takes a fixed port and has no ``context_padding``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from collections import Counter

from twilio_studio.emulator import Dataset, Emulator, Faults, Subaccount

ROUTES = (
    ("flows", re.compile(r"^/v[12]/Flows/?$")),
    ("engagement_pages", re.compile(r"^/v1/Flows/[^/]+/Engagements/?$")),
    ("execution_pages", re.compile(r"^/v2/Flows/[^/]+/Executions/?$")),
    ("contexts", re.compile(r"/Context/?$")),
    ("steps", re.compile(r"/Steps/?$")),
)


def routes(paths: list[str]) -> dict[str, int]:
    """API requests by route (list pages, contexts, steps), from the paths the server recorded."""
    out: Counter[str] = Counter()
    for path in list(paths):  # a copy: the server's threads append meanwhile
        out[next((name for name, pattern in ROUTES if pattern.search(path)), "other")] += 1
    return dict(out)


def build(args: argparse.Namespace) -> Emulator:
    """The emulator the command line describes (dataset, faults, subaccounts)."""
    dataset = Dataset(
        seed=args.seed,
        flows=args.flows,
        engagements_per_flow=args.engagements,
        context_padding=args.context_padding,
        context_shape=args.context_shape,
    )
    faults = Faults(latency=args.latency, max_concurrency=args.max_concurrency, seed=args.seed)
    return Emulator(dataset, faults=faults, subaccounts=subaccounts(args))


def subaccounts(args: argparse.Namespace) -> list[Subaccount]:
    """``--subaccounts N``: N subaccounts of the same size as the parent (the harness builds the same)."""
    return Subaccount.generate(
        args.subaccounts, seed=args.seed + 1000, flows=args.flows, engagements_per_flow=args.engagements,
        context_padding=args.context_padding,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Serves the emulator until stdin closes or SIGTERM, after one JSON line with its base URL and pid."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--flows", type=int, required=True)
    p.add_argument("--engagements", type=int, required=True, help="per flow")
    p.add_argument("--context-padding", type=int, default=0, help="Dataset(context_padding=N)")
    p.add_argument("--context-shape", default="default", help="Dataset(context_shape=...): light, default or heavy")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to each API request")
    p.add_argument("--max-concurrency", type=int, default=None, help="above this many in flight: 429")
    p.add_argument("--subaccounts", type=int, default=0, help="subaccounts, each with flows x engagements")
    args = p.parse_args(argv)

    emulator = build(args).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def wait_stdin() -> None:
        for line in sys.stdin:  # EOF when the harness closes our stdin or dies
            if line.strip() == "routes":
                print(json.dumps(routes(emulator.stats.paths)), flush=True)
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    print(json.dumps({"base_url": emulator.base_url, "pid": os.getpid()}), flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
