"""stop_at_ended_pages: hourly runs read only the pages that can hold changes, and load what a full walk loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.loopback import ScriptedStudio, engagement, flow, page
from tests.kit.studio import EmulatorFactory, listed, make_source
from twilio_studio.emulator import Emulator

FLOW = "FW" + "2" * 32
TABLES = ("engagements", "engagements__widgets", "engagements__widgets__fields", "engagements__flow_data",
          "engagements__flow_variables")  # fmt: skip


def list_pages(emu: Emulator, since: int) -> int:
    return sum(1 for p in emu.stats.paths[since:] if p.endswith("/Engagements"))


def table_rows(loaded: Loaded) -> dict[str, list[str]]:
    out = {}
    for table in TABLES:
        columns = [r[0] for r in loaded.sql(f"DESCRIBE {table}") if not r[0].startswith("_dlt_load")]
        out[table] = sorted(map(repr, loaded.sql(f"SELECT {', '.join(columns)} FROM {table}")))
    return out


def pages_that_can_hold_changes(emu: Emulator, oldest_active: dict[str, Any], page_size: int) -> int:
    """The list pages a newest-first walk reads, per flow.

    Until the first page wholly created before the oldest engagement still active at the last run,
    that page included.
    """
    total = 0
    for f in emu.dataset.flows:
        scripts = listed(emu, flows=[f.index])
        pages = -(-len(scripts) // page_size) + (1 if len(scripts) % page_size == 0 else 0)
        newer = sum(1 for s in scripts if s.date_created >= oldest_active[f.sid])
        total += min(pages, newer // page_size + (1 if newer % page_size == 0 else 2))
    return total


@pytest.mark.slow
def test_an_hourly_run_reads_only_the_pages_that_can_hold_changes_and_loads_what_a_full_walk_loads(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = emulator_factory(flows=2, engagements=300)
    full, early = Loaded(tmp_path, "full"), Loaded(tmp_path, "early")
    full.run(make_source(emu.base_url, page_size=10))
    early.run(make_source(emu.base_url, page_size=10, stop_at_ended_pages=True))
    # the oldest engagement still active per flow, or the newest where none is (FlowCursor.created_from)
    oldest_active = dict(
        full.sql(
            "SELECT flow_sid, coalesce(min(date_created) FILTER (WHERE status = 'active'), max(date_created)) "
            "FROM engagements GROUP BY 1"
        )
    )
    emu.advance(hours=3)  # new engagements arrive, recent ones progress or end

    before = len(emu.stats.paths)
    full.run(make_source(emu.base_url, page_size=10))
    walked = list_pages(emu, before)
    before = len(emu.stats.paths)
    written = early.run(make_source(emu.base_url, page_size=10, stop_at_ended_pages=True))
    read = list_pages(emu, before)

    assert written.get("engagements", 0) > 0, "the clock must have changed something for this test to mean anything"
    assert read == pages_that_can_hold_changes(emu, oldest_active, 10) < walked
    assert table_rows(early) == table_rows(full)


def test_off_by_default_every_page_is_read(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=1, engagements=150)
    loaded.run(make_source(emu.base_url, page_size=10))
    emu.advance(hours=3)
    before = len(emu.stats.paths)
    loaded.run(make_source(emu.base_url, page_size=10))
    assert list_pages(emu, before) == 150 // 10 + 1  # every page, and the one after the arrivals


def _at(hour: int) -> str:
    return f"2026-03-01T{hour:02d}:00:00Z"


@pytest.mark.parametrize("order", ["newest_first", "oldest_first"])
def test_a_list_out_of_newest_first_order_is_read_to_its_end(
    loaded: Loaded, order: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the last run saw engagement 1 active, created at 10:00: everything created before it had ended
    first = [engagement(FLOW, 1, status="active", date_created=_at(10), date_updated=_at(10))]
    # now: 1 has ended; older ones (created 04:00-08:00) are unchanged. In newest-first order the walk
    # stops after the first page wholly older than 10:00; listed oldest first, it must not stop at all
    records = [
        engagement(FLOW, 1, status="ended", date_created=_at(10), date_updated=_at(11)),
        *(engagement(FLOW, n, date_created=_at(10 - n), date_updated=_at(10 - n)) for n in (2, 3, 4, 5, 6)),
    ]
    if order == "oldest_first":
        records.reverse()
    base = f"/v1/Flows/{FLOW}/Engagements?PageSize=2"
    urls = [base, f"{base}&PageToken=p2", f"{base}&PageToken=p3"]
    with ScriptedStudio() as studio:
        studio.routes[f"/v1/Flows/{FLOW}"] = (200, flow(FLOW))
        studio.routes[base] = (200, page("engagements", first, None))
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW], page_size=2, stop_at_ended_pages=True))
        for n, url in enumerate(urls):
            next_url = "{base}" + urls[n + 1] if n + 1 < len(urls) else None
            studio.routes[url] = (200, page("engagements", records[2 * n : 2 * n + 2], next_url))
        studio.requests.clear()
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW], page_size=2, stop_at_ended_pages=True))
        pages_read = [r for r in studio.requests if "/Engagements" in r]
    status = loaded.scalar("SELECT status FROM engagements WHERE sid = ?", f"FN{1:032x}")
    assert status == "ended"
    if order == "newest_first":
        assert pages_read == urls[:2]  # the second page is wholly older: the third is never asked for
    else:
        assert pages_read == urls
        assert "not newest first" in caplog.text
