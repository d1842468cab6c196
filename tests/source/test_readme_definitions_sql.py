"""README's SQL about steps, definitions and revisions runs as printed against a real DuckDB load.

A block marked ``-- needs --resources a,b,c`` runs against a load of those resources; every other
block against a load of the default resources.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import make_source
from twilio_studio.emulator import Emulator

README = Path(__file__).resolve().parents[2] / "README.md"
TABLES = ("flow_revisions", "flow_states", "flow_transitions", "engagement_steps", "execution_steps")
NEEDS = re.compile(r"^-- needs --resources (\S+)", re.MULTILINE)


def blocks() -> list[tuple[str, tuple[str, ...] | None]]:
    """(SQL, resources it needs or None for the defaults) of README's blocks that read these tables."""
    found = []
    for sql in re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL):
        if any(f"twilio_studio.{t}" in sql for t in TABLES):
            needs = NEEDS.search(sql)
            found.append((sql, tuple(needs.group(1).split(",")) if needs else None))
    return found


BLOCKS = blocks()


@pytest.fixture(scope="module")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out: dict[tuple[str, ...] | None, str] = {}
    with Emulator() as emu:
        for resources in {r for _, r in BLOCKS}:
            name = "default" if resources is None else "_".join(resources)
            loaded = Loaded(tmp_path_factory.mktemp(name), name)
            source = make_source(emu.base_url)
            loaded.run(source if resources is None else source.with_resources(*resources))
            out[resources] = loaded.db
    return out


def test_readme_has_the_definition_queries() -> None:
    text = "\n".join(sql for sql, _ in BLOCKS)
    for table in TABLES:
        assert f"twilio_studio.{table}" in text
    assert len(BLOCKS) >= 9


@pytest.mark.slow
@pytest.mark.parametrize(("sql", "resources"), BLOCKS, ids=[f"block_{n}" for n in range(len(BLOCKS))])
def test_readme_block_runs_as_printed(databases: Any, sql: str, resources: tuple[str, ...] | None) -> None:
    with duckdb.connect(databases[resources], read_only=True) as con:
        con.execute(sql).fetchall()  # verbatim, placeholders ('FW...', 'FN...') included
        # with a real flow and engagement in place of the placeholders, every block has an answer
        real = sql.replace("'FW...'", "(SELECT min(sid) FROM twilio_studio.flows)")
        real = real.replace("'FN...'", "(SELECT min(sid) FROM twilio_studio.engagements)")
        assert con.execute(real).fetchall()
