# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (mvclip)
#     language: python
#     name: mvclip
# ---

# %% [markdown]
# # 06 · Contrastive head (seed method 2)
#
# The same MLP head, trained with a contrastive objective: pull one object's views and
# caption together **and push different objects apart** — the mean different-object
# cosine minus the mean same-object cosine, with the pairs counted exactly
# (`heads.contrastive: infonce` switches to a multi-positive InfoNCE with temperature).
# The seed found it avoids collapse but lowers text-image similarity, i.e. loses some of
# what CLIP knows.
#
# Trained on the `train` objects' grid views (6 random views per object per step, full
# batch, Adam 1e-3, as the seed), early-stopped on `val`, evaluated on `test`.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None
method = "contrastive_head"

# %%
from IPython.display import Markdown, display

from mvclip_utils import metrics, plots
from mvclip_utils.config import load_config
from mvclip_utils.methods import METHODS, run_method
from mvclip_utils.runs import RunLayout

cfg = load_config(config_path)
layout = RunLayout.for_run(cfg.run_name, run_dir)
run = run_method(method, cfg, layout)
display(Markdown(f"**Backbone:** {run.backbone} · **{METHODS[method].title}** trained for "
                 f"{run.trained.result.steps} steps in {run.trained.result.seconds:.1f} s; weights of step "
                 f"{run.trained.result.best_step} kept.\n\nDifferences from the seed code: "
                 + "; ".join(METHODS[method].differences_from_seed) + "."))
plots.plot_training_curves(run.trained.result, f"{METHODS[method].title}: training");

# %% [markdown]
# ## Against the frozen backbone (test objects)

# %%
display(metrics.comparison_table(run.results, ["baseline", method]).style.format("{:.3f}"))

# %%
baseline_mean, _ = metrics.view_pair_matrices(run.baseline_test.image)
method_mean, _ = metrics.view_pair_matrices(run.test.image)
plots.plot_heatmaps_beside({"baseline": baseline_mean, METHODS[method].title: method_mean}, run.views,
                           f"Same-object cosine similarity between views ({run.backbone})");

# %%
chance = 1 / len(run.test.category_names)
plots.plot_zero_shot_comparison({
    "baseline": metrics.zero_shot_by_view(run.baseline_test.image, run.test.category_text, run.test.labels, run.views),
    METHODS[method].title: metrics.zero_shot_by_view(run.test.image, run.test.category_text, run.test.labels,
                                                     run.views)}, "Zero-shot accuracy per view", chance);
