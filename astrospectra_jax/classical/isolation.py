"""Fits that can be stopped: a call runs in a child process, killed when its budget is spent.

``call(fn, task, data, ...)`` runs ``fn(task, *data)`` in this thread's sandbox process (one per
joblib worker thread, reused from call to call) and returns its result, or raises
``BudgetExceeded`` / ``ProcessDied``. The data are sent once per sandbox (as .npy paths when
they are memory-mapped files). A sandbox exits with the process that started it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

_START_TIMEOUT_S = 600.0


class BudgetExceeded(Exception):
    """The call ran past its budget; its process was killed."""

    def __init__(self, elapsed_s: float):
        super().__init__(f"stopped after {elapsed_s:.1f} s")
        self.elapsed_s = elapsed_s


class ProcessDied(Exception):
    """The sandbox process ended during the call (e.g. killed for memory)."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the process died (exit code {exitcode})")
        self.exitcode = exitcode


def _open_payload(payload):
    return tuple(np.load(a[1], mmap_mode="r") if isinstance(a, tuple) else a for a in payload)


def _exit_with_parent(lifeline) -> None:
    lifeline.poll(None)  # nothing is ever sent: this returns when the parent's end closes
    os._exit(1)  # the parent is gone (e.g. killed): stop working for nobody


def _sandbox_main(conn, lifeline, threads: int) -> None:
    """Child process: run the calls sent over ``conn`` until told to stop."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    conn.send("ready")
    arrays = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        fn, task, payload = message
        if payload is not None:
            arrays = _open_payload(payload)
        conn.send(fn(task, *arrays))


class _Sandbox:
    """A child process that runs one call at a time and can be killed.

    A call past its budget gets the process killed and the sandbox discarded.
    """

    def __init__(self, threads: int, preload: Sequence[str] = ()):
        # forkserver: one clean server process imports the modules once, then each sandbox
        # is a cheap fork of it (safer than forking a process that runs threads).
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["__main__", __name__, *preload])
        else:
            context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        # Only this process holds the lifeline's sending end; the child exits when it closes.
        lifeline, self.lifeline = context.Pipe(duplex=False)
        self.process = context.Process(target=_sandbox_main, args=(child, lifeline, threads),
                                       name="classical-fit", daemon=True)
        self.process.start()
        child.close()
        lifeline.close()
        self.data_id = None
        self.busy = False
        try:
            ready = self.conn.poll(_START_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.close()
            raise RuntimeError(
                f"a process to fit in did not start (exit code {self.process.exitcode}); a "
                "time budget needs child processes (run from a file with an "
                "`if __name__ == '__main__':` guard), or set time_budget_s=0")

    def call(self, fn: Callable, task, data, data_id: str, budget_s: float):
        payload = None
        if data_id != self.data_id:
            payload = tuple((("npy", a.filename) if isinstance(a, np.memmap) and a.filename
                             and os.path.exists(a.filename) else np.asarray(a)) for a in data)
        start = time.perf_counter()
        self.busy = True
        self.conn.send((fn, task, payload))
        self.data_id = data_id
        if self.conn.poll(budget_s):
            try:
                result = self.conn.recv()
                self.busy = False
                return result
            except (EOFError, OSError):
                pass
            self.kill()
            raise ProcessDied(self.process.exitcode)
        elapsed = time.perf_counter() - start
        self.kill()
        raise BudgetExceeded(elapsed)

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()
        self.lifeline.close()

    def close(self) -> None:
        """Stop the process: an idle one is asked to leave, a busy one is killed."""
        if self.busy:
            self.kill()
            return
        with contextlib.suppress(OSError, ValueError):
            if self.process.is_alive():
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.lifeline.close()


_thread_sandbox = threading.local()
_sandboxes: list[_Sandbox] = []
_sandboxes_lock = threading.Lock()


def close_sandboxes() -> None:
    """Stop every sandbox process this process started."""
    with _sandboxes_lock:
        sandboxes, _sandboxes[:] = list(_sandboxes), []
    for sandbox in sandboxes:
        sandbox.close()
    _thread_sandbox.__dict__.clear()


def call(fn: Callable, task, data: Sequence[np.ndarray], *, data_id: str, budget_s: float,
         threads: int):
    """``fn(task, *data)`` in this thread's sandbox, stopped after ``budget_s`` seconds.

    ``fn`` must be a module-level function (it is sent by reference; its module is preloaded
    into the sandboxes). ``data_id`` names ``data``: they are sent again only when it changes.
    A sandbox that cannot start raises RuntimeError: no fault of the call.
    """
    sandbox = getattr(_thread_sandbox, "sandbox", None)
    if sandbox is None or not sandbox.alive():
        sandbox = _thread_sandbox.sandbox = _Sandbox(threads, preload=[fn.__module__])
        with _sandboxes_lock:
            _sandboxes.append(sandbox)
    return sandbox.call(fn, task, data, data_id, budget_s)
