"""How fast the Studio emulator serves Engagements walks: one after another, and several at once.

The emulator runs in its own process (as it does for the CLI's ``twilio-studio emulator``), so the
client's JSON parsing and the server's rendering do not share one interpreter. The client follows
``meta.next_page_url`` with requests and parses pages with orjson, as the source does.

    python -m benchmarks.emulator_throughput [--engagements 50000] [--page-size 1000] [--rounds 3]
                                             [--walkers 8]

Prints, for each round, the engagements per second of one walk over one flow on one connection and
the emulator's CPU seconds (from ``/proc``, Linux); then ``--walkers`` flows walked at once, each on
a connection of its own, as the source walks them (the same engagements in all): the emulator's CPU
per 1,000 engagements in both, so what serving pages at once costs the server shows apart from the
client. Last, small-page requests per second, which exposes per-request overhead (e.g. Nagle's
algorithm delaying small answers by ~40 ms), and the source's client's own CPU per small request,
as it is and with requests reading the proxy variables at every request (its default).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import requests

from twilio_studio.client import StudioClient
from twilio_studio.emulator import Credentials

SERVER = """
import os, sys
from twilio_studio.emulator import Dataset, Emulator
flows, per_flow = int(sys.argv[1]), int(sys.argv[2])
emulator = Emulator(Dataset(seed=1, flows=flows, engagements_per_flow=per_flow)).start()
print(emulator.base_url, os.getpid(), *(f.sid for f in emulator.dataset.flows), flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
emulator.stop()
"""


def walk(session: requests.Session, url: str, params: dict[str, str], limit: int | None = None) -> tuple[int, int]:
    """Follows next_page_url to the end, or until ``limit`` records; returns (records, pages)."""
    records = pages = 0
    next_url: str | None = url
    while next_url is not None and (limit is None or records < limit):
        r = session.get(next_url, params=params if pages == 0 else None, timeout=60)
        r.raise_for_status()
        body = orjson.loads(r.content)
        records += len(body[body["meta"]["key"]])
        pages += 1
        next_url = body["meta"]["next_page_url"]
    return records, pages


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_for(credentials: Credentials) -> requests.Session:
    """A requests session with the emulator's credentials."""
    session = requests.Session()
    session.auth = (credentials.account_sid, credentials.auth_token)
    return session


def main() -> int:
    """Walks the emulator's engagement lists; prints engagements per second and the server's CPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engagements", type=int, default=50_000, help="walked in each measurement")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--walkers", type=int, default=8, help="flows walked at once (0: skip)")
    parser.add_argument("--small-requests", type=int, default=500, help="PageSize=1 requests to time")
    args = parser.parse_args()
    walkers = max(args.walkers, 1)
    per_walker = -(-args.engagements // walkers)  # the walkers read about --engagements in all

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(1 + walkers), str(args.engagements)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url, pid_text, first, *others = server.stdout.readline().split()
        pid = int(pid_text)
        credentials = Credentials()
        session = session_for(credentials)
        params = {"PageSize": str(args.page_size)}
        # the first flow for the walks one after another, the others for the walks at once
        url = f"{base_url}/v1/Flows/{first}/Engagements"

        best, sequential_cpu = 0.0, 0.0
        for n in range(1, args.rounds + 1):
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            records, pages = walk(session, url, params)
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
            if records != args.engagements:
                print(f"error: walked {records} engagements, expected {args.engagements}", file=sys.stderr)
                return 1
            rate = records / elapsed
            best = max(best, rate)
            sequential_cpu = cpu / records * 1000 if n == 1 else min(sequential_cpu, cpu / records * 1000)
            print(
                f"round {n}: {records} engagements in {pages} pages, {elapsed:.2f} s, {rate:,.0f} engagements/s; "
                f"emulator CPU {cpu:.2f} s"
            )
        print(f"best: {best:,.0f} engagements/s (PageSize={args.page_size})")

        if args.walkers > 0:
            sessions = [session_for(credentials) for _ in others]
            urls = [f"{base_url}/v1/Flows/{sid}/Engagements" for sid in others]
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            with ThreadPoolExecutor(len(urls)) as pool:
                done = list(pool.map(lambda i: walk(sessions[i], urls[i], params, per_walker), range(len(urls))))
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - c0
            records = sum(r for r, _ in done)
            print(
                f"{len(urls)} walks at once: {records} engagements in {sum(p for _, p in done)} pages, "
                f"{elapsed:.2f} s, {records / elapsed:,.0f} engagements/s; emulator CPU {cpu:.2f} s"
            )
            if records and sequential_cpu:
                at_once = cpu / records * 1000
                print(
                    f"emulator CPU per 1,000 engagements: {sequential_cpu:.3f} s one walk at a time, "
                    f"{at_once:.3f} s {len(urls)} at once ({at_once / sequential_cpu:.2f}x)"
                )

        small = f"{url}?PageSize=1"
        t0 = time.perf_counter()
        for _ in range(args.small_requests):
            session.get(small, timeout=10).raise_for_status()
        elapsed = time.perf_counter() - t0
        print(
            f"small pages: {args.small_requests / elapsed:,.0f} requests/s "
            f"({elapsed / args.small_requests * 1000:.2f} ms each, PageSize=1)"
        )
        # the source's client's own CPU per request: as it is (the environment read once per session),
        # then with requests reading the proxy variables at every request again (trust_env)
        client, n = StudioClient(base_url, credentials.account_sid, credentials.auth_token), args.small_requests
        cpu_ms: list[float] = []
        for trust_env in (False, True, False, True):
            client._session().trust_env = trust_env
            c0 = time.process_time()
            for _ in range(n):
                client.get(small, "small page")
            cpu_ms.append((time.process_time() - c0) / n * 1000)
        print(
            f"client CPU per small request (StudioClient): {min(cpu_ms[0::2]):.2f} ms with the environment "
            f"read once, {min(cpu_ms[1::2]):.2f} ms read at every request (best of two each)"
        )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
