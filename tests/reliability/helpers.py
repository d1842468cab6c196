"""Shared helpers of the reliability tests: a programmable loopback server, table snapshots, checks."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dlt
import duckdb
import pytest

from tests.source.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.source.scripted import LoopbackServer, QuietHandler

DLT_COLUMNS = ("_dlt_id", "_dlt_parent_id", "_dlt_root_id", "_dlt_load_id")
PARENT_OF = {
    "engagements__widgets": "engagements",
    "engagements__widgets__fields": "engagements__widgets",
    "engagements__flow_data": "engagements",
    "engagements__flow_variables": "engagements",
}


# ---------------------------------------------------------------------------- a programmable server
@dataclass
class Answer:
    """One HTTP answer: ``body`` is JSON (``{base}`` becomes the server's URL) or raw bytes."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # spread the body over this long, a few bytes at a time


@dataclass
class Seen:
    path: str
    authorization: str | None


class DynamicStudio(LoopbackServer):
    """A real HTTP server on loopback whose every answer is ``respond(path_and_query)``."""

    def __init__(self, respond: Callable[[str], Answer]) -> None:
        self.respond = respond
        self.requests: list[Seen] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server calls it by this name
                outer.requests.append(Seen(self.path, self.headers.get("Authorization")))
                answer = outer.respond(self.path)
                if isinstance(answer.body, bytes):
                    raw = answer.body
                else:
                    raw = json.dumps(answer.body).replace("{base}", outer.base_url).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in answer.headers.items():
                    self.send_header(k, v.replace("{base}", outer.base_url))
                self.end_headers()
                try:
                    if answer.trickle_seconds:
                        pieces = 20
                        step = max(1, len(raw) // pieces)
                        for n in range(0, len(raw), step):
                            self.wfile.write(raw[n : n + step])
                            self.wfile.flush()
                            time.sleep(answer.trickle_seconds / pieces)
                    else:
                        self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        self.start_serving(Handler)


def routes(table: dict[str, Answer]) -> Callable[[str], Answer]:
    """A ``respond`` answering exact paths (with query) from ``table``, 404 otherwise."""
    return lambda path: table.get(path, Answer(404, {"code": 20404, "status": 404}))


# ---------------------------------------------------------------------------- pipelines and tables
def duck_pipeline(tmp: Any, name: str) -> Any:
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.duckdb(str(tmp / f"{name}.duckdb")),
        dataset_name="twilio_studio",
        pipelines_dir=str(tmp / "pipelines"),
    )


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def data_tables(db: str) -> list[str]:
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
    """No row twice, one engagement per sid (one current version with ``versions``: scd2), and every
    child row hangs off an existing parent and engagement."""
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


def failure_text(error: BaseException | pytest.ExceptionInfo[BaseException]) -> str:
    """The whole chain of messages a user sees, from dlt's wrapper down to the cause."""
    texts, seen = [], set()
    current: BaseException | None = error.value if isinstance(error, pytest.ExceptionInfo) else error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(texts)


def source_env(base_url: str, token: str = AUTH_TOKEN, account_sid: str = ACCOUNT_SID) -> dict[str, str]:
    return {
        "SOURCES__TWILIO_STUDIO__ACCOUNT_SID": account_sid,
        "SOURCES__TWILIO_STUDIO__AUTH_TOKEN": token,
        "SOURCES__TWILIO_STUDIO__BASE_URL": base_url,
    }
