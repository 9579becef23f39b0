"""SIGINT, SIGTERM and SIGHUP while a run and its records are under way."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from runbook_exec.run.executor import Executor


class Signals:
    """SIGINT, SIGTERM and SIGHUP for the whole run and its records.

    While cells run, a signal stops the running cell and lets the failure/always cells, the reports and
    the release record follow (a hung-up terminal, SSH dropped, is handled like SIGTERM). Once the cells
    are done, a first signal is remembered (its exit status is used) and the records are still written;
    only a second one stops the runner at once.
    """

    def __init__(self) -> None:
        self.executor: Executor | None = None
        self.late: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in signals}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def attach(self, executor: Executor | None) -> None:
        self.executor = executor
        if executor is not None and self.late is not None:
            executor.interrupt(self.late)  # a signal that came while the session was starting

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.executor is not None:
            self.executor.interrupt(128 + signum)
            return
        if self.late is not None:
            raise KeyboardInterrupt
        self.late = 128 + signum
