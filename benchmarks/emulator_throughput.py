"""How fast the Studio emulator serves a full Engagements walk: 1 flow x 50,000 engagements, 1,000 per page.

The emulator runs in its own process (as it does for the CLI's ``twilio-studio emulator``), so the
client's JSON parsing and the server's rendering do not share one interpreter. The client follows
``meta.next_page_url`` with requests and parses pages with orjson, as the source does.

    python benchmarks/emulator_throughput.py [--engagements 50000] [--page-size 1000] [--rounds 3]

Prints engagements per second for each round and the best; also small-page requests per second,
which exposes per-request overhead (e.g. Nagle's algorithm delaying small answers by ~40 ms).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import orjson
import requests

from twilio_studio.emulator import Credentials

SERVER = """
import sys
from twilio_studio.emulator import Dataset, Emulator
emulator = Emulator(Dataset(seed=1, flows=1, engagements_per_flow=int(sys.argv[1]))).start()
print(emulator.base_url, emulator.dataset.flows[0].sid, flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
emulator.stop()
"""


def walk(session: requests.Session, url: str, params: dict[str, str]) -> tuple[int, int]:
    """Follows next_page_url to the end; returns (records, pages)."""
    records = pages = 0
    next_url: str | None = url
    while next_url is not None:
        r = session.get(next_url, params=params if pages == 0 else None, timeout=60)
        r.raise_for_status()
        body = orjson.loads(r.content)
        records += len(body[body["meta"]["key"]])
        pages += 1
        next_url = body["meta"]["next_page_url"]
    return records, pages


def main() -> int:
    """Walks the emulator's engagement list ``--rounds`` times; prints the engagements served per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engagements", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small-requests", type=int, default=500, help="PageSize=1 requests to time")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.engagements)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url, flow_sid = server.stdout.readline().split()
        credentials = Credentials()
        session = requests.Session()
        session.auth = (credentials.account_sid, credentials.auth_token)
        url = f"{base_url}/v1/Flows/{flow_sid}/Engagements"

        best = 0.0
        for n in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            records, pages = walk(session, url, {"PageSize": str(args.page_size)})
            elapsed = time.perf_counter() - t0
            if records != args.engagements:
                print(f"error: walked {records} engagements, expected {args.engagements}", file=sys.stderr)
                return 1
            rate = records / elapsed
            best = max(best, rate)
            print(f"round {n}: {records} engagements in {pages} pages, {elapsed:.2f} s, {rate:,.0f} engagements/s")
        print(f"best: {best:,.0f} engagements/s (PageSize={args.page_size})")

        t0 = time.perf_counter()
        for _ in range(args.small_requests):
            session.get(url, params={"PageSize": "1"}, timeout=10).raise_for_status()
        elapsed = time.perf_counter() - t0
        print(
            f"small pages: {args.small_requests / elapsed:,.0f} requests/s "
            f"({elapsed / args.small_requests * 1000:.2f} ms each, PageSize=1)"
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
