# ---
# jupyter:
#   jupytext:
#     formats: py:percent,ipynb
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (mvclip)
#     language: python
#     name: mvclip
# ---

# %% [markdown]
# # 11 · Where things are: part segmentation from frozen CLIP spatial features
#
# Notebook 10 asked how much of the *image* survives in CLIP's spatial features (the patch
# tokens before the final pooling); this one asks how much of *where the parts are* does.
# The seed write-up (`clip-feature-probes.txt`) trained a decoder on frozen CLIP features to
# segment images and found it nearly as good as a UNet trained from scratch.
#
# The masks of the renders hold part indices per category; every pixel is classified into one
# global class map (category, part) plus the background, so a model must know both *what* the
# object is and *which part* a pixel belongs to. Three models, the same batches and steps:
#
# - **decoder on frozen CLIP features**: notebook 10's upsampling conv decoder (no UNet skip
#   connections: everything must come through the feature grid) with class logits out;
# - **linear probe on the patch tokens**: one linear map per token, upsampled bilinearly (the floor);
# - **UNet from scratch** on the pixels (the seed's comparison).
#
# Two baselines that learn nothing from the pixels: a **location prior** (the most frequent class
# at each pixel of the train masks, one fixed mask for every image) and the **true silhouette
# filled with the category's largest part** (knows the foreground and the category; finds no part).
# Trained on the `train` objects' grid views, validated on `val`'s, measured on every view of the
# `test` objects, so the last question is asked per view.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import Markdown, display

from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, plots
from mvclip_utils.studies import segmentation

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
run = segmentation.run_segmentation(opened)
s = cfg.segmentation
display(Markdown(
    f"**Backbone:** {run.backbone} · feature grid {run.grid} x {run.grid} · masks at {run.size} px · "
    f"{run.classes.n_classes - 1} part classes of {len(run.classes.category_names)} categories + background · "
    f"{s.steps} steps of {s.batch_size} train views, lr {s.lr} · evaluated on {run.test.n_objects} test objects"
    + (f" ({s.test_objects_per_category} per category)" if s.test_objects_per_category else "") + " · "
    + ", ".join(f"{segmentation.LABELS[k]} {c.seconds:.0f} s" for k, c in run.curves.items())))

# %% [markdown]
# ## Training
# Pixel cross-entropy on the train batches (smoothed) and on a fixed batch of validation views;
# each model keeps its weights from the best validation point.

# %%
plots.plot_decoding_curves(run.curves, segmentation.LABELS, "Segmentation: training and validation cross-entropy",
                           val_label="val cross-entropy", ylabel="cross-entropy");

# %% [markdown]
# ## Test objects
# Part mIoU: mean over the (category, part) classes of their IoU, pixels pooled over the test
# objects' grid views (background excluded); pixel accuracy counts every pixel; foreground IoU
# scores only the silhouette (any part against background).

# %%
table = segmentation.segmentation_table(run)
display(table.style.format({c: "{:.0f}" if c == "train s" else "{:.3f}" for c in table.columns}, na_rep="—"))
labels, rows = segmentation.segmentation_examples(run)
plots.plot_segmentation_examples(rows, run.classes.n_classes,
                                 "Truth and predictions: canonical view, the grid view opposite it, an ood view",
                                 labels);

# %% [markdown]
# ## Per part
# IoU of every (category, part) class on the test objects' grid views, for the three models and
# the true-silhouette-and-category baseline, which gets only each category's largest part: cells
# where a model is above zero elsewhere are parts it found. (The two other baselines are near
# zero everywhere.)

# %%
part_iou = segmentation.per_part_iou(run)
shown = [segmentation.LABELS[k] for k in run.models] + [segmentation.names(run)["category"]]
plots.plot_part_iou(part_iou, shown, "IoU per part (test objects, grid views)");

# %% [markdown]
# ## Per view
# Mean per-image mIoU over the test objects for each view (an image's mIoU over the part classes
# in its truth or prediction), ± standard error over objects; the canonical view is the one the
# tiny backbone was pretrained on.

# %%
plots.plot_metric_by_view(run.by_view(), "image_miou", segmentation.LABELS, run.canonical, "per-image mIoU",
                          "Part mIoU per view (mean ± standard error over test objects)");

# %% [markdown]
# ## Findings

# %%
display(Markdown(segmentation.describe_segmentation(run)))
