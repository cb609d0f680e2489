"""The two calls training and predict make: ``fit_trust`` after training, ``apply_trust`` at
prediction, plus the seeded validation hold-out they rest on.

Training (``config.validation_fraction`` > 0)::

    train_idx, val_idx = holdout(train_labels, config.validation_fraction, config.seed)
    ...train on train_idx...
    record = fit_trust(val_logits=..., val_labels=..., test_logits=..., test_labels=...,
                       train_features=..., train_labels=..., val_features=...)
    results["calibration"] = record.calibration.to_json()
    results["ood"] = record.detector.to_json(); record.detector.save_npz(workdir / "ood.npz")
    calibration.plot_reliability(workdir / "reliability.png", ...)

Predict::

    probs, ood_score, outside = apply_trust(logits, features, calibration, detector)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from astrospectra_jax.trust import calibration as cal
from astrospectra_jax.trust import ood

DEFAULT_OOD_METHOD = "mahalanobis"


def holdout(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``fraction`` of every class (rounded, at least
    one where the class has two or more examples) held out, chosen by ``seed``; both sorted.
    ``fraction`` 0 holds nothing out."""
    labels = np.asarray(labels)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E57]))
    held = []
    if fraction > 0:
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            k = int(round(fraction * rows.size))
            if rows.size >= 2:
                k = min(max(k, 1), rows.size - 1)
            else:
                k = 0
            held.append(rng.choice(rows, size=k, replace=False))
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(labels.size), val)
    return train, val


@dataclasses.dataclass(frozen=True)
class TrustRecord:
    calibration: cal.Calibration
    detector: ood.OODDetector

    def to_json(self) -> dict:
        return {"calibration": self.calibration.to_json(), "ood": self.detector.to_json()}


def fit_trust(*, val_logits, val_labels, test_logits, test_labels, method: str =
              DEFAULT_OOD_METHOD, kept: float = ood.DEFAULT_KEPT, train_features=None,
              train_labels=None, val_features=None, num_classes: int | None = None,
              val_member_probs=None, val_ood_logits=None) -> TrustRecord:
    """Temperature on the validation part (ECE before/after on test), and the OOD detector
    with its threshold keeping ``kept`` of the validation part. ``val_logits`` /
    ``test_logits`` are the K in-class logits; for "outlier_exposure" pass the K+1 logits
    (last column "other") as ``val_ood_logits``."""
    record = cal.calibrate(val_logits, val_labels, test_logits, test_labels)
    detector = ood.fit_detector(
        method, kept=kept, temperature=record.temperature, train_features=train_features,
        train_labels=train_labels, num_classes=num_classes,
        validation_logits=val_logits if val_ood_logits is None else val_ood_logits,
        validation_features=val_features,
        validation_member_probs=val_member_probs)
    return TrustRecord(record, detector)


def apply_trust(logits, features, calibration: cal.Calibration | None,
                detector: ood.OODDetector | None, member_probs=None, ood_logits=None):
    """(calibrated probabilities (N, K), ood_score (N,) or None, outside_classes (N,) or None).
    ``logits``: the K in-class logits; ``ood_logits``: all outputs (outlier exposure's K+1),
    for the score (default ``logits``)."""
    t = calibration.temperature if calibration is not None else 1.0
    probs = cal.softmax(logits, t)
    if detector is None:
        return probs, None, None
    scores = detector.scores(logits=logits if ood_logits is None else ood_logits,
                             features=features, member_probs=member_probs)
    return probs, scores, detector.outside(scores)


def load_trust(workdir, results: dict | None) -> tuple[cal.Calibration | None,
                                                       ood.OODDetector | None]:
    """The calibration (``results["calibration"]``) and OOD detector (``workdir/ood.npz``) a
    finished run fitted; None for what it did not (unfinished, ``validation_fraction`` 0)."""
    from pathlib import Path

    payload = (results or {}).get("calibration")
    calibration = cal.Calibration.from_json(payload) if payload else None
    npz = Path(workdir) / "ood.npz"
    detector = ood.OODDetector.load_npz(npz) if (results or {}).get("ood") and npz.is_file() \
        else None
    return calibration, detector
