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
# # 12 · Summary: every method in one table
#
# One row per method that wrote `metrics/<method>.json` — a method added later appears
# here by writing its row. All numbers are on the `test` objects; the seed's three
# metrics and view retrieval cover the **grid views** (as the seed's 36 orbit views), the
# ood views have columns of their own. The seed's three metrics are given as mean ±
# pooled std over pairs (std across objects of per-object means in brackets); **view
# mAP** and **zero-shot accuracy** tell consistency from collapse. Only rows made from
# the run's current dataset and backbone are merged; any other (an earlier backbone, the
# all-views control, an older dataset) is listed below as stale.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import HTML, Markdown, display

from mvclip_utils import results as results_table
from mvclip_utils import summary
from mvclip_utils.backbone import read_backbone_record
from mvclip_utils.config import load_config
from mvclip_utils.runs import RunLayout

cfg = load_config(config_path)
layout = RunLayout.for_run(cfg.run_name, run_dir)
results = results_table.load_results(layout)
stale = results_table.stale_results(layout)
display(Markdown(f"**Backbone:** {read_backbone_record(layout)['name']} · **run:** `{cfg.run_name}` · "
                 f"**test objects:** {int(results.n_objects.iloc[0])} x {int(results.n_grid_views.iloc[0])} grid "
                 f"+ {int(results.n_ood_views.iloc[0])} ood views"))
display(summary.summary_table(results))
if len(stale):
    display(Markdown("**Stale rows, not merged** (rerun their notebooks to bring them back):"))
    display(stale)

# %% [markdown]
# ## What the spatial features hold (10, 11)
# Decoding the image (10) and segmenting its parts (11) from the frozen backbone's spatial
# features, with their comparisons and baselines; test objects, grid views.

# %%
spatial = summary.spatial_table(results)
display(spatial if len(spatial) else Markdown("Notebooks 10 and 11 have not run in this run."))

# %% [markdown]
# ## The seed's findings, checked

# %%
display(Markdown(summary.findings(results)))

# %%
summary.plot_method_comparison(results, f"Methods on the test objects ({read_backbone_record(layout)['name']})");

# %% [markdown]
# ## The seed's published table
# ViT-B/32 on Objaverse *food-drink* objects (the seed write-up), mean ± std across
# objects, for comparison of the qualitative pattern; the numbers above come from this
# run's backbone and dataset.

# %%
display(summary.SEED_TABLE)

# %% [markdown]
# ## Every figure of this run

# %%
display(HTML(summary.figure_index_html(summary.figure_index(layout))))
