"""The report's figures (matplotlib, Agg backend, PNG); each function writes one file atomically."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from astrospectra_jax import results  # noqa: E402

SYNTHETIC_MARK = " [SYNTHETIC]"
_LINESTYLES = ("-", "--", ":", "-.")


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG atomically (``results.atomic_open``); closes it."""
    try:
        with results.atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def _grid(n: int, max_columns: int = 4) -> tuple[int, int]:
    columns = min(n, max_columns)
    return math.ceil(n / columns), columns


def accuracy_bars(path, labels: Sequence[str], ours: Sequence[float],
                  ours_std: Sequence[float], published: Sequence[float | None], *,
                  title: str) -> Path:
    """Grouped bars per model: our mean test accuracy (error bar: std over seeds) and the
    paper's figure (missing where the paper has none)."""
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 3.8))
    ax.bar(x - 0.2, ours, 0.4, yerr=ours_std, capsize=3, label="ours (mean ± std over seeds)",
           color="tab:blue")
    paper_values = [np.nan if v is None else v for v in published]
    ax.bar(x + 0.2, paper_values, 0.4, label="paper (Table 2)", color="tab:orange")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_xlabel("model (input size)")
    finite = [v for v in list(ours) + paper_values if np.isfinite(v)]
    low = max(0.0, min(finite) - 0.1) if finite else 0.0
    ax.set_ylim(low, 1.0)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def confusion_grid(path, panels: Sequence[Mapping], *, title: str) -> Path:
    """One confusion matrix per panel (``title``, ``matrix``: mean counts over seeds, rows are
    the true class, ``class_names``), coloured and annotated by the row fraction (recall)."""
    rows, columns = _grid(len(panels))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 3.3 * rows + 0.6),
                             squeeze=False)
    image = None
    for ax, panel in zip(axes.flat, panels):
        matrix = np.asarray(panel["matrix"], dtype=float)
        totals = matrix.sum(axis=1, keepdims=True)
        fraction = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
        names = panel["class_names"]
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, fontsize=8)
        ax.set_yticks(ticks, names, fontsize=8)
        ax.set_xlabel("predicted class", fontsize=8)
        ax.set_ylabel("true class", fontsize=8)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{fraction[i, j]:.2f}\n({matrix[i, j]:.0f})", ha="center",
                        va="center", fontsize=7,
                        color="white" if fraction[i, j] > 0.6 else "black")
        ax.set_title(panel["title"], fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7,
                     label="fraction of the true class")
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def training_curves(path, curves: Sequence[Mapping], *, title: str) -> Path:
    """Loss and accuracy against step, train and test, one line per run. Each curve:
    ``label``, ``group`` (runs of a group share a colour), ``style`` (0.. line style),
    ``train`` / ``test``: {"step": [...], "loss": [...], "accuracy": [...]}."""
    groups = list(dict.fromkeys(c["group"] for c in curves))
    colours = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    panels = [("train", "loss"), ("train", "accuracy"), ("test", "loss"), ("test", "accuracy")]
    for ax, (split, key) in zip(axes.flat, panels):
        for curve in curves:
            series = curve[split]
            if series["step"]:
                ax.plot(series["step"], series[key], _LINESTYLES[curve["style"] % 4],
                        marker="o" if len(series["step"]) < 4 else None, markersize=3,
                        color=colours[curve["group"]], label=curve["label"], linewidth=1.2)
        ax.set_title(f"{split} {key}", fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   title="run")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def embeddings(path, panels: Sequence[Mapping], labels: np.ndarray,
               class_names: Sequence[str], *, title: str) -> Path:
    """2-D scatter plots of the same points (one panel per method: ``title``, ``points``
    (n, 2), ``xlabel``, ``ylabel``), coloured by class."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        points = np.asarray(panel["points"])
        for index, name in enumerate(class_names):
            chosen = labels == index
            ax.scatter(points[chosen, 0], points[chosen, 1], s=5, alpha=0.6,
                       color=plt.cm.tab10(index % 10), label=f"{name} ({int(chosen.sum())})")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.legend(title="class", fontsize=8, markerscale=3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def throughput_bars(path, labels: Sequence[str], rates: Sequence[float],
                    errors: Sequence[float], *, title: str) -> Path:
    """Training throughput (examples/s) per model, mean over seeds, log scale."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2), 3.6))
    y = np.arange(len(labels))
    ax.barh(y, rates, xerr=errors, capsize=3, color="tab:green")
    ax.set_yticks(y, labels, fontsize=8)
    positive = [r for r in rates if r > 0]
    log = bool(positive) and max(positive) / min(positive) > 20  # wide spread: log scale
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training examples / s (mean ± std over seeds"
                  + ("; log scale)" if log else ")"))
    ax.set_ylabel("dataset: model (input size)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both")
    return save(fig, path)


def classical_scatter(path, ours: Sequence[float], published: Sequence[float],
                      classifiers: Sequence[str], *, title: str) -> Path:
    """Our accuracy against the paper's, one point per configuration, coloured by
    classifier; the diagonal marks agreement."""
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ours, published = np.asarray(ours, float), np.asarray(published, float)
    names = list(dict.fromkeys(classifiers))
    for index, name in enumerate(names):
        chosen = np.array([c == name for c in classifiers])
        ax.scatter(published[chosen], ours[chosen], s=20, color=plt.cm.tab10(index % 10),
                   marker="os^D"[index // 10 % 4], label=name)
    values = np.concatenate([ours, published])
    low = max(0.0, float(values.min()) - 0.05) if values.size else 0.0
    ax.plot([low, 1], [low, 1], color="grey", linewidth=1, linestyle="--", label="ours = paper")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1)
    ax.set_xlabel("paper accuracy")
    ax.set_ylabel("our accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="classifier")
    ax.grid(alpha=0.3)
    return save(fig, path)
