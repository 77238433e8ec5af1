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
# # 06 · Contrastive head (seed method 2)
#
# The same MLP head, trained with a contrastive objective: pull one object's views and
# caption together **and push different objects apart** — the mean different-object
# cosine minus the mean same-object cosine, with the pairs counted exactly
# (`heads.contrastive: infonce` switches to a multi-positive InfoNCE with temperature).
# The seed found it avoids collapse but lowers text-image similarity, i.e. loses some of
# what CLIP knows.
#
# Trained on what the protocol lets tuning see (`protocol:`; docs/protocol.md): the `train`
# objects of the multi-view categories at the seen poses (6 random views per object per step,
# full batch, Adam 1e-3, as the seed), early-stopped on `val`'s, evaluated on every `test` object;
# 13 splits the test numbers by category group and pose group.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None
method = "contrastive_head"

# %%
from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, pages
from mvclip_utils.studies.head_methods import run_method

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
run = run_method(method, opened)
pages.show_method_run(run)
