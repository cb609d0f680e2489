"""Every SIGINT and SIGTERM handler of the project, and the exit codes the command lines use.

No other module calls ``signal.signal``: the entry points (main.py for training and the
classical grid, suite.py, convert.py, predict.py) and the worker pools take their handling from
here.

- ``sigterm_raises``: SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so every cleanup
  written for Ctrl-C (temporary folders removed, worker processes stopped) also runs on a
  scheduler's SIGTERM.
- ``sigterm_sets``: SIGTERM only sets a flag (training: checkpoint at the next chunk boundary,
  then exit ``EXIT_PREEMPTED``).
- ``sigint_ignored`` / ``ignore_sigint``: worker pools ignore Ctrl-C (it reaches the whole
  process group); their parent alone decides, and stops them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_ERROR = 1  # the run failed (bad data, full disk, non-finite loss ...)
EXIT_USAGE = 2  # bad command line or config: nothing was started
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving; rerun to resume
EXIT_INTERRUPTED = 130  # 128 + SIGINT: stopped by Ctrl-C


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (e.g. a scheduler's preemption)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _handler(signum: int, handler) -> Iterator[None]:
    """``handler`` for ``signum`` within the block (main thread only: elsewhere Python cannot
    install handlers, and the block runs with the process's own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


def sigterm_raises():
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (as Ctrl-C raises
    KeyboardInterrupt) instead of killing the process before its cleanup runs."""
    return _handler(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def sigterm_sets() -> Iterator[threading.Event]:
    """Within the block, SIGTERM sets the yielded event instead of raising."""
    requested = threading.Event()
    with _handler(signal.SIGTERM, lambda *_: requested.set()):
        yield requested


def reclaim_sigterm() -> None:
    """Put this module's SIGTERM handling back after ``jax.distributed.initialize``: its
    preemption notifier installs a C handler of its own (which Python does not see) that only
    records the notice, so SIGTERM would neither raise nor set the flag. Multi-process
    training hands the notice to JAX's preemption sync instead (training.preemption)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM) or signal.SIG_DFL)


def sigint_ignored():
    """Within the block Ctrl-C is ignored; processes started in it inherit that from their
    first instruction (worker pools)."""
    return _handler(signal.SIGINT, signal.SIG_IGN)


def ignore_sigint() -> None:
    """A worker pool's initializer: this process ignores Ctrl-C for good."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def describe(stop: BaseException) -> str:
    return "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"


def exit_code(stop: BaseException) -> int:
    return EXIT_PREEMPTED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
