"""The papermill runner: real notebook runs, HTML reports, the index, and failures."""

import json
import re

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from mvclip_utils.pipeline import discover_notebooks, parse_only
from mvclip_utils.runs import PARAMS_DIR

from conftest import run_module, write_config

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


@pytest.mark.slow
def test_smoke_run_writes_reports_and_index(tmp_path):
    run_dir = tmp_path / "smoke"
    result = run_module("mvclip_utils.pipeline", "--config", str(PARAMS_DIR / "smoke.yaml"), "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    report = (run_dir / "reports" / "01_render.html").read_text()
    assert report.count("data:image/png;base64") >= 5  # counts, cameras, view grid, samples, masks
    assert "build_dataset(" not in report, "inputs must be hidden in reports"
    assert "No asset failed." in report
    assert "failed=0" in report and len(re.findall("rendering 480 views", report)) == 1, "one coalesced progress line"
    for stem in ["02_backbone", "03_embed", "04_baseline", "05_object_head", "06_contrastive_head",
                 "07_autoencoder", "08_omniview_tuning", "09_zero_shot_probes", "10_vqvae_decoding",
                 "11_segmentation", "12_summary"]:
        html = (run_dir / "reports" / f"{stem}.html").read_text()
        assert "mvclip-tiny" in html, f"{stem} must say which backbone made its numbers"
        assert "Traceback" not in html
    baseline = (run_dir / "reports" / "04_baseline.html").read_text()
    assert baseline.count("data:image/png;base64") >= 4  # heatmaps, text-image matrix, zero-shot by view/elevation
    results = pd.read_csv(run_dir / "metrics" / "results.csv")
    assert results.method.tolist() == ["baseline", "object_head", "contrastive_head", "autoencoder", "itc_finetune",
                                       "omniview_tuning", "vqvae_clip_features", "vqvae_own_encoder",
                                       "segmentation_clip_decoder", "segmentation_linear_probe", "segmentation_unet",
                                       "segmentation_location_prior", "segmentation_foreground_only",
                                       "segmentation_category_silhouette"]
    assert results.backbone.str.startswith("mvclip-tiny").all()
    assert results.reconstruction_l2.notna().tolist() == [False, False, False, True] + [False] * 10
    assert results.pixel_mse.notna().tolist() == [False] * 6 + [True, True] + [False] * 6  # 10's decoders
    assert results.seg_miou.notna().tolist() == [False] * 8 + [True] * 6  # 11's models and baselines
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
    summary_html = (run_dir / "reports" / "12_summary.html").read_text()
    assert "0.893 ± 0.067" in summary_html  # the seed's published table beside ours
    assert "part mIoU" in summary_html and "segmentation_unet" in summary_html  # 10 and 11 beside each other
    assert "05_object_head.html" in summary_html and "04_baseline.html" in summary_html  # the figure index
    assert 0 <= results.view_retrieval_mAP[0] <= 1 and results.n_objects[0] == 12  # smoke: 12 test objects
    assert (run_dir / "embeddings" / "mvclip-tiny.npz").exists()
    index = (run_dir / "index.html").read_text()
    assert re.search(r"01_render</td><td[^>]*>ok</td>", index)
    assert re.search(r"04_baseline</td><td[^>]*>ok</td>", index)
    assert "Backbone: <b>mvclip-tiny" in index
    assert 'href="reports/01_render.html"' in index and 'href="notebooks/01_render.ipynb"' in index
    assert "run_name: smoke" in index
    assert json.loads((run_dir / "pipeline.json").read_text())[0]["status"] == "ok"
    assert "run_name: smoke" in (run_dir / "configs" / "12_summary.yaml").read_text()
    assert 'href="configs/04_baseline.yaml"' in index
    executed = nbformat.read(run_dir / "notebooks" / "01_render.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert str(run_dir) in injected[0].source
    # Headline numbers say which views they cover; zero-shot with prompts pretraining never saw.
    assert "grid views" in baseline and "Is this CLIP" in baseline
    assert results.n_grid_views[0] == 8 and results.n_ood_views[0] == 2
    assert results.zero_shot_accuracy_canonical_unseen_prompts.notna().tolist() == [True] * 6 + [False] * 8
    assert "unseen prompt templates" in (run_dir / "reports" / "02_backbone.html").read_text()

    # The all-views control is another backbone: its own files, and the canonical model's rows
    # are listed as stale instead of being mixed into its results table.
    control = yaml.safe_load((PARAMS_DIR / "smoke.yaml").read_text())
    control["backbone"]["pretrain"]["views"] = "all"
    (tmp_path / "control.yaml").write_text(yaml.safe_dump(control))
    result = run_module("mvclip_utils.pipeline", "--config", str(tmp_path / "control.yaml"), "--run-dir",
                        str(run_dir), "--only", "02-04,12")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "embeddings" / "mvclip-tiny.npz").exists() and (run_dir / "backbone" / "mvclip-tiny.pt").exists()
    assert (run_dir / "embeddings" / "mvclip-tiny-allviews.npz").exists()
    results = pd.read_csv(run_dir / "metrics" / "results.csv")
    assert results.method.tolist() == ["baseline"] and "all views" in results.backbone[0]
    stale = pd.read_csv(run_dir / "metrics" / "stale_results.csv")
    assert sorted(stale.method) == ["autoencoder", "contrastive_head", "itc_finetune", "object_head",
                                    "omniview_tuning", "segmentation_category_silhouette", "segmentation_clip_decoder",
                                    "segmentation_foreground_only", "segmentation_linear_probe",
                                    "segmentation_location_prior", "segmentation_unet", "vqvae_clip_features",
                                    "vqvae_own_encoder"]
    summary_html = (run_dir / "reports" / "12_summary.html").read_text()
    assert "Stale rows, not merged" in summary_html
    index = (run_dir / "index.html").read_text()
    assert "different configs" in index


@pytest.mark.slow
def test_failing_notebook_stops_the_run_and_is_kept(tmp_path):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    write_notebook(notebooks, "01_fine.py", "print('fine')")
    write_notebook(notebooks, "02_broken.py", "raise ValueError('the bad thing happened')")
    write_notebook(notebooks, "03_never.py", "print('never')")
    config = write_config(tmp_path / "cfg.yaml")
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils.pipeline", "--config", str(config), "--run-dir", str(run_dir),
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
    config = write_config(tmp_path / "cfg.yaml", {"seed": 7})
    result = run_module("mvclip_utils.pipeline", "--config", str(config), "--run-dir", str(run_dir),
                        "--notebooks-dir", str(notebooks), "--kernel", "python3", "--only", "02")
    assert result.returncode == 0, result.stderr[-2000:]
    index = (run_dir / "index.html").read_text()
    assert re.search(r"01_fine</td><td[^>]*>ok</td>", index)
    assert re.search(r"02_broken</td><td[^>]*>ok</td>", index)
    assert re.search(r"03_never</td><td[^>]*>not run</td>", index)
    assert "seed: 0" in (run_dir / "configs" / "01_fine.yaml").read_text()
    assert "seed: 7" in (run_dir / "configs" / "02_broken.yaml").read_text()
    assert "ran with 2 different configs" in index
    assert not leftover.exists()


def test_bad_config_fails_before_any_work(tmp_path):
    config = write_config(tmp_path / "cfg.yaml", {"render": {"engine": "eevee"}})
    result = run_module("mvclip_utils.pipeline", "--config", str(config), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "render.engine: expected one of 'workbench', 'cycles', got 'eevee'" in result.stderr
    assert not (tmp_path / "run").exists()
