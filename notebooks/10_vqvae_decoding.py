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
# # 10 · How much of the image survives in CLIP's spatial features? VQ-VAE decoding
#
# The seed write-up (`clip-feature-probes.txt`) trained a decoder on CLIP's features
# before the final pooling and found its images blurrier than those of a VQ-VAE with its
# own encoder. Here both are the same VQ-VAE (EMA codebook, the same code grid, codebook,
# decoder and steps), and only the encoder differs:
#
# - **from frozen CLIP features**: the backbone's patch-token grid (ViT) or its map before
#   the attention pool (ResNet), then a trainable 1x1 projection to the code width;
# - **own conv encoder**: strided convolutions from the pixels to the same grid.
#
# Trained on the `train` objects' grid views; validated on the `val` objects'; measured on
# every view of the `test` objects, so the last question can be asked per view: is the
# canonical view (the one the tiny backbone was pretrained on) decoded better?

# %% tags=["parameters"]
config_path = "../params/default.yaml"
run_dir = None

# %%
from IPython.display import Markdown, display

from mvclip_utils.models.opened_run import open_run
from mvclip_utils.reports import figures, plots
from mvclip_utils.studies import vqvae

opened = open_run(config_path, run_dir)  # config, layout, dataset tables and fingerprint, backbone record: read once
cfg, layout = opened.cfg, opened.layout
figures.capture(layout)  # every figure also as PDF, SVG and PNG under figures/
run = vqvae.run_decoding(opened)
d = cfg.decoding
display(Markdown(
    f"**Backbone:** {run.backbone} · code grid {run.grid} x {run.grid} (the backbone's feature grid) · "
    f"decoded at {run.size} px · codebook {d.codebook_size} x {d.code_width}, EMA decay {d.decay}, beta "
    f"{d.commitment} · {d.steps} steps of {d.batch_size} · evaluated on {run.test.n_objects} test objects"
    + (f" ({d.test_objects_per_category} per category)" if d.test_objects_per_category else "") + " · "
    + ", ".join(f"{vqvae.LABELS[k]} {c.seconds:.0f} s" for k, c in run.curves.items())))

# %% [markdown]
# ## Training

# %%
plots.plot_decoding_curves(run.curves, vqvae.LABELS, "VQ-VAE training loss and validation MSE");

# %% [markdown]
# ## Reconstruction on the test objects

# %%
table = vqvae.decoding_table(run)
display(table.style.format({c: "{:.4f}" for c in table.columns if c.startswith(("MSE", "final"))}
                           | {"PSNR dB (grid views)": "{:.1f}", "codebook perplexity": "{:.1f}", "dead codes": "{:.0f}"}))
labels, rows = vqvae.reconstruction_examples(run)
plots.plot_image_rows(rows, "Truth and reconstructions: canonical view, the grid view opposite it, an ood view",
                      labels);

# %% [markdown]
# ## Decodings of random codes
# Each position's code drawn from the codes' frequencies on the test views (no learned
# prior): what the decoder makes of the codebook alone.

# %%
plots.plot_image_rows(vqvae.random_code_samples(run), "Random code grids, decoded");

# %% [markdown]
# ## Per view

# %%
plots.plot_metric_by_view(run.by_view(), "mse", vqvae.LABELS, run.canonical, "reconstruction MSE",
                          "Reconstruction error per view (mean ± standard error over test objects)");

# %% [markdown]
# ## Findings

# %%
display(Markdown(vqvae.describe_decoding(run)))
