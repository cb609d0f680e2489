"""Train and evaluate one experiment.

    python main.py --config=configs/v2_resnet18.py --workdir=/tmp/v2_resnet18

Fields of the config are overridden with ``--config.<field>=<value>``. Rerunning a command with
the same --workdir resumes from its latest checkpoint; rerunning a finished one keeps its
results. Configs with ``kind = "classical"`` run the scikit-learn grid instead.

Exit codes (``astrospectra_jax.interrupts``): 0 done (or already done), 1 the run failed,
2 bad command line or config, 75 stopped by SIGTERM after saving a checkpoint (rerun to
resume), 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

import difflib  # noqa: E402
import errno  # noqa: E402
import fcntl  # noqa: E402
import importlib.util  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import ml_collections  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

# JAX, TensorFlow (Datasets) and the package are imported once the command line is known good:
# a mistyped flag is answered in a second.

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.DEFINE_string("coordinator_address", None,
                    "Multi-process runs (--config.distributed=True) where JAX cannot detect the "
                    "cluster: host:port of process 0's coordinator (default: "
                    "$JAX_COORDINATOR_ADDRESS, or detected on Cloud TPU / SLURM / MPI).")
flags.DEFINE_integer("num_processes", None, "Multi-process runs: the number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-process runs: this process's index, 0 first.")
flags.DEFINE_integer("cpu_devices", None, "CPU devices per process (tests of the multi-process "
                     "path on CPU; default: JAX's).")
flags.mark_flags_as_required(["config", "workdir"])

LOCK_FILE = ".lock"
HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "--helpfull", "--helpxml", "-?")


class _Refused(Exception):
    """One line for the user, then exit with ``code`` (1: the run failed)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- command line

def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with every bad flag, override or config file as one ``error:`` line."""
    if any(a.split("=", 1)[0] in HELP_FLAGS for a in argv[1:]):
        try:  # absl prints the help and exits 1; asking for help is no failure
            FLAGS([a if a.split("=", 1)[0] not in ("-h", "-help") else "--help" for a in argv])
        except SystemExit as done:
            sys.exit(0 if done.code in (0, 1, None) else done.code)
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # a config file that failed to load raises here
    except (flags.Error, AttributeError, KeyError, OSError, ValueError, TypeError,
            SyntaxError, ImportError) as error:
        from astrospectra_jax import interrupts

        print(f"error: {_flag_error(error, argv)}", file=sys.stderr)
        sys.exit(interrupts.EXIT_USAGE)
    return rest


def _flag_error(error: Exception, argv: list[str]) -> str:
    config_args = [argv[i + 1] if a == "--config" else a.split("=", 1)[1]
                   for i, a in enumerate(argv)
                   if a.startswith("--config=") or (a == "--config" and i + 1 < len(argv))]
    config_arg = config_args[-1] if config_args else None  # the last one counts
    config_file = config_arg.split(":", 1)[0] if config_arg else None
    if isinstance(error, OSError) and config_file and not Path(config_file).is_file():
        return f"--config={config_arg}: no such config file {config_file}"
    if isinstance(error, (AttributeError, KeyError)) and config_file:
        return _unknown_override(error, argv, config_file)
    text = " ".join(str(error).split())
    return text


def _config_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in config.items():
        paths.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            paths += _config_paths(value, f"{prefix}{key}.")
    return paths


def _unknown_override(error: Exception, argv: list[str], config_file: str) -> str:
    """Names the override that is not a field of the config, with a suggestion."""
    try:
        spec = importlib.util.spec_from_file_location("_experiment_config", config_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        paths = _config_paths(module.get_config())
    except Exception:  # noqa: BLE001 - the original message is still useful
        return " ".join(str(error).split())
    overrides = [m.group(1) for a in argv if (m := re.match(r"--config\.([\w.]+)", a))]
    unknown = next((o for o in overrides if o not in paths), None)
    if unknown is None:
        return " ".join(str(error).split())
    leaf = unknown.rsplit(".", 1)[-1]
    hints = [p for p in paths if p.rsplit(".", 1)[-1] == leaf]  # right name, wrong place
    hints = hints or difflib.get_close_matches(unknown, paths, n=1)  # misspelt
    hint = f"; did you mean --config.{hints[0]}?" if hints else ""
    return f"--config.{unknown}: {config_file} has no field {unknown!r}{hint}"


# ----------------------------------------------------------------------------- the workdir

_HELD: list[tuple] = []  # (lock file, its path, the workdir if this process created it)


def _prepare_workdir(workdir: str):
    """Create the workdir, check it is writable and lock it (an open file, flock'ed; the lock
    goes when this process ends: ``_release_workdirs`` removes the file on every exit Python
    sees, and a killed process's file holds no flock, so it blocks nobody). Returns the lock's
    file object."""
    path = Path(workdir)
    created = None if path.exists() else path
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise _Refused(f"cannot write to --workdir={workdir}: {reason}. Choose a writable "
                       "folder.") from error
    while True:
        try:
            lock = open(path / LOCK_FILE, "a+")
        except OSError as error:
            raise _Refused(f"cannot write to --workdir={workdir}: "
                           f"{error.strerror or error}. Choose a writable folder.") from error
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            owner = lock.read().strip() or "another process"
            lock.close()
            raise _Refused(f"--workdir={workdir} is in use by {owner} (lock "
                           f"{path / LOCK_FILE}); wait for that run to end or use another "
                           "--workdir.") from error
        try:  # the file may have been removed by its previous owner after we opened it
            if os.stat(path / LOCK_FILE).st_ino == os.fstat(lock.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        lock.close()
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()} ({' '.join(sys.argv)})\n")
    lock.flush()
    _HELD.append((lock, path / LOCK_FILE, created))
    return lock


def _release_workdirs() -> None:
    """Remove the lock files this process holds (while still holding them), and a workdir it
    created that is empty after that (a run refused before writing anything)."""
    while _HELD:
        lock, lock_path, created = _HELD.pop()
        try:
            os.unlink(lock_path)
        except OSError:
            pass
        lock.close()
        if created is not None:
            try:
                created.rmdir()  # only if empty
            except OSError:
                pass


def _finished(workdir: str) -> dict | None:
    from astrospectra_jax import results

    try:
        return results.read_json(Path(workdir) / results.RESULTS_JSON)
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- running

def main(argv):
    from astrospectra_jax import interrupts, logs

    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logs.setup()
    config, workdir = FLAGS.config, FLAGS.workdir
    try:
        with interrupts.sigterm_raises():
            try:
                code = _run(config, workdir)
            finally:
                _release_workdirs()
    except _Refused as refused:
        logging.flush()
        print(f"error: {refused}", file=sys.stderr, flush=True)
        sys.exit(refused.code)
    except KeyboardInterrupt as stop:
        logging.flush()
        print(f"interrupted by {interrupts.describe(stop)}: {_resume_hint(config, workdir)}",
              file=sys.stderr, flush=True)
        sys.exit(interrupts.exit_code(stop))
    sys.exit(code)


def _run(config, workdir: str) -> int:
    from astrospectra_jax import interrupts

    distributed, remote = config.get("distributed", False), "://" in workdir
    if not distributed and config.get("kind") != "classical":
        _validate(config)  # an invalid value leaves the workdir untouched
    # Checked before JAX starts: a busy, unwritable or finished workdir is answered at once.
    lock = _prepare_workdir(workdir) if not (distributed or remote) else None  # noqa: F841
    finished = _finished(workdir) if config.get("kind") != "classical" and not remote else None
    if finished is not None:
        print(f"{workdir} holds a finished run (results.json: test accuracy "
              f"{finished.get('accuracy', float('nan')):.4f}); kept as it is. Use another "
              "--workdir to train again.", flush=True)
        return 0

    if (FLAGS.num_processes or FLAGS.coordinator_address) and not distributed:
        raise _Refused("--num_processes/--coordinator_address need --config.distributed=True",
                       interrupts.EXIT_USAGE)

    import jax

    if distributed:
        from astrospectra_jax.training import sharding

        sharding.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes,
                                        FLAGS.process_id, FLAGS.cpu_devices)
    lead = jax.process_index() == 0
    if not lead:
        logging.set_verbosity(logging.WARNING)  # process 0 reports for everyone
    elif distributed and not remote:
        lock = _prepare_workdir(workdir)  # noqa: F841 - held until the process ends
    logging.info("JAX %s: %d process(es), %d device(s): %s", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)
    from astrospectra_jax.data import catalogue

    if config.get("kind") == "classical":
        from astrospectra_jax.classical import grid

        try:
            grid.run(config, workdir)
        except (ValueError, KeyError, catalogue.DatasetNotFoundError, OSError) as error:
            raise _Refused(" ".join(str(error).split()) if not isinstance(error, KeyError)
                           else str(error.args[0]),
                           interrupts.EXIT_USAGE if str(error).startswith("config.")
                           else interrupts.EXIT_ERROR) from error
        return 0

    from astrospectra_jax.training import checkpointing, train

    try:
        train.train_and_evaluate(config, workdir)
    except train.Preempted as stopped:
        print(stopped, flush=True)
        return interrupts.EXIT_PREEMPTED
    except train.ConfigError as error:
        raise _Refused(str(error), interrupts.EXIT_USAGE) from error
    except (train.NonFiniteLossError, catalogue.DatasetNotFoundError,
            checkpointing.CheckpointSaveError) as error:
        raise _Refused(str(error)) from error
    except ValueError as error:  # e.g. a checkpoint of another experiment in the workdir
        raise _Refused(str(error)) from error
    except OSError as error:  # disk full, permissions: name the file
        raise _Refused(f"{error.strerror or error}: {error.filename or workdir}"
                       if error.strerror else str(error)) from error
    return 0


def _validate(config) -> None:
    """The config checks that need no data, before the workdir is touched (JAX starts here;
    multi-process runs check after jax.distributed is initialized, in train.py)."""
    from astrospectra_jax import interrupts
    from astrospectra_jax.training import train

    try:
        train.validate(config)
    except train.ConfigError as error:
        raise _Refused(str(error), interrupts.EXIT_USAGE) from error


def _resume_hint(config, workdir: str) -> str:
    if config.get("kind") == "classical":
        return (f"configurations finished so far are stored in {workdir}; rerun the same "
                "command to run the rest.")
    folder = Path(workdir) / "checkpoints"
    steps = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []
    if steps:
        return (f"the last checkpoint is step {steps[-1]} in {folder}; rerun the same command "
                "to resume from it.")
    return "no checkpoint was saved yet; rerun the same command to start again."


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
