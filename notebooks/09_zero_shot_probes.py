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
# # 09 · Zero-shot, linear probe and few-shot classifiers on frozen features
#
# How much of the category does a backbone's image embedding carry, and how cheaply can it
# be read out? Three readers, all linear (the seed write-up `clip-feature-probes.txt`):
#
# - **zero-shot**: the category prompts' embeddings are the classifier's weights;
# - **linear probe**: logistic regression (L-BFGS) on every training view, its
#   regularisation C picked on the `val` objects (the CLIP paper's protocol);
# - **few-shot**: a linear classifier trained on k views per category, from a **random**
#   initialisation or from the **zero-shot** classifier (W = prompt embeddings x the
#   backbone's logit scale, b = 0: the seed's fix for few-shot falling below zero-shot).
#
# Then what no seed measured: **by view**. Shots drawn from the canonical view only (what
# single-view data gives) or from random grid views; accuracy on the test objects'
# canonical view, other grid views and ood views. Every backbone variant of the run is
# probed: the frozen backbone and, once 08 has run, the backbones it tuned.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import Markdown, display

from mvclip_utils.evaluation import results
from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, plots
from mvclip_utils.studies import control as supervised_control
from mvclip_utils.studies import probes

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
study = probes.run_probe_study(opened)
control = None if cfg.dataset.source == "cifar100" else supervised_control.run_supervised_control(opened)
first = next(iter(study.results))  # the run's own backbone (baseline), or cifar100
baseline, data = study.results[first], study.data[first]
summary = probes.few_shot_summary(baseline)
chance = 1 / len(data.class_names)
display(Markdown(
    f"**Backbone:** {data.backbone} (logit scale {data.logit_scale:.1f}) · {len(data.class_names)} categories, "
    f"chance {chance:.3f} · variants probed: {', '.join(study.results)} · {cfg.probes.seeds} seeds per k, "
    f"{cfg.probes.epochs} full-batch Adam steps at lr {cfg.probes.lr}"
    + (f" · skipped (too few candidates): {'; '.join(baseline.skipped)}" if baseline.skipped else "")
    + ("" if control is None else "\n\n" + supervised_control.describe_control(control, opened))))

# %% [markdown]
# ## Few-shot against zero-shot (the seed's figure)
# Shots from random grid views of the `train` objects, accuracy on every grid view of the
# `test` objects; error bars are standard errors over the seeds.

# %%
headline = summary[(summary.shots_from == data.headline_pool) & (summary.eval_on == data.headline_eval)]
plots.plot_few_shot(headline, baseline.zero_shot[data.headline_eval], chance,
                    f"Few-shot linear classifiers, {data.backbone}");

# %% [markdown]
# ## Does 1-shot training overfit? (the seed's second figure)
# Validation accuracy (the `val` objects' grid views) of the 1-shot classifiers after each
# full-batch step; epoch 0 is the initialisation.

# %%
plots.plot_few_shot_curve(baseline.curve, f"{int(baseline.few_shot.k.min())}-shot classifiers during training");

# %% [markdown]
# ## By view: do a few shots fix the backbone's view dependence?
# Dashed: shots from the canonical view only; solid: shots from random grid views.

# %%
if "canonical view" in data.shot_pools:
    plots.plot_few_shot_by_view(summary, baseline.zero_shot, chance, f"Few-shot by view, {data.backbone}");
else:
    display(Markdown("This dataset has one view per image: nothing to compare by view."))

# %% [markdown]
# ## Findings
# Computed from the numbers above (frozen backbone).

# %%
display(Markdown(probes.describe_findings(baseline, data)))

# %% [markdown]
# ## Beside the seed's CIFAR-100 numbers
# (ViT-B/32 with OpenAI's weights; only for a CIFAR-100 run.)

# %%
if cfg.dataset.source == "cifar100":
    display(probes.seed_comparison(baseline, data).style.format("{:.4f}"))  # the seed quotes 4 digits
else:
    display(Markdown("Not a CIFAR-100 run: `params/cifar100_vitb32.yaml` makes one (network access needed once)."))

# %% [markdown]
# ## Every backbone variant of the run
# Read from the embeddings files: the frozen backbone, and the backbones 08 tuned (when it
# has run). The headline numbers also go into the results table.

# %%
display(probes.variants_table(study).style.format(results.format_number).set_caption(
    f"Zero-shot, linear probe and {int(baseline.few_shot.k.min())}-shot accuracy (shots from {data.headline_pool})"))
for method in list(study.results)[1:]:
    display(Markdown(f"**{method}**\n\n" + probes.describe_findings(study.results[method], study.data[method])))
