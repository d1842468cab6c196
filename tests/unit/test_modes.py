"""Write modes answer every question a mode raises (twilio_studio.modes), for the first load and later ones."""

from __future__ import annotations

import pytest

from twilio_studio.modes import WriteMode

OWNER = "engagement_sid"


@pytest.mark.parametrize(
    ("name", "loaded_before", "merges", "replaces", "versions", "snapshots", "stamps", "root_disposition"),
    [
        pytest.param("merge", False, False, False, False, False, False, "append", id="merge-first-load-appends"),
        pytest.param("merge", True, True, True, False, False, False, "merge", id="merge-later"),
        pytest.param("scd2", False, False, False, True, False, True, "append", id="scd2-first-load-stamps-validity"),
        pytest.param("scd2", True, True, False, True, False, False, "merge", id="scd2-later"),
        pytest.param("append", False, False, False, False, True, False, "append", id="append-first"),
        pytest.param("append", True, False, False, False, True, False, "append", id="append-later"),
    ],
)
def test_a_mode_for_a_run(
    name: str, loaded_before: bool, merges: bool, replaces: bool, versions: bool, snapshots: bool, stamps: bool,
    root_disposition: str,
) -> None:  # fmt: skip
    mode = WriteMode(name).for_run(loaded_before)
    assert (mode.merges, mode.replaces_children, mode.versions, mode.snapshots, mode.stamps_validity) == (
        merges, replaces, versions, snapshots, stamps,
    )  # fmt: skip
    disposition = mode.root_hints({})["write_disposition"]
    assert (disposition if isinstance(disposition, str) else disposition["disposition"]) == root_disposition
    for table in mode.child_hints("engagements", OWNER).values():
        child = table["write_disposition"]
        assert (child if isinstance(child, str) else child["disposition"]) == ("merge" if merges else "append")
        # dlt warns about a hard_delete hint wherever no merge reads it
        assert ("hard_delete" in table["columns"]["_tombstone"]) is replaces


def test_root_columns_follow_the_mode() -> None:
    assert "snapshot_at" in WriteMode("append").root_hints({})["columns"]
    assert {"valid_from", "valid_to"} <= set(WriteMode("scd2", first_load=True).root_hints({})["columns"])
    assert WriteMode("scd2").root_hints({})["merge_key"] == "sid"  # retires only the versions of SIDs loaded
    assert WriteMode("merge").root_hints({"sid": {}})["primary_key"] == "sid"


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of merge, scd2, append"):
        WriteMode("upsert")
