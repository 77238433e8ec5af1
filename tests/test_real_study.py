"""The real study's code path (params/objaverse_vitb32.yaml), proven offline end to end at test size.

Everything the real config does, with every download replaced by a local stand-in the test makes:
Objaverse's cache laid out from GLBs exported here (three LVIS categories of food-drink objects and
one broken asset), a randomly initialised ViT-B-32 saved as a checkpoint file and loaded through
`backbone.pretrained: <file>` as a user's downloaded weights would be, Cycles at a small resolution.
The numbers are meaningless with random weights; what is tested is that every notebook runs, that
every artifact has the shapes the real model implies (512-d embeddings, a 7 x 7 feature grid, 224 px
input), and that the reports name the backbone.
"""

import json
import re

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import yaml
from helpers import run_module

from mvclip_utils.core.runs import PARAMS_DIR
from mvclip_utils.data.objaverse_source import write_local_cache
from mvclip_utils.data.objects import make_object
from mvclip_utils.data.render_jobs import export_glbs

pytestmark = pytest.mark.slow

# Three LVIS categories of six objects each (the real splits' minimum: 1 pretrain, 3 train, 1 val, 1 test),
# exported from procedural objects of matching shape, plus one corrupt mug.
LVIS = {"mug": "mug", "bottle": "bottle", "teapot": "teapot"}
PER_CATEGORY = 6


def lay_out_objaverse(tmp_path):
    specs = {f"{lvis}{i:02d}": make_object(category, i, 0) for lvis, category in LVIS.items()
             for i in range(PER_CATEGORY)}
    glbs = dict(zip(specs, export_glbs([s.to_json() for s in specs.values()], tmp_path / "export")))
    glbs["mugbroken"] = tmp_path / "export" / "broken.glb"
    glbs["mugbroken"].write_bytes(b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 4)
    annotations = {uid: {"name": f"{uid.rstrip('0123456789')} number {uid[-2:]}",
                         "categories": [{"name": "food-drink", "uri": ""}]} for uid in glbs}
    lvis = {name: [uid for uid in glbs if uid.startswith(name)] for name in LVIS}
    write_local_cache(tmp_path / "home", {uid: (glb, annotations[uid]) for uid, glb in glbs.items()}, lvis=lvis)
    return tmp_path / "home"


def real_config_at_test_size(tmp_path, checkpoint) -> dict:
    cfg = yaml.safe_load((PARAMS_DIR / "objaverse_vitb32.yaml").read_text())
    cfg["run_name"] = "real_study_test"
    cfg["dataset"]["objaverse"].update(lvis_min_objects=PER_CATEGORY, download_processes=2)
    cfg["render"].update(resolution=32, azimuths=4, elevations_deg=[40, 10], cycles_samples=4, workers=2)
    cfg["backbone"]["pretrained"] = str(checkpoint)
    cfg["embed"] = {"batch_size": 32, "loader_workers": 0}
    cfg["heads"] = {"steps": 20, "validate_every": 10}
    cfg["ovt"].update(steps=2, objects_per_batch=3, views_per_object=2, clean_per_batch=2, outlier_views=1)
    cfg["distill"].update(steps=2, objects_per_batch=3, views_per_object=2, clean_per_batch=2)
    cfg["probes"] = {"shots": [1, 2], "seeds": 2, "epochs": 5, "linear_probe_Cs": [0.1, 10.0]}
    cfg["decoding"] = {"steps": 4, "batch_size": 8, "validate_every": 2, "codebook_size": 16, "channels": 16}
    cfg["segmentation"] = {"steps": 4, "batch_size": 8, "validate_every": 2, "channels": 16, "unet_channels": 4,
                           "unet_depth": 2}
    cfg["pipeline"] = {"notebook_timeout_s": 1200}
    return cfg


def test_the_real_config_runs_every_notebook_on_a_local_objaverse_cache_and_a_vit_b_32_checkpoint(tmp_path):
    home = lay_out_objaverse(tmp_path)
    torch.manual_seed(0)
    checkpoint = tmp_path / "vit_b_32_random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(real_config_at_test_size(tmp_path, checkpoint)))
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils", "run", "--config", str(tmp_path / "real.yaml"), "--run-dir", str(run_dir),
                        env={"HOME": str(home)}, timeout=3000)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    # 01: LVIS-labelled objects, the broken asset recorded and skipped, Cycles renders at 32 px.
    objects = pd.read_parquet(run_dir / "dataset" / "objects.parquet").set_index("object_id")
    assert objects.loc["mugbroken", "status"] == "failed" and objects.loc["mugbroken", "reason"]
    ok = objects[objects.status == "ok"]
    assert sorted(ok.category.unique()) == sorted(LVIS) and len(ok) == 3 * PER_CATEGORY
    assert ok.caption.str.contains("number").all()  # captioned with the annotation name
    # 02-03: the checkpoint file's ViT-B-32, 512-d embeddings of every object and view.
    record = json.loads((run_dir / "backbone" / "backbone.json").read_text())
    assert "ViT-B-32" in record["name"] and "vit_b_32_random.pt" in record["name"]
    embeddings = np.load(next((run_dir / "embeddings").glob("ViT-B-32*.npz")))
    n_views = 4 * 2 + 6  # the grid and the six default ood views
    assert embeddings["image"].shape == (3 * PER_CATEGORY, n_views, 512) and embeddings["text"].shape[-1] == 512
    # 08: OVT's adapters on ViT-B-32's attention; 10-11 on its 7 x 7 grid; every method wrote its row.
    results = pd.read_csv(run_dir / "metrics" / "results.csv").set_index("method")
    assert {"baseline", "object_head", "contrastive_head", "autoencoder", "itc_finetune", "omniview_tuning",
            "vqvae_clip_features", "segmentation_clip_decoder", "segmentation_unet"} <= set(results.index)
    assert results.backbone.str.contains("ViT-B-32").all()
    assert results.loc["vqvae_clip_features", "code_grid"] == 7 and results.loc["segmentation_clip_decoder",
                                                                                "feature_grid"] == 7
    assert results.loc["segmentation_clip_decoder", "mask_size"] == 32
    assert (run_dir / "models" / "omniview_tuning" / "adapters.pt").exists()
    assert results.loc["omniview_tuning", "trainable_parameters"] > 442_368  # LoRA on ViT-B-32 + the VIFormer
    for report in sorted((run_dir / "reports").glob("*.html")):
        html = report.read_text()
        assert "Traceback" not in html, report.name
        if report.stem != "01_render":
            assert "ViT-B-32" in html, f"{report.name} must name the backbone that made its numbers"
    assert len(list((run_dir / "reports").glob("*.html"))) == 13
    assert "ViT width 768, 12 layers, patch 32 at 224 px (7 x 7 feature grid)" in \
        (run_dir / "reports" / "02_backbone.html").read_text()
    index = (run_dir / "index.html").read_text()
    assert len(re.findall(r"<td[^>]*>ok</td>", index)) == 13


def test_the_real_config_offline_fails_at_02_naming_the_notebook_the_model_and_the_fix(tmp_path):
    cfg = real_config_at_test_size(tmp_path, "openai")
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(cfg))
    env = {"HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    result = run_module("mvclip_utils", "run", "--config", str(tmp_path / "real.yaml"), "--run-dir",
                        str(tmp_path / "run"), "--only", "02", env=env, timeout=600)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "02_backbone" in output and "'ViT-B-32'" in output and "'openai'" in output
    assert "network access" in output
