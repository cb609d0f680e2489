"""Orbax checkpoints of the training state in ``workdir/checkpoints/<step>/``.

The state is one pytree (step, parameters, batch-norm statistics and dropout RNG state,
optimizer state); every other source of randomness is a pure function of (seed, step), so the
state alone resumes a run exactly. Saves are asynchronous: the arrays are copied to host before
``save`` returns and written in the background; ``raise_save_errors`` after every chunk stops a
run whose save failed (a full disk) at once, and ``finish`` waits for the last one.

A latest checkpoint that cannot be read while an older one can (truncated or corrupted files) is
moved to ``workdir/checkpoints_unreadable/`` and the run resumes from the older one.
"""

from __future__ import annotations

import errno
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

UNREADABLE_DIR = "checkpoints_unreadable"


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the message says which one
    and which complete checkpoint is kept."""


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
    try:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                     force=True)
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
    removed = remove_partial(directory)
    failed = sorted(int(p.name.split(".")[0]) for p in removed if p.name.split(".")[0].isdigit())
    step = failed[0] if failed else step
    complete = [s for s in _step_dirs(directory) if not _is_partial(directory / str(s))]
    kept = (f"the last complete checkpoint, step {max(complete)}, is kept" if complete
            else "no complete checkpoint was saved")
    cause = _root_cause(error)
    return CheckpointSaveError(
        f"cannot save the checkpoint after step {step} in {directory}: {cause}. Training "
        f"stopped; {kept}{' and the partial one removed' if removed else ''}. Free space (or "
        "fix the folder) and rerun the same command to resume.")


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    text = " ".join(str(error).split())
    if "No space left on device" in text or getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on device (ENOSPC)"
    return f"{type(error).__name__}: {text[:300]}".rstrip(": ")


def _step_dirs(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _is_partial(step_dir: Path) -> bool:
    # Orbax writes into "<step>.orbax-checkpoint-tmp-*" and renames; on object stores it marks
    # completion with a commit_success file instead.
    return not step_dir.is_dir()


def remove_partial(directory: Path) -> list[Path]:
    """Delete the temporary folders of unfinished saves; returns them."""
    removed = []
    if directory.is_dir():
        for path in directory.iterdir():
            if ".orbax-checkpoint-tmp" in path.name:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def restore_latest(manager: ocp.CheckpointManager, like: Any, *, read_only: bool = False
                   ) -> tuple[Any, int | None]:
    """(state, step) from the latest readable checkpoint, laid out (shapes, dtypes, shardings)
    like ``like``; ``(like, None)`` when there is none.

    A checkpoint that fails while an older one restores is unreadable (truncated, corrupted):
    it is moved aside with a warning (``read_only``: only the warning). When none restores,
    they do not match this config.
    """
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    steps = sorted(manager.all_steps(), reverse=True)
    failures = []
    for step in steps:
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as error:  # noqa: BLE001 - corrupt files raise many kinds
            failures.append((step, error))
            _quiet_abandoned_reads()
            continue
        if failures and read_only:
            logging.warning("unreadable checkpoint(s) %s in %s; using step %d",
                            [f for f, _ in failures], manager.directory, step)
        elif failures:
            _move_unreadable(manager, failures, step)
        return restored.state, step
    if not failures:
        return like, None
    step, error = failures[0]
    raise ValueError(
        f"cannot resume from checkpoint {Path(manager.directory) / str(step)}: it does not match "
        f"this config's model/optimizer, or every checkpoint is unreadable ({_root_cause(error)})."
        " Use a fresh --workdir for a different experiment.") from error


def _quiet_abandoned_reads() -> None:
    """A failed restore leaves TensorStore reads that call back into its closed event loop;
    Python reports each as an ignored exception with a traceback. Drop those reports only."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop_reports", False):
        return

    def hook(report):
        if not (isinstance(report.exc_value, RuntimeError)
                and str(report.exc_value) == "Event loop is closed"):
            previous(report)

    hook._drops_closed_loop_reports = True
    sys.unraisablehook = hook


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
