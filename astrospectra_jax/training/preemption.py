"""Preemption: SIGTERM stops training at a chunk boundary that every process agrees on.

SIGTERM sets a flag (``interrupts.sigterm_sets``). One process: the next chunk boundary
checkpoints and stops. Several processes (``jax.distributed``): the process that got SIGTERM
hands the notice to JAX's preemption sync (``multihost_utils.reached_preemption_sync_point``,
called at every boundary), which picks a boundary after the one each process has reached, so
every process stops, and saves, at that one. It is a boundary or two later than the notice: a
notice in the last chunks lets the run finish instead (its final checkpoint).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import jax

from astrospectra_jax import interrupts

# The coordination-service key by which JAX's preemption notifier (a SIGTERM handler of its own,
# which interrupts.py replaces) announces a notice; the value is the RFC 3339 death time.
_NOTICE_KEY = "RECEIVED_PREEMPTION_NOTICE"


class Preempted(Exception):  # noqa: N818 - a stop, not an error
    """SIGTERM stopped training after saving the checkpoint of ``step``."""

    def __init__(self, step: int, checkpoint_dir: str):
        super().__init__(f"Preempted (SIGTERM): checkpoint saved at step {step} in "
                         f"{checkpoint_dir}; rerun the same command to resume.")
        self.step, self.checkpoint_dir = step, checkpoint_dir


class Preemption:
    """``reached(boundary)``, called at every chunk boundary (1, 2, ... from the run's start),
    is True on every process at the boundary where they stop."""

    def __init__(self, requested):
        self.requested = requested
        self.announced = False

    def reached(self, boundary: int) -> bool:
        if jax.process_count() == 1:
            return self.requested.is_set()
        from jax.experimental import multihost_utils

        if self.requested.is_set() and not self.announced:
            _announce()
            self.announced = True
        return multihost_utils.reached_preemption_sync_point(boundary)


def _announce() -> None:
    """What JAX's notifier does on SIGTERM: tell every process's preemption sync manager (through
    the coordination service) that this one will be stopped, now."""
    from jax._src import distributed

    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    distributed.global_state.client.key_value_set(_NOTICE_KEY, now, allow_overwrite=True)


@contextlib.contextmanager
def watch() -> Iterator[Preemption]:
    """Within the block SIGTERM requests a preemption instead of raising."""
    with interrupts.sigterm_sets() as requested:
        yield Preemption(requested)
