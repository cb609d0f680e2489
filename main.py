"""Train and evaluate one experiment.

    python main.py --config=configs/v2_resnet18.py --workdir=/tmp/v2_resnet18

Fields of the config are overridden with ``--config.<field>=<value>``. Rerunning a command with
the same --workdir resumes from its latest checkpoint. Configs with ``kind = "classical"`` run
the scikit-learn grid instead.
"""

from __future__ import annotations

import logging as std_logging
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietCheckpointing(std_logging.Filter):
    """Orbax logs every save step by step at INFO; keep its warnings and errors only."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietCheckpointing())
    config = FLAGS.config
    if config.get("distributed", False):
        jax.distributed.initialize()
    if jax.process_index() > 0:
        logging.set_verbosity(logging.WARNING)  # process 0 reports for everyone
    logging.info("JAX %s: %d process(es), %d device(s): %s", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)

    if config.get("kind") == "classical":
        from astrospectra_jax.classical import grid

        grid.run(config, FLAGS.workdir)
        return

    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import train

    try:
        results = train.train_and_evaluate(config, FLAGS.workdir)
    except (train.ConfigError, train.NonFiniteLossError, catalogue.DatasetNotFoundError) as error:
        logging.flush()
        sys.exit(f"error: {error}")
    if results.get("preempted"):
        print(f"Preempted (SIGTERM): checkpoint saved at step {results['step']} in "
              f"{results['checkpoint_dir']}; rerun the same command to resume.", flush=True)


if __name__ == "__main__":
    app.run(main)
