"""How real is the simulator? Models trained only on simulated spectra, tested on real ones.

    nice -n 10 python benchmarks/simulator_realism.py --out /tmp/realism
    nice -n 10 python benchmarks/simulator_realism.py --out /tmp/realism --models lr --train 20000

For v2 (F / G / K) and v1 (STAR / GALAXY / QSO), three models learn from
``simulator.simulate(task, --train, --seed)`` alone and classify real spectra passed through the
same recipe:

- ``lr``: logistic regression (standardised features, L2) on line vectors divided by their
  median;
- ``simplecnn2``: SimpleCNN2 on the 28x28 images, and ``conv1d``: the residual 1-D CNN on the
  721-value line vectors, both trained for ``--epochs`` with the project's own training steps
  (``training.steps``) on in-memory arrays, configured as ``configs/{task}_simplecnn2.py`` and
  ``configs/line_{task}_conv1d.py``.

Real spectra: ``../shared/data/lamost`` (LAMOST DR1/DR8/DR10 stars, read with
``data.lamost``; v2 label = first letter of SUBCLASS, A and M dropped; for v1 every one is a
STAR) and ``../shared/data/sdss`` (SDSS/BOSS spec-lite files, read with ``data.sdss``: 50 QSO,
6 GALAXY, 3 STAR). Nothing from the real files is used for training or tuning.

Prints, per task and model: accuracy, per-class recall and the confusion matrix on the real
spectra (for v1 also per source); writes ``results.json`` and the figures ``means_v2.png``,
``means_v1.png`` (mean real vs mean simulated spectrum per class, each spectrum divided by its
median) and ``pca_v2.png``, ``pca_v1.png`` (2-D PCA fitted on simulated line vectors, real
spectra drawn over them) to ``--out``. The figures measured are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from astrospectra_jax.data import readers, recipe, simulator, tasks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = ("lr", "simplecnn2", "conv1d")


@dataclasses.dataclass
class RealSet:
    """Real spectra on the recipe grid, with labels in a task's class order."""

    flux: np.ndarray  # (n, 3601)
    labels: np.ndarray  # (n,) int
    source: np.ndarray  # (n,) str: "LAMOST DR1", ..., "SDSS"
    subclass: np.ndarray  # (n,) str


def read_folder(folder: Path):
    """(grid fluxes, spectrum records) of every readable LAMOST or SDSS spectrum in ``folder``."""
    fluxes, records = [], []
    for path in readers.find_spectra(folder):
        try:
            spectrum = readers.read_spectrum(path)
            fluxes.append(spectrum.on_grid())
        except readers.SpectrumReadError as err:
            print(f"skipped: {err}", file=sys.stderr)
            continue
        records.append(spectrum)
    return np.array(fluxes), records


def real_sets(lamost_dir: Path, sdss_dir: Path) -> dict[str, RealSet]:
    flux, records = read_folder(lamost_dir)
    subclass = np.array([r.subclass or "?" for r in records])
    release = np.array([f"LAMOST {r.data_release}" for r in records])
    letter = np.array([s[:1].upper() for s in subclass])
    fgk = np.isin(letter, tasks.CLASS_NAMES["v2"])
    v2 = RealSet(flux[fgk], np.array([tasks.CLASS_NAMES["v2"].index(x) for x in letter[fgk]]),
                 release[fgk], subclass[fgk])
    v1_names = tasks.CLASS_NAMES["v1"]
    parts = [(flux, np.full(len(flux), v1_names.index("STAR")), release, subclass)]
    if sdss_dir.is_dir():
        s_flux, s_records = read_folder(sdss_dir)
        s_class = np.array([r.obj_class or "?" for r in s_records])
        s_subclass = np.array([r.subclass or "" for r in s_records])
        known = np.isin(s_class, v1_names)
        parts.append((s_flux[known], np.array([v1_names.index(c) for c in s_class[known]]),
                      np.full(known.sum(), "SDSS"), s_subclass[known]))
    else:
        print(f"{sdss_dir}: no such folder; v1 is tested on LAMOST stars only", file=sys.stderr)
    v1 = RealSet(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    return {"v2": v2, "v1": v1}


# ----------------------------------------------------------------------------------------------
# Models

def median_normalised_lines(flux) -> np.ndarray:
    """(n, 3601) -> (n, 721): the recipe's line vector divided by its own median."""
    vectors = recipe.line_vector(flux).astype(np.float64)
    median = np.median(vectors, axis=1, keepdims=True)
    return vectors / np.where(median > 0, median, 1.0)


def fit_predict_lr(sim, real_flux, c: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(median_normalised_lines(sim.flux), sim.labels)
    return model.predict(median_normalised_lines(real_flux))


def features_for(modality: str, flux) -> np.ndarray:
    if modality == "image":
        return recipe.image(flux)[..., None]
    return recipe.line_vector(flux)


def fit_predict_deep(name: str, task: str, sim, real_flux, epochs: int, seed: int) -> np.ndarray:
    """Train ``name`` on the simulated spectra with the project's training steps, in memory."""
    import importlib

    import jax

    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import input_pipeline, sharding, steps
    from astrospectra_jax.training import state as training_state

    module = f"configs.{task}_simplecnn2" if name == "simplecnn2" else f"configs.line_{task}_conv1d"
    config = importlib.import_module(module).get_config()
    config.dataset = f"{config.dataset}_synthetic"
    config.num_epochs, config.seed = epochs, seed
    spec = catalogue.info(config.dataset)
    mesh = sharding.make_mesh()
    n = len(sim.labels)
    steps_per_epoch = input_pipeline.steps_per_epoch(n, config.batch_size)
    tx, _ = steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = training_state.init_state(config, spec, tx, mesh)
    fns = steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch, n, 1)
    train = (sharding.put_replicated(features_for(spec.modality, sim.flux), mesh),
             sharding.put_replicated(sim.labels.astype(np.int32), mesh))
    total = epochs * steps_per_epoch
    for epoch in range(epochs):
        permutations = fns.epoch_permutations(np.int32(epoch))
        for _ in range(steps_per_epoch):
            state, _ = fns.device_chunk(state, *train, permutations, np.int32(total))
    padded = input_pipeline.pad_to_batches(features_for(spec.modality, real_flux),
                                           np.zeros(len(real_flux), np.int32), config.batch_size)
    test = tuple(sharding.put_replicated(a, mesh) for a in padded)
    outputs = [fns.eval_batch(state, *test, np.int32(i))
               for i in range(len(padded[1]) // config.batch_size)]
    return np.concatenate([np.asarray(jax.device_get(p)) for _, _, p in outputs])[:len(real_flux)]


# ----------------------------------------------------------------------------------------------
# Report

def scores(task: str, real: RealSet, predicted: np.ndarray) -> dict:
    names = tasks.CLASS_NAMES[task]
    k = len(names)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (real.labels, predicted), 1)
    present = confusion.sum(axis=1) > 0
    recall = {name: (float(confusion[i, i] / confusion[i].sum()) if present[i] else None)
              for i, name in enumerate(names)}
    by_source = {}
    for source in sorted(set(real.source)):
        mask = real.source == source
        correct = {}
        for i, name in enumerate(names):
            of_class = mask & (real.labels == i)
            if of_class.any():
                correct[name] = f"{int(np.sum(of_class & (predicted == i)))}/{int(of_class.sum())}"
        by_source[source] = {
            "n": int(mask.sum()), "accuracy": float(np.mean(predicted[mask] == real.labels[mask])),
            "correct_per_class": correct}
    return {"n": int(len(real.labels)), "accuracy": float(np.mean(predicted == real.labels)),
            "recall": recall, "confusion": confusion.tolist(), "by_source": by_source}


def print_scores(task: str, model: str, result: dict, real: RealSet, predicted) -> None:
    names = tasks.CLASS_NAMES[task]
    print(f"\n[{task} {model}] real spectra {result['n']}: accuracy {result['accuracy']:.3f}")
    print("  recall: " + ", ".join(f"{name} {r:.3f}" for name, r in result["recall"].items()
                                   if r is not None))
    print(f"  confusion (rows true, columns predicted; {' '.join(names)}):")
    for row in result["confusion"]:
        print("   ", " ".join(f"{v:4d}" for v in row))
    for source, part in result["by_source"].items():
        correct = ", ".join(f"{k} {v}" for k, v in part["correct_per_class"].items())
        print(f"  {source}: accuracy {part['accuracy']:.3f} ({correct})")
    if task == "v2":
        by_subclass = collections.defaultdict(lambda: np.zeros(len(names), int))
        for subclass, guess in zip(real.subclass, predicted, strict=True):
            by_subclass[subclass[:2]][guess] += 1
        print("  predicted F/G/K per subclass:", " ".join(
            f"{k}:{'/'.join(map(str, v))}" for k, v in sorted(
                by_subclass.items(), key=lambda kv: ("FGK".index(kv[0][0]), kv[0]))))


def plot_means(task: str, sim, real: RealSet, path: Path) -> None:
    """Mean spectrum per class, real (solid) over simulated (dashed), each divided by its median."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = tasks.CLASS_NAMES[task]
    real_norm = real.flux / np.median(real.flux, axis=1, keepdims=True)
    sim_norm = sim.flux / np.median(sim.flux, axis=1, keepdims=True)
    fig, axes = plt.subplots(len(names), 1, figsize=(13, 2.6 * len(names)), sharex=True)
    for k, (name, ax) in enumerate(zip(names, axes, strict=True)):
        mask = real.labels == k
        if mask.any():
            ax.plot(recipe.GRID, real_norm[mask].mean(axis=0), lw=0.8, color="k",
                    label=f"real ({mask.sum()})")
        ax.plot(recipe.GRID, sim_norm[sim.labels == k].mean(axis=0), lw=0.8, color="tab:red",
                ls="--", label=f"simulated ({np.sum(sim.labels == k)})")
        ax.set(ylabel=f"{name}: flux / median")
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set(xlabel="observed wavelength (A)")
    fig.suptitle(f"{task}: mean spectrum per class, real vs simulated")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pca(task: str, sim, real: RealSet, path: Path) -> None:
    """2-D PCA of standardised median-normalised line vectors, fitted on the simulated ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = tasks.CLASS_NAMES[task]
    pca = make_pipeline(StandardScaler(), PCA(2, random_state=0))
    sim_xy = pca.fit_transform(median_normalised_lines(sim.flux))
    real_xy = pca.transform(median_normalised_lines(real.flux))
    colours = ("tab:blue", "tab:green", "tab:red")
    fig, ax = plt.subplots(figsize=(7, 6))
    for k, (name, colour) in enumerate(zip(names, colours, strict=True)):
        ax.scatter(*sim_xy[sim.labels == k].T, s=3, alpha=0.15, color=colour,
                   label=f"{name} simulated")
        ax.scatter(*real_xy[real.labels == k].T, s=16, color=colour, edgecolor="k", lw=0.4,
                   label=f"{name} real")
    low, high = np.percentile(np.concatenate([sim_xy, real_xy]), [0.5, 99.5], axis=0)
    pad = 0.1 * (high - low)
    ax.set(xlim=(low[0] - pad[0], high[0] + pad[0]), ylim=(low[1] - pad[1], high[1] + pad[1]),
           xlabel="PC 1", ylabel="PC 2", title=f"{task}: PCA fitted on simulated line vectors")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lamost-dir", type=Path, default=SHARED / "lamost")
    parser.add_argument("--sdss-dir", type=Path, default=SHARED / "sdss")
    parser.add_argument("--out", type=Path, required=True, help="folder for results and PNGs")
    parser.add_argument("--tasks", default="v2,v1")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--train", type=int, default=4000, help="simulated training spectra")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the CNNs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--C", type=float, default=0.01, help="logistic regression inverse L2")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    for name in models:
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; known: {', '.join(MODELS)}")
    if not args.lamost_dir.is_dir():
        parser.error(f"--lamost-dir {args.lamost_dir}: no such folder (real spectra are needed)")
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_sets(args.lamost_dir, args.sdss_dir)
    results = {"train": args.train, "epochs": args.epochs, "seed": args.seed, "tasks": {}}
    for task in args.tasks.split(","):
        start = time.perf_counter()
        sim = simulator.simulate(task, args.train, args.seed)
        print(f"\nsimulated {args.train} {task} spectra in {time.perf_counter() - start:.1f} s")
        results["tasks"][task] = {}
        for name in models:
            start = time.perf_counter()
            if name == "lr":
                predicted = fit_predict_lr(sim, real[task].flux, args.C)
            else:
                predicted = fit_predict_deep(name, task, sim, real[task].flux, args.epochs,
                                             args.seed)
            result = scores(task, real[task], predicted)
            result["seconds"] = round(time.perf_counter() - start, 1)
            results["tasks"][task][name] = result
            print_scores(task, name, result, real[task], predicted)
        plot_means(task, sim, real[task], args.out / f"means_{task}.png")
        plot_pca(task, sim, real[task], args.out / f"pca_{task}.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}/results.json, means_*.png, pca_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
