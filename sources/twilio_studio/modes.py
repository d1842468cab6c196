"""Write modes: how a run writes engagements (or executions) and their child tables.

``merge`` keeps the latest state per SID (child rows replaced through tombstones), ``scd2`` every
version with ``valid_from`` / ``valid_to`` (child rows keyed by the version's hash), ``append`` a
snapshot per run. The first load of ``merge`` and ``scd2`` has nothing to merge with: it appends,
keyed as its mode keys the tables from the second run on (that merge was most of a full load's
load step, BENCHMARKS.md). One object answers every question a mode raises, so no other module
compares mode names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twilio_studio.settings import WRITE_MODES

TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}  # copied per column: dlt adds keys


@dataclass(frozen=True)
class WriteMode:
    """A write mode as one run applies it.

    ``name`` is the mode the user chose, ``first_load`` tells the first load of a merging mode
    (``for_run``).
    """

    name: str
    first_load: bool = False

    def __post_init__(self) -> None:
        if self.name not in WRITE_MODES:
            raise ValueError(f"write mode {self.name!r} is not one of {', '.join(WRITE_MODES)}")

    def for_run(self, loaded_before: bool) -> WriteMode:
        """The mode of a run: a merging mode's first load (nothing ``loaded_before``) appends."""
        return WriteMode(self.name, first_load=self.name != "append" and not loaded_before)

    @property
    def merges(self) -> bool:
        """Whether the load step merges (DuckDB needs room for joins and de-duplication)."""
        return self.name != "append" and not self.first_load

    @property
    def versions(self) -> bool:
        """scd2: every version keeps its own child rows, keyed by a hash of the version."""
        return self.name == "scd2"

    @property
    def snapshots(self) -> bool:
        """append: each run's rows carry ``snapshot_at`` and keys of their own."""
        return self.name == "append"

    @property
    def stamps_validity(self) -> bool:
        """scd2's first load: the rows carry the ``valid_from`` dlt's scd2 merge would have given them."""
        return self.name == "scd2" and self.first_load

    @property
    def replaces_children(self) -> bool:
        """Merge from the second load on: tombstones delete a changed engagement's old child rows."""
        return self.name == "merge" and not self.first_load

    def root_hints(self, columns: dict[str, Any]) -> dict[str, Any]:
        """The dlt hints of the root table (engagements or executions) given its ``columns``.

        scd2 retires only the versions of the SIDs a run loads (merge_key): a run carries changed
        engagements only, and rows Twilio dropped after 30 days must stay current, not be closed as
        deleted.
        """
        columns = dict(columns)
        hints: dict[str, Any]
        if self.name == "append":
            hints = {"write_disposition": "append"}
            columns["snapshot_at"] = dict(TIMESTAMP)
        elif self.name == "merge":
            hints = {"write_disposition": "append" if self.first_load else "merge", "primary_key": "sid"}
        elif self.first_load:  # scd2's first load
            hints = {"write_disposition": "append", "merge_key": "sid"}
            columns.update(valid_from=dict(TIMESTAMP), valid_to=dict(TIMESTAMP))
        else:
            hints = {
                "write_disposition": {
                    "disposition": "merge",
                    "strategy": "scd2",
                    "validity_column_names": ["valid_from", "valid_to"],
                },
                "merge_key": "sid",
            }
        return {**hints, "columns": columns}

    def child_hints(self, root: str, owner: str) -> dict[str, dict[str, Any]]:
        """The dlt hints of the child tables, by table name.

        ``merge`` replaces a root's child rows (merge on the owner's SID, tombstones deleting),
        ``scd2`` adds each version's rows once (merge on ``_dlt_id``, derived from the version's
        hash), ``append`` only adds, and so does a first load, with the keys of its mode.

        The root table takes the resource's own hints (``root_hints``): it is yielded without
        per-item hints, because dlt hands a transformer's output the hints of the item it came from.
        """
        ids = {
            "_dlt_id": {"data_type": "text", "nullable": False},
            "_dlt_parent_id": {"data_type": "text"},
            "_dlt_root_id": {"data_type": "text"},
            "_dlt_list_idx": {"data_type": "bigint"},
            # a hard-delete flag only where a merge reads it: dlt warns about the hint anywhere else
            "_tombstone": {"data_type": "bool", **({"hard_delete": True} if self.replaces_children else {})},
        }
        keys = [owner, "_dlt_id"]
        disposition: dict[str, Any]
        if self.name == "append":
            disposition = {"write_disposition": "append"}
        elif self.first_load:
            # merge's first load is keyed as merge keys it later; scd2's has no merge key, which
            # would delete other versions' rows
            disposition = {"write_disposition": "append", "primary_key": keys}
            if self.name == "merge":
                disposition["merge_key"] = owner
        elif self.name == "merge":
            # primary key too: a load job resumed after a crash may copy a file into staging twice,
            # and dlt de-duplicates staging rows by primary key only. The owner's SID leads it: dlt
            # deletes rows matching the primary key OR the merge key, and with both starting with
            # the owner's SID DuckDB joins on it (1 s); on `_dlt_id` alone, a nested loop (27 s for
            # 1,000 changed of 100,000)
            disposition = {
                "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
                "merge_key": owner,
                "primary_key": keys,
            }
        else:  # scd2: a version re-read (lookback) brings the same `_dlt_id`s again: they replace themselves
            disposition = {
                "write_disposition": {"disposition": "merge", "strategy": "delete-insert"},
                "primary_key": keys,
            }
        json_col = {"data_type": "json"}
        return {
            f"{root}__widgets": {**disposition, "columns": {**ids, "outputs": json_col}},
            f"{root}__widgets__fields": {**disposition, "columns": dict(ids)},
            f"{root}__flow_data": {**disposition, "columns": dict(ids)},
            f"{root}__flow_variables": {**disposition, "columns": dict(ids)},
        }
