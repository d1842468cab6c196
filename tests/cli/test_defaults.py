"""`twilio-studio run` as a new user runs it: no naming option, an empty folder, then README's SQL.

Every ```sql block of README.md is executed verbatim against the files the CLI (and the demo)
wrote: README's queries are part of the product. A statement runs against the dataset its marker
names: a leading ``-- scd2`` / ``-- append`` comment picks a dataset loaded in that mode, a statement
on step or execution tables one loaded with every resource; all others run against the default run's
file and the demo's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.kit.cli import cli
from tests.kit.studio import ACCOUNT_SID, AUTH_TOKEN, expected_sids
from twilio_studio.emulator import Dataset, Emulator

README = Path(__file__).resolve().parents[2] / "README.md"
ALL_RESOURCES = "flows,flow_revisions,engagements,engagement_steps,executions,execution_steps"
EXTRA_TABLES = re.compile(r"\btwilio_studio\.(engagement_steps|executions|execution_steps)\b")


@dataclass(frozen=True)
class Statement:
    """One ```sql block of README.md."""

    block: int  # 1-based index of the ```sql block in README.md
    sql: str

    @property
    def dataset(self) -> str:
        """Which load the statement needs: default, all_resources, scd2 or append."""
        marker = re.match(r"\s*--\s*(scd2|append)\b", self.sql)
        if marker:
            return marker[1]
        return "all_resources" if EXTRA_TABLES.search(self.sql) else "default"

    @property
    def id(self) -> str:
        """A readable test id: the block's number and its first SQL line."""
        first = next(line for line in self.sql.splitlines() if line.strip() and not line.startswith("--"))
        return f"block{self.block}:{self.dataset}:{re.sub(r'[^A-Za-z0-9_]+', '_', first)[:40]}"


def readme_statements() -> list[Statement]:
    """The statements of every ```sql block in README.md, each with the comments that lead it."""
    blocks = re.findall(r"^```sql\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    out: list[Statement] = []
    for index, block in enumerate(blocks, start=1):
        for part in block.split(";"):
            if any(line.strip() and not line.strip().startswith("--") for line in part.splitlines()):
                out.append(Statement(index, part.strip() + ";"))
    return out


STATEMENTS = readme_statements()


def env_for(emu: Emulator, workdir: Path) -> dict[str, str]:
    """A new user's environment: only the credentials, and dlt's data dir in an empty temp folder."""
    return {
        "SOURCES__TWILIO_STUDIO__ACCOUNT_SID": ACCOUNT_SID,
        "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": AUTH_TOKEN,
        "DLT_DATA_DIR": str(workdir.parent / f"{workdir.name}-dlt"),
    }


def user_run(emu: Emulator, workdir: Path, *options: str) -> str:
    workdir.mkdir(exist_ok=True)
    result = cli("run", "--base-url", emu.base_url, *options, cwd=workdir, env=env_for(emu, workdir))
    assert result.returncode == 0, result.stderr
    assert "warn_if_catalog_equals_dataset_name" not in result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def loads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The DuckDB file of each load README's SQL needs, each in its own empty folder."""
    root = tmp_path_factory.mktemp("readme")
    files: dict[str, Path] = {}
    with Emulator(Dataset(seed=5, flows=2, engagements_per_flow=40)) as emu:
        runs = {"default": (), "all_resources": ("--resources", ALL_RESOURCES),
                "scd2": ("--write-mode", "scd2"), "append": ("--write-mode", "append")}  # fmt: skip
        for name, options in runs.items():  # README's SQL needs each table, not history: one run each
            user_run(emu, root / name, *options)
        emu.advance(days=1)
        summary = user_run(emu, root / "default")  # the second run: incremental
        match = re.search(r"(\d+) engagements written \((\d+) new, (\d+) updated\)", summary)
        assert match and int(match[2]) > 0 and int(match[1]) == int(match[2]) + int(match[3]), summary
        for name in runs:
            assert sorted(p.name for p in (root / name).iterdir()) == ["twilio_studio_data.duckdb"]
            files[name] = root / name / "twilio_studio_data.duckdb"
        with duckdb.connect(str(files["default"]), read_only=True) as con:
            sids = {r[0] for r in con.execute("SELECT sid FROM twilio_studio.engagements").fetchall()}
        assert sids >= expected_sids(emu)
    demo = cli("demo", "--dir", str(root / "demo"), "--flows", "2", "--engagements", "40", cwd=root)
    assert demo.returncode == 0, demo.stderr
    files["demo"] = root / "demo" / "twilio_studio_demo.duckdb"
    return files


def test_readme_has_sql_for_every_load() -> None:
    assert {s.dataset for s in STATEMENTS} == {"default", "all_resources", "scd2", "append"}


@pytest.mark.slow
@pytest.mark.parametrize("statement", STATEMENTS, ids=[s.id for s in STATEMENTS])
def test_readme_sql_runs_as_printed(loads: dict[str, Path], statement: Statement) -> None:
    targets = ["default", "demo"] if statement.dataset == "default" else [statement.dataset]
    for target in targets:
        with duckdb.connect(str(loads[target]), read_only=True) as con:
            con.execute(statement.sql).fetchall()


def test_report_with_no_option_finds_the_run(loads: dict[str, Path]) -> None:
    workdir = loads["default"].parent
    result = cli("report", cwd=workdir, env={"DLT_DATA_DIR": str(workdir.parent / f"{workdir.name}-dlt")})
    assert result.returncode == 0, result.stderr
    assert (workdir / "twilio_studio_report.html").exists()
    (workdir / "twilio_studio_report.html").unlink()


def test_pipeline_script_loads_into_the_documented_file(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "pipelines" / "twilio_studio_pipeline.py"
    with Emulator(Dataset(seed=5, flows=1, engagements_per_flow=10)) as emu:
        env = {**env_for(emu, tmp_path / "work"), "SOURCES__TWILIO_STUDIO__BASE_URL": emu.base_url}
        (tmp_path / "work").mkdir()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCES__")} | env
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path / "work", env=full_env,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        with duckdb.connect(str(tmp_path / "work" / "twilio_studio_data.duckdb"), read_only=True) as con:
            sids = {r[0] for r in con.execute("SELECT sid FROM twilio_studio.engagements").fetchall()}
        assert sids == expected_sids(emu)
