"""write_mode: merge keeps the latest state, scd2 every version, append a change log."""

from __future__ import annotations

import pytest

from tests.kit.duck import Loaded
from tests.kit.studio import DEFAULT_ENGAGEMENTS, EmulatorFactory, listed_views, make_source
from twilio_studio.emulator import Emulator


def ended_after(emu: Emulator, sids: set[str]) -> set[str]:
    """Which of these SIDs the emulator shows as ended right now."""
    return {view.script.sid for view in listed_views(emu) if view.script.sid in sids and view.status == "ended"}


def two_runs(emu: Emulator, loaded: Loaded, mode: str) -> set[str]:
    """Loads, lets days pass, loads again; returns the SIDs that went active -> ended between."""
    loaded.run(make_source(emu.base_url, write_mode=mode))
    active = {r[0] for r in loaded.sql("SELECT DISTINCT sid FROM engagements WHERE status = 'active'")}
    emu.advance(days=6)
    loaded.run(make_source(emu.base_url, write_mode=mode))
    ended = ended_after(emu, active)
    assert ended, "some active engagements must have ended for this test to mean anything"
    return ended


@pytest.mark.slow
def test_merge_keeps_one_row_per_engagement(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory()
    ended = two_runs(emu, loaded, "merge")
    rows = loaded.sql("SELECT sid, status FROM engagements WHERE sid IN (SELECT unnest(?))", sorted(ended))
    assert sorted(rows) == sorted((sid, "ended") for sid in ended)


@pytest.mark.slow
def test_scd2_keeps_both_versions_with_validity_and_child_rows(
    emulator_factory: EmulatorFactory, loaded: Loaded
) -> None:
    emu = emulator_factory()
    ended = two_runs(emu, loaded, "scd2")
    sid = sorted(ended)[0]
    versions = loaded.sql(
        "SELECT status, valid_from, valid_to, _dlt_id FROM engagements WHERE sid = ? ORDER BY valid_from", sid
    )
    assert [v[0] for v in versions] == ["active", "ended"]
    (_, from1, to1, id1), (_, from2, to2, id2) = versions
    assert from1 < from2 and to1 == from2 and to2 is None  # the current row is open
    # each version keeps its own widget rows: the ended one has at least as many
    w1 = loaded.scalar("SELECT count(*) FROM engagements__widgets WHERE _dlt_parent_id = ?", id1)
    w2 = loaded.scalar("SELECT count(*) FROM engagements__widgets WHERE _dlt_parent_id = ?", id2)
    assert 0 < w1 <= w2
    for every in sorted(ended):
        assert loaded.scalar("SELECT count(*) FROM engagements WHERE sid = ?", every) == 2
    assert loaded.scalar("SELECT count(*) FROM engagements WHERE valid_to IS NULL") == loaded.scalar(
        "SELECT count(DISTINCT sid) FROM engagements"
    )


def test_scd2_run_without_change_adds_no_version(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url, write_mode="scd2"))
    before = loaded.scalar("SELECT count(*) FROM engagements")
    written = loaded.run(make_source(emulator.base_url, write_mode="scd2"))
    assert "engagements" not in written
    assert loaded.scalar("SELECT count(*) FROM engagements") == before == DEFAULT_ENGAGEMENTS


@pytest.mark.slow
def test_scd2_retention_retires_nothing(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(make_source(emulator.base_url, write_mode="scd2"))
    first = {r[0] for r in loaded.sql("SELECT sid FROM engagements")}
    emulator.advance(days=31)  # Twilio dropped all of them; new ones arrived
    loaded.run(make_source(emulator.base_url, write_mode="scd2"))
    still_open = {r[0] for r in loaded.sql("SELECT sid FROM engagements WHERE valid_to IS NULL")}
    assert first <= still_open


@pytest.mark.slow
def test_append_logs_each_snapshot_with_its_time(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory()
    ended = two_runs(emu, loaded, "append")
    sid = sorted(ended)[0]
    snaps = loaded.sql("SELECT status, snapshot_at FROM engagements WHERE sid = ? ORDER BY snapshot_at", sid)
    assert [s[0] for s in snaps] == ["active", "ended"] and snaps[0][1] < snaps[1][1]
    total = loaded.scalar("SELECT count(*) FROM engagements")
    assert "engagements" not in loaded.run(make_source(emu.base_url, write_mode="append"))
    assert loaded.scalar("SELECT count(*) FROM engagements") == total
