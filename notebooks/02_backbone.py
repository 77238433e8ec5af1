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
# # 02 · Backbone: the CLIP whose features we study
#
# With a GPU and the network, this is a real CLIP (`ViT-B-32` / `openai` in the study's
# config), loaded through open_clip. Offline, the embedded default is **mvclip-tiny**:
# a small CLIP-architecture model (its image tower is described below, read from the
# model) pretrained here with the CLIP loss on **one
# canonical view** per `pretrain` object. That is a stand-in for web-scale single-view
# data, so the study's hypothesis — single-view training makes features
# view-dependent — is tested for real. `backbone.pretrain.views: all` gives the
# compute-matched control (same steps and batch, every grid view), under a backbone name
# of its own (`mvclip-tiny-allviews`), so its checkpoint, embeddings and results never
# replace the canonical model's.
#
# Its word vocabulary is built from the `pretrain` objects' captions only (plus category
# names and templates): a test caption's unseen words map to the unknown id. A share of
# the training captions (`backbone.pretrain.category_caption_prob`) is the bare category
# in one of the caption templates ("a photo of a mug"), as web alt-texts range from a noun
# to a description; those are close to the zero-shot prompts, so zero-shot accuracy is
# also reported with prompt templates no caption used (`embed.unseen_prompt_templates`).
# Identical captions in one batch are not counted as each other's negatives.

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import Markdown, display

from mvclip_utils.core.cameras import canonical_view_id
from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import pretrains_here
from mvclip_utils.data.dataset import load_views
from mvclip_utils.evaluation import metrics, results
from mvclip_utils.models.backbone import describe_architecture, load_backbone, write_backbone_record
from mvclip_utils.models.embed import embed_dataset
from mvclip_utils.reports import figures, plots
from mvclip_utils.studies.pretrain import pretrain_tiny_clip

# Not an opened run: with a downloaded backbone, 02 needs no dataset until it embeds (and fails first on the weights).
cfg = load_config(config_path)
layout = RunLayout.for_run(cfg.run_name, run_dir)
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
pretrain_here = pretrains_here(cfg)

# %% [markdown]
# ## Pretraining (embedded default only)
# Skipped when the checkpoint in `backbone/` was trained with the same settings on the
# same dataset.

# %%
record = pretrain_tiny_clip(cfg, layout) if pretrain_here else None
if record:
    display(Markdown(
        f"Pretrained on **{record.n_objects} objects x {len(record.view_ids)} view(s)** "
        f"(`{record.views}`: {', '.join(record.view_ids[:3])}{' ...' if len(record.view_ids) > 3 else ''}), "
        f"{record.steps} steps of batch {record.batch_size} in {record.seconds:.0f} s "
        f"with {record.torch_threads} torch threads; {cfg.backbone.pretrain.category_caption_prob:.0%} of the "
        f"training captions were the bare category in a caption template."))
    plots.plot_loss_curve(record.losses, "CLIP loss while pretraining mvclip-tiny");
else:
    display(Markdown(f"Using `{cfg.backbone.model}` with pretrained weights `{cfg.backbone.pretrained}`."))

# %%
backbone = load_backbone(cfg.backbone, layout)
info = write_backbone_record(layout, backbone, record.dataset_fingerprint if record else None,
                             pretrain=record.views if record else None)
display(Markdown(f"**Backbone:** {backbone.name} · {describe_architecture(backbone.model)} · "
                 f"{info['parameters'] / 1e6:.2f} M parameters · "
                 f"device `{backbone.device}`{' with mixed precision' if backbone.use_amp else ''}."))

# %% [markdown]
# ## Does it behave like CLIP? Caption retrieval on held-out objects
# Image-to-caption recall among the captions of the `test` objects (never seen in
# pretraining), from the canonical view and from all grid views. A gap between the two
# is the first sign of view dependence; notebook 04 measures it properly. The
# embeddings computed here are cached for notebook 03.

# %%
# Embeds every view (the cache notebook 03 then reuses); only the test objects are scored here.
test = embed_dataset(cfg, layout, backbone).split("test")
views = load_views(layout)
canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
display(metrics.caption_retrieval_table(test.image, test.text, views, canonical).style.format(results.format_number)
        .set_caption(f"{len(test.object_ids)} test objects, backbone {backbone.name}"))

# %% [markdown]
# ## Zero-shot on the canonical view: seen and unseen prompt templates
# The prompts of `embed.prompt_templates` share their templates with the pretraining
# captions; `embed.unseen_prompt_templates` never occur in pretraining. A large drop from
# the first to the second means the accuracy owes much to seeing the prompts verbatim.

# %%
display(metrics.zero_shot_prompt_table(test, views, canonical).style.format(results.format_number)
        .set_caption(f"Zero-shot accuracy, {len(test.object_ids)} test objects, chance "
                     f"{1 / len(test.category_names):.3f}"))
