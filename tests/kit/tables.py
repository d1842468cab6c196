"""Table snapshots and consistency checks of a dataset loaded into DuckDB."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.kit.duck import query

DLT_COLUMNS = ("_dlt_id", "_dlt_parent_id", "_dlt_root_id", "_dlt_load_id")
PARENT_OF = {
    "engagements__widgets": "engagements",
    "engagements__widgets__fields": "engagements__widgets",
    "engagements__flow_data": "engagements",
    "engagements__flow_variables": "engagements",
}


def data_tables(db: str) -> list[str]:
    """The dataset's data tables (dlt's own left out), by name."""
    rows = query(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'twilio_studio' "
        "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1",
    )
    return [r[0] for r in rows]


Snapshot = dict[str, Counter[tuple[Any, ...]]]


def snapshot(db: str, ignore: tuple[str, ...] = ()) -> Snapshot:
    """Every data table as a multiset of rows, without dlt's ids and load ids (they differ by run)."""
    out: Snapshot = {}
    for table in data_tables(db):
        columns = [
            r[0]
            for r in query(
                db,
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'twilio_studio' "
                f"AND table_name = '{table}' ORDER BY column_name",
            )
            if r[0] not in DLT_COLUMNS and r[0] not in ignore
        ]
        cols = ", ".join(f'"{c}"' for c in columns)
        out[table] = Counter(query(db, f"SELECT {cols} FROM twilio_studio.{table}"))
    return out


def assert_consistent(db: str, versions: bool = False) -> None:
    """No row twice, one engagement per sid, every child row under its parent and engagement.

    With ``versions`` (scd2): one current version per sid.
    """
    tables = set(data_tables(db))
    for table in tables:
        twice = query(db, f"SELECT _dlt_id, count(*) FROM twilio_studio.{table} GROUP BY 1 HAVING count(*) > 1")
        assert twice == [], f"{table}: {len(twice)} rows stored twice, e.g. {twice[:3]}"
    current = " WHERE valid_to IS NULL" if versions else ""
    dupes = query(db, f"SELECT sid, count(*) FROM twilio_studio.engagements{current} GROUP BY 1 HAVING count(*) > 1")
    assert dupes == [], f"duplicate engagements: {dupes[:5]}"
    for child, parent in PARENT_OF.items():
        if child not in tables:
            continue
        orphans = query(
            db,
            f"SELECT count(*) FROM twilio_studio.{child} c WHERE NOT EXISTS "
            f"(SELECT 1 FROM twilio_studio.{parent} p WHERE p._dlt_id = c._dlt_parent_id) OR NOT EXISTS "
            "(SELECT 1 FROM twilio_studio.engagements e WHERE e._dlt_id = c._dlt_root_id "
            "AND e.sid = c.engagement_sid)",
        )[0][0]
        assert orphans == 0, f"{orphans} rows of {child} without their parent or engagement"


def assert_same_tables(db: str, reference: str | Snapshot, ignore: tuple[str, ...] = ()) -> None:
    """``db`` holds exactly the rows of ``reference`` (a clean load of the same data), table by table."""
    got = snapshot(db, ignore)
    want = snapshot(reference, ignore) if isinstance(reference, str) else reference
    assert sorted(got) == sorted(want)
    for table in want:
        missing, extra = want[table] - got[table], got[table] - want[table]
        assert not missing and not extra, (
            f"{table}: {sum(missing.values())} rows missing, {sum(extra.values())} extra "
            f"(e.g. missing {next(iter(missing), None)!r:.300}, extra {next(iter(extra), None)!r:.300})"
        )


def engagement_cursors(pipeline: Any) -> dict[str, Any]:
    """The per-flow cursors the engagements resource keeps in the pipeline state."""
    sources = pipeline.state.get("sources", {})
    resources = sources.get("twilio_studio", {}).get("resources", {})
    return dict(resources.get("engagements", {}).get("flows", {}))
