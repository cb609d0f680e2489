"""Galaxies: stellar populations, dust and nebular emission -> observed-frame spectra.

Old / intermediate-age / young stellar populations (4000 A break, Balmer absorption) with
velocity dispersion and Calzetti dust; nebular emission with star-forming, AGN and LINER-like
line ratios (BPT); passive and post-starburst galaxies; redshift 0-0.55.
"""

from __future__ import annotations

import functools

import numpy as np

from astrospectra_jax.data.simulator import dust, lines, stars

_GALAXY_GRID = (2300.0, 9300.0, 60.0)
_GAS_BINS = lines.geometric_bins(lines.SIGMA_INSTRUMENT_KMS, 450.0)
GALAXY_TYPES = ("star_forming", "passive", "agn", "post_starburst")
_GALAXY_TYPE_SHARES = (0.52, 0.30, 0.10, 0.08)


def _nebular_ratios(kind, rng):
    """Line fluxes relative to H-alpha before dust, (n, lines); kind indexes GALAXY_TYPES."""
    n = kind.size
    sf = kind == 0
    # BPT: star-forming galaxies below the Kauffmann et al. (2003) line, AGN and LINER-like
    # emission to its right ([N II]/H-alpha > ~0.6).
    log_nii = np.where(sf, rng.uniform(-1.3, -0.35, n), rng.uniform(-0.25, 0.3, n))
    kauffmann = 0.61 / (np.minimum(log_nii, 0.0) - 0.05) + 1.3
    log_oiii = np.where(sf, kauffmann - rng.uniform(0.05, 0.4, n),
                        np.where(kind == 2, rng.uniform(0.45, 1.05, n), rng.uniform(-0.3, 0.35, n)))
    log_oiii = np.clip(log_oiii, -1.2, 1.1)
    hbeta = 1.0 / 2.86  # case B
    oiii = hbeta * 10 ** log_oiii
    oii = hbeta * 10 ** np.where(sf, rng.uniform(0.1, 0.6, n), rng.uniform(0.3, 0.8, n))
    sii = 10 ** np.where(sf, rng.uniform(-0.8, -0.4, n), rng.uniform(-0.4, 0.0, n))
    sii_ratio = rng.uniform(1.1, 1.45, n)  # 6716/6731, density sensitive
    oi = 10 ** np.where(sf, rng.uniform(-1.6, -1.1, n), rng.uniform(-1.0, -0.5, n))
    nii = 10 ** log_nii
    columns = {
        "oii_3726": oii * 0.42, "oii_3729": oii * 0.58,
        "neiii_3869": oiii * rng.uniform(0.05, 0.15, n),
        "hdelta": np.full(n, 0.259 * hbeta), "hgamma": np.full(n, 0.468 * hbeta),
        "hbeta": np.full(n, hbeta), "oiii_4959": oiii / 2.98, "oiii_5007": oiii,
        "hei_5876": np.full(n, 0.1 * hbeta), "oi_6300": oi, "oi_6363": oi / 3.0,
        "nii_6548": nii / 3.0, "halpha": np.ones(n), "nii_6583": nii,
        "sii_6716": sii * sii_ratio / (1 + sii_ratio), "sii_6731": sii / (1 + sii_ratio),
        "ariii_7136": np.full(n, 0.025),
    }
    return np.stack([columns[name] for name, _ in lines.NEBULAR_LINES], axis=1)


def simulate(n, rng):
    grid = lines.log_grid(*_GALAXY_GRID)
    shares = np.array(_GALAXY_TYPE_SHARES)
    kind = rng.choice(len(shares), size=n, p=shares / shares.sum())
    sf, passive, agn, psb = (kind == k for k in range(4))
    redshift = np.clip(rng.gamma(2.0, 0.06, n), 0.003, 0.55)
    # Light fractions at 5500 A of young (B), intermediate-age (A) and old (K giant-like) stars.
    young = np.select([sf, agn], [10 ** rng.uniform(-1.6, -0.4, n), rng.uniform(0, 0.08, n)],
                      rng.uniform(0, 0.01, n))
    middle = np.select([sf, psb, agn], [rng.uniform(0.1, 0.4, n), rng.uniform(0.3, 0.6, n),
                                        rng.uniform(0, 0.2, n)], rng.uniform(0, 0.05, n))
    middle = np.minimum(middle, 1.0 - young)
    old = 1.0 - young - middle
    sigma_v = np.select([sf, psb], [rng.uniform(40, 130, n), rng.uniform(60, 180, n)],
                        rng.uniform(110, 300, n))
    broadening = np.hypot(lines.SIGMA_INSTRUMENT_KMS, sigma_v)
    feh = np.clip(rng.normal(0.05, 0.2, n), -1.0, 0.4)
    # The old population's light at 5500 A is mostly red giants: a cool, metal-rich mix.
    populations = ((old, rng.uniform(4250, 4900, n), 2.6, feh),
                   (middle, rng.uniform(7200, 9500, n), 4.0, feh - 0.1),
                   (young, rng.uniform(12000, 20000, n), 4.0, feh - 0.1))
    stellar = np.zeros((n, grid.size), np.float32)
    for weight, teff, logg, pop_feh in populations:
        stellar += weight[:, None].astype(np.float32) * stars.stellar_population(
            _GALAXY_GRID, teff, np.full(n, logg), pop_feh, broadening)
    ebv = np.select([sf, agn], [rng.uniform(0.05, 0.4, n), rng.uniform(0.0, 0.25, n)],
                    rng.uniform(0.0, 0.08, n))
    stellar *= np.exp(ebv[:, None].astype(np.float32)
                      * (-0.4 * lines.LN10 * dust.calzetti(grid)).astype(np.float32)[None, :])
    # Nebular emission: H-alpha equivalent width, line ratios, and gas extinction
    # E(B-V)_gas = E(B-V)_stars / 0.44 (Calzetti 2000).
    ha_ew = np.select([sf, agn], [10 ** rng.normal(1.35, 0.35, n), 10 ** rng.normal(1.1, 0.3, n)],
                      np.where(passive, rng.uniform(0.0, 3.0, n), rng.uniform(0.0, 1.5, n)))
    ratios = _nebular_ratios(kind, rng)
    k_lines = dust.calzetti(lines.NEBULAR_WAVELENGTHS)
    ha = [name for name, _ in lines.NEBULAR_LINES].index("halpha")
    ratios = ratios * 10 ** (-0.4 * (k_lines - k_lines[ha])[None, :] * (ebv / 0.44)[:, None])
    continuum_at_ha = stellar[:, np.searchsorted(grid, lines.NEBULAR_WAVELENGTHS[ha])]
    line_flux = ratios * (ha_ew * continuum_at_ha)[:, None]
    sigma_gas = np.select([sf, agn], [rng.uniform(30, 90, n), rng.uniform(150, 350, n)],
                          rng.uniform(80, 220, n))
    emission = lines.render(line_flux, np.hypot(lines.SIGMA_INSTRUMENT_KMS, sigma_gas), _GAS_BINS,
                       functools.partial(lines.broadened_basis, "nebular", _GALAXY_GRID))
    observed = lines.to_observed(stellar + emission, grid, 1.0 + redshift)
    params = {"redshift": redshift, "galaxy_type": kind.astype(np.float64),
              "sigma_v_kms": sigma_v, "young_fraction": young, "intermediate_fraction": middle,
              "ebv_internal": ebv, "halpha_ew": ha_ew, "feh": feh}
    return observed, params


