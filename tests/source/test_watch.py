"""Progress counts come from the real walk: what a watched run reports is what the emulator served."""

from __future__ import annotations

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import EmulatorFactory, expected_sids, expected_walks, make_source
from twilio_studio.progress import merged_steps, shown_progress

PAGE_SIZE = 25


@pytest.mark.parametrize(
    ("resources", "kind"),
    [
        pytest.param(("flows", "engagements"), "engagements", id="engagements"),
        pytest.param(("flows", "executions"), "executions", id="executions"),
    ],
)
def test_a_watched_run_counts_pages_items_requests_429s_and_dlt_steps(
    emulator_factory: EmulatorFactory, loaded: Loaded, resources: tuple[str, ...], kind: str
) -> None:
    emu = emulator_factory(flows=3, engagements=120)
    emu.inject("throttle", times=2, path_contains="/Flows/FW")  # two 429s, retried
    with shown_progress(loaded.pipeline, "off") as watch:
        loaded.run(make_source(emu.base_url, page_size=PAGE_SIZE).with_resources(*resources))
    snap = watch.snapshot()
    assert {f.flow_sid: (f.pages, f.read) for f in snap.flows} == expected_walks(emu, PAGE_SIZE)
    assert snap.kinds == [kind]
    assert snap.changed == snap.read == len(expected_sids(emu))  # a first run writes every one it reads
    assert all(f.done for f in snap.flows)
    assert (snap.requests, snap.throttled, snap.in_flight) == (emu.stats.requests, 2, 0)
    steps = merged_steps(snap.steps)
    assert [(s.name, s.done) for s in steps] == [("extract", True), ("normalize", True), ("load", True)]
    assert steps[0].counters[kind] == len(expected_sids(emu))  # dlt's own count of the rows it extracted
    assert steps[2].counters["Jobs"] == steps[2].totals["Jobs"] > 0
    assert loaded.pipeline.collector is not watch.collector  # the pipeline's own collector is back


def test_an_incremental_run_reads_the_pages_again_and_counts_only_what_changed(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory(flows=2, engagements=80)
    loaded.run(make_source(emu.base_url, page_size=PAGE_SIZE))  # not watched: registers nothing
    emu.advance(hours=6)
    with shown_progress(loaded.pipeline, "off") as watch:
        written = loaded.run(make_source(emu.base_url, page_size=PAGE_SIZE))
    snap = watch.snapshot()
    assert {f.flow_sid: (f.pages, f.read) for f in snap.flows} == expected_walks(emu, PAGE_SIZE)
    assert 0 < snap.changed == written["engagements"] < snap.read
