"""One run per pipeline at a time: an exclusive lock file beside the pipeline's working folder.

Two runs of one pipeline (cron starting the next hour while the last one still loads) share the
working folder: both would try to load the same package, and each fails the other. The lock is an
OS file lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on
``<pipelines_dir>/<pipeline_name>.run.lock``, held for the whole run. The kernel releases it when
its process ends in any way (``kill -9`` included), so a lock is never stuck; the file also records
the holder's pid and start time, for the message the next run prints, and for the log line when a
run takes over the lock of one that died without releasing it.

The lock file lives beside the working folder, not in it: dlt wipes the working folder when it
resets a pipeline, and a lock on a deleted file would no longer exclude anyone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from twilio_studio.client import StudioError
from twilio_studio.runhooks import at_end_of_run, traced

logger = logging.getLogger("twilio_studio")

EX_TEMPFAIL = 75  # sysexits.h: a temporary failure; schedulers retry later
# how long a refused run waits for the holder's pid and start time when the lock was taken an
# instant ago (the record is written right after the lock); the run is refused either way
HOLDER_RECORD_WAIT_SECONDS = 1.0


class RunInProgressError(StudioError):
    """Another run of the same pipeline holds its lock; raised before any request is sent."""


def lock_path(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> Path:
    """Where the run lock of a pipeline lives: beside its working folder."""
    return Path(pipelines_dir) / f"{pipeline_name}.run.lock"


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: another open file holds it
        return False
    return True


def _unlock(handle: IO[str]) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@dataclass
class _Held:
    handle: IO[str]
    depth: int = 1


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


def holds(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> bool:
    """Whether this process holds the run lock of the pipeline."""
    with _held_guard:
        return lock_path(pipelines_dir, pipeline_name).resolve() in _held


def acquire(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> None:
    """Takes the run lock of a pipeline, or raises RunInProgressError at once (never waits).

    Re-entrant within one process: a run that already holds the lock (the CLI, or ``run_lock``
    around ``pipeline.run``) takes it again when the source starts extracting; each ``acquire``
    needs its ``release``.
    """
    path = lock_path(pipelines_dir, pipeline_name).resolve()
    with _held_guard:
        if path in _held:
            _held[path].depth += 1
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held until release)
        if not _try_lock(handle):
            handle.close()
            holder = _read_holder(path)
            deadline = time.monotonic() + HOLDER_RECORD_WAIT_SECONDS
            while "pid" not in holder and time.monotonic() < deadline:
                # the holder is between taking the lock and writing its record: read it once written
                time.sleep(0.02)
                holder = _read_holder(path)
            raise RunInProgressError(
                f"another run of pipeline {pipeline_name} is in progress "
                f"(pid {holder.get('pid', '?')}, since {holder.get('since', '?')}); "
                "this run stopped before sending any request: try again when it has finished"
            )
        previous = _read_holder(path)
        if previous.get("pid") not in (None, os.getpid()):
            state = "is no longer running" if not _alive(previous.get("pid")) else "released its lock"
            logger.warning(
                "pipeline %s: taking over the run lock of pid %s (since %s), which %s without clearing it",
                pipeline_name, previous.get("pid"), previous.get("since", "?"), state,
            )  # fmt: skip
        handle.seek(0)
        handle.truncate()
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        handle.flush()
        _held[path] = _Held(handle)


def release(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> None:
    """Releases one hold of the run lock; the last one clears the file and unlocks it."""
    path = lock_path(pipelines_dir, pipeline_name).resolve()
    with _held_guard:
        held = _held.get(path)
        if held is None:
            return
        held.depth -= 1
        if held.depth > 0:
            return
        del _held[path]
        with contextlib.suppress(OSError):
            held.handle.seek(0)
            held.handle.truncate()
            held.handle.flush()
        try:
            _unlock(held.handle)
        finally:
            held.handle.close()


@contextlib.contextmanager
def lock_of(pipelines_dir: str | os.PathLike[str], pipeline_name: str) -> Iterator[None]:
    """Holds the run lock of the pipeline ``pipeline_name`` in ``pipelines_dir`` for a block.

    For before the pipeline object exists (``run_lock`` for one that does).
    """
    acquire(pipelines_dir, pipeline_name)
    try:
        yield
    finally:
        release(pipelines_dir, pipeline_name)


@contextlib.contextmanager
def run_lock(pipeline: Any) -> Iterator[None]:
    """Holds the run lock of a dlt pipeline for the block inside it.

    Used as ``with run_lock(pipeline): pipeline.run(...)``.

    Raises:
        RunInProgressError: Another process (or another thread's run) holds it.
    """
    acquire(pipeline.pipelines_dir, pipeline.pipeline_name)
    try:
        yield
    finally:
        release(pipeline.pipelines_dir, pipeline.pipeline_name)


# ---------------------------------------------------------------------------- held by a run
# The source takes the lock when extraction starts (when nobody took it around pipeline.run), and
# the end of the run's trace releases it (twilio_studio.runhooks), failed or not.
_by_run: dict[int, tuple[str, str]] = {}


def hold_for_run(pipeline: Any) -> None:
    """Takes the pipeline's lock until its current run's trace ends (unless this process holds it)."""
    key = id(pipeline)
    if key in _by_run or holds(pipeline.pipelines_dir, pipeline.pipeline_name):
        return
    if not traced(pipeline):
        logger.debug("runtime trace disabled: the run lock is taken only by run_lock() or the CLI")
        return
    acquire(pipeline.pipelines_dir, pipeline.pipeline_name)
    _by_run[key] = (pipeline.pipelines_dir, pipeline.pipeline_name)

    def release_held() -> None:
        held = _by_run.pop(key, None)
        if held is not None:
            release(*held)

    at_end_of_run(pipeline, release_held)
