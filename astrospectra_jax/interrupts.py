"""Ctrl-C and SIGTERM as one exception, and the exit codes the command lines use for them.

``Terminated`` subclasses KeyboardInterrupt, so every cleanup written for Ctrl-C (temporary
folders removed, worker processes stopped) also runs on a scheduler's SIGTERM.
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_ERROR = 1  # the run failed (bad data, full disk, non-finite loss ...)
EXIT_USAGE = 2  # bad command line or config: nothing was started
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving; rerun to resume
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped by Ctrl-C


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (e.g. a scheduler's preemption)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (as Ctrl-C raises
    KeyboardInterrupt) instead of killing the process before its cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe(stop: BaseException) -> str:
    return "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"


def exit_code(stop: BaseException) -> int:
    return EXIT_PREEMPTED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
