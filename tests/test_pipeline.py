"""The papermill runner: real notebook runs, HTML reports, the index, and failures."""

import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import run_module, write_config

from mvclip_utils.core.cameras import canonical_view_id
from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import PARAMS_DIR, RunLayout
from mvclip_utils.data.dataset import load_views
from mvclip_utils.evaluation.transfer import val_columns
from mvclip_utils.models.embed import backbone_variants
from mvclip_utils.pipeline import discover_notebooks, parse_only

NOTEBOOK_HEADER = """# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
config_path = ""
run_dir = None

"""


def write_notebook(folder, name, body):
    (folder / name).write_text(NOTEBOOK_HEADER + "# %%\n" + body + "\n")


def test_discover_and_only(tmp_path):
    for name in ["01_a.py", "02_b.py", "04_d.py", "helper.py", "1_bad.py"]:
        (tmp_path / name).write_text("")
    found = discover_notebooks(tmp_path)
    assert [p.name for p in found.values()] == ["01_a.py", "02_b.py", "04_d.py"]
    assert parse_only(None, found) == [1, 2, 4]
    assert parse_only("01,04-07", found) == [1, 4]
    assert parse_only("2-4", found) == [2, 4]
    with pytest.raises(ValueError, match="selects no notebook; available: 01_a, 02_b, 04_d"):
        parse_only("09", found)
    with pytest.raises(ValueError, match="cannot read 'x'"):
        parse_only("01,x", found)


def test_repository_notebooks_are_numbered_percent_scripts():
    found = discover_notebooks()
    assert 1 in found
    for path in found.values():
        text = path.read_text()
        assert "format_name: percent" in text and "kernelspec:" in text, path
        assert '# %% tags=["parameters"]' in text, path


def well_formed_tabular(tex: str) -> None:
    """A booktabs table whose every row has as many cells as the column spec (multicolumn spans counted)."""
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    rows = [line for line in tex.splitlines() if line.rstrip().endswith(r"\\")]
    assert len(rows) >= 2
    for row in rows:
        cells = re.split(r"(?<!\\)&", row.rstrip()[:-2])
        width = sum(int(m.group(1)) if (m := re.search(r"\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)
        assert width == len(spec), row
        assert row.count("$") % 2 == 0 and row.count("{") == row.count("}"), row


def check_figures_and_tables(run_dir) -> None:
    """Every report's figures as PDF, SVG and PNG, each linked from the index and anchored in its report,
    readable at print size; the summary's tables as CSV and well-formed LaTeX; the combined report."""
    from mvclip_utils.core.runs import RunLayout
    from mvclip_utils.reports.figures import figure_index

    index = figure_index(RunLayout(run_dir))
    assert set(index.notebook) == {p.stem for p in (run_dir / "notebooks").glob("*.ipynb")}
    assert "04_baseline-view-explorer" in set(index.name)  # 04's explorer, static in the report
    for report in (run_dir / "reports").glob("*.html"):
        assert "widget-view+json" not in report.read_text(), f"{report.name}: a widget placeholder"
    assert index.name.is_unique and len(index) >= 30
    page = (run_dir / "index.html").read_text()
    for figure in index.itertuples():
        assert figure.name.startswith(figure.notebook + "-")
        for extension in ("pdf", "svg", "png"):
            assert (run_dir / getattr(figure, extension)).stat().st_size > 0
            assert f"href='{getattr(figure, extension)}'" in page
        assert f'id="{figure.name}"' in (run_dir / "reports" / f"{figure.notebook}.html").read_text()
        assert figure.min_font_pt >= 8, f"{figure.name}: {figure.min_font_pt} pt text"
    from PIL import Image

    png = Image.open(run_dir / index.png.iloc[0])
    assert round(png.info["dpi"][0]) == 300
    for name in ("results", "seed_comparison", "spatial", "methods"):
        assert len(pd.read_csv(run_dir / "tables" / f"{name}.csv"))
        well_formed_tabular((run_dir / "tables" / f"{name}.tex").read_text())
    assert r"0.893 $\pm$ 0.067" in (run_dir / "tables" / "seed_comparison.tex").read_text()
    combined = (run_dir / "report.html").read_text()
    assert "href='report.html'" in page and combined.count('id="01_render-') >= 1
    assert all(f'id="{stem}"' in combined for stem in ("01_render", "13_summary"))


@pytest.mark.slow
def test_smoke_run_writes_reports_and_index(tmp_path):
    run_dir = tmp_path / "smoke"
    result = run_module("mvclip_utils", "run", "--config", str(PARAMS_DIR / "smoke.yaml"), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (run_dir / "reports" / "01_render.html").read_text()
    assert report.count("data:image/png;base64") >= 5  # counts, cameras, view grid, samples, masks
    assert "build_dataset(" not in report, "inputs must be hidden in reports"
    assert "No asset failed." in report
    # progress bars go to the terminal, never into a report; the terminal also gets a line per notebook
    assert "rendering 480 views" not in report and "rendering 480 views" in result.stderr
    assert "KeyboardInterrupt caught in kernel" not in result.stderr
    assert "(4/13) running 04_baseline" in result.stdout
    for path in sorted((run_dir / "notebooks").glob("*.ipynb")):
        streams = [o for c in nbformat.read(path, as_version=4).cells for o in c.get("outputs", [])
                   if o.get("name") == "stderr"]
        assert not streams, f"{path.stem} wrote to stderr: {streams[0]['text'][:300]}"
    for stem in ["02_backbone", "03_embed", "04_baseline", "05_object_head", "06_contrastive_head",
                 "07_autoencoder", "08_omniview_tuning", "09_zero_shot_probes", "10_vqvae_decoding",
                 "11_segmentation", "12_centroid_distillation", "13_summary"]:
        html = (run_dir / "reports" / f"{stem}.html").read_text()
        assert "mvclip-tiny" in html, f"{stem} must say which backbone made its numbers"
        assert "Traceback" not in html
    baseline = (run_dir / "reports" / "04_baseline.html").read_text()
    assert baseline.count("data:image/png;base64") >= 4  # heatmaps, text-image matrix, zero-shot by view/elevation
    results = pd.read_csv(run_dir / "metrics" / "results.csv")
    assert results.method.tolist() == ["baseline", "object_head", "contrastive_head", "autoencoder", "itc_finetune",
                                       "omniview_tuning", "centroid_distillation", "supervised_control",
                                       "vqvae_clip_features", "vqvae_own_encoder",
                                       "segmentation_clip_decoder", "segmentation_linear_probe", "segmentation_unet",
                                       "segmentation_location_prior", "segmentation_foreground_only",
                                       "segmentation_category_silhouette"]
    assert results.backbone.str.startswith("mvclip-tiny").all()
    assert results.reconstruction_l2.notna().tolist() == [False, False, False, True] + [False] * 12
    assert results.pixel_mse.notna().tolist() == [False] * 8 + [True, True] + [False] * 6  # 10's decoders
    assert results.seg_miou.notna().tolist() == [False] * 10 + [True] * 6  # 11's models and baselines
    distilled = (run_dir / "reports" / "12_centroid_distillation.html").read_text()
    assert "viewpoint-OOD" in distilled and "Margin over OVT" in distilled  # the target judged against OVT's row
    assert ("target missed" in distilled) != ("target met" in distilled)
    assert (run_dir / "models" / "centroid_distillation" / "adapters.pt").exists()
    assert results.set_index("method").loc["centroid_distillation", "trainable_parameters"] > 0
    assert "centroid distillation (ours)" in (run_dir / "reports" / "13_summary.html").read_text()
    segmentation_html = (run_dir / "reports" / "11_segmentation.html").read_text()
    assert segmentation_html.count("data:image/png") >= 4 and "Frozen features against a UNet" in segmentation_html
    for method in ("segmentation_clip_decoder", "segmentation_linear_probe", "segmentation_unet"):
        assert (run_dir / "models" / method / "model.pt").exists()
    decoding_html = (run_dir / "reports" / "10_vqvae_decoding.html").read_text()
    assert decoding_html.count("data:image/png") >= 4 and "Blurrier from CLIP features?" in decoding_html
    for method in ("vqvae_clip_features", "vqvae_own_encoder"):
        assert (run_dir / "models" / method / "model.pt").exists()
    ovt_report = (run_dir / "reports" / "08_omniview_tuning.html").read_text()
    assert "2D-OOD" in ovt_report and "viewpoint-OOD" in ovt_report and ovt_report.count("data:image/png") >= 2
    assert (run_dir / "models" / "omniview_tuning" / "adapters.pt").exists()
    assert results.set_index("method").loc["omniview_tuning", "trainable_parameters"] > 0
    for method in ["object_head", "contrastive_head", "autoencoder"]:
        assert (run_dir / "models" / method / "model.pt").exists()
    ablations = pd.read_csv(run_dir / "metrics" / "omniview_tuning_ablations.csv")
    assert ablations.variant.tolist() == ["omniview_tuning", "itc_finetune", "lora_only"]
    assert "Ablations of Omniview-Tuning" in ovt_report or ovt_report.count("data:image/png") >= 4
    # 09 probed the frozen backbone and both tuned ones (their embeddings written by 08).
    probes_html = (run_dir / "reports" / "09_zero_shot_probes.html").read_text()
    assert probes_html.count("data:image/png") >= 3 and "zero-shot init" in probes_html
    fits = pd.read_csv(run_dir / "metrics" / "probes.csv")
    assert set(fits.method) == {"baseline", "itc_finetune", "omniview_tuning"}
    assert set(fits.k) == {1, 2} and set(fits.seed) == {0, 1} and set(fits.init) == {"random", "zero_shot"}
    probed = json.loads((run_dir / "metrics" / "probes.json").read_text())
    rows = results.set_index("method")
    assert rows.loc["baseline", "probe_zero_shot"] == pytest.approx(probed["baseline"]["probe_zero_shot"])
    assert rows.loc["omniview_tuning", "probe_1shot_zero_shot"] == \
        pytest.approx(probed["omniview_tuning"]["probe_1shot_zero_shot"])
    assert np.isnan(rows.loc["object_head", "probe_linear"])  # the heads are not backbones: no probe columns
    summary_html = (run_dir / "reports" / "13_summary.html").read_text()
    assert "0.893 ± 0.067" in summary_html  # the seed's published table beside ours
    assert "part mIoU" in summary_html and "UNet from scratch (pixels)" in summary_html  # 10, 11; display names
    assert "object_head" not in summary_html.split("Every figure")[0]  # display names, not code names
    assert "05_object_head.html#05_object_head-" in summary_html  # the figure index links into the reports
    # Under the protocol: every zero-shot method's per-object scores, one table and panel per regime, verdicts.
    for method in ["baseline", "object_head", "omniview_tuning", "centroid_distillation", "supervised_control"]:
        scores = pd.read_parquet(run_dir / "metrics" / "per_object" / f"{method}.parquet")
        assert set(scores.category_group) == {"multi_view", "single_view", "unseen"}
        assert scores.object_id.nunique() == 12
    assert "Does it transfer?" in summary_html and "unseen categories" in summary_html
    assert "Supervised control:" in (run_dir / "reports" / "09_zero_shot_probes.html").read_text()
    assert "Protocol:" in (run_dir / "reports" / "08_omniview_tuning.html").read_text()
    # What `mvclip select` chooses on: each tuned backbone's val cells from its own val embeddings (read with
    # the frozen backbone's, every variant of a selection tied).
    cfg = load_config(run_dir / "configs" / "08_omniview_tuning.yaml")
    layout, views = RunLayout(run_dir), load_views(RunLayout(run_dir))
    variants = backbone_variants(layout, cfg)
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    for method in ["baseline", "itc_finetune", "omniview_tuning"]:
        own = val_columns(variants[method].split("val").image, variants["baseline"].split("val"), views, canonical,
                          cfg)
        assert own and all(rows.loc[method, k] == pytest.approx(v, nan_ok=True) for k, v in own.items()), method
    # 08 and 12 trained with switches away from the default run's (smoke.yaml): the adapters carry them.
    switches = (cfg.ovt.anchor_weights, cfg.ovt.margin_mode, cfg.distill.mask_category_negatives)
    assert switches == ("public", "hinge", True)
    for method in ["omniview_tuning", "centroid_distillation"]:
        assert torch.load(layout.adapters(method), weights_only=True)["config"]["residual"] == "writeup", method
    check_figures_and_tables(run_dir)
    assert 0 <= results.view_retrieval_mAP[0] <= 1 and results.n_objects[0] == 12  # smoke: 12 test objects
    assert (run_dir / "embeddings" / "mvclip-tiny.npz").exists()
    index = (run_dir / "index.html").read_text()
    assert re.search(r"01_render</td><td[^>]*>ok</td>", index)
    assert re.search(r"04_baseline</td><td[^>]*>ok</td>", index)
    assert "Backbone: <b>mvclip-tiny" in index
    assert 'href="reports/01_render.html"' in index and 'href="notebooks/01_render.ipynb"' in index
    assert "run_name: smoke" in index
    assert json.loads((run_dir / "pipeline.json").read_text())[0]["status"] == "ok"
    assert "run_name: smoke" in (run_dir / "configs" / "13_summary.yaml").read_text()
    assert 'href="configs/04_baseline.yaml"' in index
    executed = nbformat.read(run_dir / "notebooks" / "01_render.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert str(run_dir) in injected[0].source
    # Headline numbers say which views they cover; zero-shot with prompts pretraining never saw.
    assert "grid views" in baseline and "Is this CLIP" in baseline
    assert results.n_grid_views[0] == 8 and results.n_ood_views[0] == 2
    # the supervised control (8th) replaces the prompts with its trained classifier: no unseen-prompt column
    assert results.zero_shot_accuracy_canonical_unseen_prompts.notna().tolist() == [True] * 7 + [False] * 9
    assert "unseen prompt templates" in (run_dir / "reports" / "02_backbone.html").read_text()

    # The all-views control is another backbone: its own files, and the canonical model's rows
    # are listed as stale instead of being mixed into its results table.
    control = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    control["backbone"]["pretrain"]["views"] = "all"
    (tmp_path / "control.yaml").write_text(yaml.safe_dump(control))
    result = run_module("mvclip_utils", "run", "--config", str(tmp_path / "control.yaml"), "--run-dir",
                        str(run_dir), "--only", "02-04,13")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "embeddings" / "mvclip-tiny.npz").exists() and (run_dir / "backbone" / "mvclip-tiny.pt").exists()
    assert (run_dir / "embeddings" / "mvclip-tiny-allviews.npz").exists()
    results = pd.read_csv(run_dir / "metrics" / "results.csv")
    assert results.method.tolist() == ["baseline"] and "all views" in results.backbone[0]
    stale = pd.read_csv(run_dir / "metrics" / "stale_results.csv")
    assert sorted(stale.method) == ["autoencoder", "centroid_distillation", "contrastive_head", "itc_finetune",
                                    "object_head",
                                    "omniview_tuning", "segmentation_category_silhouette", "segmentation_clip_decoder",
                                    "segmentation_foreground_only", "segmentation_linear_probe",
                                    "segmentation_location_prior", "segmentation_unet", "supervised_control",
                                    "vqvae_clip_features", "vqvae_own_encoder"]
    summary_html = (run_dir / "reports" / "13_summary.html").read_text()
    assert "Stale rows, not merged" in summary_html
    index = (run_dir / "index.html").read_text()
    assert "different configs" in index


@pytest.mark.slow
def test_a_finished_kernel_is_shut_down_without_an_interrupt(tmp_path):
    """jupyter_client interrupts (SIGINT) every kernel it shuts down, which ipykernel logs as an
    ERROR on successful runs; the runner's kernel manager does not, and still interrupts otherwise."""
    import asyncio
    import signal

    from jupyter_client.manager import AsyncKernelManager

    from mvclip_utils.pipeline import _quiet_kernel_manager

    async def signals_at_shutdown(manager_class) -> list[int]:
        manager = manager_class(kernel_name="python3")
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        await client.execute_interactive("x = 1")
        client.stop_channels()
        sent, send = [], manager._async_signal_kernel

        async def recording(signum: int) -> None:
            sent.append(signum)
            await send(signum)

        manager._async_signal_kernel = recording
        await manager.shutdown_kernel()
        assert not await manager.is_alive()
        return sent

    assert signal.SIGINT in asyncio.run(signals_at_shutdown(AsyncKernelManager))  # what the default does
    assert signal.SIGINT not in asyncio.run(signals_at_shutdown(_quiet_kernel_manager()))
    assert not _quiet_kernel_manager()().shutting_down  # a timeout's interrupt still goes through


def test_failing_notebook_stops_the_run_and_is_kept(tmp_path):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    write_notebook(notebooks, "01_fine.py", "print('fine')")
    write_notebook(notebooks, "02_broken.py", "raise ValueError('the bad thing happened')")
    write_notebook(notebooks, "03_never.py", "print('never')")
    config = write_config(tmp_path / "cfg.yaml")
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils", "run", "--config", str(config), "--run-dir", str(run_dir),
                        "--notebooks-dir", str(notebooks), "--kernel", "python3")
    assert result.returncode == 1
    assert "notebook 02_broken failed: ValueError: the bad thing happened" in result.stderr
    executed = (run_dir / "notebooks" / "02_broken.ipynb").read_text()
    assert "Traceback" in executed or "ValueError" in executed
    assert not (run_dir / "notebooks" / "03_never.ipynb").exists()
    index = (run_dir / "index.html").read_text()
    assert re.search(r"02_broken</td><td[^>]*>failed</td>", index)
    assert re.search(r"03_never</td><td[^>]*>not run</td>", index)
    assert 'href="notebooks/02_broken.ipynb"' in index and "the bad thing happened" in index

    # Rerunning one notebook keeps the others' earlier lines in the index, records the config it
    # ran with beside the others' (never overwriting theirs), and sweeps interrupted writes' temp files.
    write_notebook(notebooks, "02_broken.py", "print('mended')")
    leftover = run_dir / "metrics" / ".results.csv.abc123.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("partial")
    # A setting 01's outputs are made from (the seed) refuses the partial rerun; one they are not made from runs.
    config = write_config(tmp_path / "cfg.yaml", {"seed": 7})
    refused = run_module("mvclip_utils", "run", "--config", str(config), "--run-dir", str(run_dir),
                         "--notebooks-dir", str(notebooks), "--kernel", "python3", "--only", "02")
    assert refused.returncode == 2 and "seed is 7" in refused.stderr and "rerun from 01_fine" in refused.stderr
    config = write_config(tmp_path / "cfg.yaml", {"heads": {"lr": 0.0123}})
    result = run_module("mvclip_utils", "run", "--config", str(config), "--run-dir", str(run_dir),
                        "--notebooks-dir", str(notebooks), "--kernel", "python3", "--only", "02")
    assert result.returncode == 0, result.stderr[-2000:]
    index = (run_dir / "index.html").read_text()
    assert re.search(r"01_fine</td><td[^>]*>ok</td>", index)
    assert re.search(r"02_broken</td><td[^>]*>ok</td>", index)
    assert re.search(r"03_never</td><td[^>]*>not run</td>", index)
    assert "lr: 0.0123" not in (run_dir / "configs" / "01_fine.yaml").read_text()
    assert "lr: 0.0123" in (run_dir / "configs" / "02_broken.yaml").read_text()
    assert "ran with 2 different configs" in index
    assert not leftover.exists()


def test_bad_config_fails_before_any_work(tmp_path):
    config = write_config(tmp_path / "cfg.yaml", {"render": {"engine": "eevee"}})
    result = run_module("mvclip_utils", "run", "--config", str(config), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "render.engine: expected one of 'workbench', 'cycles', got 'eevee'" in result.stderr
    assert not (tmp_path / "run").exists()
