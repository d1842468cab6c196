"""A bad night: 429 storms, 5xx bursts, resets, cut-short and slow answers, into a real DuckDB.

Each run either completes with exactly the rows a clean load gives, or fails with a sentence naming
the flow, the path and the cause, and leaves the saved cursors and the destination as they were;
the next run then completes with exactly the clean load's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.duck import duckdb_pipeline, query
from tests.kit.loopback import Answer, DynamicStudio, engagement, flow, page
from tests.kit.studio import EmulatorFactory, expected_sids, failure_text, make_source
from tests.kit.tables import Snapshot, assert_consistent, assert_same_tables, engagement_cursors, snapshot
from twilio_studio.client import RetryPolicy
from twilio_studio.emulator import Dataset, Emulator, Faults


def reference_load(tmp_path: Path, emu: Emulator, **options: Any) -> str:
    """A clean load of what the emulator shows now, into its own DuckDB: the rows every run must match."""
    pipeline = duckdb_pipeline(tmp_path / "reference", "reference")
    pipeline.run(make_source(emu.base_url, **options), loader_file_format="parquet")
    return str(tmp_path / "reference" / "reference.duckdb")


def state_rows(db: str) -> int:
    return int(query(db, "SELECT count(*) FROM twilio_studio._dlt_pipeline_state")[0][0])


SEED, FLOWS, PER_FLOW, PAGE = 11, 2, 40, 15
NO_URL = ("url",)  # each emulator has its own port, so its own URLs; every other value must match


@pytest.fixture(scope="module")
def after_two_days(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The rows of a clean load of the test dataset two days after its start (shared: it is the same data)."""
    with Emulator(Dataset(seed=SEED, flows=FLOWS, engagements_per_flow=PER_FLOW)) as emu:
        emu.advance(days=2)
        return snapshot(reference_load(tmp_path_factory.mktemp("reference"), emu, page_size=PAGE), NO_URL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "faults", "options", "reason"),
    [
        pytest.param("throttle", Faults(retry_after=0), {}, "HTTP 429", id="429_storm_with_retry_after"),
        pytest.param("throttle", Faults(retry_after=None), {}, "HTTP 429", id="429_storm_without_retry_after"),
        pytest.param("error", Faults(), {}, "HTTP 50", id="500_503_burst"),
        pytest.param("drop", Faults(), {}, "a network error", id="dropped_connections"),
        pytest.param("truncate", Faults(), {}, "a response cut short before its end", id="truncated_json"),
        pytest.param(
            "slow", Faults(slow_seconds=1.5), {"request_timeout": 0.3},
            "no complete response within 0.3 s (request_timeout)", id="slower_than_request_timeout",
        ),
    ],
)  # fmt: skip
def test_failure_beyond_max_attempts_keeps_state_and_the_next_run_is_exact(
    emulator_factory: EmulatorFactory,
    after_two_days: Snapshot,
    tmp_path: Path,
    kind: str,
    faults: Faults,
    options: dict[str, Any],
    reason: str,
) -> None:
    emu = emulator_factory(flows=FLOWS, engagements=PER_FLOW, seed=SEED, faults=faults)
    pipeline = duckdb_pipeline(tmp_path, "night")
    db = str(tmp_path / "night.duckdb")
    pipeline.run(make_source(emu.base_url, page_size=PAGE, **options), loader_file_format="parquet")
    cursors, rows, states = engagement_cursors(pipeline), snapshot(db), state_rows(db)
    assert len(cursors) == 2

    emu.advance(days=2)  # engagements end, new ones arrive: the failed run had work to do
    failing = emu.dataset.flows[1].sid
    emu.inject(kind, times=100, path_contains=f"{failing}/Engagements")
    sent_before = len(emu.stats.paths)
    with pytest.raises(PipelineStepFailed) as err:
        pipeline.run(make_source(emu.base_url, page_size=PAGE, max_attempts=2, **options), loader_file_format="parquet")
    text = failure_text(err)
    assert (
        f"flow {failing}: GET /v1/Flows/{failing}/Engagements still failed with {reason}" in text
        and "after 2 attempts; the next run starts again from the last saved state" in text
    ), text
    # max_attempts bounds the retries: exactly two requests for the failing page, then it stops
    assert emu.stats.paths[sent_before:].count(f"/v1/Flows/{failing}/Engagements") == 2
    # nothing of the failed run is kept: the cursors (memory and disk) and the destination are as before
    assert engagement_cursors(pipeline) == cursors
    assert engagement_cursors(duckdb_pipeline(tmp_path, "night")) == cursors
    assert snapshot(db) == rows and state_rows(db) == states

    emu.clear_faults()
    pipeline.run(make_source(emu.base_url, page_size=PAGE, **options), loader_file_format="parquet")
    assert engagement_cursors(pipeline) != cursors
    assert {r[0] for r in query(db, "SELECT sid FROM twilio_studio.engagements")} == expected_sids(emu)
    assert_consistent(db)
    assert_same_tables(db, after_two_days, NO_URL)  # exactly a clean load: no row missing, none twice


@pytest.mark.slow
def test_a_bad_night_of_every_fault_at_once_still_loads_the_exact_rows(
    emulator_factory: EmulatorFactory, after_two_days: Snapshot, tmp_path: Path
) -> None:
    faults = Faults(
        error_rate=0.1, drop_rate=0.03, truncate_rate=0.03, max_concurrency=1, retry_after=0, latency=0.01, seed=5
    )
    emu = emulator_factory(flows=FLOWS, engagements=PER_FLOW, seed=SEED, faults=faults)
    pipeline = duckdb_pipeline(tmp_path, "chaos")
    db = str(tmp_path / "chaos.duckdb")
    source = {"page_size": PAGE, "max_concurrency": 4, "max_attempts": 10, "request_timeout": 10}
    pipeline.run(make_source(emu.base_url, **source), loader_file_format="parquet")
    emu.advance(days=2)
    pipeline.run(make_source(emu.base_url, **source), loader_file_format="parquet")
    statuses = emu.stats.by_status
    assert statuses[429] > 0 and statuses[500] + statuses[503] > 0, statuses
    assert_consistent(db)
    assert_same_tables(db, after_two_days, NO_URL)


def test_429_retry_after_is_honoured(
    emulator_factory: EmulatorFactory, loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[tuple[float | None, float]] = []  # (the server's Retry-After, the wait the client chose)
    delay = RetryPolicy.delay

    def recorded(self: RetryPolicy, attempt: int, retry_after: float | None) -> float:
        wait = delay(self, attempt, retry_after)
        waits.append((retry_after, wait))
        return wait

    monkeypatch.setattr(RetryPolicy, "delay", recorded)
    emu = emulator_factory(flows=1, engagements=20, faults=Faults(retry_after=1))
    emu.inject("throttle", times=2, path_contains="/Engagements")
    loaded.run(make_source(emu.base_url, max_concurrency=1))
    assert len(waits) == 2 and all(after == 1.0 and wait >= 1.0 for after, wait in waits), waits
    assert emu.stats.by_status[429] == 2
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)


FLOW = "FW" + "2" * 32


def test_a_body_trickling_in_slower_than_request_timeout_is_a_timeout(loaded: Any) -> None:
    """request_timeout bounds a whole response, not each read: a trickling body must not hold a run."""
    first = f"/v1/Flows/{FLOW}/Engagements?PageSize=1000"
    listing = page("engagements", [engagement(FLOW, n) for n in range(1, 30)], None)
    answers = iter([Answer(200, listing, trickle_seconds=4.0)])

    def respond(path: str) -> Answer:
        if path == f"/v1/Flows/{FLOW}":
            return Answer(200, flow(FLOW))
        if path == first:
            return next(answers, Answer(200, listing))  # the first answer trickles, the retry is quick
        return Answer(404, {"code": 20404})

    with DynamicStudio(respond) as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW], request_timeout=0.5))
        # a timeout per read (each piece comes within 0.2 s) would have taken the trickle: one request
        assert [r.path for r in studio.requests].count(first) == 2
    assert loaded.scalar("SELECT count(*) FROM engagements") == 29
