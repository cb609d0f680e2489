"""Orbax checkpoints of the training state in ``workdir/checkpoints/<step>/``.

The state is one pytree (step, parameters, batch-norm statistics and dropout RNG state,
optimizer state); every other source of randomness is a pure function of (seed, step), so the
state alone resumes a run exactly. Saves are asynchronous: the arrays are copied to host before
``save`` returns and written in the background; ``wait_until_finished`` before exiting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def open_manager(directory: str | Path, keep: int, *, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager keeping the ``keep`` most recent checkpoints; partial (interrupted) writes are
    never restored and are cleaned up on start. ``read_only`` (predict): touches nothing, so a
    run still training in the same folder keeps its in-flight saves."""
    if read_only:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    else:
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=keep),
            cleanup_tmp_directories=True,
            create=True,
        )
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Start saving ``state`` as ``step`` (the caller decides when; no interval policy)."""
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)


def restore_latest(manager: ocp.CheckpointManager, like: Any) -> tuple[Any, int | None]:
    """(state, step) from the latest complete checkpoint, laid out (shapes, dtypes, shardings)
    like ``like``; ``(like, None)`` when there is none."""
    step = manager.latest_step()
    if step is None:
        return like, None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"cannot resume from checkpoint {manager.directory / str(step)}: it does not match "
            f"this config's model/optimizer ({error}). Use a fresh --workdir for a different "
            "experiment.") from error
    return restored.state, step
