"""One logging setup for every command line: main.py, predict, convert, report and suite.

What a user sees is one line per event: this project's INFO lines, and everyone's warnings and
errors except the few a user cannot act on. Dropped:

- TensorFlow's C++ start-up lines (oneDNN, cpu_feature_guard, "All log messages before
  absl::InitializeLog()"): ``TF_CPP_MIN_LOG_LEVEL=2``, and stderr silenced while TensorFlow's
  shared libraries load (their absl logging starts before that variable is read). A user who
  sets ``TF_CPP_MIN_LOG_LEVEL`` to 0 or 1 gets them all back.
- Other libraries' INFO lines (Orbax's step-by-step saves, TFDS's plumbing, JAX's "Unable to
  initialize backend 'tpu'", clu's "Setting work unit notes" beside every metric line: the
  project's own step line carries the same steps/s and ETA).
- Warnings about what the code asked for on purpose: Orbax's "read only" notes when predict
  opens a run read-only, TFDS's "Variant folder ... has no" before a synthetic build, and the
  traceback of a failed Orbax save (train.py stops with one line naming it).

``setup()`` is called once by each entry point; importing this module first sets the
TensorFlow variables, so it goes before anything that may import TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging as std_logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
_DROPPED_WARNINGS = (
    "Variant folder %s has no",  # TFDS, before a synthetic config is built
    "Given directory is read only",  # Orbax, predict's read-only manager
    "%s is read only, ",  # Orbax: "save/delete will be skipped" on a read-only manager
    "CheckpointManagerOptions.read_only=True",  # Orbax: "setting save_interval_steps=0"
)


class ProjectLogOnly(std_logging.Filter):
    """INFO lines from this project only; everyone's warnings and errors but the ones above."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if "/orbax/" in record.pathname and record.exc_info:
            return False  # a failed save: train.py stops with one line naming it
        if record.levelno >= std_logging.WARNING:
            return not str(record.msg).startswith(_DROPPED_WARNINGS)
        return record.pathname.startswith(_PROJECT_ROOT) and "/site-packages/" not in \
            record.pathname


def _tensorflow_logs_wanted() -> bool:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")) < 2
    except ValueError:
        return False


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null within the block (C++ libraries write there
    directly; Python exceptions raised in the block are not affected)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, pytest capture)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Loads TensorFlow's packages (``tensorflow`` is a thin lazy module; ``tensorflow.python``
    loads the shared libraries) with stderr silenced, wherever they are first imported (TFDS,
    clu, tf.data)."""

    NAMES = ("tensorflow", "tensorflow.python")

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.NAMES:
            return None
        if fullname == self.NAMES[-1]:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
        for finder in sys.meta_path:  # the others, as Python would have asked them
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            with stderr_silenced():
                exec_module(module)

        spec.loader.exec_module = quiet_exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """TensorFlow's C++ start-up lines silenced when it loads (unless the user asked for them
    with TF_CPP_MIN_LOG_LEVEL < 2). No effect where TensorFlow is loaded already."""
    if "tensorflow" in sys.modules or _tensorflow_logs_wanted():
        return
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def setup(*, verbosity: int | None = None) -> None:
    """The filters above on absl's handler (where every library's Python logging ends up),
    quiet TensorFlow start-up; ``verbosity`` (absl's, e.g. ``absl.logging.INFO``) if given.
    Safe to call more than once."""
    from absl import flags, logging

    quiet_tensorflow_import()
    if not flags.FLAGS.is_parsed():  # argparse commands: no "Logging before flag parsing"
        flags.FLAGS.mark_as_parsed()
    handler = logging.get_absl_handler()
    if not any(isinstance(f, ProjectLogOnly) for f in handler.filters):
        handler.addFilter(ProjectLogOnly())
    logging.use_absl_handler()
    if verbosity is not None:
        logging.set_verbosity(verbosity)
