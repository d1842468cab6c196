"""Work to do when dlt starts a step of a pipeline's run and when it ends the run.

Free memory before the load and hold the DuckDB file open through it; when the run ends, failed or
not, release its run lock and take back settings.

dlt calls every module in ``dlt.pipeline.trace.TRACKING_MODULES`` when a run's trace starts and
ends (its own telemetry is one); this module adds one that calls back what was registered for that
pipeline. ``pipeline.run`` is one trace from sync to load; each of ``extract``, ``normalize`` and
``load`` called alone is a trace of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _RunHooks:
    """A dlt tracking module: calls the callbacks registered for a pipeline's steps and end of run.

    Each step's callbacks are called once when the step starts (``steps``) or ends, failed or not
    (``step_ends``), the others when its trace ends.
    """

    def __init__(self) -> None:
        self.pending: dict[int, list[Callable[[], None]]] = {}
        self.steps: dict[tuple[int, str], list[Callable[[], None]]] = {}
        self.step_ends: dict[tuple[int, str], list[Callable[[], None]]] = {}
        self.lock = threading.Lock()

    def on_start_trace(self, trace: Any, step: Any, pipeline: Any) -> None:
        pass

    def on_start_trace_step(self, trace: Any, step: Any, pipeline: Any) -> None:
        with self.lock:
            callbacks = self.steps.pop((id(pipeline), str(step)), [])
        for callback in callbacks:
            callback()

    def on_end_trace_step(self, trace: Any, step: Any, pipeline: Any, step_info: Any, send_state: bool) -> None:
        with self.lock:  # ``step`` is dlt's PipelineStepTrace here, its name in ``step.step``
            callbacks = self.step_ends.pop((id(pipeline), str(getattr(step, "step", step))), [])
        for callback in callbacks:
            callback()

    def on_end_trace(self, trace: Any, pipeline: Any, send_state: bool) -> None:
        with self.lock:
            callbacks = self.pending.pop(id(pipeline), [])
            for steps in (self.steps, self.step_ends):
                for key in [k for k in steps if k[0] == id(pipeline)]:
                    del steps[key]  # a step the run never reached (it failed before)
        for callback in callbacks:
            callback()


HOOKS = _RunHooks()


def traced(pipeline: Any) -> bool:
    """Whether dlt traces this pipeline's runs (``RUNTIME__ENABLE_RUNTIME_TRACE``, on by default).

    Without a trace there is no end of run to call back at.
    """
    return bool(getattr(getattr(pipeline, "config", None), "enable_runtime_trace", True))


def _install() -> None:
    from dlt.pipeline import trace

    if trace.TRACKING_MODULES is None:
        trace.TRACKING_MODULES = []
    if not any(m is HOOKS for m in trace.TRACKING_MODULES):
        trace.TRACKING_MODULES.append(HOOKS)


def at_end_of_run(pipeline: Any, callback: Callable[[], None]) -> None:
    """Calls ``callback`` when dlt ends the pipeline's current run (check ``traced`` first)."""
    _install()
    with HOOKS.lock:
        HOOKS.pending.setdefault(id(pipeline), []).append(callback)


def before_step(pipeline: Any, step: str, callback: Callable[[], None]) -> None:
    """Calls ``callback`` when the pipeline's current run starts ``step`` (``normalize``, ``load``), once.

    Once however often it is registered (each resource of a run registers what the run needs);
    forgotten when the run ends first (check ``traced`` first).
    """
    _install()
    with HOOKS.lock:
        callbacks = HOOKS.steps.setdefault((id(pipeline), step), [])
        if callback not in callbacks:
            callbacks.append(callback)


def after_step(pipeline: Any, step: str, callback: Callable[[], None]) -> None:
    """Calls ``callback`` when the pipeline's current run ends ``step``, failed or not, once.

    As ``before_step``: once however often it is registered, forgotten when the run ends first.
    """
    _install()
    with HOOKS.lock:
        callbacks = HOOKS.step_ends.setdefault((id(pipeline), step), [])
        if callback not in callbacks:
            callbacks.append(callback)
