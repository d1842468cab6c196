"""Time and memory budgets of single behaviours, measured here rather than asserted in the tests.

    python -m benchmarks.budgets [--json RESULT.json]

The test suite proves each behaviour (a 429 is retried no sooner than its Retry-After, a trickling
body is cut off by ``request_timeout``, freed memory is handed back, a run after kill -9 finishes
the load); how long it takes or how much memory it frees depends on the machine, so the numbers
live here with their targets, as the benchmark's other targets do (BENCHMARKS.md):

``retry_after``      a load whose list is throttled twice with ``Retry-After: 1``: its wall time
                     must be at least 2 s (the two waits), else the client did not honour the header.
``trickle_timeout``  a load whose first list answer trickles in over 4 s, with
                     ``request_timeout=0.5``: under 3.5 s, else the timeout bounds each read only.
``freed_memory``     in a fresh process, 100 MB of 1 KB blocks freed, then ``release_freed_memory``:
                     more than 50 MB of resident memory goes back to the OS (glibc only).

``benchmarks/run.py`` can call ``measure_all()`` and add its rows to its targets table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import dlt

from twilio_studio import twilio_studio_source
from twilio_studio.emulator import Credentials, Dataset, Emulator, Faults


@dataclass(frozen=True)
class Budget:
    """One measurement against its target."""

    id: str
    value: float | None  # None: not measurable on this platform
    unit: str
    target: str
    ok: bool


def _pipeline(workdir: Path, name: str) -> Any:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(workdir / f"{name}.duckdb")),
        dataset_name="twilio_studio",
        pipelines_dir=str(workdir / "pipelines"),
    )


def _source(base_url: str, **options: Any) -> Any:
    creds = Credentials()
    return twilio_studio_source(
        base_url=base_url, account_sid=creds.account_sid, auth_token=creds.auth_token, **options
    )


def retry_after(workdir: Path) -> Budget:
    """Wall time of a load whose engagement list answers 429 (Retry-After: 1) twice."""
    with Emulator(Dataset(seed=11, flows=1, engagements_per_flow=20), faults=Faults(retry_after=1)) as emu:
        emu.inject("throttle", times=2, path_contains="/Engagements")
        started = time.monotonic()
        _pipeline(workdir, "retry_after").run(_source(emu.base_url, max_concurrency=1))
        seconds = time.monotonic() - started
    return Budget("retry_after", round(seconds, 2), "s", ">= 2.0 (two waits of Retry-After: 1)", seconds >= 2.0)


FLOW = "FW" + "2" * 32


def _engagement(base: str, n: int) -> dict[str, Any]:
    sid = f"FN{n:032x}"
    return {
        "sid": sid, "account_sid": Credentials().account_sid, "flow_sid": FLOW, "contact_sid": f"FC{n:032x}",
        "contact_channel_address": "+15550000000", "status": "ended", "context": {"flow": {"data": {"k": n}}},
        "date_created": "2026-03-01T10:00:00Z", "date_updated": "2026-03-01T10:05:00Z",
        "url": f"{base}/v1/Flows/{FLOW}/Engagements/{sid}", "links": {},
    }  # fmt: skip


def _trickle_server() -> tuple[ThreadingHTTPServer, Callable[[], int]]:
    """A loopback Studio whose first engagement list trickles 20 pieces over 4 s; the retry is quick."""
    first = f"/v1/Flows/{FLOW}/Engagements?PageSize=1000"
    served = {"lists": 0}

    def body(base: str, path: str) -> bytes:
        if path == f"/v1/Flows/{FLOW}":
            record: dict[str, Any] = {
                "sid": FLOW, "account_sid": Credentials().account_sid, "friendly_name": "Trickle",
                "status": "published", "version": 1, "date_created": "2026-01-01T00:00:00Z",
                "date_updated": "2026-01-02T00:00:00Z", "url": f"{base}/v1/Flows/{FLOW}", "links": {},
            }  # fmt: skip
            return json.dumps(record).encode()
        engagements = [_engagement(base, n) for n in range(1, 30)]
        meta = {"first_page_url": base + first, "key": "engagements", "next_page_url": None, "page": 0,
                "page_size": 1000, "previous_page_url": None, "url": base + first}  # fmt: skip
        return json.dumps({"engagements": engagements, "meta": meta}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            host, port = cast(tuple[str, int], self.server.server_address)[:2]
            if self.path not in (first, f"/v1/Flows/{FLOW}"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            raw = body(f"http://{host!s}:{port}", self.path)
            trickle = self.path == first and served["lists"] == 0
            served["lists"] += self.path == first
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            step = max(1, len(raw) // 20)
            try:
                for n in range(0, len(raw), step):
                    self.wfile.write(raw[n : n + step])
                    self.wfile.flush()
                    if trickle:
                        time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server, lambda: served["lists"]


@contextmanager
def _serving(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def trickle_timeout(workdir: Path) -> Budget:
    """Wall time of a load whose first list answer trickles in over 4 s, with request_timeout=0.5."""
    server, lists = _trickle_server()
    with _serving(server) as base_url:
        started = time.monotonic()
        _pipeline(workdir, "trickle").run(_source(base_url, flow_sids=[FLOW], request_timeout=0.5))
        seconds = time.monotonic() - started
    ok = seconds < 3.5 and lists() == 2
    return Budget("trickle_timeout", round(seconds, 2), "s", "< 3.5 (a 4 s trickle, request_timeout=0.5)", ok)


FREED_MEMORY_CHILD = """
from twilio_studio.memory import release_freed_memory

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

# 100 MB of 1 KB blocks from the C heap, and one block after them that stays: glibc does not hand
# back the freed pages below a block in use by itself
blocks = [bytes(1024 + n % 7) for n in range(100_000)]
pin = bytes(1024)
del blocks
before = rss_kb()
release_freed_memory()
print(before - rss_kb())
"""


def freed_memory(workdir: Path) -> Budget:
    """Resident memory handed back by ``release_freed_memory`` after 100 MB were freed (a fresh process)."""
    target = "> 50,000 KB of the 100 MB freed"
    if platform.libc_ver()[0] != "glibc":
        return Budget("freed_memory", None, "KB", target + " (glibc only: not measured here)", True)
    child = subprocess.run(
        [sys.executable, "-c", FREED_MEMORY_CHILD], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    if child.returncode != 0:
        raise RuntimeError(f"the freed-memory child failed: {child.stderr[-2000:]}")
    freed = int(child.stdout.strip())
    return Budget("freed_memory", freed, "KB", target, freed > 50_000)


MEASUREMENTS: tuple[Callable[[Path], Budget], ...] = (retry_after, trickle_timeout, freed_memory)


def measure_all(workdir: Path | None = None) -> list[Budget]:
    """Every budget, each in a folder of its own under ``workdir`` (a temp dir by default)."""
    with tempfile.TemporaryDirectory(prefix="budgets-") as tmp:
        root = workdir or Path(tmp)
        results = []
        for measure in MEASUREMENTS:
            folder = root / measure.__name__
            folder.mkdir(parents=True, exist_ok=True)
            results.append(measure(folder))
        return results


def main(argv: list[str] | None = None) -> int:
    """Measures every budget, prints one line each; exit code 1 if one missed its target."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.budgets", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    results = measure_all()
    for b in results:
        value = "n/a" if b.value is None else f"{b.value:,}"
        sys.stdout.write(f"{b.id:<16} {value:>10} {b.unit:<3} target {b.target}: {'ok' if b.ok else 'MISSED'}\n")
    if args.json:
        args.json.write_text(json.dumps([asdict(b) for b in results], indent=2))
    return 0 if all(b.ok for b in results) else 1


if __name__ == "__main__":
    sys.exit(main())
