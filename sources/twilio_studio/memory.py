"""Keeping a load's memory small: the cycle collector's pace, freed memory handed back, glibc's arenas.

A full load parses hundreds of megabytes of JSON into short-lived Python objects in many threads,
then DuckDB merges in the same process. What each helper saved is measured in BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from twilio_studio.destinations import config_key, destination_kind
from twilio_studio.duckdb_file import hold_through_load
from twilio_studio.runhooks import at_end_of_run, before_step, traced

# Allocations between two passes of Python's cycle collector while pages are parsed and normalized.
GC_THRESHOLD = 100_000
M_ARENA_MAX = -8  # mallopt's parameter number for MALLOC_ARENA_MAX (glibc's malloc.h)
M_MMAP_THRESHOLD = -3  # mallopt's parameter number for MALLOC_MMAP_THRESHOLD_
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 256 * 1024  # bytes: larger blocks are mapped, and unmapped when freed


def _libc() -> Any:
    """glibc, or None elsewhere (macOS, musl): there its allocator decides alone."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both exist in glibc only
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def rare_gc_passes() -> Iterator[None]:
    """Runs Python's cycle collector after 100,000 allocations instead of 700, then restores the setting.

    A page of 1,000 engagements parses into some 100,000 dicts and lists, all freed by reference
    counting (JSON has no cycles); at the default threshold the collector ran hundreds of times per
    page and tripled the parse time (BENCHMARKS.md). It still runs, so other code's cycles are freed.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def release_freed_memory() -> None:
    """Hands freed memory back to the OS: Arrow's pool and glibc's heap (``malloc_trim``).

    After a walk, both hold the freed memory of every page parsed and every Arrow batch built, and
    the process would carry it into the load step, where DuckDB (in the same process) needs memory.
    """
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        gc.collect()  # cycles the rare passes left behind, so their memory is free to hand back
        libc.malloc_trim(0)


def few_malloc_arenas() -> bool:
    """Has glibc share 2 heaps among all threads and map large blocks; True if the arena setting was made.

    From now on, glibc shares 2 heaps among all threads (``MALLOC_ARENA_MAX=2``), unless the
    environment sets ``MALLOC_ARENA_MAX``, and maps blocks over 256 KB (``MALLOC_MMAP_THRESHOLD_``,
    likewise).

    glibc gives each new thread a heap of its own, up to 8 per core; the walk's threads each
    allocate response bodies and Arrow buffers, and each heap keeps its own high-water mark, so the
    process's peak grew with the thread count (BENCHMARKS.md). Called when a walk starts, before
    its threads exist; a process-wide setting of glibc's allocator, harmless to other code.
    """
    libc = _libc()
    if libc is None:
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # a fixed threshold: glibc otherwise raises it after each large free, and the walk's
        # response bodies (MBs each) then come from the heap and stay there (-30 MB at 20,000 heavy)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS))


# DuckDB's defaults (80% of RAM, insertion order kept) held every block a full load wrote in its
# buffer pool: 2.1 GB for 100,000 engagements of the heavy shape. Capped, DuckDB evicts or spills to
# a temp directory beside the file instead (BENCHMARKS.md). A first load only appends (streaming
# inserts): 128 MB. A run that merges needs room for its joins and de-duplication (at 128 MB and two
# threads a merge of 400,000 engagements ran out of memory): 512 MB, beyond which DuckDB spills.
# A value the user configured always wins.
DUCKDB_SETTINGS: dict[str, Any] = {"memory_limit": "192MB", "preserve_insertion_order": False}
DUCKDB_MERGE_SETTINGS: dict[str, Any] = {"memory_limit": "512MB", "preserve_insertion_order": False}
# dlt's config path of DuckDB's settings for a destination named "duckdb" (a DuckDB destination named
# otherwise reads destination.<its name>.credentials.global_config: destinations.config_key)
GLOBAL_CONFIG = "credentials.global_config"
DUCKDB_GLOBAL_CONFIG = f"destination.duckdb.{GLOBAL_CONFIG}"
# dlt's loader runs up to 20 jobs at once, each on a DuckDB connection of its own: under one cap the
# five Parquet inserts of a full load then took 1.3-1.6x as long as one after another (each insert
# uses all of DuckDB's threads anyway; BENCHMARKS.md). One at a time, unless the user set it.
LOAD_WORKERS = "load.workers"
_ours: dict[int, dict[str, Any]] = {}  # per pipeline: the settings this run's resources asked for


def load_policy(merges: bool) -> None:
    """The running pipeline's load step: freed memory handed back to the OS when it starts.

    Any destination; for DuckDB also the settings of ``bounded_duckdb``, and its file held open
    through the step (``duckdb_file.hold_through_load``).
    """
    import dlt

    try:
        pipeline = dlt.current.pipeline()
    except Exception:  # iterated outside a pipeline
        return
    if not traced(pipeline):
        return  # no trace, no step to hook: the walk's own release_freed_memory is all
    before_step(pipeline, "load", release_freed_memory)
    bounded_duckdb(pipeline, merges)
    hold_through_load(pipeline)


def bounded_duckdb(pipeline: Any, merges: bool) -> bool:
    """Bounds the memory of the pipeline's DuckDB load; True if the DuckDB settings were made.

    Gives the pipeline's DuckDB destination DUCKDB_SETTINGS (DUCKDB_MERGE_SETTINGS when a resource of
    the run ``merges``) and one load job at a time for this run's load step, each unless the user
    configured it (``destination.duckdb.credentials.global_config``, env var
    ``DESTINATION__DUCKDB__CREDENTIALS__GLOBAL_CONFIG``, with the destination's own name in place of
    ``duckdb`` for a DuckDB destination named otherwise; ``load.workers``, env var ``LOAD__WORKERS``).

    Set in dlt's in-memory secrets and config, where the duckdb destination and the loader read them
    when the load step starts (the same for ``pipeline.run(source)`` and ``twilio-studio run``), and
    taken back when the run's trace ends, so other pipelines of the process keep dlt's defaults.
    """
    import dlt

    destination = pipeline.destination
    if destination_kind(destination) != "duckdb":
        return False
    global_config = config_key(destination, GLOBAL_CONFIG)
    key = id(pipeline)
    if key not in _ours:
        if dlt.config.get(LOAD_WORKERS) is None:
            dlt.config[LOAD_WORKERS] = 1
            at_end_of_run(pipeline, lambda: dlt.config.__setitem__(LOAD_WORKERS, None))
        if dlt.secrets.get(global_config) is not None:
            _ours[key] = {}  # the user's: never ours to change

            def forget() -> None:
                _ours.pop(key, None)

            at_end_of_run(pipeline, forget)
            return False

        def take_back() -> None:
            _ours.pop(key, None)
            dlt.secrets[global_config] = None

        at_end_of_run(pipeline, take_back)
    if _ours.get(key) == {}:
        return False
    settings = DUCKDB_MERGE_SETTINGS if merges or _ours.get(key) is DUCKDB_MERGE_SETTINGS else DUCKDB_SETTINGS
    _ours[key] = settings
    dlt.secrets[global_config] = dict(settings)
    return True
