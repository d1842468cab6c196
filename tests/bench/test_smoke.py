"""The benchmark harness in --quick mode: every case runs in its own process and verifies its rows.

No timing or memory assertions: those are the harness's targets, reported in BENCHMARKS.md, and
depend on the machine. This only checks that the one command works end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHAPED = {"1a", "1l", "1c"}  # on every context shape: default, ".light", ".heavy"
CASES = {
    *SHAPED, *(f"{c}.{shape}" for c in SHAPED for shape in ("light", "heavy")),
    "1b", "1b+", "1l-scd2.heavy", "1l-append.heavy", "1a4.heavy", "1l4.heavy",
    "2a", "2a+", "2b", "2c", "3", "3s", "4a", "4b", "5",
}  # fmt: skip


@pytest.mark.slow
def test_quick_run_produces_every_case_verified(tmp_path: Path) -> None:
    out, results = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--workdir", str(tmp_path / "work"),
         "--out", str(out), "--json", str(results)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads(results.read_text())
    cases = {c["id"]: c for c in data["cases"]}
    assert set(cases) >= CASES  # 1a-s and 1b-s join only when 1b cannot finish
    for case in cases.values():
        assert case["ok"], (case["id"], case["checks"], case["error"])
        assert case["exit_code"] == 0
        assert case["wall_seconds"] > 0 and case["peak_rss_kb"] > 0
        assert case["expected_rows"] and case["checks"]
    # the incremental run wrote exactly the engagements the clock advance changed, and some changed
    assert cases["3"]["result"]["written"]["engagements"] == data["plan"]["changed"] > 0
    # the throttled run met the emulator's cap and still loaded every row
    assert cases["2c"]["result"]["db"]["engagements"] == cases["2c"]["expected_rows"]
    # the steps rerun with nothing changed asked for the flows (list, and each one's v2 definition)
    # and the engagement list pages only
    assert cases["4b"]["emulator"]["by_status"] == {"200": 5}
    # stop_at_ended_pages loaded exactly what the full walk loaded, reading no more list pages
    assert cases["3s"]["checks"]["same rows as 3"] and cases["3s"]["checks"]["same rows written as 3"]
    pages = {c: cases[c]["emulator"]["routes"]["engagement_pages"] for c in ("3", "3s")}
    assert 0 < pages["3s"] < pages["3"]
    # the shapes differ as named, and both paths load the same context rows on each
    per = {s: cases[c]["result"]["db"]["child_rows_total"] / cases[c]["expected_rows"] for s, c in
           (("light", "1a.light"), ("default", "1a"), ("heavy", "1a.heavy"))}  # fmt: skip
    assert per["light"] < per["default"] < per["heavy"] and per["heavy"] >= 30
    for shape in ("", ".light", ".heavy"):
        assert cases["1l" + shape]["result"]["db"]["child_rows"] == cases["1a" + shape]["result"]["db"]["child_rows"]
    assert {t["name"].split(":")[0] for t in data["targets"]} == {"1", "2", "3", "4", "5"}
    # case 5 read every account with its own credentials: all their rows, one account_sid each
    assert cases["5"]["result"]["db"]["engagements"] == cases["5"]["expected_rows"]

    table = proc.stdout
    for case_id in CASES:
        assert f"\n{case_id} " in table
    assert "Targets" in table and "Machine:" in table and "Versions:" in table
    markdown = out.read_text()
    assert "<!-- benchmark-results:begin -->" in markdown and "| case | what |" in markdown
    assert "| shape | list item B |" in markdown
    assert "python -m benchmarks.run --quick" in markdown


@pytest.mark.slow
def test_budgets_measure_each_behaviour(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.budgets", "--json", str(tmp_path / "budgets.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: a target missed on this machine, not a failure here
    budgets = {b["id"]: b for b in json.loads((tmp_path / "budgets.json").read_text())}
    assert set(budgets) == {"retry_after", "trickle_timeout", "freed_memory"}
    assert all(b["target"] and b["unit"] for b in budgets.values())
