"""The Objaverse source through the real `objaverse` package, on a local cache the test lays out."""

import json

import numpy as np
import objaverse
import pandas as pd
import pytest

from mvclip_utils.config import ObjaverseConfig
from mvclip_utils.dataset import load_image, load_mask
from mvclip_utils.objaverse_source import select_objects, write_local_cache
from mvclip_utils.objects import make_object
from mvclip_utils.render import export_glbs
from mvclip_utils.runs import RunLayout

from conftest import run_module, write_config


def food(name):
    return {"name": name, "categories": [{"name": "food-drink", "uri": "https://example.invalid/food-drink"}]}


ANNOTATIONS = {
    "aaa111": food("Coffee mug"),
    "bbb222": food("  Glass   bottle "),
    "ccc333": {"name": "Sports car", "categories": [{"name": "cars-vehicles", "uri": ""}]},
    "ddd444": food("Broken soda can"),
}


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    """A cache with placeholder GLBs: enough for selection, which never opens them."""
    glbs = {}
    for uid in ANNOTATIONS:
        glbs[uid] = tmp_path / f"{uid}.glb"
        glbs[uid].write_bytes(b"glTF")
    root = write_local_cache(tmp_path / "home", {u: (glbs[u], a) for u, a in ANNOTATIONS.items()},
                             lvis={"mug": ["aaa111"], "car_(automobile)": ["ccc333"]})
    monkeypatch.setattr(objaverse, "_VERSIONED_PATH", str(root))
    return root


def test_selects_by_annotation_category_and_captions_with_the_name(fake_cache):
    objects = select_objects(ObjaverseConfig(download_processes=1), seed=0)
    assert objects.object_id.tolist() == ["aaa111", "bbb222", "ddd444"]
    assert objects.caption.tolist() == ["Coffee mug", "Glass bottle", "Broken soda can"]
    assert (objects.category == "food-drink").all() and (objects.status == "pending").all()
    assert objects.asset_path.iloc[0] == str(fake_cache / "glbs" / "000-000" / "aaa111.glb")


def test_lvis_filter_uids_file_and_max_objects(fake_cache, tmp_path):
    lvis = select_objects(ObjaverseConfig(annotation_categories=[], lvis_categories=["car_(automobile)"]), 0)
    assert lvis.object_id.tolist() == ["ccc333"] and lvis.category.tolist() == ["car_(automobile)"]
    both = select_objects(ObjaverseConfig(lvis_categories=["mug", "car_(automobile)"]), 0)
    assert both.object_id.tolist() == ["aaa111"]  # food-drink AND an LVIS category
    (tmp_path / "uids.txt").write_text("ccc333\nbbb222\n")
    listed = select_objects(ObjaverseConfig(uids_file=str(tmp_path / "uids.txt")), 0)
    assert listed.object_id.tolist() == ["bbb222", "ccc333"]
    two = select_objects(ObjaverseConfig(max_objects=2), seed=3)
    assert len(two) == 2 and two.object_id.tolist() == select_objects(ObjaverseConfig(max_objects=2), 3).object_id.tolist()


def test_no_match_is_a_clear_error(fake_cache):
    with pytest.raises(RuntimeError, match=r"no Objaverse object matches annotation categories \['furniture'\]"):
        select_objects(ObjaverseConfig(annotation_categories=["furniture"]), 0)


@pytest.mark.slow
def test_objaverse_run_renders_real_glbs_and_records_a_corrupt_one(tmp_path):
    specs = [make_object("mug", 0, 0), make_object("bottle", 0, 0), make_object("car", 0, 0)]
    glbs = export_glbs([s.to_json() for s in specs], tmp_path / "export")
    corrupt = tmp_path / "export" / "corrupt.glb"
    corrupt.write_bytes(b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 4)
    home = tmp_path / "home"
    write_local_cache(home, {"aaa111": (glbs[0], ANNOTATIONS["aaa111"]),
                             "bbb222": (glbs[1], ANNOTATIONS["bbb222"]),
                             "ccc333": (glbs[2], ANNOTATIONS["ccc333"]),
                             "ddd444": (corrupt, ANNOTATIONS["ddd444"])})
    config = write_config(tmp_path / "cfg.yaml", {
        "run_name": "objaverse_test",
        "dataset": {"source": "objaverse", "objaverse": {"download_processes": 4},
                    "splits": {"pretrain": 0.0, "train": 0.34, "val": 0.0, "test": 0.66}}})
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils.dataset", "--config", str(config), "--run-dir", str(run_dir), "--quiet",
                        env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["failed"] == 1

    layout = RunLayout(run_dir)
    objects = pd.read_parquet(layout.objects_table).set_index("object_id")
    assert sorted(objects.index) == ["aaa111", "bbb222", "ddd444"]  # the car is not food-drink
    assert objects.loc["bbb222", "caption"] == "Glass bottle"
    assert (objects.source == "objaverse").all()
    assert objects.loc["ddd444", "status"] == "failed" and objects.loc["ddd444", "reason"]
    assert not layout.image_dir("ddd444").exists()
    for uid in ["aaa111", "bbb222"]:
        assert objects.loc[uid, "status"] == "ok"
        mask = load_mask(layout, uid, "el+30_az000")
        assert set(np.unique(mask)) == {0, 1}  # Objaverse objects are one part
        image = load_image(layout, uid, "el+30_az000")
        assert (image[mask == 1] < 250).any(axis=-1).mean() > 0.8
    # The imported GLB was normalised like the procedural original: similar silhouettes.
    assert (load_mask(layout, "aaa111", "el+10_az090") > 0).mean() > 0.1
