"""What a method notebook shows (05-07): its training, its table against the frozen backbone, its figures."""

from __future__ import annotations

import matplotlib.pyplot as plt

from ..core.train import describe_training
from ..evaluation import metrics, results
from .plots import plot_heatmaps_beside, plot_training_curves, plot_zero_shot_comparison


def show_method_run(run) -> None:
    """What every method notebook shows: training, the metrics against the baseline, the seed-style
    heatmaps beside the baseline's, and zero-shot accuracy per view (a `methods.MethodRun`)."""
    from IPython.display import Markdown, display  # late: only inside a notebook kernel



    method, result, h = run.trained.method, run.trained.result, run.heads
    display(Markdown(f"**Backbone:** {run.backbone} · **{method.title}**. "
                     f"{describe_training(result, h.steps, h.patience)}"
                     f" Both losses are over groups of {h.views_per_object} views per object (validation: the "
                     f"val objects' views in fixed groups of that size), so the two curves compare.\n\n"
                     f"**Protocol:** {run.protocol} (a head sees no text of its own, so single-view categories "
                     f"add nothing to its multi-view losses).\n\n"
                     f"Differences from the seed code: {'; '.join(method.differences_from_seed)}."))
    display(plot_training_curves(result, f"{method.title}: training"))
    display(Markdown("## Against the frozen backbone (test objects)\nSimilarities, retrieval and the zero-shot "
                     "headline cover the grid views; the `ood` column covers the out-of-distribution views."))
    display(results.comparison_table(run.results, ["baseline", method.name]).style.format(results.format_number))
    if "reconstruction_l2" in run.row:
        display(Markdown(
            f"Reconstruction of the test embeddings (VI + VD against CLIP): element-wise MSE "
            f"**{run.row['reconstruction_mse']:.4f}**, mean L2 distance **{run.row['reconstruction_l2']:.3f}** (CLIP "
            f"embeddings have norm 1; the seed's 'L2 0.17' was an element-wise MSE). The view-independent codes: "
            f"same-object similarity {run.row['vi_code_same_object_mean']:.3f}, cross-object "
            f"{run.row['vi_code_cross_object_mean']:.3f}."))
    baseline_mean, _ = metrics.view_pair_matrices(run.baseline_test.image)
    method_mean, _ = metrics.view_pair_matrices(run.test.image)
    display(plot_heatmaps_beside({"baseline": baseline_mean, method.title: method_mean}, run.views,
                                 f"Same-object cosine similarity between views ({run.backbone})"))
    test = run.test
    display(plot_zero_shot_comparison({
        "baseline": metrics.zero_shot_by_view(run.baseline_test.image, test.category_text, test.labels, run.views),
        method.title: metrics.zero_shot_by_view(test.image, test.category_text, test.labels, run.views),
    }, "Zero-shot accuracy per view", 1 / len(test.category_names), run.row["canonical_view"]))
    plt.close("all")  # displayed above; do not show them twice
