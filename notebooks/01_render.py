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
# # 01 · Render: the multi-view dataset
#
# Every later result stands on this dataset: captioned 3D objects, each rendered from
# the same orbit of cameras, with a part-label mask for every view. The seed study
# rendered Objaverse *food-drink* objects from 12 azimuths x 3 elevations; the embedded
# default renders procedural objects built from primitives, each with a part that only
# some views show (a mug's handle, a car's headlights, a house's door, a bottle's
# front label), so that views really differ.
#
# This notebook builds (or resumes) the dataset of the run, then shows what was made:
# counts per category and split, the cameras, one object's whole view grid, samples of
# every category, masks, and any asset that failed to render.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import Markdown, display

from mvclip_utils.core.cameras import canonical_view_id
from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.data.dataset import build_dataset, describe_build, load_views
from mvclip_utils.reports import figures, plots

cfg = load_config(config_path)
layout = RunLayout.for_run(cfg.run_name, run_dir)
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
layout.root.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Build
# Rendering happens in worker processes (bpy is never imported in this kernel).
# Finished objects are skipped on a rerun with the same settings; a broken asset is
# recorded with its reason and the run goes on.

# %%
objects, summary = build_dataset(cfg, layout)
views = load_views(layout)
display(Markdown(describe_build(cfg, objects, views, summary)))

# %% [markdown]
# ## Objects per category and split
# Splits are by object, seeded and stratified by category, drawn among the objects that
# rendered (a failed asset never takes a split's place). `pretrain` objects are only used
# to pretrain the tiny offline backbone; every reported metric is on `test`.

# %%
display(plots.split_counts(objects))
plots.plot_split_counts(objects);

# %% [markdown]
# ## Cameras
# The orbit grid (azimuth 0 looks at the object's front) and the out-of-distribution
# views used for viewpoint-OOD tests (from below, straight down, very close, far).

# %%
plots.plot_camera_positions(views);
display(views[views.kind == "ood"][["view_id", "azimuth_deg", "elevation_deg", "distance"]].reset_index(drop=True))

# %% [markdown]
# ## One object from every view
# Rows are elevations, as the blocks of the seed's similarity figures; the last row
# holds the out-of-distribution views.

# %%
example = objects[(objects.status == "ok") & (objects.split == "test")].iloc[0]
plots.plot_view_grid(layout, views, example.object_id, example.caption);

# %% [markdown]
# ## Every category
# Colours come from one palette shared by all categories and proportions vary within a
# category, so neither colour nor size alone gives the category away.

# %%
plots.plot_category_samples(layout, objects, canonical_view_id(views, cfg.backbone.pretrain.canonical_view));

# %%
display(objects[objects.status == "ok"].groupby("category").head(2)[["object_id", "category", "split", "caption"]]
        .reset_index(drop=True))

# %% [markdown]
# ## Part-label masks
# Each view has a mask: 0 = background, k = the k-th part of the object's category
# (for Objaverse objects, 1 = the object). Later probes segment from CLIP features
# against these labels.

# %%
plots.plot_mask_overlays(layout, objects, plots.spread_views(views, 4));

# %% [markdown]
# ## Failed assets
# Objects that could not be rendered, with the reason. They are excluded downstream.
# A rerun skips them, except those whose render worker crashed; delete an object's
# `dataset/status/<object_id>.json` to force a retry.

# %%
failed = objects[objects.status == "failed"][["object_id", "category", "reason"]]
display(failed if len(failed) else Markdown("No asset failed."))
