"""Interactive exploration of one backbone's (or one method's) test embeddings: pick an object and a view.

For the picked view, the explorer shows:
- the object's views, with the picked one framed;
- the view's cosine similarity to every other view of its object;
- its nearest neighbours among all test images;
- its zero-shot scores.

`show_explorer` gives ipywidgets dropdowns in JupyterLab. In a pipeline run, whose HTML
report cannot run widgets, it shows the same figure once, statically, for a default
pick: no "Loading widget..." placeholder. Any `embed.Embeddings` works: notebook 04
passes the frozen backbone's; 05-08 can pass their method's (`run.test`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.progress import under_pipeline
from ..core.runs import RunLayout
from ..data.dataset import load_image
from .plots import label_view_axis, view_blocks


def view_scores(test, object_index: int, view_index: int, neighbours: int = 6) -> dict:
    """The numbers the explorer draws for one view of one test object (an `Embeddings` split)."""
    n, v, _ = test.image.shape
    query = test.image[object_index, view_index]
    own_views = test.image[object_index] @ query  # [V]
    everything = (test.image.reshape(n * v, -1) @ query).reshape(n, v)
    everything[object_index, view_index] = -np.inf  # never its own nearest neighbour
    order = np.argsort(-everything, axis=None)[:neighbours]
    nearest = pd.DataFrame({"object": order // v, "view": order % v, "similarity": everything.ravel()[order]})
    logits = test.logit_scale * (test.category_text @ query)
    probabilities = np.exp(logits - logits.max())
    return {"own_views": own_views, "nearest": nearest, "zero_shot": probabilities / probabilities.sum()}


def _thumbnail(ax, image: np.ndarray, title: str = "", frame: str | None = None) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set(visible=frame is not None, color=frame or "black", linewidth=3)
    if title:
        ax.set_title(title, fontsize=8)


def explorer_figure(layout: RunLayout, test, views: pd.DataFrame, object_index: int, view_index: int,
                    neighbours: int = 6, top_categories: int = 8) -> plt.Figure:
    """The explorer's figure for one pick (`test`: an Embeddings split; `views`: the run's views table)."""
    scores = view_scores(test, object_index, view_index, neighbours)
    object_id, view_ids = str(test.object_ids[object_index]), list(test.view_ids)
    blocks = view_blocks(views)
    grid_blocks = [b for b in blocks if b[2] - b[1] > 1]
    ood = [b for b in blocks if b[2] - b[1] == 1]
    rows = grid_blocks + ([("ood", ood[0][1], ood[-1][2])] if ood else [])
    columns = max(stop - start for _, start, stop in rows)
    fig = plt.figure(figsize=(13, 9), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.6, 1])
    left, right = top.subfigures(1, 2, width_ratios=[1.25, 1])
    thumbs = left.subplots(len(rows), columns, squeeze=False)
    for r, (label, start, stop) in enumerate(rows):
        for c in range(columns):
            ax = thumbs[r][c]
            if start + c < stop:
                j = start + c
                _thumbnail(ax, load_image(layout, object_id, view_ids[j]), frame="red" if j == view_index else None)
            else:
                ax.axis("off")
        thumbs[r][0].set_ylabel(label, fontsize=8)
    left.suptitle(f"{object_id} ({test.categories[object_index]}): its views, the picked one framed", fontsize=10)
    similarity, zero_shot = right.subplots(2, 1, gridspec_kw={"hspace": 0.15})
    similarity.plot(np.arange(len(view_ids)), scores["own_views"], "o", ms=3)
    for _, start, stop in blocks:
        similarity.plot(np.arange(start, stop), scores["own_views"][start:stop], color="C0", lw=1)
    similarity.axvline(view_index, color="red", ls="--", lw=1, label=f"picked: {view_ids[view_index]}")
    label_view_axis(similarity, views, "x")
    similarity.set(ylabel="cosine similarity", title="similarity to the object's other views")
    similarity.legend(loc="lower left")
    best = np.argsort(-scores["zero_shot"])[:top_categories][::-1]
    truth = test.labels[object_index]
    zero_shot.barh(np.arange(len(best)), scores["zero_shot"][best],
                   color=["C2" if k == truth else "C7" for k in best])
    zero_shot.set_yticks(np.arange(len(best)), [str(test.category_names[k]) for k in best])
    zero_shot.set(xlabel="zero-shot probability", xlim=(0, 1),
                  title=f"zero-shot scores (green: the true category, {test.category_names[truth]})")
    neighbour_axes = bottom.subplots(1, neighbours + 1, squeeze=False)[0]
    _thumbnail(neighbour_axes[0], load_image(layout, object_id, view_ids[view_index]),
               f"the picked view\n{view_ids[view_index]}", "red")
    for ax, row in zip(neighbour_axes[1:], scores["nearest"].itertuples()):
        same = row.object == object_index
        _thumbnail(ax, load_image(layout, str(test.object_ids[row.object]), view_ids[row.view]),
                   f"{test.object_ids[row.object]}\n{view_ids[row.view]} · {row.similarity:.3f}",
                   "C2" if same else "C7")
    bottom.suptitle(f"nearest neighbours among all {test.image.shape[0] * test.image.shape[1]} test images "
                    f"(green frame: a view of the same object)", fontsize=10)
    fig.suptitle(f"View explorer ({test.backbone})")
    fig.mvclip_name = "view-explorer"  # the title's pick changes; the file name should not
    return fig


def default_pick(test, views: pd.DataFrame, canonical: str | None) -> tuple[int, int]:
    """The first test object and the canonical view (else the first view)."""
    view_ids = list(test.view_ids)
    return 0, view_ids.index(canonical) if canonical in view_ids else 0


def show_explorer(layout: RunLayout, test, views: pd.DataFrame, canonical: str | None = None) -> None:
    """Dropdowns for object and view over `explorer_figure` in JupyterLab; the default pick's figure,
    statically, when the notebook runs in the pipeline (its report cannot run widgets)."""
    from IPython.display import display  # late: only inside a notebook kernel


    object_index, view_index = default_pick(test, views, canonical)
    if under_pipeline():
        fig = explorer_figure(layout, test, views, object_index, view_index)
        display(fig)
        plt.close(fig)
        return
    import ipywidgets as widgets  # late: only inside a notebook kernel

    objects = widgets.Dropdown(options=[(f"{o} ({c})", i) for i, (o, c) in
                                        enumerate(zip(test.object_ids, test.categories))],
                               value=object_index, description="object")
    chosen_view = widgets.Dropdown(options=[(v, j) for j, v in enumerate(test.view_ids)], value=view_index,
                                   description="view")

    def draw(object_index: int, view_index: int) -> None:
        fig = explorer_figure(layout, test, views, object_index, view_index)
        fig.mvclip_skip = True  # interactive redraws are not report figures: no files
        display(fig)
        plt.close(fig)

    output = widgets.interactive_output(draw, {"object_index": objects, "view_index": chosen_view})
    display(widgets.VBox([widgets.HBox([objects, chosen_view]), output]))
