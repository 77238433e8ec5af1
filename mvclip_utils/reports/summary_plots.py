"""The summary's figures (notebook 13): every method on the clean against viewpoint-OOD trade-off, and the method
panels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..evaluation.results import (
    method_label,
    seed_count,
    seeded_rows,
)
from ..studies.summary import CLEAN_ACCURACY, PANELS, VIEWPOINT_OOD_ACCURACY, embedding_rows
from ..studies.transfer import CLEAN_BUDGET, FROZEN, TransferResults, by_angle, paired_cell


def plot_method_panels(results: pd.DataFrame, title: str) -> plt.Figure:
    """One panel per quantity (similarities, view mAP, zero-shot accuracy by kind of view), one bar per
    method, with the standard error over test objects; zero-shot panels carry the chance line."""
    rows = results.set_index("method")
    rows = rows[rows.same_object_mean.notna()] if "same_object_mean" in rows else rows
    panels = [c for c in PANELS if c in rows]
    fig, axes = plt.subplots(2, 4, figsize=(12, 5.2), sharey=True)
    y = np.arange(len(rows))[::-1]
    chance = 1.0 / rows.n_categories.iloc[0] if "n_categories" in rows else None
    for ax, column in zip(axes.flat, panels):
        label, stderr = PANELS[column]
        error = rows[stderr].to_numpy() if stderr in rows else None
        ax.barh(y, rows[column].to_numpy(), xerr=error, color=[f"C{i}" for i in range(len(rows))], capsize=2)
        if column.startswith("zero_shot") and chance is not None:
            ax.axvline(chance, color="black", ls="--", lw=1, label=f"chance ({chance:.2f})")
            ax.legend(loc="lower right")
        ax.set_xlim(min(0.0, float(np.nanmin(rows[column]))) - 0.05, 1.05)
        ax.set(title=label, xlabel="cosine similarity" if "similarity" in label else
               "mAP" if "mAP" in label else "accuracy")
        ax.axvline(0, color="grey", lw=0.5)
    for ax in axes[:, 0]:
        ax.set_yticks(y, [method_label(m) for m in rows.index])
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
        ax.text(0, 0.5, "Error bars: standard error over\nthe test objects (per-object means\nof the "
                "similarities, of view-\nretrieval AP and of accuracy).", va="center", fontsize=9,
                transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _draw_methods(ax: plt.Axes, rows: pd.DataFrame, seeded: pd.DataFrame,
                  colours: dict[str, str]) -> list[tuple[float, float, float, float]]:
    """One circle per method (± stderr over objects) and a square at its mean over seeds (± stderr over them);
    returns each drawn point's (x, y, x error, y error)."""
    drawn = []
    for method, r in rows.iterrows():
        points = [(r[CLEAN_ACCURACY], r[VIEWPOINT_OOD_ACCURACY], r.get(f"{CLEAN_ACCURACY}_stderr", 0.0),
                   r.get(f"{VIEWPOINT_OOD_ACCURACY}_stderr", 0.0), "o")]
        if method in seeded.index:
            m = seeded.loc[method]
            points.append((m[CLEAN_ACCURACY], m[VIEWPOINT_OOD_ACCURACY], m[f"{CLEAN_ACCURACY}_seed_stderr"],
                           m[f"{VIEWPOINT_OOD_ACCURACY}_seed_stderr"], "s"))
        for x, y, xerr, yerr, marker in points:
            xerr, yerr = float(np.nan_to_num(xerr)), float(np.nan_to_num(yerr))
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=marker, ms=7 if marker == "o" else 6, capsize=3,
                        color=colours[method], mfc=None if marker == "o" else "none",
                        label=method_label(method) if marker == "o" else None)
            drawn.append((x, y, xerr, yerr))
    return drawn


def plot_tradeoff(results: pd.DataFrame, title: str, seeds: pd.DataFrame | None = None) -> plt.Figure:
    """Clean zero-shot accuracy (canonical view) against viewpoint-OOD accuracy (other grid views), one point
    per method with its standard errors over test objects: up is more viewpoint-robust, left is forgetting,
    and a method that is consistent by collapsing sits near chance on both. With a seeds sweep (`seeds`,
    `results.load_seed_table`), a square per method at its mean over the seeds, ± the standard error over them.
    A second panel zooms on the methods within 5 points of the frozen backbone's clean accuracy, with the
    target's clean budget (1 point below it) drawn."""
    rows, seeded = embedding_rows(results), seeded_rows(seeds)
    base = rows.loc["baseline"] if "baseline" in rows.index else None
    near = (rows[(rows[CLEAN_ACCURACY] >= base[CLEAN_ACCURACY] - 0.05) & (rows.index != "baseline")] if base is not None
            else rows.iloc[:0])
    fig, axes = plt.subplots(1, 2 if len(near) else 1, figsize=(12, 5.6) if len(near) else (7.5, 5.8), squeeze=False)
    chance = 1.0 / rows.n_categories.iloc[0]
    for ax in axes[0]:
        ax.axvline(chance, color="grey", ls=":", lw=1)
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:.2f})")
        if base is not None:
            ax.axvline(base[CLEAN_ACCURACY], color="C0", ls="--", lw=0.8, alpha=0.6)
            ax.axhline(base[VIEWPOINT_OOD_ACCURACY], color="C0", ls="--", lw=0.8, alpha=0.6,
                       label="the frozen backbone's level")
        ax.set(xlabel="clean zero-shot accuracy (canonical view)",
               ylabel="viewpoint-OOD zero-shot accuracy (other grid views)")
    colours = {m: f"C{i}" for i, m in enumerate(rows.index)}  # a method has one colour in both panels
    full = axes[0][0]
    _draw_methods(full, rows, seeded, colours)
    full.set(xlim=(0, 1.02), ylim=(0, 1.02), title="every method")
    if len(near):
        zoom = axes[0][1]
        drawn = _draw_methods(zoom, near, seeded, colours)
        zoom.axvline(base[CLEAN_ACCURACY] - 0.01, color="k", ls="-.", lw=1, label="clean budget (frozen − 1 point)")
        zoom.axvline(base[CLEAN_ACCURACY], color="C0", ls="--", lw=0.8, alpha=0.6)
        xs = [x + s * e for x, _, e, _ in drawn for s in (-1, 1)] + [base[CLEAN_ACCURACY]]
        ys = [y + s * e for _, y, _, e in drawn for s in (-1, 1)]
        pad_x, pad_y = 0.1 * (max(xs) - min(xs)) + 0.005, 0.1 * (max(ys) - min(ys)) + 0.005
        zoom.set(xlim=(min(xs) - pad_x, max(xs) + pad_x), ylim=(min(ys) - pad_y, max(ys) + pad_y),
                 title="zoom: within 5 points of the frozen clean accuracy")
    handles, labels = [], []
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if len(seeded):
        handles.append(full.errorbar([], [], fmt="s", mfc="none", color="grey"))
        labels.append(f"mean of {seed_count(seeded)} seeds (± stderr over seeds)")
    fig.suptitle(f"{title}\n(circles: this run ± standard error over test objects"
                 + ("; squares: mean over seeds ± its standard error)" if len(seeded) else ")"))
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 4), 1, 1))
    return fig


def plot_transfer_panels(results: TransferResults, title: str) -> plt.Figure:
    """One panel per transfer regime: each method's paired difference from the frozen backbone in clean
    accuracy (x) against the regime's (y), in points, with 95 % bootstrap intervals on both axes. Up is
    a gain that transfers, left of the dashed line is more than the clean budget lost."""
    regimes = ["seen poses", "unseen poses", "single-view categories", "unseen categories"]
    paired = results.paired[(results.paired.b == FROZEN) & (results.paired.metric == "zero_shot")]
    fig, axes = plt.subplots(1, len(regimes), figsize=(4 * len(regimes), 3.8), sharex=True)
    methods = list(dict.fromkeys(paired.a))
    for ax, regime in zip(axes, regimes):
        for i, method in enumerate(methods):
            x, y = (paired_cell(paired, method, FROZEN, name) for name in ("clean", regime))
            if x is None or y is None:
                continue
            ax.errorbar(100 * x.difference, 100 * y.difference, color=f"C{i}", marker="o", capsize=2,
                        xerr=[[100 * (x.difference - x.low)], [100 * (x.high - x.difference)]],
                        yerr=[[100 * (y.difference - y.low)], [100 * (y.high - y.difference)]],
                        label=method_label(method))
        ax.axhline(0, color="grey", lw=0.7)
        ax.axvline(0, color="grey", lw=0.7)
        ax.axvline(-100 * CLEAN_BUDGET, color="black", ls="--", lw=0.8)
        ax.set(title=regime, xlabel="clean accuracy vs frozen (points)")
    axes[0].set_ylabel("zero-shot accuracy vs frozen (points)")
    axes[-1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig



def plot_by_angle(results: TransferResults, title: str) -> plt.Figure:
    """Zero-shot accuracy and same-object similarity against the angle from the canonical view (bins of
    30 degrees, every test object), one line per method with standard errors over objects."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, label in zip(axes, ("zero_shot", "same_object_similarity"),
                                 ("zero-shot accuracy", "same-object similarity")):
        table = by_angle(results, metric)
        for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
            ax.errorbar(rows.centre_deg, rows["mean"], yerr=rows["sem"], marker="o", capsize=2, color=f"C{i}",
                        label=method_label(method))
        ax.set(xlabel="angle from the canonical view (degrees)", ylabel=label, title=label)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
