"""benchmarks.timeline: every request of a small load is counted by kind and the bins cover the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_timeline_counts_every_request_of_a_load(tmp_path: Path) -> None:
    out = tmp_path / "timeline.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.timeline", "--flows", "3", "--engagements", "300", "--page-size", "100",
         "--path", "cli", "--bin", "0.5", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    totals = data["totals"]
    # 3 flows x 3 pages of 100; the emulator lists 1 in 20 engagements with context {} (fetched one by one)
    assert totals["requests"]["engagement_pages"] == 9
    assert totals["requests"]["contexts"] == 900 // 20
    assert sum(b["engagement_pages_ended"] for b in data["bins"]) == 9
    assert sum(b["contexts_ended"] for b in data["bins"]) == 45
    assert len(data["bins"]) >= totals["run_seconds"] / 0.5
    assert totals["emulator_cpu_seconds"] > 0 and totals["extract_over_emulator_cpu"] > 0
    assert "list pages at the API" in proc.stdout
