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
# # 03 · Embed: every view, every caption, every category prompt
#
# The frozen backbone of notebook 02 embeds every rendered view of every object (grid
# and out-of-distribution views, all splits), each object's caption, and one prompt
# per category averaged over several templates ("a photo of a {}", ...) as CLIP does
# for zero-shot classification. Everything is L2-normalised and stored in
# `embeddings/<backbone>.npz`; a rerun with the same backbone and dataset reuses it.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
import time

import pandas as pd
from IPython.display import Markdown, display

from mvclip_utils.models.backbone import load_backbone
from mvclip_utils.models.embed import embed_dataset
from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, plots

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
backbone = load_backbone(cfg.backbone, layout)

# %%
start = time.perf_counter()
emb = embed_dataset(cfg, layout, backbone)
seconds = time.perf_counter() - start
n_images = emb.image.shape[0] * emb.image.shape[1]
display(Markdown(
    f"**Backbone:** {emb.backbone}\n\n"
    f"`{layout.embeddings_file(backbone.slug).relative_to(layout.root)}`: image {emb.image.shape}, "
    f"text {emb.text.shape}, category prompts {emb.category_text.shape} — "
    + (f"loaded from the cache (written by notebook 02 or an earlier run) in {seconds:.1f} s." if emb.from_cache
       else f"{n_images} images embedded in {seconds:.1f} s ({n_images / seconds:.0f} images/s).")))
display(pd.crosstab(pd.Series(emb.categories, name="category"), pd.Series(emb.splits, name="split")))

# %% [markdown]
# ## A first look: where do the views of one object land?
# Two principal components of the test objects' image embeddings. Views of one object
# should form a tight cluster if the features were viewpoint invariant.

# %%
plots.plot_embedding_pca(emb.split("test"), f"Test image embeddings, first two principal components ({emb.backbone})");
