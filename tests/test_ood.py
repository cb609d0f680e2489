"""OOD scores, thresholds and the detector record (astrospectra_jax.trust.ood, .outliers)."""

from __future__ import annotations

import numpy as np
import pytest

from astrospectra_jax.trust import ood


def _blobs(rng, n=600, d=8, k=3):
    means = 6.0 * np.eye(k, d)
    labels = rng.integers(0, k, n)
    cov = np.diag(np.linspace(0.3, 2.0, d))
    x = means[labels] + rng.multivariate_normal(np.zeros(d), cov, n)
    return x, labels, means, cov


def test_mahalanobis_recovers_the_gaussians_and_flags_neighbours():
    rng = np.random.default_rng(0)
    x, labels, means, cov = _blobs(rng, n=5000)
    fit = ood.fit_mahalanobis(x, labels, shrinkage=0.0)
    np.testing.assert_allclose(fit.means, means, atol=0.15)
    np.testing.assert_allclose(np.linalg.inv(fit.precision), cov, atol=0.15)
    inside = means[labels[:200]] + rng.multivariate_normal(np.zeros(8), cov, 200)
    # A neighbour: just beyond class 0 along its lowest-variance direction (variance 0.3).
    neighbour = means[0] + rng.normal(0, 0.1, (200, 8)) - 3.0 * np.eye(8)[0]
    threshold = ood.threshold_at_kept(fit.score(x), 0.95)
    assert np.mean(fit.score(inside) <= threshold) > 0.9
    assert np.mean(fit.score(neighbour) > threshold) > 0.95
    assert ood.roc_auc(fit.score(inside), fit.score(neighbour)) > 0.95


def test_ledoit_wolf_shrinkage_keeps_singular_features_finite():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 50))  # fewer examples than dimensions
    fit = ood.fit_mahalanobis(x, np.arange(20) % 2)
    assert 0 < fit.shrinkage <= 1
    assert np.all(np.isfinite(fit.score(rng.normal(size=(5, 50)))))


def test_softmax_and_energy_scores():
    logits = np.array([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    s = ood.max_softmax_score(logits)
    assert s[0] < 1e-3 and s[1] == pytest.approx(2 / 3)
    e = ood.energy_score(logits)
    assert e[0] < e[1] - 5  # confident = low energy
    assert ood.outlier_exposure_score(np.array([[0.0, 0.0, 0.0, 0.0]]))[0] == pytest.approx(0.25)


def test_ensemble_mutual_information():
    agree = np.tile(np.array([[[0.5, 0.5, 0.0]]]), (3, 1, 1))
    disagree = np.array([[[1, 0, 0.0]], [[0, 1, 0.0]], [[0, 0, 1.0]]])
    mi = ood.ensemble_mutual_information(np.concatenate([agree, disagree], axis=1))
    assert mi[0] == pytest.approx(0.0, abs=1e-6)
    assert mi[1] == pytest.approx(np.log(3), rel=1e-3)


def test_threshold_keeps_the_share_and_auc():
    scores = np.arange(100.0)
    t = ood.threshold_at_kept(scores, 0.95)
    assert np.mean(scores <= t) >= 0.95 and np.mean(scores <= t) <= 0.96
    assert ood.roc_auc([0, 1, 2], [3, 4]) == 1.0
    assert ood.roc_auc([3, 4], [0, 1, 2]) == 0.0
    assert ood.roc_auc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError):
        ood.threshold_at_kept([np.nan])


def test_detector_record_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    x, labels, _, _ = _blobs(rng)
    detector = ood.fit_detector("mahalanobis", train_features=x, train_labels=labels,
                                validation_features=x[:100])
    assert detector.validation_examples == 100
    assert np.mean(~detector.outside(detector.scores(features=x[:100]))) >= 0.95
    loaded = ood.OODDetector.load_npz(detector.save_npz(tmp_path / "ood.npz"))
    np.testing.assert_allclose(loaded.scores(features=x), detector.scores(features=x))
    assert loaded.to_json() == detector.to_json()
    assert detector.to_json()["method"] == "mahalanobis"
    softmax = ood.fit_detector("max_softmax", validation_logits=rng.normal(size=(50, 3)))
    assert softmax.to_json()["threshold"] == softmax.threshold
    with pytest.raises(ValueError):
        ood.OODDetector("nope", 0.0)


def test_simulated_outliers_kinds_and_determinism():
    from astrospectra_jax.trust.outliers import OUTLIER_KINDS, simulated_outliers

    a = simulated_outliers(10, 0)
    b = simulated_outliers(10, np.random.default_rng(0))
    assert a.flux.shape == (10, 3601) and np.all(np.isfinite(a.flux))
    np.testing.assert_array_equal(a.flux, b.flux)
    assert sorted(set(a.kind)) == sorted(OUTLIER_KINDS)
    assert np.all(a.redshift[a.kind == "QSO"] >= 0.1)


def test_holdout_and_fit_apply_trust():
    from astrospectra_jax.trust import fit

    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val = fit.holdout(labels, 0.1, seed=3)
    assert np.bincount(labels[val]).tolist() == [5, 3, 2]
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == 100
    np.testing.assert_array_equal(val, fit.holdout(labels, 0.1, seed=3)[1])
    assert fit.holdout(labels, 0.0, seed=3)[1].size == 0
    rng = np.random.default_rng(5)
    x, y, _, _ = _blobs(rng, n=400)
    logits = 4 * np.eye(3)[y] + rng.normal(size=(400, 3))
    record = fit.fit_trust(val_logits=logits[:100], val_labels=y[:100], test_logits=logits[100:],
                           test_labels=y[100:], train_features=x[100:], train_labels=y[100:],
                           val_features=x[:100])
    assert set(record.to_json()) == {"calibration", "ood"}
    probs, score, outside = fit.apply_trust(logits, x, record.calibration, record.detector)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert score.shape == outside.shape == (400,) and outside.mean() < 0.2
