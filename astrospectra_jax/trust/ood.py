"""Is an input outside the classes? Scores, thresholds and a fitted detector record.

Every score follows one convention: higher = more likely outside the model's classes. A
threshold is set on the validation part (inputs of the classes) so that ``kept`` of them (95%
by default) score at or below it; ``outside = score > threshold``.

Scores:

- ``max_softmax``: 1 - max softmax probability (Hendrycks & Gimpel 2017);
- ``energy``: -T logsumexp(logits / T) (Liu et al. 2020);
- ``mahalanobis``: min over classes of the squared Mahalanobis distance of the penultimate
  features to the class mean, with one covariance shared by the classes (Lee et al. 2018),
  shrunk towards its scaled identity for stability (``fit_mahalanobis``);
- ``outlier_exposure``: the probability of the extra "other" class of a model trained with
  simulated outliers as class K (``trust.outliers.simulated_outliers``);
- ``ensemble_mi``: mutual information between the prediction and the member, H(mean p) -
  mean H(p), over an ensemble's members.

Pure numpy; the records serialise to results.json (``to_json``) and npz (``save_npz``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from astrospectra_jax.trust.calibration import softmax

METHODS = ("max_softmax", "energy", "mahalanobis", "outlier_exposure", "ensemble_mi")
DEFAULT_KEPT = 0.95


# ----------------------------------------------------------------------------- scores

def max_softmax_score(logits, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N,) 1 - max softmax probability."""
    return 1.0 - softmax(logits, temperature).max(axis=-1)


def energy_score(logits, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N,) energy -T logsumexp(logits / T)."""
    return -temperature * logsumexp(np.asarray(logits, np.float64) / temperature, axis=-1)


def outlier_exposure_score(logits, other_index: int = -1) -> np.ndarray:
    """(N, K+1) logits of a model with an "other" class -> (N,) p(other)."""
    return softmax(logits)[..., other_index]


def ensemble_mutual_information(member_probs) -> np.ndarray:
    """(M, N, K) members' probabilities -> (N,) H(mean over members) - mean entropy (nats)."""
    p = np.clip(np.asarray(member_probs, dtype=np.float64), 1e-12, 1.0)
    if p.ndim != 3:
        raise ValueError(f"member_probs must be (members, N, K), got {p.shape}")
    mean = p.mean(axis=0)
    entropy_of_mean = -(mean * np.log(mean)).sum(axis=-1)
    mean_entropy = -(p * np.log(p)).sum(axis=-1).mean(axis=0)
    return np.maximum(entropy_of_mean - mean_entropy, 0.0)


@dataclasses.dataclass(frozen=True)
class MahalanobisFit:
    """Class means (K, D) and the shared precision matrix (D, D) of penultimate features."""

    means: np.ndarray
    precision: np.ndarray
    shrinkage: float

    def score(self, features) -> np.ndarray:
        return mahalanobis_score(self, features)


def fit_mahalanobis(features, labels, num_classes: int | None = None,
                    shrinkage: float | None = None) -> MahalanobisFit:
    """Class-conditional Gaussians with one shared covariance on ``features`` (N, D).

    The pooled within-class covariance S is shrunk: (1 - a) S + a (tr S / D) I. ``shrinkage``
    None picks a by Ledoit-Wolf (sklearn's estimator on the class-centred features); a float
    in [0, 1] fixes it. A class absent from ``labels`` gets mean NaN and never wins."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(f"features must be (N, D) and labels (N,); got {x.shape}, {labels.shape}")
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    d = x.shape[1]
    means = np.full((k, d), np.nan)
    centred = np.empty_like(x)
    for c in range(k):
        rows = labels == c
        if rows.any():
            means[c] = x[rows].mean(axis=0)
            centred[rows] = x[rows] - means[c]
    if shrinkage is None:
        from sklearn.covariance import ledoit_wolf_shrinkage

        shrinkage = float(ledoit_wolf_shrinkage(centred, assume_centered=True))
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    cov = centred.T @ centred / max(len(x), 1)
    target = np.trace(cov) / d
    cov = (1.0 - shrinkage) * cov + shrinkage * max(target, 1e-12) * np.eye(d)
    precision = np.linalg.pinv(cov, hermitian=True)
    return MahalanobisFit(means=means, precision=precision, shrinkage=float(shrinkage))


def mahalanobis_distances(fit: MahalanobisFit, features) -> np.ndarray:
    """(N, K) squared Mahalanobis distances to every class mean (inf for absent classes)."""
    x = np.asarray(features, dtype=np.float64)
    diff = x[:, None, :] - fit.means[None, :, :]  # (N, K, D)
    d2 = np.einsum("nkd,de,nke->nk", diff, fit.precision, diff)
    return np.where(np.isnan(d2), np.inf, d2)


def mahalanobis_score(fit: MahalanobisFit, features) -> np.ndarray:
    """(N,) min over classes of the squared Mahalanobis distance."""
    return mahalanobis_distances(fit, features).min(axis=1)


# ----------------------------------------------------------------------------- thresholds

def threshold_at_kept(validation_scores, kept: float = DEFAULT_KEPT) -> float:
    """The score at or below which ``kept`` of the validation inputs lie (their ``kept``
    quantile, "higher" interpolation so that at least that share is kept)."""
    scores = np.asarray(validation_scores, dtype=np.float64).ravel()
    if not 0.0 < kept <= 1.0:
        raise ValueError(f"kept must lie in (0, 1], got {kept}")
    scores = scores[np.isfinite(scores)]
    if scores.size == 0:
        raise ValueError("no finite validation scores to set a threshold on")
    return float(np.quantile(scores, kept, method="higher"))


def roc_auc(inside_scores, outside_scores) -> float:
    """ROC AUC of telling outside from inside by a higher score (ties count one half)."""
    a = np.asarray(inside_scores, dtype=np.float64).ravel()
    b = np.asarray(outside_scores, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[a.size:].sum() - b.size * (b.size + 1) / 2) / (a.size * b.size))


# ----------------------------------------------------------------------------- the record

@dataclasses.dataclass(frozen=True)
class OODDetector:
    """A fitted detector: the method, its threshold and (Mahalanobis) its statistics.

    ``to_json`` gives results.json's ``ood`` entry (small: no matrices); the Mahalanobis means
    and precision go to an npz beside it (``save_npz`` / ``load_npz``)."""

    method: str
    threshold: float
    kept: float = DEFAULT_KEPT
    temperature: float = 1.0  # logits are divided by it (max_softmax, energy)
    validation_examples: int = 0
    mahalanobis: MahalanobisFit | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown OOD method {self.method!r}; known: {', '.join(METHODS)}")
        if self.method == "mahalanobis" and self.mahalanobis is None:
            raise ValueError("a mahalanobis detector needs its MahalanobisFit")

    def scores(self, *, logits=None, features=None, member_probs=None) -> np.ndarray:
        """OOD scores of a batch from what the method needs."""
        if self.method == "max_softmax":
            return max_softmax_score(logits, self.temperature)
        if self.method == "energy":
            return energy_score(logits, self.temperature)
        if self.method == "outlier_exposure":
            return outlier_exposure_score(logits)
        if self.method == "ensemble_mi":
            return ensemble_mutual_information(member_probs)
        return mahalanobis_score(self.mahalanobis, features)

    def outside(self, scores) -> np.ndarray:
        return np.asarray(scores) > self.threshold

    def to_json(self) -> dict:
        out = {"method": self.method, "threshold": self.threshold, "kept": self.kept,
               "temperature": self.temperature, "validation_examples": self.validation_examples,
               "score": "higher = more likely outside the classes; outside_classes = "
                        "ood_score > threshold"}
        if self.mahalanobis is not None:
            out["shrinkage"] = self.mahalanobis.shrinkage
            out["feature_dim"] = int(self.mahalanobis.means.shape[1])
        return out

    def save_npz(self, path) -> Path:
        from astrospectra_jax.results import atomic_open

        arrays = {"method": np.array(self.method), "threshold": np.array(self.threshold),
                  "kept": np.array(self.kept), "temperature": np.array(self.temperature),
                  "validation_examples": np.array(self.validation_examples)}
        if self.mahalanobis is not None:
            arrays.update(means=self.mahalanobis.means, precision=self.mahalanobis.precision,
                          shrinkage=np.array(self.mahalanobis.shrinkage))
        path = Path(path)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    @classmethod
    def load_npz(cls, path) -> OODDetector:
        with np.load(path) as z:
            fit = None
            if "means" in z:
                fit = MahalanobisFit(z["means"], z["precision"], float(z["shrinkage"]))
            return cls(method=str(z["method"]), threshold=float(z["threshold"]),
                       kept=float(z["kept"]), temperature=float(z["temperature"]),
                       validation_examples=int(z["validation_examples"]), mahalanobis=fit)


def fit_detector(method: str, *, kept: float = DEFAULT_KEPT, temperature: float = 1.0,
                 train_features=None, train_labels=None, num_classes: int | None = None,
                 validation_logits=None, validation_features=None,
                 validation_member_probs=None, shrinkage: float | None = None) -> OODDetector:
    """Fit ``method`` (Mahalanobis statistics on the training features) and set its threshold
    on the validation inputs so that ``kept`` of them stay inside."""
    fit = None
    if method == "mahalanobis":
        fit = fit_mahalanobis(train_features, train_labels, num_classes, shrinkage)
    probe = OODDetector(method, np.inf, kept, temperature, 0, fit)
    scores = probe.scores(logits=validation_logits, features=validation_features,
                          member_probs=validation_member_probs)
    return dataclasses.replace(probe, threshold=threshold_at_kept(scores, kept),
                               validation_examples=int(len(scores)))
