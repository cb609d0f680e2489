"""The figures of docs/trusting-predictions.md from a predict CSV of a v2 run on real spectra.

    python benchmarks/trust_figures.py PREDS.csv [PREDS2.csv ...]

Per CSV: the share of each true class flagged (outside_classes = 1): F/G/K should be kept, A, M,
QSO and GALAXY flagged; the ROC AUC of ood_score between real F/G/K and the outsiders (all, and
the A and M stars only).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrospectra_jax.trust.ood import roc_auc  # noqa: E402

INSIDE, OUTSIDE = ("F", "G", "K"), ("A", "M", "QSO", "GALAXY")


def figures(path: Path) -> dict:
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["true_class"]]
    score = {c: np.array([float(r["ood_score"]) for r in rows if r["true_class"] == c])
             for c in INSIDE + OUTSIDE}
    flag = {c: np.array([r["outside_classes"] == "1" for r in rows if r["true_class"] == c])
            for c in INSIDE + OUTSIDE}
    inside = np.concatenate([score[c] for c in INSIDE])
    kept = 1 - np.concatenate([flag[c] for c in INSIDE]).mean()
    out = {"F/G/K kept": (kept, len(inside))}
    out.update({f"{c} flagged": (flag[c].mean() if flag[c].size else float("nan"), flag[c].size)
                for c in OUTSIDE})
    out["AUC all"] = (roc_auc(inside, np.concatenate([score[c] for c in OUTSIDE])), None)
    out["AUC A+M"] = (roc_auc(inside, np.concatenate([score["A"], score["M"]])), None)
    return out


def main(argv=None) -> int:
    for path in map(Path, (argv if argv is not None else sys.argv[1:])):
        cells = figures(path)
        print(f"| {path.name} | " + " | ".join(
            f"{v:.3f} (n={n})" if n is not None else f"{v:.3f}" for v, n in cells.values())
              + " |")
    print("| csv | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
