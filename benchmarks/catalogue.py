"""The benchmark's cases as data: every case of ``python -m benchmarks.run`` is a row of ``catalogue``.

A ``Group`` is the emulator a set of cases runs against, one after another; a ``CaseDef`` says what
a case runs (its kind, pipeline, source options) and how its result is checked. ``benchmarks.harness``
runs the catalogue in a loop; nothing about a case is decided anywhere else.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from twilio_studio.settings import DEFAULT_MAX_CONCURRENCY

SHAPES = ("light", "default", "heavy")  # Dataset(context_shape=...)
PATHS = {"source": "CLI", "library": "library"}  # the two ways users load, as the targets name them
Verify = Literal["rows", "load", "incremental"]


def shaped(case_id: str, shape: str) -> str:
    """A case's id on a context shape: ``1a`` on the default shape, ``1a.heavy`` on the heavy one."""
    return case_id if shape == "default" else f"{case_id}.{shape}"


@dataclass
class Sizes:
    """The sizes of a benchmark run: flows, engagements, pages, latencies and context shapes of its cases."""

    flows: int
    engagements: int  # in all, case 1 and 3
    big: int  # in all, case 1a at volume; 0 skips it
    page_size: int
    latency_flows: int
    latency_pages: int
    latency_page_size: int
    latency: float
    throttle_cap: int
    change_share: float
    steps_parents: int = 2000  # case 4: engagements whose steps are read
    steps_latency: float = 0.05
    heavy_page_size: int = 100  # case 2a+: the same pages, bigger
    shapes: tuple[str, ...] = SHAPES  # case 1: context shapes of the full loads
    big_shape: str = "heavy"  # case 1a4/1l4: the shape at --big
    write_shape: str = "heavy"  # case 1l-scd2/1l-append: the shape of the write-mode comparison
    accounts: int = 50  # case 5: the parent and its subaccounts, each with account_flows flows
    account_flows: int = 2
    account_engagements: int = 100  # per flow
    account_page_size: int = 25
    account_latency: float = 0.05

    @property
    def per_flow(self) -> int:
        """Engagements per flow in the full-load cases."""
        return self.engagements // self.flows

    @property
    def latency_per_flow(self) -> int:
        """Engagements per flow in the latency-bound cases."""
        return self.latency_pages // self.latency_flows * self.latency_page_size


def sizes_of(args: argparse.Namespace) -> Sizes:
    """The run's sizes from the command line: the small fixed ones with ``--quick``, else the arguments'."""
    shapes = {"shapes": tuple(args.shapes), "big_shape": args.big_shape, "write_shape": args.write_shape}
    if args.quick:
        return Sizes(flows=4, engagements=600, big=2400, page_size=50, latency_flows=4, latency_pages=8,
                     latency_page_size=25, latency=0.02, throttle_cap=2, change_share=args.change_share,
                     steps_parents=40, steps_latency=0.01, heavy_page_size=50, accounts=5,
                     account_engagements=20, account_page_size=10, account_latency=0.01, **shapes)  # fmt: skip
    return Sizes(args.flows, args.engagements, args.big, args.page_size, args.latency_flows, args.latency_pages,
                 args.latency_page_size, args.latency, args.throttle_cap, args.change_share, **shapes)  # fmt: skip


def shape_list(value: str) -> list[str]:
    """``--shapes``: comma-separated context shapes, each one of SHAPES."""
    shapes = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in shapes if x not in SHAPES]
    if unknown or not shapes:
        raise argparse.ArgumentTypeError(f"{value!r}: give one or more of {', '.join(SHAPES)}, comma-separated")
    return [x for x in SHAPES if x in shapes]


@dataclass(frozen=True)
class CaseDef:
    """One case: what it runs, against its group's emulator, and how its result is checked.

    ``title`` may name ``{total}`` (the engagements the emulator shows) and ``{advance}`` (the
    seconds the clock moved before an incremental case).
    """

    id: str
    title: str
    kind: str  # source (the CLI's run_pipeline) | library (pipeline.run) | rest_api | floor
    name: str  # pipeline name and DuckDB file
    options: Mapping[str, Any] = field(default_factory=dict)  # source options (rest_api: case config)
    page_size: int | None = None  # None: the source's default
    resources: tuple[str, ...] | None = None  # None: the source's default resources
    shape: str = "default"  # the emulator's context shape
    scenario: str | None = None  # the scenario it is reported under, when not its group's name
    # rows: the engagements the emulator shows; load: also rows written, contexts filled and the
    # child rows of same_children_as; incremental: only the changed rows written, tables as same_rows_as
    verify: Verify = "rows"
    same_children_as: str | None = None  # a case whose child tables this one must match row for row
    runs_with: tuple[str, ...] = ()  # cases of its group that run whenever it runs (3 starts from 1a)
    advance_clock: bool = False  # before it: the clock moves so that change_share of the engagements change
    starts_from: str | None = None  # a copy of that case's pipeline, taken before the clock moved
    same_rows_as: str | None = None  # an incremental case whose tables this one must match


@dataclass(frozen=True)
class Group:
    """Cases that run one after another against one emulator process of their own."""

    name: str  # the emulator's name (its log file) and its cases' scenario
    emulator: Mapping[str, Any]  # EmulatorProcess options besides seed and padding
    cases: tuple[CaseDef, ...]
    enabled: bool = True  # False: its cases are known to --only but do not run (--big 0)
    if_not_ok: str | None = None  # runs only when this case ran and did not finish, whatever --only says


def full_loads(shape: str, s: Sizes, args: argparse.Namespace) -> Group:
    """The full loads on one context shape (and, on the default shape, the incremental runs after 1a)."""
    sfx = "" if shape == "default" else f"_{shape}"
    cli, lib = shaped("1a", shape), shaped("1l", shape)
    cases = [
        CaseDef(cli, f"full load, CLI path (run_pipeline), {shape} shape", "source", f"studio_full{sfx}",
                page_size=s.page_size, shape=shape, verify="load"),
        CaseDef(lib, f"full load, library path (pipeline.run, dlt's defaults), {shape} shape", "library",
                f"library_full{sfx}", page_size=s.page_size, shape=shape, verify="load", same_children_as=cli),
    ]  # fmt: skip
    if shape == "default":
        cases.append(CaseDef("1b", "full load: naive rest_api_source, dlt defaults", "rest_api", "naive",
                             page_size=s.page_size, verify="load"))  # fmt: skip
        if not args.no_parquet_baseline:
            cases.append(CaseDef("1b+", "naive rest_api_source + parquet loader files (info)", "rest_api",
                                 "naive_parquet", {"loader_file_format": "parquet"}, page_size=s.page_size,
                                 verify="load"))  # fmt: skip
    cases.append(CaseDef(shaped("1c", shape), f"floor: requests + raw JSON + DuckDB read_json, {shape} shape",
                         "floor", f"floor{sfx}", page_size=s.page_size, shape=shape, verify="load"))  # fmt: skip
    if shape == s.write_shape:
        cases += [
            CaseDef(shaped(f"1l-{mode}", shape), f"1l with write_mode={mode}, {shape} shape", "library",
                    f"library_{mode}{sfx}", {"write_mode": mode}, page_size=s.page_size, shape=shape, verify="load",
                    same_children_as=lib)
            for mode in ("scd2", "append")
        ]  # fmt: skip
    if shape == "default":
        cases += [
            CaseDef("3", "incremental: +{advance} s on the clock, CLI path, every page", "source", "studio_full",
                    page_size=s.page_size, verify="incremental", runs_with=("1a", "3s"), advance_clock=True),
            CaseDef("3s", "3 with stop_at_ended_pages=True, from a copy of the same state", "source", "studio_full",
                    {"stop_at_ended_pages": True}, page_size=s.page_size, verify="incremental",
                    runs_with=("1a", "3"), starts_from="1a", same_rows_as="3"),
        ]  # fmt: skip
    emulator = {"flows": s.flows, "engagements": s.per_flow, "shape": shape}
    return Group("full" if shape == "default" else f"full.{shape}", emulator, tuple(cases))


def catalogue(s: Sizes, args: argparse.Namespace) -> list[Group]:
    """Every case, in the order they run: groups one after another, each group's cases in its order."""
    fallback = min(args.baseline_fallback, s.engagements)
    scaled = "{total:,}"
    big = "" if s.big_shape == "default" else "." + s.big_shape
    latency = {"flows": s.latency_flows, "engagements": s.latency_per_flow, "latency": s.latency}
    groups = [full_loads(shape, s, args) for shape in s.shapes]
    if fallback and fallback < s.engagements:  # 1b did not finish: both paths and 1b again, at a size 1b can finish
        groups.append(Group("scaled", {"flows": s.flows, "engagements": fallback // s.flows}, (
            CaseDef("1a-s", f"1a at {scaled} engagements (1b did not finish)", "source", "studio_scaled",
                    page_size=s.page_size, verify="load"),
            CaseDef("1l-s", f"1l at {scaled} engagements", "library", "library_scaled", page_size=s.page_size,
                    verify="load", same_children_as="1a-s"),
            CaseDef("1b-s", f"1b at {scaled} engagements", "rest_api", "naive_scaled", page_size=s.page_size,
                    verify="load"),
        ), if_not_ok="1b"))  # fmt: skip
    groups += [
        # both paths at volume: peak RSS must not grow with the number of engagements
        Group("big", {"flows": s.flows, "engagements": s.big // s.flows, "shape": s.big_shape}, (
            CaseDef(shaped("1a4", s.big_shape), f"1a{big} at {s.big:,} engagements", "source", "studio_big",
                    page_size=s.page_size, shape=s.big_shape, verify="load"),
            CaseDef(shaped("1l4", s.big_shape), f"1l{big} at {s.big:,} engagements", "library", "library_big",
                    page_size=s.page_size, shape=s.big_shape, verify="load"),
        ), enabled=bool(s.big)),
        # latency-bound walks, then a concurrency cap below ours
        Group("latency", latency, (
            CaseDef("2a", "latency-bound: this source, context_mode=inline", "source", "studio_2a",
                    {"context_mode": "inline"}, page_size=s.latency_page_size),
            CaseDef("2b", "latency-bound: this source, defaults (fetch_missing)", "source", "studio_2b",
                    page_size=s.latency_page_size),
        )),
        Group("latency-heavy", {**latency, "engagements": s.latency_pages // s.latency_flows * s.heavy_page_size}, (
            CaseDef("2a+", f"2a with pages of {s.heavy_page_size} ({{total:,}} engagements; info)", "source",
                    "studio_2a_heavy", {"context_mode": "inline"}, page_size=s.heavy_page_size, scenario="latency"),
        )),
        Group("throttled", {**latency, "max_concurrency": s.throttle_cap}, (
            CaseDef("2c", f"latency-bound, emulator cap {s.throttle_cap} < ours {DEFAULT_MAX_CONCURRENCY} (429s), "
                    "defaults", "source", "studio_2c", page_size=s.latency_page_size, scenario="latency"),
        )),
        # steps of changed parents, latency-bound; then a rerun with nothing changed
        Group("steps", {"flows": 2, "engagements": s.steps_parents // 2, "latency": s.steps_latency}, tuple(
            CaseDef(case_id, title, "source", "studio_steps", resources=("flows", "engagements", "engagement_steps"))
            for case_id, title in (
                ("4a", f"steps of {{total:,}} new parents, {s.steps_latency * 1000:.0f} ms latency"),
                ("4b", "4a again, nothing changed: no step requests"),
            )
        )),
        # many accounts (subaccounts="all"), each read with its own credentials, latency-bound
        Group("accounts", {"flows": s.account_flows, "engagements": s.account_engagements,
                           "latency": s.account_latency, "subaccounts": s.accounts - 1}, (
            CaseDef("5", f"{s.accounts} accounts x {s.account_flows} flows, {s.account_latency * 1000:.0f} ms "
                    "latency, subaccounts=all ({total:,} engagements)", "source", "studio_accounts",
                    {"subaccounts": "all"}, page_size=s.account_page_size),
        )),
    ]  # fmt: skip
    return groups
