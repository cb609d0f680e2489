"""Temperature scaling, ECE and the reliability diagram (astrospectra_jax.trust.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from astrospectra_jax.trust import calibration as cal


def _calibrated(n=20000, k=3, seed=0, scale=2.0):
    """Logits whose softmax is the true label distribution: labels drawn from it."""
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n, k))
    p = cal.softmax(logits)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_temperature_one_for_calibrated_logits():
    logits, labels = _calibrated()
    assert cal.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)
    assert cal.expected_calibration_error(cal.softmax(logits), labels) < 0.02


def test_over_confident_logits_are_cooled_and_ece_drops():
    logits, labels = _calibrated(seed=1)
    hot = 3.0 * logits  # over-confident by a factor 3
    t = cal.fit_temperature(hot, labels)
    assert t == pytest.approx(3.0, rel=0.06)
    before = cal.expected_calibration_error(cal.softmax(hot), labels)
    after = cal.expected_calibration_error(cal.softmax(hot, t), labels)
    assert before > 0.05 and after < 0.02 and after < before / 4


def test_under_confident_logits_are_sharpened():
    logits, labels = _calibrated(seed=2)
    assert cal.fit_temperature(logits / 2.0, labels) == pytest.approx(0.5, rel=0.06)


def test_separable_data_stays_within_bounds():
    logits = np.array([[10.0, 0.0], [0.0, 10.0]] * 50)
    labels = np.array([0, 1] * 50)
    t = cal.fit_temperature(logits, labels)
    assert np.exp(-cal.LOG_T_BOUND) - 1e-9 <= t <= 1.0


def test_ece_by_hand():
    # Two bins used: conf 0.9 (2 examples, 1 right) and 0.6 (2 examples, both right).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    expected = 0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6)
    assert cal.expected_calibration_error(probs, labels, bins=15) == pytest.approx(expected)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        cal.fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        cal.fit_temperature(np.full((2, 2), np.nan), np.array([0, 1]))


def test_calibrate_record_and_diagram(tmp_path):
    logits, labels = _calibrated(n=4000, seed=3)
    record = cal.calibrate(3 * logits[:2000], labels[:2000], 3 * logits[2000:], labels[2000:])
    assert record.temperature > 2 and record.ece_after < record.ece_before
    assert cal.Calibration.from_json(record.to_json()) == record
    path = cal.plot_reliability(tmp_path / "reliability.png", cal.softmax(3 * logits), cal.softmax(
        3 * logits, record.temperature), labels, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]
