"""The twilio-studio command, run as a user runs it: a real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import requests

from tests.kit.cli import cli, creds, free_port
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, DEFAULT_ENGAGEMENTS, expected_sids, listed_views
from twilio_studio.emulator import Emulator


def test_run_loads_and_summarizes_then_incremental_writes_only_changes(emulator: Emulator, tmp_path: Path) -> None:
    args = ("run", "--pipelines-dir", str(tmp_path / "p"), "--pipeline-name", "cli_test")
    first = cli(*args, cwd=tmp_path, env=creds(emulator))
    assert first.returncode == 0, first.stderr
    n = DEFAULT_ENGAGEMENTS
    assert f"{n} engagements written ({n} new, 0 updated)" in first.stdout
    assert re.search(r"engagements__widgets\s+\d+", first.stdout)
    assert "progress: dlt extract" in first.stderr  # not a terminal: progress as log lines (test_progress.py)
    with duckdb.connect(str(tmp_path / "cli_test_data.duckdb"), read_only=True) as con:
        sids = {r[0] for r in con.execute("SELECT sid FROM twilio_studio.engagements").fetchall()}
    assert sids == expected_sids(emulator)
    emulator.advance(days=2)
    second = cli(*args, cwd=tmp_path, env=creds(emulator))
    assert second.returncode == 0, second.stderr
    match = re.search(r"(\d+) engagements written \((\d+) new, (\d+) updated\)", second.stdout)
    assert match and int(match[2]) > 0 and int(match[1]) == int(match[2]) + int(match[3])
    assert AUTH_TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(("run", "--flow", "FWnope"), {}, "error: flow_sids: 'FWnope' is not a Flow SID", id="bad_flow"),
        pytest.param(("run", "--page-size", "5000"), {}, "error: page_size: 5000 is out of range", id="bad_page_size"),
        pytest.param(("run",), {"SOURCES__TWILIO_STUDIO__AUTH_TOKEN": ""}, "error: Twilio credentials are missing",
                     id="no_credentials"),
        pytest.param(("run",), {"SOURCES__TWILIO_STUDIO__AUTH_TOKEN": "wrong"},
                     "answered HTTP 401 (Twilio error 20003)", id="wrong_token"),
        pytest.param(("run", "--resources", "flows,widgets"), {},
                     "error: --resources: widgets unknown; choose from flows, flow_revisions, engagements",
                     id="bad_resource"),
        pytest.param(("report", "--duckdb", "missing.duckdb"), {},
                     "error: --duckdb: no such file: missing.duckdb", id="report_missing_file"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_without_traceback(
    emulator: Emulator, tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    extra = ("--pipelines-dir", str(tmp_path)) if args[0] == "run" else ()
    result = cli(*args, *extra, cwd=tmp_path, env={**creds(emulator), **env})
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    ]
    assert "wrong" not in result.stderr.replace("wrong_token", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param((), "error: no DuckDB file {cwd}/twilio_studio_data.duckdb: load it with `twilio-studio run` "
                     "first, or pass --duckdb FILE", id="default_pipeline"),
        pytest.param(("--pipelines-dir", "{tmp}/pipelines"), "error: no DuckDB file {cwd}/twilio_studio_data.duckdb",
                     id="pipelines_dir_given"),
        pytest.param(("--pipeline-name", "other", "--dataset", "studio"),
                     "error: no DuckDB file {cwd}/other_data.duckdb", id="other_pipeline_and_dataset"),
        pytest.param(("--duckdb", "{cwd}/missing.duckdb"), "error: --duckdb: no such file: {cwd}/missing.duckdb",
                     id="duckdb_file_given"),
    ],
)  # fmt: skip
def test_report_without_a_dataset_fails_and_creates_no_file(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    cwd, data_dir = tmp_path / "cwd", tmp_path / "dlt_data"  # dlt's pipelines folder is in its data dir
    cwd.mkdir()
    data_dir.mkdir()
    env = {"DLT_DATA_DIR": str(data_dir), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    result = cli("report", *(a.format(tmp=tmp_path, cwd=cwd) for a in args), cwd=cwd, env=env)
    assert result.returncode == 2, result.stderr
    assert message.format(cwd=cwd) in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [Path("cwd"), Path("dlt_data")]


def test_emulator_command_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "twilio_studio.cli", "emulator", "--port", str(port), "--flows", "2",
         "--engagements", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/v1/Flows", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and len(r.json()["flows"]) == 2
        assert requests.get(f"http://127.0.0.1:{port}/v1/Flows", timeout=2).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_loads_twice_and_writes_a_report(tmp_path: Path) -> None:
    result = cli("demo", "--dir", str(tmp_path), "--flows", "2", "--engagements", "150", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first = re.search(r"First load: (\d+) engagements written \((\d+) new, 0 updated\)", result.stdout)
    second = re.search(r"Incremental load: (\d+) engagements written \((\d+) new, (\d+) updated\)", result.stdout)
    assert first and int(first[1]) == 300
    assert second and 0 < int(second[1]) < 300 and int(second[2]) > 0 and int(second[3]) > 0
    html = (tmp_path / "twilio_studio_report.html").read_text()
    assert "data:image/png;base64," in html
    with duckdb.connect(str(tmp_path / "twilio_studio_demo.duckdb"), read_only=True) as con:
        total = con.execute("SELECT count(*) FROM twilio_studio.engagements").fetchone()
    assert total is not None and total[0] == 300 + int(second[2])


def test_run_with_steps_resource(emulator: Emulator, tmp_path: Path) -> None:
    args = ("run", "--pipelines-dir", str(tmp_path / "p"), "--pipeline-name", "steps_cli",
            "--resources", "flows,engagements,engagement_steps")  # fmt: skip
    result = cli(*args, cwd=tmp_path, env=creds(emulator))
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "steps_cli_data.duckdb"), read_only=True) as con:
        steps = con.execute("SELECT count(*) FROM twilio_studio.engagement_steps").fetchone()
    want = sum(len(view.steps) for view in listed_views(emulator))
    assert steps is not None and steps[0] == want > 0
