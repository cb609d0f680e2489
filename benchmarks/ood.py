"""Which outside-the-classes score works on real spectra? v2 models trained on simulated F/G/K.

    nice -n 10 python benchmarks/ood.py --out /tmp/ood --seeds 0,1,2

Per seed, simulated v2 F/G/K spectra (``--train``, plus a 10% validation part and a test split)
train a SimpleCNN1 on the 28x28 images and the Conv1D on the 721-value line vectors (a small
optax loop on in-memory arrays, not the training API, which is being refactored), once on the
three classes and once with a fourth "other" class of ``trust.outliers.simulated_outliers``
(A and M stars, galaxies, quasars: outlier exposure). A logistic regression on median-divided
line vectors with the same four classes is the probe. Scores (``trust.ood``): max-softmax,
energy (both after temperature scaling), Mahalanobis on the penultimate features (class means
and shared covariance of the training features, Ledoit-Wolf shrinkage), outlier exposure
p(other), and for the image model the mutual information of a ``--members`` ensemble. Each
threshold keeps 95% of the simulated validation part.

Real spectra (never used to train or tune): LAMOST F/G/K stars (kept), LAMOST A and M stars,
SDSS QSO and GALAXY (flagged). Prints per method: share flagged per real class, share of real
F/G/K kept, ROC AUC (real F/G/K against all real outsiders), mean +- std over seeds; and the
calibration (temperature, ECE before / after on the simulated test split). Writes
``--out/ood.json``. The figures measured are in benchmarks/README.md (Trusting predictions).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulator_realism import median_normalised_lines, read_folder  # noqa: E402

from astrospectra_jax.data import recipe, simulator  # noqa: E402
from astrospectra_jax.trust import calibration, ood  # noqa: E402
from astrospectra_jax.trust.outliers import simulated_outliers  # noqa: E402

REAL_GROUPS = ("F", "G", "K", "A", "M", "QSO", "GALAXY")
INSIDE = ("F", "G", "K")


def _shared_data() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "shared" / "data", here.parents[3] / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "shared" / "data"


def real_groups(shared: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """Real grid fluxes by group: LAMOST subclass letter F/G/K/A/M, SDSS class QSO/GALAXY."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    groups = {g: [] for g in REAL_GROUPS}
    flux, records = read_folder(shared / "lamost")
    for f, r in zip(flux, records, strict=True):
        letter = (r.subclass or "?")[:1].upper()
        if letter in groups:
            groups[letter].append(f)
    flux, records = read_folder(shared / "sdss")
    for f, r in zip(flux, records, strict=True):
        if r.obj_class in ("QSO", "GALAXY"):
            groups[r.obj_class].append(f)
    out = {g: np.array(v, np.float32).reshape(-1, recipe.GRID_SIZE) for g, v in groups.items()}
    if cache is not None:
        np.savez(cache, **out)
    return out


# ----------------------------------------------------------------------------- small models

def model_input(modality: str, flux) -> np.ndarray:
    """Grid flux -> what the model takes (the training pipeline's ``to_float`` scaling)."""
    if modality == "image":
        return recipe.image(flux)[..., None].astype(np.float32) / 255.0
    v = recipe.line_vector(flux)
    return ((v - v.mean(1, keepdims=True)) / np.maximum(v.std(1, keepdims=True), 1e-6)
            ).astype(np.float32)


def penultimate(model, x):
    """(batch, D) input of the final Linear. Uses ``model.features`` where the model has it;
    until then a local copy of SimpleCNN1's / Conv1D's forward pass up to the last layer."""
    import jax.numpy as jnp
    from flax import nnx

    from astrospectra_jax.models import Conv1D, SimpleCNN1, layers

    if hasattr(model, "features"):
        return model.features(x)
    if isinstance(model, SimpleCNN1):
        h = layers.max_pool(nnx.relu(model.conv1(x)), 2, kernels=model.kernels)
        h = layers.max_pool(nnx.relu(model.conv2(h)), 2, kernels=model.kernels)
        return nnx.relu(model.fc1(h.reshape(h.shape[0], -1)))
    if isinstance(model, Conv1D):
        h = x[..., None] if x.ndim == 2 else x
        h = h.astype(jnp.float32)
        mean, std = jnp.mean(h, axis=1, keepdims=True), jnp.std(h, axis=1, keepdims=True)
        h = (h - mean) / jnp.where(std > 0, std, 1.0)
        return layers.global_avg_pool(model.blocks(model.stem(h)))
    raise TypeError(f"no penultimate features for {type(model).__name__}")


def train_model(name: str, x, y, num_classes: int, epochs: int, seed: int, batch: int = 64):
    import jax
    import optax
    from flax import nnx

    from astrospectra_jax import models

    model = models.create(name, num_classes=num_classes, rngs=nnx.Rngs(params=seed,
                                                                       dropout=seed + 1))
    steps = epochs * (len(y) // batch)
    tx = optax.adam(optax.cosine_decay_schedule(1e-3, max(steps, 1)))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb):
        def loss_fn(model):
            logits = model(xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for i in range(len(y) // batch):
            idx = order[i * batch:(i + 1) * batch]
            step(model, optimizer, x[idx], y[idx].astype(np.int32))
    model.eval()

    @nnx.jit
    def outputs(model, xb):
        feats = penultimate(model, xb)
        return model(xb), feats

    def apply(inputs, size: int = 256):
        logits, feats = [], []
        for i in range(0, len(inputs), size):
            lo, fe = outputs(model, inputs[i:i + size])
            logits.append(np.asarray(lo))
            feats.append(np.asarray(fe))
        return np.concatenate(logits), np.concatenate(feats)

    return apply


# ----------------------------------------------------------------------------- one seed

def run_seed(seed: int, args, real: dict[str, np.ndarray]) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_val = int(round(args.train * args.validation_fraction))
    sim = simulator.simulate("v2", args.train + n_val + args.test, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sim.labels))
    tr, va, te = np.split(order, [args.train, args.train + n_val])
    other = simulated_outliers(args.train // 3, np.random.default_rng(10_000 + seed))
    oe_flux = np.concatenate([sim.flux[tr], other.flux])
    oe_labels = np.concatenate([sim.labels[tr], np.full(len(other.flux), 3)])
    real_flux = np.concatenate([real[g] for g in REAL_GROUPS])
    real_group = np.concatenate([np.full(len(real[g]), g) for g in REAL_GROUPS])
    result = {"scores": {}, "calibration": {}}

    def record(method, val_scores, real_scores):
        result["scores"][method] = {"threshold": ood.threshold_at_kept(val_scores, args.kept),
                                    "real": real_scores}

    # The probe: logistic regression, 4 classes, on median-divided line vectors.
    start = time.perf_counter()
    if args.only_calibration:
        args_models = args.models
    else:
        args_models = None
    if args_models is None:
        lr = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=2000))
        lr.fit(median_normalised_lines(oe_flux), oe_labels)
        p_val = lr.predict_proba(median_normalised_lines(sim.flux[va]))[:, 3]
        record("lr/outlier_exposure", p_val,
               lr.predict_proba(median_normalised_lines(real_flux))[:, 3])
        print(f"  seed {seed} lr: {time.perf_counter() - start:.0f} s", flush=True)

    for name, modality in (("simplecnn1", "image"), ("conv1d", "line")):
        if name not in args.models:
            continue
        start = time.perf_counter()
        x_tr, x_va, x_te = (model_input(modality, sim.flux[i]) for i in (tr, va, te))
        x_real = model_input(modality, real_flux)
        plain = train_model(name, x_tr, sim.labels[tr], 3, args.epochs, seed)
        val_logits, val_feats = plain(x_va)
        tr_logits, tr_feats = plain(x_tr)
        te_logits, _ = plain(x_te)
        real_logits, real_feats = plain(x_real)
        cal = calibration.calibrate(val_logits, sim.labels[va], te_logits, sim.labels[te])
        # The ECE a perfectly calibrated model of the same confidences would show on this
        # many test examples: labels drawn from the calibrated probabilities themselves.
        p_after = calibration.softmax(te_logits, cal.temperature)
        draw = np.random.default_rng(seed)
        floor = [calibration.expected_calibration_error(p_after, (p_after.cumsum(1) > draw.random(
            (len(p_after), 1))).argmax(1)) for _ in range(20)]
        result["calibration"][name] = cal.to_json() | {
            "test_accuracy": float(np.mean(te_logits.argmax(1) == sim.labels[te])),
            "ece_floor": float(np.mean(floor)), "test_examples": int(len(te)),
            "test_nll_before": calibration.nll(te_logits, sim.labels[te]),
            "test_nll_after": calibration.nll(te_logits, sim.labels[te], cal.temperature)}
        if args.only_calibration:
            print(f"  seed {seed} {name}: T {cal.temperature:.3f}, ECE {cal.ece_before:.4f} -> "
                  f"{cal.ece_after:.4f} (floor {np.mean(floor):.4f}), test NLL "
                  f"{result['calibration'][name]['test_nll_before']:.4f} -> "
                  f"{result['calibration'][name]['test_nll_after']:.4f}", flush=True)
            continue
        t = cal.temperature
        record(f"{name}/max_softmax", ood.max_softmax_score(val_logits, t),
               ood.max_softmax_score(real_logits, t))
        record(f"{name}/energy", ood.energy_score(val_logits, t), ood.energy_score(real_logits, t))
        fit = ood.fit_mahalanobis(tr_feats, sim.labels[tr], 3)
        record(f"{name}/mahalanobis", fit.score(val_feats), fit.score(real_feats))
        oe = train_model(name, model_input(modality, oe_flux), oe_labels, 4, args.epochs, seed)
        record(f"{name}/outlier_exposure", ood.outlier_exposure_score(oe(x_va)[0]),
               ood.outlier_exposure_score(oe(x_real)[0]))
        if modality == "image" and args.members > 1:
            members = [plain] + [train_model(name, x_tr, sim.labels[tr], 3, args.epochs,
                                             seed + 100 * m) for m in range(1, args.members)]
            val_p = np.stack([calibration.softmax(m(x_va)[0], t) for m in members])
            real_p = np.stack([calibration.softmax(m(x_real)[0], t) for m in members])
            record(f"{name}/ensemble_mi", ood.ensemble_mutual_information(val_p),
                   ood.ensemble_mutual_information(real_p))
        print(f"  seed {seed} {name}: {time.perf_counter() - start:.0f} s; test accuracy "
              f"{result['calibration'][name]['test_accuracy']:.3f}, T {t:.2f}, ECE "
              f"{cal.ece_before:.4f} -> {cal.ece_after:.4f}", flush=True)

    summary = {}
    if args.only_calibration:
        return {"methods": summary, "calibration": result["calibration"]}
    inside = np.isin(real_group, INSIDE)
    for method, entry in result["scores"].items():
        scores, threshold = np.asarray(entry["real"]), entry["threshold"]
        flagged = {g: float(np.mean(scores[real_group == g] > threshold))
                   for g in REAL_GROUPS if np.any(real_group == g)}
        summary[method] = {
            "flagged": flagged,
            "kept_fgk": float(np.mean(scores[inside] <= threshold)),
            "auc": ood.roc_auc(scores[inside], scores[~inside]),
            "auc_neighbours": ood.roc_auc(scores[inside], scores[np.isin(real_group, ("A", "M"))]),
        }
    return {"methods": summary, "calibration": result["calibration"]}


def aggregate(per_seed: list[dict]) -> dict:
    methods = per_seed[0]["methods"]
    out = {}
    for method in methods:
        rows = [s["methods"][method] for s in per_seed]
        entry = {}
        for key in ("kept_fgk", "auc", "auc_neighbours"):
            values = np.array([r[key] for r in rows])
            entry[key] = (float(values.mean()), float(values.std()))
        entry["flagged"] = {g: (float(np.mean([r["flagged"][g] for r in rows])),
                                float(np.std([r["flagged"][g] for r in rows])))
                            for g in rows[0]["flagged"]}
        out[method] = entry
    return out


def print_table(agg: dict, counts: dict[str, int]) -> None:
    outside = [g for g in REAL_GROUPS if g not in INSIDE and counts.get(g)]
    head = ["method", f"F/G/K kept (n={sum(counts[g] for g in INSIDE)})",
            *(f"{g} flagged (n={counts[g]})" for g in outside), "AUC all", "AUC A+M"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for method, e in agg.items():
        cells = [method, "%.3f ± %.3f" % e["kept_fgk"],
                 *("%.3f ± %.3f" % e["flagged"][g] for g in outside),
                 "%.3f ± %.3f" % e["auc"], "%.3f ± %.3f" % e["auc_neighbours"]]
        print("| " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=_shared_data())
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cache", type=Path, help="npz of the real grid fluxes (made if absent)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default="simplecnn1,conv1d")
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--members", type=int, default=3, help="ensemble size (image model)")
    parser.add_argument("--kept", type=float, default=0.95)
    parser.add_argument("--C", type=float, default=0.01)
    parser.add_argument("--only-calibration", action="store_true",
                        help="train the plain models only; temperature and ECE")
    args = parser.parse_args(argv)
    args.models = args.models.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    real = real_groups(args.shared, args.cache)
    counts = {g: len(v) for g, v in real.items()}
    print("real spectra:", counts, flush=True)
    per_seed = []
    for seed in args.seeds.split(","):
        per_seed.append(run_seed(int(seed), args, real))
        (args.out / "ood_partial.json").write_text(json.dumps(per_seed, indent=1))
    agg = aggregate(per_seed) if per_seed[0]["methods"] else {}
    print_table(agg, counts)
    for name in args.models:
        cal = [s["calibration"][name] for s in per_seed]
        stats = {k: (np.mean([c[k] for c in cal]), np.std([c[k] for c in cal]))
                 for k in ("temperature", "ece_before", "ece_after", "ece_floor", "test_nll_before",
                                  "test_nll_after", "test_accuracy")}
        print(f"calibration {name}: " + ", ".join(f"{k} {m:.4f} ± {s:.4f}"
                                                   for k, (m, s) in stats.items()))
    (args.out / "ood.json").write_text(json.dumps(
        {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "real_counts": counts, "per_seed": per_seed, "aggregate": agg}, indent=1))
    print(f"wrote {args.out}/ood.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
