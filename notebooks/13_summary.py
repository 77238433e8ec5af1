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
# # 13 · Summary: every method in one table
#
# One row per method that wrote `metrics/<method>.json` — a method added later appears
# here by writing its row. All numbers are on the `test` objects; the seed's three
# metrics and view retrieval cover the **grid views** (as the seed's 36 orbit views), the
# ood views have columns of their own. The seed's three metrics are given as mean ± the
# std over all pairs, the seed's own definition of spread; the figure's error bars are
# standard errors over objects. **View mAP** and **zero-shot accuracy** tell consistency
# from collapse. Only rows made from
# the run's current dataset and backbone are merged; any other (an earlier backbone, the
# all-views control, an older dataset) is listed below as stale.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import HTML, Markdown, display

from mvclip_utils.evaluation import results as results_table
from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, summary_plots
from mvclip_utils.studies import distill, summary, transfer

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
results = results_table.load_results(layout)
stale = results_table.stale_results(layout)
seeds = results_table.load_seed_table(layout)  # `make seeds`: the methods over several seeds, when run
display(Markdown(f"**Backbone:** {opened.backbone_name} · **run:** `{cfg.run_name}` · "
                 f"**test objects:** {int(results.n_objects.iloc[0])} x {int(results.n_grid_views.iloc[0])} grid "
                 f"+ {int(results.n_ood_views.iloc[0])} ood views"))
display(summary.summary_table(results))
if len(stale):
    display(Markdown("**Stale rows, not merged** (rerun their notebooks to bring them back):"))
    display(stale)

# %% [markdown]
# ## Does it transfer? Every method under the protocol
# What tuning saw and what it did not (`protocol:` of the config): categories tuning saw from
# many views, categories it saw only as clean canonical views, categories it never saw, and,
# within the multi-view categories, the poses it saw and those held out. Each cell is the
# zero-shot accuracy among every category's prompts on the test objects of that regime; in
# brackets, the paired difference from the frozen backbone in points with its 95 % bootstrap
# interval over test objects (one resample shared by every method). Chance is 1 / the number
# of categories.

# %%
transfer_results = transfer.transfer_results(layout, list(results.method))
if transfer_results is None:
    display(Markdown("No per-object scores yet: rerun notebook 04 (and the method notebooks)."))
else:
    display(Markdown(f"**Protocol:** {opened.scope.describe()} · chance {1 / len(opened.scope.groups):.3f}"))
    display(transfer.headline_table(transfer_results))
    summary_plots.plot_transfer_panels(transfer_results, f"Transfer regimes against clean accuracy "
                                                         f"({opened.backbone_name})")
    display(Markdown(transfer.findings(transfer_results)))
    display(Markdown("What each regime can resolve (the smallest paired difference whose interval excludes zero):"))
    display(transfer.resolution(transfer_results))

# %% [markdown]
# ### Two sources of variance
# `make seeds` trains the methods again with other training seeds on this dataset, and runs the
# whole study with other dataset/split seeds (other objects, splits and category groups). A
# difference between methods means something only beside both standard errors.

# %%
variance = transfer.variance_table(seeds, results_table.load_dataset_seed_table(layout))
display(variance.style.format(results_table.format_number) if len(variance) else
        Markdown("No seeds sweep of this run yet: `make seeds` adds both."))

# %% [markdown]
# ### By viewpoint change, and how much of the pose each embedding keeps
# Accuracy and same-object similarity binned by the angle between a view and the canonical
# view, as dense-probing benchmarks bin by viewpoint change. Then pose decodability: a linear
# (ridge) classifier reading each grid view's azimuth and elevation ring from the method's
# test embeddings, fitted on half the test objects and tested on the other half; a
# view-invariant embedding should lose the pose.

# %%
if transfer_results is not None:
    summary_plots.plot_by_angle(transfer_results, f"By angle from the canonical view ({opened.backbone_name})")
display(transfer.pose_table(results).style.format(results_table.format_number))

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

# %% [markdown]
# ## Every method on one picture
# Clean zero-shot accuracy (the canonical view) against viewpoint-OOD accuracy (the other
# grid views), one point per method, with standard errors over test objects. Up is more
# viewpoint-robust, left is forgetting, and a method that is consistent by collapsing sits
# near chance on both. The table adds what each method costs: trainable parameters and
# training time. Where a seeds sweep of this run exists (`make seeds`: the methods trained
# with several seeds on this dataset and backbone), squares and the table's "seeds" columns
# give the mean over the seeds ± its standard error. The target of our own method (12):
# the best viewpoint-OOD accuracy at no more than 1 point of clean loss, better than OVT
# by more than OVT's standard error.

# %%
summary_plots.plot_tradeoff(results, f"Clean against viewpoint-OOD zero-shot accuracy ({opened.backbone_name})",
                      seeds);
display(summary.methods_table(results, seeds))
display(Markdown(distill.describe_target(results, seeds) + (
    "" if seeds is not None else "\n\nNo seeds sweep of this run yet: `make seeds` adds one.")))

# %%
summary_plots.plot_method_panels(results, f"Methods on the test objects ({opened.backbone_name})");

# %% [markdown]
# ## This run beside the seed's published table
# The seed used ViT-B/32 on Objaverse *food-drink* objects. Its ± is the std over all pairs
# (its contrastive cross-object 0.021 ± 0.676 is a spread of pair cosines that no spread of
# object means could reach), so this run's side uses the same definition. "Reproduced?"
# checks the seed's qualitative finding for the method on this run's numbers (the findings
# above say how). The seed reported the autoencoder's reconstruction as an element-wise
# MSE of 0.17.

# %%
display(summary.seed_comparison(results))

# %% [markdown]
# ## Tables for the paper
# The tables above as CSV and as LaTeX (`booktabs`: `\usepackage{booktabs}`), under `tables/`.

# %%
written = summary.write_paper_tables(layout, results, opened.backbone_name, seeds)
display(HTML("<ul>" + "".join(f"<li>{t.table}: <a href='../{t.csv}'>{t.csv}</a> · <a href='../{t.tex}'>{t.tex}</a></li>"
                              for t in written.itertuples()) + "</ul>"))

# %% [markdown]
# ## Every figure of this run

# %%
display(HTML(figures.figure_index_html(figures.figure_index(layout), base="../")))
