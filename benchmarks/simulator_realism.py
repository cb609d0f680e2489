"""How real is the simulator? Models trained only on simulated spectra, tested on real ones.

    nice -n 10 python benchmarks/simulator_realism.py --out /tmp/realism
    nice -n 10 python benchmarks/simulator_realism.py --out /tmp/realism --models lr --no-plots
    ... --simulator-root /tmp/sim_e0d8e2b   # another version's tree (git archive), subprocess
    ... --labelling survey | --without calibration_tilt | --bridge-zero-tails

For v2 (F / G / K) and v1 (STAR / GALAXY / QSO), three models learn from
``simulator.simulate(task, --train, seed)`` alone and classify real spectra passed through the
same recipe. Every figure is a mean +- std over ``--sim-seeds`` (default 0,1,2) x
``--train-seeds`` (default 0,1,2): each training seed trains on its own random ``--subsample``
(75 %) of the simulated spectra (and seeds the CNNs). Models:

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

Prints, per task and model: each run's accuracy and recall, the first run's confusion matrix
(for v1 also per source), the mean +- std over runs; for v2 the Lick-like indices of the real
stars by LAMOST subclass against the simulated stars by their subclass (the class boundaries),
and the simulator's labeller applied to the real stars. Writes ``results.json`` and the figures ``means_v2.png``,
``means_v1.png`` (mean real vs mean simulated spectrum per class, each spectrum divided by its
median) and ``pca_v2.png``, ``pca_v1.png`` (2-D PCA fitted on simulated line vectors, real
spectra drawn over them) to ``--out``. The figures measured are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
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


# ----------------------------------------------------------------------------------------------
# Simulators: this tree's, or another version's tree in a subprocess

_SIMULATE_IN_TREE = """
import json, sys
import numpy as np
from astrospectra_jax.data import simulator
sim = simulator.simulate(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
np.savez(sys.argv[4], flux=sim.flux, labels=sim.labels,
         **{"param_" + k: v for k, v in sim.params.items()})
"""


@dataclasses.dataclass
class Simulated:
    flux: np.ndarray
    labels: np.ndarray
    params: dict


def simulate(task: str, n: int, seed: int, root: Path | None, labelling: str,
             without: str | None) -> Simulated:
    """``n`` simulated spectra: this tree's simulator, or the one under ``root`` (any version
    whose ``simulator.simulate(task, n, seed)`` exists, e.g. builders 1.0.0 at e0d8e2b)."""
    if root is None:
        nuisances = simulator.NuisanceRanges()
        if without:
            nuisances = nuisances.without(without)
        sim = simulator.simulate(task, n, seed, labelling=labelling, nuisances=nuisances)
        return Simulated(sim.flux, sim.labels, sim.params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.npz"
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", _SIMULATE_IN_TREE, task, str(n), str(seed),
                        str(path)], check=True, env=env, cwd=tmp)
        data = np.load(path)
        return Simulated(data["flux"], data["labels"],
                         {k[6:]: data[k] for k in data.files if k.startswith("param_")})


def bridge_zero_tails(flux) -> np.ndarray:
    """Trailing exact zeros replaced by the last non-zero value: what the recipe would give if
    it treated them as missing (beyond the last good pixel the edge value is held)."""
    flux = np.array(flux, dtype=np.float32, copy=True)
    nonzero = flux != 0
    last = flux.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)
    columns = np.arange(flux.shape[1])[None, :]
    rows = np.arange(flux.shape[0])
    tail = columns > last[:, None]
    flux[tail] = np.broadcast_to(flux[rows, last][:, None], flux.shape)[tail]
    return flux


# ----------------------------------------------------------------------------------------------
# Class boundaries: Lick-like indices by subclass, real against simulated

# (name, index band, blue side band, red side band), A, air ~ vacuum at this resolution.
INDICES = (("HdA", (4083.5, 4122.25), (4041.6, 4079.75), (4128.5, 4161.0)),
           ("Fe4383", (4369.1, 4420.4), (4359.1, 4370.4), (4442.9, 4455.4)),
           ("Mgb", (5160.1, 5192.6), (5142.6, 5161.4), (5191.4, 5206.4)),
           ("Halpha", (6548.0, 6578.0), (6420.0, 6455.0), (6600.0, 6640.0)))
GROUPS = (("F0-2", "F0 F1 F2"), ("F3-5", "F3 F4 F5"), ("F6-8", "F6 F7 F8"), ("F9", "F9"),
          ("G0-2", "G0 G1 G2"), ("G3-5", "G3 G4 G5"), ("G6-9", "G6 G7 G8 G9"),
          ("K0-3", "K0 K1 K2 K3"), ("K4-7", "K4 K5 K6 K7"))


def indices(flux) -> dict[str, np.ndarray]:
    """Equivalent widths (A) against a straight pseudo-continuum through the side bands."""
    out = {}
    grid = recipe.GRID
    for name, band, blue, red in INDICES:
        def mean(lo_hi):
            m = (grid >= lo_hi[0]) & (grid < lo_hi[1])
            return flux[:, m].mean(axis=1), grid[m].mean()
        (b, xb), (r, xr) = mean(blue), mean(red)
        m = (grid >= band[0]) & (grid < band[1])
        continuum = b[:, None] + (r - b)[:, None] * (grid[m][None, :] - xb) / (xr - xb)
        out[name] = np.sum(1.0 - flux[:, m] / continuum, axis=1) * recipe.GRID_STEP
    return out


def subclass_groups(subclass: np.ndarray) -> np.ndarray:
    """Group name ("F0-2", ...) of each MK subclass string; "" where none."""
    lookup = {sub: group for group, subs in GROUPS for sub in subs.split()}
    return np.array([lookup.get(str(s)[:2], "") for s in subclass])


def simulated_subclasses(sim: Simulated) -> np.ndarray:
    """The labeller's subclass where the simulator recorded one, else the MK subclass nearest
    in dwarf temperature to the type temperature (builders 1.0.0 / 1.2.0 labelling)."""
    from astrospectra_jax.data.simulator import labeller
    names = np.array(labeller.SUBCLASS_NAMES)
    if "subclass_index" in sim.params:
        return names[sim.params["subclass_index"].astype(int)]
    teff = np.array([t for _, t in labeller.SUBCLASSES])
    return names[np.abs(sim.params["type_teff"][:, None] - teff[None, :]).argmin(axis=1)]


def boundary_table(real: RealSet, sims: list[Simulated]) -> dict:
    """Median index per subclass group: real (by LAMOST subclass) and simulated (by the
    simulator's subclass), and the simulated stars' F/G and G/K temperature borders."""
    table = {}
    real_idx, real_groups = indices(real.flux), subclass_groups(real.subclass)
    sim_idx = [indices(s.flux) for s in sims]
    sim_groups = [subclass_groups(simulated_subclasses(s)) for s in sims]
    for group, _ in GROUPS:
        row = {"n_real": int(np.sum(real_groups == group))}
        for name in real_idx:
            row[f"{name}_real"] = float(np.median(real_idx[name][real_groups == group])) \
                if row["n_real"] else None
            values = [float(np.median(i[name][g == group])) for i, g in zip(sim_idx, sim_groups)
                      if np.any(g == group)]
            row[f"{name}_sim"] = (float(np.mean(values)), float(np.std(values))) if values \
                else None
        table[group] = row
    borders = {"F/G": [], "G/K": []}
    for s in sims:
        teff = s.params["teff"]
        for border, hot in (("F/G", s.labels == 0), ("G/K", s.labels <= 1)):
            # The temperature a threshold rule on true Teff would put the border at.
            order = np.argsort(teff)
            errors = np.cumsum(hot[order]) + (np.sum(~hot) - np.cumsum(~hot[order]))
            borders[border].append(float(teff[order][np.argmin(errors)]))
    table["borders_teff"] = {k: (float(np.mean(v)), float(np.std(v))) for k, v in borders.items()}
    return table


def print_boundary_table(table: dict) -> None:
    names = [name for name, *_ in INDICES]
    print("\n[v2 boundaries] median index (A) by subclass group: real | simulated mean+-std")
    print("  group  n_real  " + "  ".join(f"{n:>18s}" for n in names))
    for group, _ in GROUPS:
        row = table[group]
        cells = []
        for n in names:
            r, s = row[f"{n}_real"], row[f"{n}_sim"]
            cells.append(f"{r if r is None else f'{r:5.2f}'} | "
                         f"{'-' if s is None else f'{s[0]:5.2f}+-{s[1]:4.2f}'}")
        print(f"  {group:5s}  {row['n_real']:6d}  " + "  ".join(f"{c:>18s}" for c in cells))
    print("  Teff border (threshold on true Teff) F/G %.0f+-%.0f K, G/K %.0f+-%.0f K" % (
        *table["borders_teff"]["F/G"], *table["borders_teff"]["G/K"]))


def labeller_on_real(real: RealSet) -> dict:
    """The simulator's labeller applied to the real F/G/K stars (uniform weights: the grid
    fluxes carry no inverse variance): how often it gives LAMOST's class."""
    from astrospectra_jax.data.simulator import labeller
    found = labeller.fgk_class(labeller.classify(real.flux))
    out = {"agreement": float(np.mean(found == real.labels)),
           "recall": {name: float(np.mean(found[real.labels == i] == i))
                      for i, name in enumerate(tasks.CLASS_NAMES["v2"])}}
    print(f"\n[v2 labeller on the real stars] agreement with LAMOST's class "
          f"{out['agreement']:.3f}; " + ", ".join(f"{k} {v:.3f}" for k, v in out["recall"].items()))
    return out


def summarise(runs: list[dict]) -> dict:
    """Mean and std over runs of accuracy and per-class recall (and per-source v1 recall)."""
    out = {"n_runs": len(runs)}
    acc = [r["accuracy"] for r in runs]
    out["accuracy"] = (float(np.mean(acc)), float(np.std(acc)))
    out["recall"] = {}
    for name in runs[0]["recall"]:
        values = [r["recall"][name] for r in runs if r["recall"][name] is not None]
        if values:
            out["recall"][name] = (float(np.mean(values)), float(np.std(values)))
    return out


def print_summary(task: str, model: str, summary: dict) -> None:
    recall = ", ".join(f"{k} {m:.3f}+-{s:.3f}" for k, (m, s) in summary["recall"].items())
    print(f"\n[{task} {model}] {summary['n_runs']} runs: accuracy "
          f"{summary['accuracy'][0]:.3f}+-{summary['accuracy'][1]:.3f}; recall {recall}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lamost-dir", type=Path, default=SHARED / "lamost")
    parser.add_argument("--sdss-dir", type=Path, default=SHARED / "sdss")
    parser.add_argument("--out", type=Path, required=True, help="folder for results and PNGs")
    parser.add_argument("--tasks", default="v2,v1")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--train", type=int, default=4000,
                        help="simulated spectra per simulator seed")
    parser.add_argument("--subsample", type=float, default=0.75,
                        help="share of them each training seed trains on")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the CNNs")
    parser.add_argument("--sim-seeds", default="0,1,2")
    parser.add_argument("--train-seeds", default="0,1,2")
    parser.add_argument("--C", type=float, default=0.01, help="logistic regression inverse L2")
    parser.add_argument("--simulator-root", type=Path, default=None,
                        help="run the simulator of another tree (e.g. a `git archive` of an "
                             "older commit) in a subprocess")
    parser.add_argument("--labelling", default="temperature",
                        help="this tree's v2 labelling rule: temperature or survey")
    parser.add_argument("--reference-feh", type=float, default=None,
                        help="the labeller's reference [Fe/H] (experiment; default: its own)")
    parser.add_argument("--poly-degree", type=int, default=None,
                        help="the labeller's polynomial degree (experiment; default: its own)")
    parser.add_argument("--giant-references", default=None,
                        help="comma-separated subclasses with giant references (experiment)")
    parser.add_argument("--without", default=None,
                        help="switch one nuisance of this tree's simulator off (ablation)")
    parser.add_argument("--bridge-zero-tails", action="store_true",
                        help="treat exact-zero red tails as missing, real and simulated")
    parser.add_argument("--real-cache", type=Path, default=None,
                        help="npz of the real sets on the grid, read if present, else written")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    for name in models:
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; known: {', '.join(MODELS)}")
    if not args.lamost_dir.is_dir():
        parser.error(f"--lamost-dir {args.lamost_dir}: no such folder (real spectra are needed)")
    args.out.mkdir(parents=True, exist_ok=True)
    real = load_real_sets(args)
    if args.reference_feh is not None or args.poly_degree is not None or args.giant_references:
        from astrospectra_jax.data.simulator import labeller
        if args.reference_feh is not None:
            labeller.REFERENCE_FEH = args.reference_feh
        if args.poly_degree is not None:
            labeller.POLY_DEGREE = args.poly_degree
        if args.giant_references:
            labeller.GIANT_SUBCLASSES = tuple(args.giant_references.split(","))
        labeller._design.cache_clear()
    if args.bridge_zero_tails:
        real = {task: dataclasses.replace(r, flux=bridge_zero_tails(r.flux))
                for task, r in real.items()}
    sim_seeds = [int(x) for x in args.sim_seeds.split(",")]
    train_seeds = [int(x) for x in args.train_seeds.split(",")]
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "tasks": {}}
    for task in args.tasks.split(","):
        runs = collections.defaultdict(list)
        sims = []
        for sim_seed in sim_seeds:
            start = time.perf_counter()
            sim = simulate(task, args.train, sim_seed, args.simulator_root, args.labelling,
                           args.without)
            if args.bridge_zero_tails:
                sim.flux = bridge_zero_tails(sim.flux)
            sims.append(sim)
            print(f"\nsimulated {args.train} {task} spectra (seed {sim_seed}) in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
            for train_seed in train_seeds:
                pick = np.random.default_rng(1000 + train_seed).permutation(args.train)[
                    :int(args.subsample * args.train)]
                part = Simulated(sim.flux[pick], sim.labels[pick], {})
                for name in models:
                    start = time.perf_counter()
                    if name == "lr":
                        predicted = fit_predict_lr(part, real[task].flux, args.C)
                    else:
                        predicted = fit_predict_deep(name, task, part, real[task].flux,
                                                     args.epochs, train_seed)
                    result = scores(task, real[task], predicted)
                    result.update(seconds=round(time.perf_counter() - start, 1),
                                  sim_seed=sim_seed, train_seed=train_seed)
                    runs[name].append(result)
                    print(f"  {name} sim seed {sim_seed} train seed {train_seed}: accuracy "
                          f"{result['accuracy']:.3f} " + " ".join(
                              f"{k} {v:.3f}" for k, v in result["recall"].items()
                              if v is not None), flush=True)
                    if sim_seed == sim_seeds[0] and train_seed == train_seeds[0]:
                        print_scores(task, name, result, real[task], predicted)
        results["tasks"][task] = {}
        for name in models:
            summary = summarise(runs[name])
            print_summary(task, name, summary)
            results["tasks"][task][name] = {"summary": summary, "runs": runs[name]}
        if task == "v2":
            table = boundary_table(real[task], sims)
            print_boundary_table(table)
            results["tasks"][task]["boundaries"] = table
            results["tasks"][task]["labeller_on_real"] = labeller_on_real(real[task])
        if not args.no_plots:
            plot_means(task, sims[0], real[task], args.out / f"means_{task}.png")
            plot_pca(task, sims[0], real[task], args.out / f"pca_{task}.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.out}/results.json" + ("" if args.no_plots else ", means_*.png, pca_*.png"))
    return 0


def load_real_sets(args) -> dict[str, RealSet]:
    cache = args.real_cache
    if cache is not None and cache.exists():
        data = np.load(cache)
        return {task: RealSet(*(data[f"{task}_{f.name}"] for f in dataclasses.fields(RealSet)))
                for task in ("v2", "v1")}
    real = real_sets(args.lamost_dir, args.sdss_dir)
    if cache is not None:
        np.savez(cache, **{f"{task}_{f.name}": getattr(r, f.name) for task, r in real.items()
                           for f in dataclasses.fields(RealSet)})
    return real


if __name__ == "__main__":
    sys.exit(main())
