"""Preemption: SIGTERM stops training at a chunk boundary that every process agrees on.

Single process: SIGTERM sets a flag (``interrupts.sigterm_sets``) and the loop checkpoints at
the next chunk boundary. Several processes: JAX's preemption sync point
(``multihost_utils.reached_preemption_sync_point``, the coordination service's own SIGTERM
notice) names one chunk boundary, the same on every process, with no collective of ours.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

from astrospectra_jax import interrupts


class Preempted(Exception):  # noqa: N818 - a stop, not an error
    """SIGTERM stopped training after saving the checkpoint of ``step``."""

    def __init__(self, step: int, checkpoint_dir: str):
        super().__init__(f"Preempted (SIGTERM): checkpoint saved at step {step} in "
                         f"{checkpoint_dir}; rerun the same command to resume.")
        self.step, self.checkpoint_dir = step, checkpoint_dir


class Preemption:
    """``reached(boundary)``, called at every chunk boundary (0, 1, 2, ... in this process's
    run), is True at the boundary where every process stops."""

    def __init__(self, requested):
        self.requested = requested

    def reached(self, boundary: int) -> bool:
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(boundary)
        return self.requested is not None and self.requested.is_set()


@contextlib.contextmanager
def watch() -> Iterator[Preemption]:
    """Within the block SIGTERM requests a preemption instead of raising. Several processes:
    JAX's coordination service holds SIGTERM since ``jax.distributed.initialize``, and no
    Python handler is installed over it."""
    if jax.process_count() > 1:
        yield Preemption(None)
        return
    with interrupts.sigterm_sets() as requested:
        yield Preemption(requested)
