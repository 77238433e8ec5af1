"""Figures for the reports. Functions return matplotlib figures; notebooks only call them."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..core.runs import RunLayout
from ..core.schema import SPLITS
from ..data.dataset import load_image, load_mask
from ..evaluation.results import method_label


def split_counts(objects: pd.DataFrame) -> pd.DataFrame:
    """Objects per category and split (rendered ones), with totals."""
    ok = objects[objects.status == "ok"]
    table = pd.crosstab(ok.category, pd.Categorical(ok.split, categories=SPLITS), margins=True, margins_name="total",
                        dropna=False)
    table.columns.name = None
    return table


def plot_split_counts(objects: pd.DataFrame) -> plt.Figure:
    counts = split_counts(objects).drop(index="total", columns="total")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    counts.plot.bar(stacked=True, ax=ax, width=0.8, colormap="viridis")
    ax.set_ylabel("rendered objects")
    ax.set_xlabel("category")
    ax.set_title("Objects per category, stacked by split")
    ax.legend(title="split", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig


def plot_camera_positions(views: pd.DataFrame) -> plt.Figure:
    """Every camera on a sphere map: azimuth against elevation, marker size by distance."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for kind, marker in (("grid", "o"), ("ood", "*")):
        v = views[views.kind == kind]
        ax.scatter(v.azimuth_deg, v.elevation_deg, s=40 * v.distance, marker=marker, label=kind)
        if kind == "ood":
            for r in v.itertuples():
                ax.annotate(f"{r.view_id} (d={r.distance:g})", (r.azimuth_deg, r.elevation_deg), fontsize=8,
                            xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="azimuth (deg, 0 = front)", ylabel="elevation (deg)", xlim=(-10, 370), ylim=(-95, 95),
           title=f"Cameras: {len(views)} per object")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def _image_grid(images: list[list[np.ndarray]], row_labels: list[str], col_labels: list[str] | None,
                title: str, cell: float = 1.1, row_notes: list[str] | None = None) -> plt.Figure:
    n_rows, n_cols = len(images), max(len(r) for r in images)
    extra = 2.2 if row_notes else 0.0
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols + extra, cell * n_rows + 0.5), squeeze=False)
    for i, row in enumerate(images):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                ax.imshow(row[j], interpolation="nearest")
            if i == 0 and col_labels and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
        axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
        if row_notes:
            axes[i, -1].text(1.08, 0.5, row_notes[i], transform=axes[i, -1].transAxes, va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_view_grid(layout: RunLayout, views: pd.DataFrame, object_id: str, caption: str = "") -> plt.Figure:
    """One object's whole view grid: one row per elevation (the seed's figure blocks), then the ood views."""
    grid = views[views.kind == "grid"]
    rows, labels = [], []
    for el, block in grid.groupby("elevation_deg", sort=False):
        rows.append([load_image(layout, object_id, v) for v in block.view_id])
        labels.append(f"elev {el:g}°")
    ood = views[views.kind == "ood"]
    if len(ood):
        rows.append([load_image(layout, object_id, v) for v in ood.view_id])
        labels.append("ood")
    cols = [f"az {a:g}°" for a in grid[grid.elevation_deg == grid.elevation_deg.iloc[0]].azimuth_deg]
    fig = _image_grid(rows, labels, cols, f"{object_id}: “{caption}”", cell=1.25)
    fig.mvclip_name = "view-grid"  # the title names the object: the file name should not
    if len(ood):
        for j, name in enumerate(ood.view_id):
            fig.axes[(len(rows) - 1) * len(cols) + j].set_xlabel(name.removeprefix("ood_"), fontsize=8)
    return fig


def plot_category_samples(layout: RunLayout, objects: pd.DataFrame, view_id: str, per_category: int = 6) -> plt.Figure:
    """A few rendered objects of every category, all from the same view."""
    ok = objects[objects.status == "ok"]
    rows, labels = [], []
    for category, group in ok.groupby("category"):
        rows.append([load_image(layout, oid, view_id) for oid in group.object_id[:per_category]])
        labels.append(category)
    return _image_grid(rows, labels, None, f"Sample objects of every category (view {view_id})")


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The image with each part label painted in its own colour (background untouched)."""
    colours = (plt.get_cmap("tab10")(np.arange(10))[:, :3] * 255)
    painted = image.astype(np.float32).copy()
    fg = mask > 0
    painted[fg] = (1 - alpha) * painted[fg] + alpha * colours[(mask[fg] - 1) % 10]
    return painted.astype(np.uint8)


def spread_views(views: pd.DataFrame, n: int = 4) -> list[str]:
    """`n` grid views around the object (evenly spaced azimuths) at the middle elevation."""
    grid = views[views.kind == "grid"]
    elevations = list(dict.fromkeys(grid.elevation_deg))
    ring = grid[grid.elevation_deg == elevations[len(elevations) // 2]]
    return ring.view_id.iloc[np.linspace(0, len(ring), n, endpoint=False).astype(int)].tolist()


def plot_mask_overlays(layout: RunLayout, objects: pd.DataFrame, view_ids: list[str]) -> plt.Figure:
    """One object per category: its renders with the part-label masks overlaid, plus a legend of parts."""
    ok = objects[objects.status == "ok"].groupby("category").head(1)
    rows = [[overlay_mask(load_image(layout, r.object_id, v), load_mask(layout, r.object_id, v)) for v in view_ids]
            for r in ok.itertuples()]
    notes = ["\n".join(f"{k + 1}: {p}" for k, p in enumerate(r.part_names)) for r in ok.itertuples()]
    fig = _image_grid(rows, list(ok.category), view_ids, "Part-label masks overlaid (colour = part label)", cell=1.3,
                      row_notes=notes)
    n_labels = max(len(p) for p in ok.part_names)
    colours = plt.get_cmap("tab10")(np.arange(n_labels) % 10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in range(n_labels)]
    fig.legend(handles, [f"label {k + 1}" for k in range(n_labels)], loc="lower center", ncol=n_labels, fontsize=8)
    fig.subplots_adjust(bottom=0.06)
    return fig


def moving_mean(values, window: int) -> np.ndarray:
    """The mean of every `window` consecutive values (the values themselves when there are fewer): point i
    is the mean of values i .. i + window - 1, so it belongs at step i + window - 1."""
    values = np.asarray(values, dtype=float)
    return np.convolve(values, np.ones(window) / window, mode="valid") if len(values) >= window else values


def plot_loss_curve(losses: list[float], title: str, window: int = 20) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3))
    steps = np.arange(len(losses))
    ax.plot(steps, losses, color="lightgrey", lw=0.8, label="per step")
    if len(losses) >= window:
        ax.plot(steps[window - 1:], moving_mean(losses, window), color="C0", label=f"mean of {window}")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def _block_lines(ax, views: pd.DataFrame) -> None:
    """Separate the elevation blocks (and the ood views) on a V x V heatmap."""
    keys = list(zip(views.kind, views.elevation_deg.where(views.kind == "grid", np.nan)))
    for i in range(1, len(keys)):
        if keys[i] != keys[i - 1] and not (keys[i][0] == "ood" and keys[i - 1][0] == "ood"):
            ax.axhline(i - 0.5, color="white", lw=1)
            ax.axvline(i - 0.5, color="white", lw=1)


def view_blocks(views: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(label, start, stop) of each run of grid views at one elevation ('elev 40°'), and of each ood view
    on its own: the blocks of the seed's figures, in view order."""
    blocks = []
    for i, r in enumerate(views.itertuples()):
        label = f"elev {r.elevation_deg:g}°" if r.kind == "grid" else r.view_id.removeprefix("ood_")
        if blocks and r.kind == "grid" and blocks[-1][0] == label and blocks[-1][2] == i:
            blocks[-1] = (label, blocks[-1][1], i + 1)
        else:
            blocks.append((label, i, i + 1))
    return blocks


def label_view_axis(ax, views: pd.DataFrame, axis: str = "x") -> None:
    """Ticks naming every elevation block (at its centre) and every ood view, a minor tick per view."""
    blocks = view_blocks(views)
    centres = [(start + stop - 1) / 2 for _, start, stop in blocks]
    names = [label for label, _, _ in blocks]
    single = [stop - start == 1 for _, start, stop in blocks]  # ood views: named one by one, slanted on x
    for which in ("x", "y") if axis == "both" else (axis,):
        set_ticks = ax.set_xticks if which == "x" else ax.set_yticks
        set_ticks(centres, names, fontsize=8)
        if which == "x":
            for label, one in zip(ax.get_xticklabels(), single):
                if one:
                    label.set(rotation=45, ha="right")
        set_ticks(np.arange(len(views)), minor=True)


def plot_view_pair_heatmaps(mean: np.ndarray, std: np.ndarray, views: pd.DataFrame, title: str) -> plt.Figure:
    """The seed's figures: V x V mean and std over objects of same-object cosine similarity."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, matrix, name, cmap in ((axes[0], mean, "mean", "viridis"), (axes[1], std, "std", "magma")):
        im = ax.imshow(matrix, cmap=cmap)
        _block_lines(ax, views)
        label_view_axis(ax, views, "both")
        ax.set(title=f"{name} over objects", xlabel="view (azimuth 0-360° within each elevation block)")
        fig.colorbar(im, ax=ax, fraction=0.046, label=f"{name} of cosine similarity")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_text_image_matrix(image: np.ndarray, text: np.ndarray, object_ids: list[str], title: str) -> plt.Figure:
    """Cosine similarity of [all captions, then every view of object 1, object 2, ...] (the seed's layout)."""
    n, v, _ = image.shape
    stacked = np.concatenate([text, image.reshape(n * v, -1)])
    sims = stacked @ stacked.T
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(sims, cmap="viridis", interpolation="nearest")
    for k in range(n + 1):
        ax.axhline(n + k * v - 0.5, color="white", lw=0.5)
        ax.axvline(n + k * v - 0.5, color="white", lw=0.5)
    centres = [n / 2 - 0.5] + [n + (k + 0.5) * v - 0.5 for k in range(n)]
    ax.set_xticks(centres, ["captions"] + list(object_ids), rotation=90, fontsize=8)
    ax.set_yticks(centres, ["captions"] + list(object_ids), fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="cosine similarity")
    ax.set(title=title, xlabel="the captions, then each object's views",
           ylabel="the captions, then each object's views")
    fig.tight_layout()
    return fig


def plot_zero_shot_by_view(by_view: pd.DataFrame, title: str, chance: float | None = None,
                           canonical: str | None = None) -> plt.Figure:
    """Zero-shot accuracy against azimuth, one line per elevation, and for every ood view; error bars are
    the standard error over test objects; the canonical view is starred."""
    grid, ood = by_view[by_view.kind == "grid"], by_view[by_view.kind == "ood"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2.2, 1]}, sharey=True)
    for el, g in grid.groupby("elevation_deg", sort=False):
        axes[0].errorbar(g.azimuth_deg, g.accuracy, yerr=g.stderr, marker="o", ms=3, capsize=2, label=f"elev {el:g}°")
    if canonical is not None and canonical in set(grid.view_id):
        c = grid[grid.view_id == canonical].iloc[0]
        axes[0].plot(c.azimuth_deg, c.accuracy, "*", ms=14, mfc="none", mec="black", label="canonical view")
    axes[0].set(xlabel="azimuth (deg, 0 = front)", ylabel="zero-shot accuracy", ylim=(0, 1.02),
                title="grid views (error bars: ± standard error over test objects)")
    if len(ood):
        axes[1].bar(range(len(ood)), ood.accuracy, yerr=ood.stderr, capsize=3, color="C7")
        axes[1].set_xticks(range(len(ood)), [v.removeprefix("ood_") for v in ood.view_id], rotation=45, ha="right")
        axes[1].set(title="out-of-distribution views", xlabel="view")
    if chance is not None:
        for ax in axes:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        axes[1].legend(loc="upper right")
    axes[0].legend(ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_zero_shot_by_elevation(by_view: pd.DataFrame, title: str) -> plt.Figure:
    """Mean zero-shot accuracy over the azimuths of each elevation; error bars: std over azimuths."""
    grid = by_view[by_view.kind == "grid"].assign(elevation=lambda d: [f"{e:g}°" for e in d.elevation_deg])
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    sns.barplot(grid, x="elevation", y="accuracy", errorbar="sd", capsize=0.15, color="C0", ax=ax)
    ax.set(xlabel="elevation", ylabel="zero-shot accuracy\n(mean over azimuths)", ylim=(0, 1),
           title=f"{title} (error bars: std over azimuths)")
    fig.tight_layout()
    return fig


def category_colours(n: int) -> list:
    """n distinct colours (tab10 up to 10, tab20 up to 20, then hues evenly spaced in lightness-balanced HUSL)."""
    return sns.color_palette("tab10" if n <= 10 else "tab20" if n <= 20 else "husl", n)


def plot_embedding_pca(emb, title: str, n_objects: int = 8) -> plt.Figure:
    """Every view of every object on the first two principal components, coloured by category (left), and
    the views of a few objects, each joined to its own centroid (right): tight stars are view-invariant."""
    flat = emb.image.reshape(-1, emb.image.shape[-1])
    centred = flat - flat.mean(0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    explained = singular ** 2 / (singular ** 2).sum()
    xy = (centred @ components[:2].T).reshape(*emb.image.shape[:2], 2)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True)
    colours = category_colours(len(emb.category_names))
    for k, name in enumerate(emb.category_names):
        points = xy[emb.labels == k].reshape(-1, 2)
        axes[0].scatter(points[:, 0], points[:, 1], s=4, alpha=0.6, color=colours[k], label=name)
    axes[0].legend(markerscale=4, ncol=2, loc="best")
    axes[0].set_title("every view, by category")
    chosen = np.linspace(0, len(xy) - 1, min(n_objects, len(xy))).astype(int)
    for i, o in enumerate(chosen):
        centre = xy[o].mean(0)
        colour = category_colours(len(chosen))[i]
        for point in xy[o]:
            axes[1].plot([centre[0], point[0]], [centre[1], point[1]], color=colour, lw=0.5, alpha=0.6)
        axes[1].scatter(xy[o, :, 0], xy[o, :, 1], s=6, color=colour,
                        label=f"{emb.object_ids[o]} ({emb.category_names[emb.labels[o]]})")
    axes[1].legend(markerscale=2, loc="best")
    axes[1].set_title(f"the views of {len(chosen)} objects, joined to their centroid")
    for ax in axes:
        ax.set(xlabel=f"PC1 ({explained[0]:.0%} of variance)")
    axes[0].set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training_curves(result, title: str) -> plt.Figure:
    """Training loss per step and validation loss, with the step whose weights were kept."""
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(result.losses, color="C0", lw=0.8, label="train")
    if result.val_losses:
        ax.plot(result.val_steps, result.val_losses, "o-", color="C1", ms=3, label="validation")
    if result.best_step >= 0:
        ax.axvline(result.best_step, color="grey", ls=":", label=f"kept (step {result.best_step})")
    ax.set(xlabel="step", ylabel="loss", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_heatmaps_beside(matrices: dict[str, np.ndarray], views: pd.DataFrame, title: str) -> plt.Figure:
    """Same-object V x V mean similarity of several methods on one colour scale."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.5 * len(matrices), 5), squeeze=False)
    lo = min(float(m.min()) for m in matrices.values())
    for ax, (name, matrix) in zip(axes[0], matrices.items()):
        im = ax.imshow(matrix, cmap="viridis", vmin=lo, vmax=1)
        _block_lines(ax, views)
        label_view_axis(ax, views, "both")
        ax.set(title=name, xlabel="view (azimuth 0-360° within each elevation block)")
    fig.colorbar(im, ax=list(axes[0]), fraction=0.02, label="mean cosine similarity over objects")
    fig.suptitle(title)
    return fig


def plot_zero_shot_comparison(by_view: dict[str, pd.DataFrame], title: str, chance: float,
                              canonical: str | None = None) -> plt.Figure:
    """Zero-shot accuracy per view of several methods (`metrics.zero_shot_by_view` frames)."""
    return plot_metric_by_view(by_view, "accuracy", {name: method_label(name) for name in by_view}, canonical,
                               "zero-shot accuracy", title, chance=chance, ylim=(0, 1.02))


def plot_loss_terms(terms: dict[str, list[float]], title: str, window: int = 10) -> plt.Figure:
    """Each term of a loss per step (mean of `window` steps), one panel each."""
    fig, axes = plt.subplots(1, len(terms), figsize=(4.2 * len(terms), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], terms.items()):
        smooth = moving_mean(values, window)
        ax.plot(np.arange(len(smooth)) + (len(values) - len(smooth)), smooth)
        ax.set(title=name, xlabel="step", ylabel=f"loss (mean of {window} steps)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ovt_training(histories: dict, title: str, window: int = 10) -> plt.Figure:
    """ITC and VC loss per step of each tuned variant, and how much the outlier set moved per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for name, h in histories.items():
        axes[0].plot(moving_mean(h.itc, window), label=method_label(name))
        if any(h.vc):
            axes[1].plot(moving_mean(h.vc, window), label=method_label(name))
        if h.outlier_drift:
            axes[2].plot(range(1, len(h.outlier_drift) + 1), h.outlier_drift, marker=".", label=method_label(name))
    axes[0].set(title="ITC loss", xlabel="step", ylabel=f"loss (mean of {window} steps)")
    axes[1].set(title="view-consistency loss (outlier views)", xlabel="step", ylabel=f"loss (mean of {window} steps)")
    axes[2].set(title="outlier set: share of views new each epoch", xlabel="epoch", ylabel="share of outlier views",
                ylim=(0, 1))
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_corruption_accuracy(corruptions: dict[str, pd.DataFrame], title: str, chance: float) -> plt.Figure:
    """Zero-shot accuracy on the corrupted canonical views, per corruption and severity, one bar per model."""
    fig, ax = plt.subplots(figsize=(11, 3.3))
    names = list(corruptions)
    first = corruptions[names[0]]
    x = np.arange(len(first))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, corruptions[name].accuracy, width, label=method_label(name))
    ax.set_xticks(x, [f"{k.replace('_', ' ')}\n{s}" for k, s in zip(first.kind, first.severity)], fontsize=8)
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set(ylabel="zero-shot accuracy", xlabel="corruption and severity", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, ncol=len(names) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    fig.tight_layout()
    return fig


def plot_ovt_ablations(table: pd.DataFrame, title: str, frozen: dict[str, float], chance: float) -> plt.Figure:
    """Zero-shot accuracy on clean, 2D-OOD and viewpoint-OOD per ablation variant (`ovt.ablation_table`),
    the frozen backbone's as dashed lines."""
    splits = ["clean", "2D-OOD", "viewpoint-OOD"]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    x = np.arange(len(table))
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        bars = ax.bar(x + (i - 1) * width, table[split], width, label=split, color=f"C{i}")
        ax.axhline(frozen[split], color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(x, [v.replace("_", " ") for v in table.index], fontsize=8)
    ax.set(ylabel="zero-shot accuracy", xlabel="variant", ylim=(0, 1.02), title=title + " (dashed: frozen backbone)")
    ax.legend(fontsize=8, ncol=len(splits) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    fig.tight_layout()
    return fig


INIT_STYLE = {"random": dict(color="C3", marker="o", label="random init"),
              "zero_shot": dict(color="C0", marker="s", label="zero-shot init")}


def _few_shot_lines(ax, summary: pd.DataFrame, zero_shot: float, chance: float, linestyle: str = "-",
                    suffix: str = "") -> None:
    for init, style in INIT_STYLE.items():
        rows = summary[summary.init == init].sort_values("k")
        if len(rows):
            ax.errorbar(rows.k, rows["mean"], yerr=rows.stderr, capsize=3, ls=linestyle,
                        **{**style, "label": style["label"] + suffix})
    ax.axhline(zero_shot, color="k", ls="--", lw=1, label="zero-shot")
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(summary.k.unique()), [str(k) for k in sorted(summary.k.unique())])


def plot_few_shot(summary: pd.DataFrame, zero_shot: float, chance: float, title: str) -> plt.Figure:
    """The seed's figure: accuracy vs shots per class, random vs zero-shot init, zero-shot as a line;
    error bars are standard errors over seeds (`summary`: probes.few_shot_summary rows of one pool and set)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _few_shot_lines(ax, summary, zero_shot, chance)
    ax.set(xlabel="shots per class", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_few_shot_curve(curves: dict[str, np.ndarray], title: str) -> plt.Figure:
    """The seed's overfitting figure: validation accuracy of the 1-shot classifiers per epoch (mean ±
    standard error over seeds; `curves`: init -> [seeds, epochs + 1])."""
    long = pd.concat([pd.DataFrame({"init": init, "seed": np.repeat(np.arange(len(c)), c.shape[1]),
                                    "epoch": np.tile(np.arange(c.shape[1]), len(c)), "accuracy": c.ravel()})
                      for init, c in curves.items()])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(long, x="epoch", y="accuracy", hue="init", errorbar="se" if long.seed.max() > 0 else None,
                 palette={init: INIT_STYLE[init]["color"] for init in curves}, ax=ax)
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles, [INIT_STYLE[init]["label"] for init in curves], fontsize=8)
    ax.set(xlabel="epoch (full-batch step)", ylabel="validation accuracy", title=title)
    fig.tight_layout()
    return fig


def plot_few_shot_by_view(summary: pd.DataFrame, zero_shot: dict[str, float], chance: float,
                          title: str) -> plt.Figure:
    """One panel per evaluation set: accuracy vs shots for shots from the canonical view (dashed) and
    from random grid views (solid), both inits, zero-shot as a line."""
    sets = [s for s in zero_shot if s in set(summary.eval_on)]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], sets):
        rows = summary[summary.eval_on == name]
        for pool, ls in (("random grid views", "-"), ("canonical view", "--")):
            part = rows[rows.shots_from == pool]
            if len(part):
                _few_shot_lines(ax, part, zero_shot[name], chance, ls, f", shots: {pool}")
        ax.set(xlabel="shots per class", title=f"evaluated on: {name}", ylim=(0, 1.02))
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
    axes[0][0].set_ylabel("accuracy")
    fig.legend(unique.values(), unique.keys(), fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, -0.08),
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_image_rows(rows: dict[str, np.ndarray], title: str, labels: list[str] | None = None) -> plt.Figure:
    """Rows of uint8 images [n, S, S, 3] (e.g. truth / reconstruction A / reconstruction B), one column each."""
    n = len(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.5 * n + 0.6, 1.5 * len(rows) + 0.6), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        for i in range(n):
            ax = axes[r][i]
            ax.imshow(images[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(textwrap.fill(name, 16), fontsize=8)
            if labels and r == 0:
                ax.set_title(textwrap.fill(labels[i], 14), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_decoding_curves(curves: dict, labels: dict[str, str], title: str, val_label: str = "val MSE",
                         ylabel: str = "loss") -> plt.Figure:
    """Training loss per step (smoothed) and validation loss of each model (notebooks 10 and 11)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, (kind, result) in enumerate(curves.items()):
        losses = np.asarray(result.losses)
        window = max(1, len(losses) // 40)
        smooth = moving_mean(losses, window)
        ax.plot(np.arange(len(smooth)) + window - 1, smooth, color=f"C{i}", lw=1, label=f"{labels[kind]}, train")
        ax.plot(result.val_steps, result.val_losses, "o--", color=f"C{i}", ms=3, label=f"{labels[kind]}, {val_label}")
    ax.set(xlabel="step", ylabel=ylabel, yscale="log", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_metric_by_view(by_view: dict[str, pd.DataFrame], column: str, labels: dict[str, str],
                        canonical: str | None, ylabel: str, title: str, chance: float | None = None,
                        ylim: tuple[float, float] | None = None) -> plt.Figure:
    """A per-view metric of several models: one line per elevation block (lines never join two blocks),
    ood views as points, the standard error over test objects as a band (grid) or bar (ood), the
    canonical view marked, the axis naming every elevation block and ood view."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    first = next(iter(by_view.values()))
    blocks = view_blocks(first)
    for i, (kind, frame) in enumerate(by_view.items()):
        value, error = frame[column].to_numpy(), frame["stderr"].to_numpy() if "stderr" in frame else None
        for b, (_, start, stop) in enumerate(blocks):
            x = np.arange(start, stop)
            label = labels[kind] if b == 0 else None
            if stop - start > 1:
                ax.plot(x, value[start:stop], marker="o", ms=2.5, lw=1, color=f"C{i}", label=label)
                if error is not None:
                    ax.fill_between(x, value[start:stop] - error[start:stop], value[start:stop] + error[start:stop],
                                    color=f"C{i}", alpha=0.15, lw=0)
            else:
                ax.errorbar(x, value[start:stop], yerr=None if error is None else error[start:stop], fmt="o", ms=4,
                            capsize=2, color=f"C{i}", label=label)
    for _, start, stop in blocks[1:]:
        if first.kind.iloc[start] == "grid" or first.kind.iloc[start - 1] == "grid":
            ax.axvline(start - 0.5, color="lightgrey", lw=0.8)  # between elevation blocks and before the ood views
    if canonical is not None and canonical in set(first.view_id):
        c = first.view_id.tolist().index(canonical)
        ax.axvline(c, color="black", ls="--", lw=1, label=f"canonical view ({canonical})")
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance ({chance:.2f})")
    label_view_axis(ax, first, "x")
    ax.set(ylabel=ylabel, xlabel="view: azimuth 0-360° within each elevation block, then the ood views",
           title=f"{title} (bands and bars: ± standard error over test objects)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def colour_class_ids(class_ids: np.ndarray, n_classes: int) -> np.ndarray:
    """Class-id maps [n, S, S] -> uint8 RGB [n, S, S, 3]: background light grey, classes from tab20 by id
    (the parts of one category have consecutive ids, so they get different colours)."""
    palette = (np.array([plt.cm.tab20(i % 20)[:3] for i in range(n_classes)]) * 255).astype(np.uint8)
    palette[0] = 235
    return palette[np.asarray(class_ids)]


def plot_segmentation_examples(rows: dict[str, np.ndarray], n_classes: int, title: str,
                               labels: list[str] | None = None) -> plt.Figure:
    """Renders (RGB rows) and class-id maps (coloured, one colour per global class) in rows."""
    coloured = {name: (images if images.ndim == 4 else colour_class_ids(images, n_classes))
                for name, images in rows.items()}
    return plot_image_rows(coloured, title, labels)


def plot_part_iou(part_iou: pd.DataFrame, models: list[str], title: str, max_categories: int = 30) -> plt.Figure:
    """Per (category, part) IoU as one heatmap per model: categories in rows, part slots in columns, every
    cell named by its part. At most `max_categories` rows (Objaverse has hundreds): the first ones, said so."""
    categories = list(dict.fromkeys(part_iou.category))
    if len(categories) > max_categories:
        title = f"{title} (first {max_categories} of {len(categories)} categories)"
        categories = categories[:max_categories]
        part_iou = part_iou[part_iou.category.isin(categories)]
    width = int(part_iou.part.max())
    fig, axes = plt.subplots(1, len(models), figsize=(1.3 * width * len(models) + 1.5, 0.55 * len(categories) + 1.4),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        grid = np.full((len(categories), width), np.nan)
        for category, part, name, value in part_iou[["category", "part", "part_name", model]].to_numpy():
            r, c = categories.index(category), int(part) - 1
            grid[r, c] = value
            ax.text(c, r, f"{name}\n{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if not np.isfinite(value) or value < 0.6 else "black")
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(width), [f"part {i + 1}" for i in range(width)], fontsize=8)
        ax.set_yticks(range(len(categories)), categories if ax is axes[0][0] else [], fontsize=8)
        ax.set_title(textwrap.fill(model, 28), fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="IoU")
    fig.suptitle(title, y=1.06)  # above the wrapped panel titles
    return fig
