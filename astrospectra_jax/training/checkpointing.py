"""Orbax checkpoints of the training state in ``workdir/checkpoints/<step>/``.

Each checkpoint is a composite of three items: ``model`` (parameters, batch-norm statistics
and dropout RNG state: all that predict restores), ``optimizer`` (the optax state) and
``progress`` (JSON: the step and the data position it stands for). Every other source of
randomness is a pure function of (seed, step), so these resume a run exactly. Saves are
asynchronous: the arrays are copied to host before ``save`` returns and written in the
background; ``raise_save_errors`` after every chunk stops a run whose save failed (a full disk)
at once, and ``finish`` waits for the last one. Orbax writes into temporary folders and renames
them when complete, and removes those left by an interrupted run when a manager opens.

A latest checkpoint that cannot be read while an older one can (truncated or corrupted files) is
moved to ``workdir/checkpoints_unreadable/`` and the run resumes from the older one (predict,
read-only, only warns). A checkpoint of the earlier one-item layout (``state``) is refused.
"""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from astrospectra_jax.training.configuration import positive
from astrospectra_jax.training.state import TrainState

UNREADABLE_DIR = "checkpoints_unreadable"
ITEMS = ("model", "optimizer", "progress")
_OLD_ITEM = "state"  # the one-item layout before the model/optimizer/progress split


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message says which one
    and which complete checkpoint is kept."""


def open_manager(directory: str | Path, keep: int, *, read_only: bool = False
                 ) -> ocp.CheckpointManager:
    """A manager keeping the ``keep`` most recent checkpoints. ``read_only`` (predict): touches
    nothing, so a run still training in the same folder keeps its in-flight saves."""
    if read_only:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False)
    else:
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(
                n=positive("keep_checkpoints", keep)),
            cleanup_tmp_directories=True, create=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, state: TrainState, progress: dict[str, int]) -> None:
    """Start saving ``state`` as step ``progress["step"]`` (the caller decides when)."""
    step = progress["step"]
    try:
        manager.save(step, args=ocp.args.Composite(
            model=ocp.args.StandardSave(state.model()),
            optimizer=ocp.args.StandardSave(state.opt_state),
            progress=ocp.args.JsonSave(progress)), force=True)
    except Exception as error:  # noqa: BLE001 - Orbax wraps OSErrors in its own types
        raise _save_error(manager, step, error) from error


def raise_save_errors(manager: ocp.CheckpointManager, step: int) -> None:
    """Raise CheckpointSaveError if a background save has failed (cheap; call every chunk)."""
    try:
        manager.check_for_errors()
    except Exception as error:  # noqa: BLE001
        raise _save_error(manager, step, error) from error


def finish(manager: ocp.CheckpointManager, step: int) -> None:
    """Wait for the pending save; CheckpointSaveError if it failed."""
    try:
        manager.wait_until_finished()
    except Exception as error:  # noqa: BLE001
        raise _save_error(manager, step, error) from error


def _save_error(manager: ocp.CheckpointManager, step: int, error: BaseException
                ) -> CheckpointSaveError:
    directory = Path(manager.directory)
    complete = [s for s in manager.all_steps(read=True) if s != step]
    kept = (f"the last complete checkpoint, step {max(complete)}, is kept" if complete
            else "no complete checkpoint was saved")
    return CheckpointSaveError(
        f"cannot save the checkpoint after step {step} in {directory}: {_root_cause(error)}. "
        f"Training stopped; {kept}. Free space (or fix the folder) and rerun the same command "
        "to resume.")


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split())
    if "No space left on device" in text or getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on device (ENOSPC)"
    return f"{type(error).__name__}: {text[:300]}".rstrip(": ")


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore(manager: ocp.CheckpointManager, step: int, like: Any) -> Any:
    """The items of ``like`` (a TrainState, or the ``model`` items alone) from ``step``."""
    if (Path(manager.directory) / str(step) / _OLD_ITEM).is_dir():
        raise OldLayoutError(
            f"checkpoint {Path(manager.directory) / str(step)} has the earlier one-item layout "
            "('state'), which this version does not read: use a fresh --workdir (or the "
            "version that wrote it).")
    if not isinstance(like, TrainState):
        _check_layout(manager, step, model=like)
        return manager.restore(step, args=ocp.args.Composite(
            model=ocp.args.StandardRestore(_abstract(like)))).model
    _check_layout(manager, step, model=like.model(), optimizer=like.opt_state)
    restored = manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(_abstract(like.model())),
        optimizer=ocp.args.StandardRestore(_abstract(like.opt_state)),
        progress=ocp.args.JsonRestore()))
    step_array = jax.device_put(jnp.int32(restored.progress["step"]), like.step.sharding)
    return TrainState(step_array, restored.model["params"], restored.model["model_state"],
                      restored.optimizer)


def _check_layout(manager: ocp.CheckpointManager, step: int, **items: Any) -> None:
    """Raise ValueError when the arrays saved at ``step`` differ from ``items`` in names,
    shapes or dtypes (a checkpoint of another model/optimizer), before any array is read.

    Orbax reads the arrays concurrently, and when one read fails the others are left pending in
    an event loop it then closes: they are reported, when collected, as unraisable exceptions
    (pytest's PytestUnraisableExceptionWarning with a TensorStore spec). A checkpoint that is
    merely unreadable still fails in ``manager.restore``."""
    metadata = manager.item_metadata(step)
    for name, like in items.items():
        stored = metadata[name]
        stored = getattr(stored, "tree", stored)
        if stored is None:  # no metadata to compare: the restore decides
            continue
        saved, _ = jax.tree_util.tree_flatten_with_path(stored)
        wanted, _ = jax.tree_util.tree_flatten_with_path(like)
        saved = {jax.tree_util.keystr(k): v for k, v in saved}
        for path, leaf in wanted:  # other differences (and PRNG keys): the restore decides
            key = jax.tree_util.keystr(path)
            if key not in saved or jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.extended):
                continue
            try:
                found = (tuple(saved[key].shape), np.dtype(saved[key].dtype))
            except (AttributeError, TypeError):
                continue
            if found != (tuple(np.shape(leaf)), np.dtype(leaf.dtype)):
                raise ValueError(f"{name}{key}: the checkpoint has shape {found[0]} {found[1]}, "
                                 f"this config {tuple(np.shape(leaf))} {np.dtype(leaf.dtype)}")


class OldLayoutError(ValueError):
    """A checkpoint of the one-item layout of earlier versions."""


def restore_latest(manager: ocp.CheckpointManager, like: Any, *, read_only: bool = False
                   ) -> tuple[Any, int | None]:
    """(state, step) from the latest readable checkpoint, laid out (shapes, dtypes, shardings)
    like ``like``: a TrainState, or ``{"params", "model_state"}`` (the model items only);
    ``(like, None)`` when there is none.

    A checkpoint that fails while an older one restores is unreadable (truncated, corrupted):
    it is moved aside with a warning (``read_only``: only the warning). When none restores,
    they do not match this config.
    """
    failures = []
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored = _restore(manager, step, like)
        except OldLayoutError:
            raise
        except Exception as error:  # noqa: BLE001 - corrupt files raise many kinds
            failures.append((step, error))
            continue
        if failures and read_only:
            logging.warning("unreadable checkpoint(s) %s in %s; using step %d",
                            [f for f, _ in failures], manager.directory, step)
        elif failures:
            _move_unreadable(manager, failures, step)
        return restored, step
    if not failures:
        return like, None
    step, error = failures[0]
    raise ValueError(
        f"cannot resume from checkpoint {Path(manager.directory) / str(step)}: it does not match "
        f"this config's model/optimizer, or every checkpoint is unreadable ({_root_cause(error)})."
        " Use a fresh --workdir for a different experiment.") from error


def _move_unreadable(manager: ocp.CheckpointManager, failures, good_step: int) -> None:
    directory = Path(manager.directory)
    aside = directory.parent / UNREADABLE_DIR
    aside.mkdir(exist_ok=True)
    for step, error in failures:
        target = aside / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
        shutil.move(str(directory / str(step)), target)
        logging.warning("checkpoint %s is unreadable (%s): moved to %s; resuming from step %d",
                        directory / str(step), _root_cause(error), target, good_step)
    manager.reload()
