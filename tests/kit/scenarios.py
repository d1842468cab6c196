"""Probes of the emulator's data shared by a DuckDB test and its PostgreSQL twin.

Card data (tests/source/test_card_data.py), erasure of a contact (tests/source/test_erase.py) and
subaccounts (tests/source/test_subaccounts.py), each also run against PostgreSQL in tests/postgres.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tests.kit.studio import listed, listed_views
from twilio_studio.emulator import Emulator
from twilio_studio.redact import CARD_FIELDS

# the resources that carry engagements and executions with their steps (where card data and contacts are)
WITH_STEPS = ("flows", "engagements", "engagement_steps", "executions", "execution_steps")
ERASURE_KEY = "erasure-test-key"
EVERY_TABLE = (
    "flows", "engagements", "engagements__widgets", "engagements__widgets__fields", "engagements__flow_data",
    "engagements__flow_variables", "engagement_steps", "engagement_steps__widgets",
)  # fmt: skip


# ---------------------------------------------------------------------------- card data
def served_card_values(emu: Emulator) -> dict[str, set[str]]:
    """Every card value the emulator shows now, by field (computed from its dataset, not over HTTP)."""
    out: dict[str, set[str]] = {name: set() for name in CARD_FIELDS}
    for view in listed_views(emu):
        for step in view.steps:
            if step.widget.type == "capture-payments":
                for name in CARD_FIELDS:
                    if step.output.get(name):
                        out[name].add(step.output[name])
    return out


def distinctive(served: dict[str, set[str]]) -> set[str]:
    """Card numbers and tokens: values no other data of the emulator can hold by chance."""
    return served["PaymentCardNumber"] | served["PaymentToken"]


def file_texts(root: Path) -> Iterator[tuple[Path, str]]:
    """The text of every file under ``root``: Parquet decoded, gzip'd files decompressed."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if raw[:4] == b"PAR1":
            yield path, str(pq.read_table(path).to_pylist())
        elif raw[:2] == b"\x1f\x8b":
            yield path, gzip.decompress(raw).decode("utf-8", "replace")
        else:
            yield path, raw.decode("utf-8", "replace")


def leaks_in_files(root: Path, needles: set[str]) -> dict[str, set[str]]:
    """The files under ``root`` (relative paths) that hold any of ``needles``, with the ones they hold."""
    found: dict[str, set[str]] = {}
    for path, text in file_texts(root):
        hits = {n for n in needles if n in text}
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def text_cells(sql: Any, schema: str, types: tuple[str, ...]) -> list[str]:
    """Every text and JSON cell of every table of ``schema``, as text."""
    kinds = ", ".join(f"'{t}'" for t in types)
    columns = sql(
        "SELECT table_name, column_name FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' AND upper(data_type) IN ({kinds})"
    )
    cells: list[str] = []
    for table, column in columns:
        query = f'SELECT CAST("{column}" AS TEXT) FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL'
        cells.extend(str(r[0]) for r in sql(query))
    return cells


# ---------------------------------------------------------------------------- erasure
def contact_with_steps(emu: Emulator, since: datetime | None = None) -> str:
    """The address of a contact whose run (in the first flow) has steps.

    With ``since``, one whose run was active then and has changed since (two versions in scd2, two
    snapshots in append).
    """
    d, now = emu.dataset, emu.now()
    for script in listed(emu, flows=[0]):
        view = d.view(script, now)
        if len(view.steps) < 3 or not script.address.startswith("+"):
            continue
        if since is not None:
            then = d.view(script, since)
            if then.status != "active" or len(then.steps) == len(view.steps) or script.date_created > since:
                continue
        return script.address
    raise AssertionError("no such contact")


# ---------------------------------------------------------------------------- subaccounts
def sids_of(emu: Emulator, account: str) -> set[str]:
    """What the emulator shows of one account now, computed from its dataset (not through HTTP)."""
    return {script.sid for script in listed(emu.accounts.datasets[account], emu.now())}


def active(emu: Emulator) -> list[str]:
    """The SIDs of the emulator's active accounts (the parent and its active subaccounts)."""
    return [a.sid for a in emu.accounts.accounts if a.status == "active"]
