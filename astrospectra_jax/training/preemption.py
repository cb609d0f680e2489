"""Preemption: SIGTERM stops training at a chunk boundary that every process agrees on.

SIGTERM sets a flag (``interrupts.sigterm_sets``); at each chunk boundary the processes agree
whether any of them was asked to stop (one small allgather with several processes), and all
checkpoint that boundary and stop. JAX's own preemption sync point
(``multihost_utils.reached_preemption_sync_point``) was tried: it names a boundary some time
after the notice, which with short runs can fall after the last step (no checkpoint).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np

from astrospectra_jax import interrupts


class Preempted(Exception):  # noqa: N818 - a stop, not an error
    """SIGTERM stopped training after saving the checkpoint of ``step``."""

    def __init__(self, step: int, checkpoint_dir: str):
        super().__init__(f"Preempted (SIGTERM): checkpoint saved at step {step} in "
                         f"{checkpoint_dir}; rerun the same command to resume.")
        self.step, self.checkpoint_dir = step, checkpoint_dir


class Preemption:
    """``reached(boundary)``, called at every chunk boundary, is True on every process at the
    boundary where they stop."""

    def __init__(self, requested):
        self.requested = requested

    def reached(self, boundary: int) -> bool:
        flag = self.requested.is_set()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            flag = bool(np.max(multihost_utils.process_allgather(np.int32(flag))))
        return flag


@contextlib.contextmanager
def watch() -> Iterator[Preemption]:
    """Within the block SIGTERM requests a preemption instead of raising."""
    with interrupts.sigterm_sets() as requested:
        yield Preemption(requested)
