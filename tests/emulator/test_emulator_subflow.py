"""A subflow: a run-subflow widget whose flow's steps appear in the parent's steps with parent_step_sid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.duck import Loaded
from tests.kit.spec import StudioHttp, spec_errors
from tests.kit.studio import listed_views, make_source
from twilio_studio.emulator import Dataset, Emulator
from twilio_studio.report import build_report, duckdb_reader


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(Dataset(seed=9, flows=3, engagements_per_flow=120, subflow=True)) as emulator:
        yield emulator


def edges(definition: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(s["name"], t["event"], t.get("next") or "Ended") for s in definition["states"] for t in s["transitions"]}


def test_the_subflow_is_a_flow_of_the_account_with_a_parent_trigger(emu: Emulator) -> None:
    http = StudioHttp(emu.base_url)
    flows = http.records("/v1/Flows")
    assert len(flows) == 4
    sub = emu.dataset.subflow
    assert sub is not None and sub.sid in {f["sid"] for f in flows}
    body = http.json(f"/v2/Flows/{sub.sid}")
    assert spec_errors(f"/v2/Flows/{sub.sid}", body) == []
    trigger = body["definition"]["states"][0]
    assert [t["event"] for t in trigger["transitions"] if t.get("next")] == ["incomingRequest", "incomingParent"]
    assert http.records(f"/v1/Flows/{sub.sid}/Engagements") == []  # it runs only inside its parents
    parent = next(f for f in emu.dataset.flows if f.template == "api_notify")
    states = http.json(f"/v2/Flows/{parent.sid}")["definition"]["states"]
    runs = [s for s in states if s["type"] == "run-subflow"]
    assert len(runs) == 1 and runs[0]["properties"]["flow_sid"] == sub.sid


def test_subflow_steps_name_the_parent_step_and_walk_the_subflow(emu: Emulator) -> None:
    http = StudioHttp(emu.base_url)
    sub = emu.dataset.subflow
    assert sub is not None
    sub_edges = edges(http.json(f"/v2/Flows/{sub.sid}")["definition"])
    parent = next(f for f in emu.dataset.flows if f.template == "api_notify")
    seen = 0
    for execution in http.records(f"/v2/Flows/{parent.sid}/Executions", PageSize=1000)[::5]:
        path = f"/v2/Flows/{parent.sid}/Executions/{execution['sid']}/Steps"
        pages = list(http.pages(path, PageSize=3))
        assert all(spec_errors(path, p) == [] for p in pages)
        steps = [s for p in pages for s in p["steps"]]
        by_sid = {s["sid"]: s for s in steps}
        children = [s for s in steps if s["parent_step_sid"]]
        for step in children:
            parent_step = by_sid[step["parent_step_sid"]]
            assert parent_step["type"] == "run-subflow"
            assert (step["transitioned_from"], step["name"], step["transitioned_to"]) in sub_edges
            assert step["date_created"] <= parent_step["date_created"]  # the widget ends after its subflow
        if children:
            seen += 1
            assert [s["name"] for s in children if s["transitioned_from"] == "Trigger"] == ["incomingParent"]
    assert seen > 0


def test_the_source_keeps_parent_step_sid_and_the_walk_order(emu: Emulator, tmp_path: Path) -> None:
    loaded = Loaded(tmp_path)
    loaded.run(make_source(emu.base_url).with_resources("flows", "flow_revisions", "engagements", "engagement_steps"))
    views = listed_views(emu)
    got = {r[0]: r[1:] for r in loaded.sql("SELECT sid, step_index, parent_step_sid FROM engagement_steps")}
    want = {s.sid: (n, s.parent_step_sid) for v in views for n, s in enumerate(v.steps)}
    assert got == want
    assert any(p for _, p in want.values())
    # the parent's graph counts the parent's own steps: every edge is in the parent's design
    report = build_report(duckdb_reader(loaded.db, "twilio_studio"), "twilio_studio")
    assert report.graphs and all(e.designed for g in report.graphs for e in g.edges)
