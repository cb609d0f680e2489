"""Command line: LAMOST or SDSS FITS files, or the simulator -> the AstroSpectra-MNIST layout.

Usage::

    python -m astrospectra_jax.convert synthetic --task v2 --train 42454 --test 7546 \\
        --seed 0 --out DIR
    python -m astrospectra_jax.convert fits --input FOLDER [--labels catalogue.csv] --task v2 \\
        --test-fraction 0.15 --seed 0 --out DIR

The layout written is described in ``astrospectra_jax.data.layout``; where the examples come
from, in ``astrospectra_jax.data.sources``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from astrospectra_jax import interrupts, logs
from astrospectra_jax.data import layout, sources, tasks
from astrospectra_jax.data.sources import DEFAULT_TEST_FRACTION, SIMULATION_WORKERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.convert",
        description="Write the AstroSpectra-MNIST layout (PNGs, label CSVs, line vectors) "
                    "from LAMOST or SDSS FITS files or from the simulator.")
    sub = parser.add_subparsers(dest="source", required=True)

    def common(p):
        p.add_argument("--task", choices=tasks.TASKS, required=True,
                       help="v1: STAR/GALAXY/QSO; v2: F/G/K stars")
        p.add_argument("--out", required=True, type=Path, help="output root folder")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing AstroSpectra-MNIST-vN / LineAstroSpectra-vN")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    syn = sub.add_parser("synthetic", help="simulated spectra (not LAMOST data)")
    common(syn)
    syn.add_argument("--train", type=int, help="train examples (default: the paper's size)")
    syn.add_argument("--test", type=int, help="test examples (default: the paper's size)")
    syn.add_argument("--workers", type=int, default=SIMULATION_WORKERS,
                     help="processes simulating in parallel (the output does not depend on it)")

    fit = sub.add_parser("fits",
                         help="a folder of LAMOST or SDSS FITS files (searched recursively)")
    common(fit)
    fit.add_argument("--input", required=True, type=Path, help="folder of *.fits / *.fits.gz")
    fit.add_argument("--labels", type=Path,
                     help="catalogue CSV (file name or obsid -> label); default: FITS headers")
    fit.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logs.setup()
    parser = _parser()
    args = parser.parse_args(argv)
    progress = not args.no_progress
    try:
        with interrupts.sigterm_raises():
            counts = _convert(args, progress)
    except (ValueError, OSError) as err:  # bad input: one line naming the file or option
        parser.exit(interrupts.EXIT_USAGE, f"{parser.prog}: error: {err}\n")
    except KeyboardInterrupt as stop:  # the temporary folder is gone, earlier output kept
        print(f"{parser.prog}: interrupted by {interrupts.describe(stop)}; nothing was written "
              f"to {args.out}. Rerun the same command to convert again.", file=sys.stderr)
        return interrupts.exit_code(stop)
    print(f"wrote {layout.kaggle_dir(args.out, args.task)} and {layout.line_dir(args.out, args.task)}: "
          + ", ".join(f"{split} {n}" for split, n in counts.items()))
    return 0


def _convert(args, progress: bool) -> dict[str, int]:
    if args.source == "synthetic":
        paper_train, paper_test = tasks.PAPER_SPLIT_SIZES[args.task]
        return sources.convert_synthetic(
            args.out, args.task, paper_train if args.train is None else args.train,
            paper_test if args.test is None else args.test, args.seed,
            workers=args.workers, overwrite=args.overwrite, progress=progress)
    counts, _ = sources.convert_fits(args.out, args.input, args.task,
                                     test_fraction=args.test_fraction, seed=args.seed,
                                     labels=args.labels, overwrite=args.overwrite,
                                     progress=progress)
    return counts


if __name__ == "__main__":
    sys.exit(main())
