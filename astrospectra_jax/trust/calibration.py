"""Probability calibration: temperature scaling, expected calibration error, reliability diagram.

Pure numpy / scipy functions on logits and integer labels, for training (fit on the held-out
validation part) and predict (divide logits by the fitted temperature before the softmax).

>>> t = fit_temperature(val_logits, val_labels)
>>> probs = softmax(test_logits / t)
>>> expected_calibration_error(probs, test_labels)  # 15 equal-width confidence bins
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

ECE_BINS = 15
# log T is searched in [-LOG_T_BOUND, LOG_T_BOUND]: T from ~0.018 to ~55.
LOG_T_BOUND = 4.0


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    labels = np.asarray(labels, dtype=np.int64)
    lp = log_softmax(logits, temperature)
    return float(-lp[np.arange(len(labels)), labels].mean())


def _check(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits must be (N, K) and labels (N,); got {logits.shape}, "
                         f"{labels.shape}")
    if len(labels) == 0:
        raise ValueError("no examples to calibrate on")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("logits hold non-finite values")
    return logits, labels


def fit_temperature(logits, labels) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    A bounded 1-D search over log T (scipy's Brent-bounded ``minimize_scalar`` on a coarse grid's
    best bracket), so it cannot diverge: T stays in [e^-4, e^4]. NLL in log T is smooth and,
    for fixed logits, unimodal in practice; the coarse grid guards against flat plateaus
    (e.g. all examples right with huge margins, where T -> 0 is best: the bound is returned).
    """
    from scipy.optimize import minimize_scalar

    logits, labels = _check(logits, labels)
    grid = np.linspace(-LOG_T_BOUND, LOG_T_BOUND, 33)
    values = np.array([nll(logits, labels, np.exp(g)) for g in grid])
    best = int(np.argmin(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    result = minimize_scalar(lambda g: nll(logits, labels, np.exp(g)), bounds=(lo, hi),
                             method="bounded", options={"xatol": 1e-5})
    log_t = float(result.x) if result.fun <= values[best] else float(grid[best])
    return float(np.exp(log_t))


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins of (share of examples) x |accuracy - mean
    confidence|, with confidence = max probability and accuracy of the argmax. Bin b holds
    confidences in (b/bins, (b+1)/bins]; confidence 0 falls in bin 0."""
    stats = reliability(probs, labels, bins)
    total = stats.counts.sum()
    if total == 0:
        raise ValueError("no examples")
    filled = stats.counts > 0
    gap = np.abs(stats.accuracy[filled] - stats.confidence[filled])
    return float(np.sum(stats.counts[filled] / total * gap))


@dataclasses.dataclass(frozen=True)
class Reliability:
    """Per-bin statistics of a reliability diagram (NaN in empty bins)."""

    edges: np.ndarray  # (bins + 1,)
    counts: np.ndarray  # (bins,) int
    accuracy: np.ndarray  # (bins,)
    confidence: np.ndarray  # (bins,)


def reliability(probs, labels, bins: int = ECE_BINS) -> Reliability:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs must be (N, K) and labels (N,); got {probs.shape}, "
                         f"{labels.shape}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=correct, minlength=bins) / counts
        conf = np.bincount(which, weights=confidence, minlength=bins) / counts
    return Reliability(edges, counts, acc, conf)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What results.json's ``calibration`` holds."""

    temperature: float
    ece_before: float
    ece_after: float
    bins: int = ECE_BINS
    fitted_on: str = "validation"
    measured_on: str = "test"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> Calibration:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in fields})


def calibrate(val_logits, val_labels, test_logits, test_labels,
              bins: int = ECE_BINS) -> Calibration:
    """Fit T on the validation part, measure ECE before and after on the test split."""
    t = fit_temperature(val_logits, val_labels)
    return Calibration(
        temperature=t,
        ece_before=expected_calibration_error(softmax(test_logits), test_labels, bins),
        ece_after=expected_calibration_error(softmax(test_logits, t), test_labels, bins),
        bins=bins)


def plot_reliability(path, probs_before, probs_after, labels, *, bins: int = ECE_BINS,
                     title: str = "") -> Path:
    """Reliability diagram (accuracy against confidence per bin, before and after scaling,
    with the share of examples per bin below), written atomically to ``path`` (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrospectra_jax.results import atomic_open

    path = Path(path)
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect")
    width = 1.0 / bins
    for probs, colour, name, offset in ((probs_before, "tab:red", "before", -0.25),
                                        (probs_after, "tab:blue", "after", 0.25)):
        if probs is None:
            continue
        stats = reliability(probs, labels, bins)
        ece = expected_calibration_error(probs, labels, bins)
        centres = 0.5 * (stats.edges[:-1] + stats.edges[1:])
        filled = stats.counts > 0
        ax.bar(centres[filled] + offset * width, stats.accuracy[filled], width=width / 2,
               color=colour, alpha=0.7, label=f"{name}: ECE {ece:.4f}")
        ax_n.bar(centres + offset * width, stats.counts / stats.counts.sum(), width=width / 2,
                 color=colour, alpha=0.7)
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title or "reliability")
    ax.legend(loc="upper left", fontsize=8)
    ax_n.set(xlabel="confidence (max probability)", ylabel="share")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path
