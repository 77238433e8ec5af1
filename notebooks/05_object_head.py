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
# # 05 · Object head (seed method 1)
#
# An MLP head (D-D-D-D, ReLU between layers) on frozen image embeddings, trained to make
# **every pair of one object's embeddings similar**: its views with each other and with
# its caption. Nothing pushes different objects apart, so the seed found that the head
# collapses: every image lands near the same point. Same-object similarity alone would
# call that a success; cross-object similarity, view retrieval and zero-shot accuracy
# show it is not.
#
# Trained on what the protocol lets tuning see (`protocol:`; docs/protocol.md): the `train`
# objects of the multi-view categories at the seen poses (6 random views per object per step,
# full batch, Adam 1e-3, as the seed), early-stopped on `val`'s, evaluated on every `test` object;
# 13 splits the test numbers by category group and pose group.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None
method = "object_head"

# %%
from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, pages
from mvclip_utils.studies.head_methods import run_method

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
run = run_method(method, opened)
pages.show_method_run(run)
