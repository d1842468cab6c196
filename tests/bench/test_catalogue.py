"""The benchmark's case catalogue as data: which cases a command line runs, in which order.

And on which emulator. No process is started: this reads ``benchmarks.catalogue`` as the harness's
loop does.
"""

from __future__ import annotations

import pytest
from benchmarks.catalogue import catalogue, sizes_of
from benchmarks.harness import Run
from benchmarks.run import parser

DEFAULT_ORDER = [
    "1a.light", "1l.light", "1c.light",
    "1a", "1l", "1b", "1b+", "1c", "3", "3s",
    "1a.heavy", "1l.heavy", "1c.heavy", "1l-scd2.heavy", "1l-append.heavy",
    "1a4.heavy", "1l4.heavy",
    "2a", "2b", "2a+", "2c", "4a", "4b", "5",
]  # fmt: skip


def run_order(*argv: str) -> list[str]:
    """The cases a command line selects, in order (a fallback group as if its case had failed)."""
    args = parser().parse_args(list(argv))
    s = sizes_of(args)
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    run = Run(args, s, workdir=None, only=only)  # type: ignore[arg-type]
    order: list[str] = []
    for g in catalogue(s, args):
        if g.enabled and (g.if_not_ok is None or g.if_not_ok in order):
            order += [c.id for c in run.selected(g)]
    return order


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(("--quick",), DEFAULT_ORDER, id="every_case"),
        pytest.param(("--quick", "--no-parquet-baseline"), [c for c in DEFAULT_ORDER if c != "1b+"],
                     id="no_parquet_baseline"),
        pytest.param(("--big", "0", "--only", "1a,1a4.heavy"), ["1a"], id="big_zero_skips_the_volume_cases"),
        pytest.param(("--quick", "--only", "3s"), ["1a", "3", "3s"],
                     id="incremental_runs_with_1a_and_both_walks"),
        pytest.param(("--quick", "--only", "4b,2c"), ["2c", "4b"], id="only_some"),
        pytest.param(("--quick", "--shapes", "heavy", "--big-shape", "default", "--only", "1a4,1l.heavy"),
                     ["1l.heavy", "1a4"], id="shapes_and_big_shape"),
        # at full size the fallback group is in the catalogue: the harness runs it only when 1b did not finish
        pytest.param(("--only", "1b"), ["1b", "1a-s", "1l-s", "1b-s"], id="full_size_fallback_after_1b"),
        pytest.param(("--only", "1b", "--baseline-fallback", "0"), ["1b"], id="fallback_zero_never"),
    ],
)  # fmt: skip
def test_a_command_line_runs_these_cases_in_this_order(argv: tuple[str, ...], expected: list[str]) -> None:
    assert run_order(*argv) == expected


def test_every_case_id_is_unique_and_every_group_has_its_own_emulator() -> None:
    args = parser().parse_args(["--quick"])
    groups = catalogue(sizes_of(args), args)
    ids = [c.id for g in groups for c in g.cases]
    assert len(ids) == len(set(ids))
    assert len({g.name for g in groups}) == len(groups)
    # every case another one depends on is in the same group, before it
    for g in groups:
        order = [c.id for c in g.cases]
        for c in g.cases:
            for other in (c.same_children_as, c.starts_from, c.same_rows_as):
                assert other is None or order.index(other) < order.index(c.id), (c.id, other)
