"""Command line: which parts of a spectrum a trained model looks at.

Usage::

    python -m astrospectra_jax.explain --workdir RUN --input PATH [PATH ...] --out DIR

Inputs are what ``predict`` takes (FITS spectra, Kaggle images / PNGs, line-vector npz). For
every input: integrated gradients (Sundararajan et al. 2017) of the predicted class's logit
with respect to the model input, along the straight path from a blank baseline (zeros in the
model's input scale: a black image, or a flat line vector at the spectrum's mean level), with
``--steps`` midpoint-rule steps; ``--method gxi`` is gradient x input, one gradient per input.
Attributions of each image pixel / line value are mapped to the wavelength range it averages
(``recipe.image_pixel_edges``, ``recipe.line_value_wavelengths``).

Writes to ``DIR``: ``attributions.npz`` (``ids``, ``files``, ``predicted``, ``logits``,
``attributions`` (N, 784 or 721), ``wavelength`` (centres), ``wavelength_range`` (lo, hi),
``method``, ``steps``, ``class_names``) and ``attribution_<CLASS>.png`` per predicted class:
the class's mean attribution against wavelength drawn over its mean input spectrum, with the
named features marked (Ca II H and K, H-delta, G band, H-gamma, H-beta, Mg b, Na D, H-alpha,
TiO bands; for inputs whose file calls them quasars, the broad lines at the file's redshift).

Batched and jitted: one jitted call per batch evaluates all path points of the batch at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from astrospectra_jax.data import recipe

DEFAULT_STEPS = 16
DEFAULT_BATCH_SIZE = 64
METHODS = ("ig", "gxi")


# ----------------------------------------------------------------------------- named features

def named_features() -> list[tuple[str, tuple[float, ...]]]:
    """(label, vacuum wavelengths in A) of the features marked on the plots, taken from the
    simulator's line tables (stellar lines are air wavelengths there: converted)."""
    from astrospectra_jax.data.simulator import lines

    by_name = {f.name: f for f in lines.STELLAR_FEATURES}

    def vac(name, index=None):
        waves = [w for w, _ in by_name[name].lines]
        if index is not None:
            waves = [waves[index]]
        return tuple(float(w) for w in lines.air_to_vacuum(np.array(waves)))

    balmer = {round(w): w for w, _ in by_name["balmer_core"].lines}
    def balmer_line(approx):
        return tuple(float(w) for w in lines.air_to_vacuum(np.array([balmer[approx]])))

    return [("Ca II K", vac("ca2_k_core")), ("Ca II H", vac("ca2_h_core")),
            ("H-delta", balmer_line(4102)), ("G band", vac("g_band")),
            ("H-gamma", balmer_line(4340)), ("H-beta", balmer_line(4861)),
            ("Mg b", vac("mg_b_core")), ("Na D", vac("na_d_core")),
            ("H-alpha", vac("h_alpha_core")), ("TiO", vac("tio"))]


def quasar_broad_lines(redshift: float) -> list[tuple[str, float]]:
    """(name, observed vacuum A) of the quasar broad lines inside the grid at ``redshift``."""
    from astrospectra_jax.data.simulator import lines

    out = []
    for name, rest, *_ in lines.QSO_BROAD_LINES:
        observed = rest * (1.0 + redshift)
        if recipe.GRID[0] <= observed <= recipe.GRID[-1]:
            out.append((name, float(observed)))
    return out


# ----------------------------------------------------------------------------- attributions

def integrated_gradients(apply_fn: Callable, x, target, baseline=None,
                         steps: int = DEFAULT_STEPS):
    """Integrated gradients of ``apply_fn(x)[i, target[i]]`` for a batch ``x`` (B, ...).

    ``apply_fn``: model input batch -> logits (B, K), a pure jax function with no batch
    coupling (e.g. a model in eval mode). ``baseline``: same shape as ``x`` (default zeros).
    Midpoint rule with ``steps`` points along baseline -> x; all points of the batch go through
    one call. Returns float32 attributions shaped like ``x``; their sum over an input
    approximates f(x) - f(baseline) (completeness)."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32)
    baseline = jnp.zeros_like(x) if baseline is None else jnp.asarray(baseline, jnp.float32)
    target = jnp.asarray(target, jnp.int32)
    alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
    shape = (steps,) + (1,) * x.ndim
    path = baseline[None] + alphas.reshape(shape) * (x - baseline)[None]  # (steps, B, ...)

    def total(points):
        logits = apply_fn(points.reshape((-1,) + x.shape[1:])).reshape(steps, x.shape[0], -1)
        return jnp.take_along_axis(logits, target[None, :, None], axis=2).sum()

    grads = jax.grad(total)(path)
    return (x - baseline) * grads.mean(axis=0)


def gradient_x_input(apply_fn: Callable, x, target):
    """Gradient of the target logit times the input (B, ...): one backward pass."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(x, jnp.float32)
    target = jnp.asarray(target, jnp.int32)

    def total(points):
        return jnp.take_along_axis(apply_fn(points), target[:, None], axis=1).sum()

    return x * jax.grad(total)(x)


def make_explainer(apply_fn: Callable, method: str = "ig", steps: int = DEFAULT_STEPS):
    """A jitted ``x -> (logits, predicted, attributions)`` for one batch of model inputs."""
    import jax

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    @jax.jit
    def explain(x):
        logits = apply_fn(x)
        predicted = logits.argmax(axis=-1)
        if method == "ig":
            attributions = integrated_gradients(apply_fn, x, predicted, steps=steps)
        else:
            attributions = gradient_x_input(apply_fn, x, predicted)
        return logits, predicted, attributions

    return explain


def explain_batches(explain: Callable, inputs: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE):
    """Run a jitted explainer over ``inputs`` in fixed-size (zero-padded) batches:
    (logits (N, K), predicted (N,), attributions (N, D) flattened)."""
    logits, predicted, attributions = [], [], []
    n = len(inputs)
    batch_size = max(1, min(batch_size, n))
    for start in range(0, n, batch_size):
        batch = inputs[start:start + batch_size]
        pad = batch_size - len(batch)
        if pad:
            batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
        lo, pr, at = explain(batch)
        keep = batch_size - pad
        logits.append(np.asarray(lo)[:keep])
        predicted.append(np.asarray(pr)[:keep])
        attributions.append(np.asarray(at).reshape(batch_size, -1)[:keep])
    return np.concatenate(logits), np.concatenate(predicted), np.concatenate(attributions)


def wavelength_ranges(modality: str) -> np.ndarray:
    """(D, 2) wavelength range (A) of each flattened model input value."""
    if modality == "image":
        edges = recipe.image_pixel_edges()
        return np.stack([edges[:-1], edges[1:]], axis=1)
    if modality == "line":
        return recipe.line_value_wavelengths()
    raise ValueError(f"modality must be 'image' or 'line', got {modality!r}")


# ----------------------------------------------------------------------------- the run

@dataclasses.dataclass
class LoadedModel:
    """What explain needs from a run: a pure forward function on model inputs, the stored
    features -> model input scaling, and what the run classifies."""

    apply_fn: Callable  # model input (B, ...) float32 -> logits (B, K)
    preprocess: Callable  # stored features (uint8 images / float32 lines) -> model input
    modality: str
    task: str
    class_names: tuple[str, ...]
    description: str


def load_model(workdir) -> LoadedModel:
    """The run as predict loads it (``predict.load_run``: the model-only restore, the ONE
    place), its logits divided by the fitted temperature where the run calibrated; a model
    trained with outlier exposure is explained over its K classes (not "other")."""
    import jax.numpy as jnp
    from flax import nnx

    from astrospectra_jax import predict
    from astrospectra_jax.training import input_pipeline

    run = predict.load_run(workdir)
    model = nnx.merge(run.graphdef, run.model["params"], run.model["model_state"], copy=True)
    model.eval()
    graphdef, state = nnx.split(model)
    prep = dict(modality=run.spec.modality, input_size=run.config.model.input_size)
    k = run.spec.num_classes
    temperature = run.calibration.temperature if run.calibration is not None else 1.0

    def apply_fn(x):
        return nnx.merge(graphdef, state)(x)[..., :k] / temperature

    def preprocess(features):
        return np.asarray(input_pipeline.preprocess(jnp.asarray(features), **prep))

    calibrated = f", T={temperature:.3f}" if run.calibration is not None else ""
    return LoadedModel(apply_fn, preprocess, run.spec.modality, run.spec.task or "",
                       tuple(run.spec.class_names),
                       f"{run.config.model.name} on {run.spec.name}, step {run.step}{calibrated}")


def _input_redshifts(files: Sequence[str], true_classes: Sequence[str | None]) -> np.ndarray:
    """The file's redshift for FITS inputs whose file calls them quasars (NaN elsewhere)."""
    from astrospectra_jax.data import readers

    z = np.full(len(files), np.nan)
    for i, (file, true) in enumerate(zip(files, true_classes, strict=True)):
        if true == "QSO" and str(file).lower().endswith((".fits", ".fits.gz", ".fit")):
            try:
                spectrum = readers.read_spectrum(Path(file))
            except (readers.SpectrumReadError, OSError):
                continue
            if spectrum.redshift is not None:
                z[i] = spectrum.redshift
    return z


def plot_class(path, class_name: str, wavelength, attributions, spectra, redshifts,
               *, title: str = "") -> Path:
    """Mean attribution against wavelength over the mean input spectrum of one class."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrospectra_jax.results import atomic_open

    fig, ax = plt.subplots(figsize=(13, 4.2))
    spectrum = spectra.mean(axis=0)
    ax.plot(wavelength, spectrum, color="0.35", lw=0.8, label=f"mean input ({len(spectra)})")
    ax.set(xlabel="observed wavelength (A)", ylabel="mean model input",
           xlim=(recipe.GRID[0], recipe.GRID[-1]))
    attr = attributions.mean(axis=0)
    twin = ax.twinx()
    twin.fill_between(wavelength, 0, attr, where=attr >= 0, color="tab:red", alpha=0.55, lw=0,
                      step="mid", label="supports the class")
    twin.fill_between(wavelength, 0, attr, where=attr < 0, color="tab:blue", alpha=0.55, lw=0,
                      step="mid", label="against the class")
    bound = float(np.max(np.abs(attr))) or 1.0
    twin.set(ylim=(-1.15 * bound, 1.15 * bound), ylabel="mean attribution")
    top = ax.get_ylim()[1]
    for label, waves in named_features():
        for w in waves:
            ax.axvline(w, color="tab:green", lw=0.6, alpha=0.6)
        ax.text(waves[0], top, label, rotation=90, fontsize=7, va="top", ha="right",
                color="darkgreen")
    finite = np.flatnonzero(np.isfinite(redshifts))
    for k, i in enumerate(finite[:3]):  # a few inputs: more would hide the spectrum
        for name, w in quasar_broad_lines(float(redshifts[i])):
            ax.axvline(w, color="tab:purple", lw=0.6, ls="--", alpha=0.5)
            if k == 0:
                ax.text(w, top * 0.8, f"{name} z={redshifts[i]:.2f}", rotation=90, fontsize=6,
                        va="top", ha="left", color="purple")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_title(title or f"predicted {class_name}")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.explain",
        description="Attributions of a trained run's predictions, mapped to wavelength.")
    parser.add_argument("--workdir", required=True, type=Path, help="a main.py workdir")
    parser.add_argument("--input", required=True, nargs="+", type=Path,
                        help="files or folders (searched recursively), as for predict")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--method", choices=METHODS, default="ig",
                        help="ig: integrated gradients; gxi: gradient x input (cheaper)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="IG path steps")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from astrospectra_jax.data.inputs import collect_inputs
    from astrospectra_jax.results import atomic_open

    parser = _parser()
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be positive")
    try:
        loaded = load_model(args.workdir)
    except (ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    inputs = collect_inputs(args.input, loaded.modality, loaded.task,
                            progress=not args.no_progress)
    for file, reason in inputs.skipped:
        print(f"skipped {file}: {reason}", file=sys.stderr)
    if not inputs.ids:
        parser.exit(2, f"{parser.prog}: error: no usable input\n")
    x = loaded.preprocess(np.stack(inputs.features))
    explain = make_explainer(loaded.apply_fn, args.method, args.steps)
    logits, predicted, attributions = explain_batches(explain, x, args.batch_size)
    ranges = wavelength_ranges(loaded.modality)
    centres = ranges.mean(axis=1)
    spectra = x.reshape(len(x), -1)
    redshifts = _input_redshifts(inputs.files, inputs.true_classes)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.out / "attributions.npz", "wb") as f:
        np.savez_compressed(
            f, ids=np.array(inputs.ids), files=np.array([str(p) for p in inputs.files]),
            predicted=predicted, logits=logits, attributions=attributions.astype(np.float32),
            wavelength=centres, wavelength_range=ranges, redshift=redshifts,
            method=np.array(args.method), steps=np.array(args.steps),
            class_names=np.array(loaded.class_names))
    what = "integrated gradients" if args.method == "ig" else "gradient x input"
    for k, name in enumerate(loaded.class_names):
        rows = predicted == k
        if rows.any():
            plot_class(args.out / f"attribution_{name}.png", name, centres, attributions[rows],
                       spectra[rows], redshifts[rows],
                       title=f"{loaded.description}: {rows.sum()} inputs predicted {name} "
                             f"({what})")
    print(f"wrote {args.out}: attributions.npz and {len(set(predicted.tolist()))} class plot(s) "
          f"for {len(x)} inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
