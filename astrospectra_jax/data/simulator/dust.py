"""Extinction laws: Milky Way (CCM 89), starburst galaxies (Calzetti 2000), quasars (SMC)."""

from __future__ import annotations

import numpy as np


def ccm89(lam, r_v: float = 3.1):
    """Cardelli, Clayton & Mathis (1989) A_lambda / A_V, optical and infrared (>3030 A)."""
    x = 1e4 / np.asarray(lam, dtype=np.float64)
    y = x - 1.82
    a_opt = 1 + y * (0.17699 + y * (-0.50447 + y * (-0.02427 + y * (0.72085 + y * (
        0.01979 + y * (-0.77530 + y * 0.32999))))))
    b_opt = y * (1.41338 + y * (2.28305 + y * (1.07233 + y * (-5.38434 + y * (
        -0.62251 + y * (5.30260 + y * -2.09002))))))
    infrared = x < 1.1
    a = np.where(infrared, 0.574 * x ** 1.61, a_opt)
    b = np.where(infrared, -0.527 * x ** 1.61, b_opt)
    return a + b / r_v


def calzetti(lam):
    """Calzetti et al. (2000) k(lambda) = A_lambda / E(B-V)_stars (held below 1000 A)."""
    mu = np.maximum(np.asarray(lam, dtype=np.float64), 1000.0) / 1e4
    blue = 2.659 * (-2.156 + 1.509 / mu - 0.198 / mu ** 2 + 0.011 / mu ** 3) + 4.05
    red = 2.659 * (-1.857 + 1.040 / mu) + 4.05
    return np.maximum(np.where(mu < 0.63, blue, red), 0.0)


def smc(lam):
    """SMC-like extinction A_lambda / E(B-V): power-law fit (Prevot et al. 1984)."""
    return 1.39 * (np.asarray(lam, dtype=np.float64) / 1e4) ** -1.2

