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
# # 04 · Baseline: how consistent are the frozen backbone's features across views?
#
# The seed study's first result, on the `test` objects only. The seed's metric names are
# confusing, so both are given:
#
# | here | seed | what |
# |---|---|---|
# | same-object similarity | "inter-object" | cosine between two different views of one object |
# | cross-object similarity | "intra-object" | cosine between views of different objects |
# | text-image similarity | "text2image" | each view against its own object's caption |
#
# Each has a mean, the pooled std over pairs (what the seed code computed) and the std
# across objects of per-object means (what its README describes). High same-object
# similarity alone can mean collapse, so two collapse-aware scores are added: **view
# retrieval** (from one view, are the object's other views the nearest images?) and
# **zero-shot category accuracy per view**.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from mvclip_utils import metrics, plots
from mvclip_utils.backbone import read_backbone_record
from mvclip_utils.config import load_config
from mvclip_utils.dataset import canonical_view_id, load_views
from mvclip_utils.embed import load_embeddings
from mvclip_utils.runs import RunLayout

cfg = load_config(config_path)
layout = RunLayout.for_run(cfg.run_name, run_dir)
backbone = read_backbone_record(layout)
views = load_views(layout)
test = load_embeddings(layout, backbone["slug"]).split("test")
display(Markdown(f"**Backbone:** {backbone['name']} · **test objects:** {len(test.object_ids)} · "
                 f"**views:** {len(views)} · chance level of zero-shot: {1 / len(test.category_names):.3f}"))

# %% [markdown]
# ## The metrics table

# %%
row = metrics.evaluation_row(test.image, test.text, test.category_text, test.labels, views)
by_view = metrics.zero_shot_by_view(test.image, test.category_text, test.labels, views)
canonical = canonical_view_id(views)
table = metrics.write_result(layout, "baseline", row, backbone["name"], {"canonical_view": canonical})
display(metrics.stats_table(metrics.similarity_stats(test.image, test.text)).style.format(precision=3).set_caption(f"All {len(views)} views · {backbone['name']}"))
display(pd.Series({k: row[k] for k in [
    "view_retrieval_recall_at_1", "view_retrieval_mAP", "caption_recall_at_1", "caption_recall_at_5",
    "zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid", "zero_shot_accuracy_ood"]},
    name="baseline").to_frame().style.format("{:.3f}"))

# %% [markdown]
# ## Same-object similarity between every pair of views
# The seed's figure: the mean (left) and std (right) over test objects of the cosine
# between view *v* and view *w* of the same object. Views are ordered by elevation, so
# the blocks along the diagonal are views at the same elevation; the last block holds
# the out-of-distribution views.

# %%
mean, std = metrics.view_pair_matrices(test.image)
plots.plot_view_pair_heatmaps(mean, std, views, f"Same-object cosine similarity, {backbone['name']}");

# %% [markdown]
# ## Captions and views of a few objects
# The seed's second figure: captions first (the top-left block is caption against
# caption), then every view of each object in turn. Bright diagonal blocks are views
# of one object resembling each other; the thin strips along the top and left are
# caption against view.

# %%
rng = np.random.default_rng(cfg.seed)
sample = np.sort(rng.choice(len(test.object_ids), size=min(8, len(test.object_ids)), replace=False))
plots.plot_text_image_matrix(test.image[sample], test.text[sample], list(test.object_ids[sample]),
                             f"Cosine similarity: captions, then views ({backbone['name']})");

# %% [markdown]
# ## Zero-shot accuracy by viewpoint
# If the backbone learned its categories from one canonical view, accuracy peaks there
# and falls away from it. Error bars are the standard error over test objects.

# %%
plots.plot_zero_shot_by_view(by_view, f"Zero-shot category accuracy by view ({backbone['name']})",
                             chance=1 / len(test.category_names));
plots.plot_zero_shot_by_elevation(by_view, "By elevation");

# %%
summary = pd.DataFrame({
    "views": [f"canonical ({canonical})", "other grid views", "ood views"],
    "accuracy": [row["zero_shot_accuracy_canonical"], row["zero_shot_accuracy_other_grid"],
                 row["zero_shot_accuracy_ood"]],
})
summary["stderr"] = np.sqrt(summary.accuracy * (1 - summary.accuracy) / len(test.object_ids))
display(summary.set_index("views").style.format("{:.3f}").set_caption(
    "Zero-shot accuracy; stderr over objects (the other-views mean averages correlated views, so its stderr is an upper bound)"))
