"""The Objaverse source through the real `objaverse` package, on a local cache the test lays out."""

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import objaverse
import pandas as pd
import pytest
from helpers import REPO, run_module, write_config

from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import ConfigError, ObjaverseConfig, min_objects_per_category, needed_splits
from mvclip_utils.data.dataset import load_image, load_mask
from mvclip_utils.data.objaverse_source import assign_lvis_categories, select_objects, write_local_cache
from mvclip_utils.data.objects import make_object
from mvclip_utils.data.render_jobs import export_glbs


def food(name):
    return {"name": name, "categories": [{"name": "food-drink", "uri": "https://example.invalid/food-drink"}]}


def car(name):
    return {"name": name, "categories": [{"name": "cars-vehicles", "uri": ""}]}


ANNOTATIONS = {
    "aaa111": food("Coffee mug"), "mug02": food("Tea mug"), "mug03": food("Beer mug"),
    "bbb222": food("  Glass   bottle "), "bot02": food("Wine bottle"), "bot03": food("Milk bottle"),
    "bot04": food("Water bottle"),
    "eee555": food("Mug-shaped bottle"),  # in LVIS mug AND bottle
    "ddd444": food("Broken soda can"),
    "fff666": food("Plate of food"),  # in no LVIS category
    "ccc333": car("Sports car"), "ggg777": car("Toy car"),
}
# Among the food-drink objects: bottle 5 (with eee555), mug 4 (with eee555), can 1.
LVIS = {
    "mug": ["aaa111", "mug02", "mug03", "eee555"],
    "bottle": ["bbb222", "bot02", "bot03", "bot04", "eee555"],
    "can": ["ddd444"],
    "car_(automobile)": ["ccc333", "ggg777"],
}
MUGS = ["aaa111", "mug02", "mug03"]
BOTTLES = ["bbb222", "bot02", "bot03", "bot04", "eee555"]


def lay_out_cache(tmp_path, monkeypatch, absent=()):
    """A cache with placeholder GLBs (enough for selection, which never opens them); the
    `absent` uids are in the object-paths index but their GLB was never downloaded."""
    objects = {}
    for uid, annotation in ANNOTATIONS.items():
        glb = None
        if uid not in absent:
            glb = tmp_path / f"{uid}.glb"
            glb.write_bytes(b"glTF")
        objects[uid] = (glb, annotation)
    root = write_local_cache(tmp_path / "home", objects, lvis=LVIS)
    monkeypatch.setattr(objaverse, "_VERSIONED_PATH", str(root))
    return root


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    return lay_out_cache(tmp_path, monkeypatch)


@pytest.fixture
def no_network(monkeypatch):
    """Every download fails as it does offline (the pool's forked workers inherit this)."""
    def unreachable(url, *args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlretrieve", unreachable)


def test_selects_by_annotation_category_and_captions_with_the_name(fake_cache):
    objects = select_objects(ObjaverseConfig(download_processes=1, lvis_min_objects=3), seed=0)
    assert objects.object_id.tolist() == sorted(MUGS + BOTTLES)
    captions = dict(zip(objects.object_id, objects.caption))
    assert captions["aaa111"] == "Coffee mug" and captions["bbb222"] == "Glass bottle"
    assert (objects.status == "pending").all()
    assert objects.asset_path.iloc[0] == str(fake_cache / "glbs" / "000-000" / "aaa111.glb")


def test_auto_keeps_lvis_categories_with_enough_objects(fake_cache):
    objects = select_objects(ObjaverseConfig(lvis_categories="auto", lvis_min_objects=3), seed=0)
    category = dict(zip(objects.object_id, objects.category))
    # can (1 object) is below 3 and the plate has no LVIS category: both dropped.
    assert sorted(category) == sorted(MUGS + BOTTLES)
    assert {u: category[u] for u in MUGS} == dict.fromkeys(MUGS, "mug")
    # In both mug and bottle: goes to the category with more objects, on every run.
    assert {u: category[u] for u in BOTTLES} == dict.fromkeys(BOTTLES, "bottle")
    assert objects.category.nunique() == 2  # zero-shot is no longer a one-class task


def test_an_object_in_two_equal_categories_goes_to_the_first_by_name():
    lvis = {"b": ["x", "y1", "y2"], "a": ["x", "z1", "z2"], "c": ["w"]}
    assert assign_lvis_categories(["w", "x", "y1", "y2", "z1", "z2"], lvis, None, 2) == {
        "x": "a", "z1": "a", "z2": "a", "y1": "b", "y2": "b"}
    # Listed categories are kept whatever their size.
    assert assign_lvis_categories(["w", "x", "y1"], lvis, ["b", "c"], 5) == {"x": "b", "y1": "b", "w": "c"}


def test_auto_with_fewer_than_two_categories_names_the_key(fake_cache):
    # mug has 4 objects, but eee555 goes to bottle (5): mug is left with 3 < 4, and is dropped.
    with pytest.raises(ConfigError, match=r"^dataset\.objaverse\.lvis_min_objects: .*auto kept 1 category with "
                                          r">= 4 objects .*\(bottle: 5; others: mug: 4, can: 1\).*at least 2: lower "
                                          r"dataset\.objaverse\.lvis_min_objects or list categories") as info:
        select_objects(ObjaverseConfig(lvis_min_objects=4), seed=0)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"auto kept 1 category with >= 5 objects .*\(bottle: 5; others"):
        select_objects(ObjaverseConfig(), seed=0)  # the default: 5


def test_no_lvis_filter_and_lists_need_two_categories(fake_cache):
    with pytest.raises(ConfigError, match=r"^dataset\.objaverse\.lvis_categories: \[\] .* 1 category "
                                          r"\(food-drink: 10\); zero-shot needs at least 2"):
        select_objects(ObjaverseConfig(lvis_categories=[]), seed=0)
    with pytest.raises(ConfigError, match=r"^dataset\.objaverse\.lvis_categories: \['mug'\] kept 1 category"):
        select_objects(ObjaverseConfig(lvis_categories=["mug"]), seed=0)
    with pytest.raises(ConfigError, match=r"'mugs' not among Objaverse's 4 LVIS categories .*did you mean mug"):
        select_objects(ObjaverseConfig(lvis_categories=["mugs", "can"]), seed=0)


def test_lvis_filter_uids_file_and_max_objects(fake_cache, tmp_path):
    lvis = select_objects(ObjaverseConfig(annotation_categories=[], lvis_categories=["car_(automobile)", "can"]), 0)
    assert lvis.object_id.tolist() == ["ccc333", "ddd444", "ggg777"]
    assert lvis.category.tolist() == ["car_(automobile)", "can", "car_(automobile)"]
    both = select_objects(ObjaverseConfig(lvis_categories=["mug", "can", "car_(automobile)"]), 0)
    # food-drink AND a listed LVIS category (the cars are not food-drink; eee555's bottle is not listed)
    assert dict(zip(both.object_id, both.category)) == {**dict.fromkeys(MUGS + ["eee555"], "mug"), "ddd444": "can"}
    (tmp_path / "uids.txt").write_text("ccc333\nbbb222\n")
    listed = select_objects(ObjaverseConfig(uids_file=str(tmp_path / "uids.txt"), lvis_categories=[]), 0)
    assert listed.object_id.tolist() == ["bbb222", "ccc333"]
    assert listed.category.tolist() == ["food-drink", "cars-vehicles"]  # [] = the annotation category
    config = ObjaverseConfig(max_objects=6, lvis_min_objects=3)
    six = select_objects(config, seed=3)
    assert len(six) == 6 and six.object_id.tolist() == select_objects(config, 3).object_id.tolist()


def test_real_study_labels_objects_by_lvis_with_enough_per_split():
    cfg = load_config(REPO / "params" / "objaverse_vitb32.yaml")
    assert cfg.dataset.objaverse.lvis_categories == "auto"  # food-drink alone is one class
    # A kept category must give every split at least one object, or the run fails after rendering.
    assert cfg.dataset.objaverse.lvis_min_objects >= min_objects_per_category(cfg.dataset.splits, needed_splits(cfg))


def test_no_match_is_a_clear_error(fake_cache):
    with pytest.raises(RuntimeError, match=r"no Objaverse object matches annotation categories \['furniture'\]"):
        select_objects(ObjaverseConfig(annotation_categories=["furniture"]), 0)


def test_partly_filled_cache_offline_fails_only_the_missing_objects(tmp_path, monkeypatch, no_network):
    root = lay_out_cache(tmp_path, monkeypatch, absent={"mug02", "bot03"})
    asked = []
    real_load_objects = objaverse.load_objects

    def spy(uids, download_processes=1):
        asked.append(sorted(uids))
        return real_load_objects(uids, download_processes=download_processes)

    monkeypatch.setattr(objaverse, "load_objects", spy)
    objects = select_objects(ObjaverseConfig(lvis_min_objects=3, download_processes=2), seed=0).set_index("object_id")
    assert asked == [["bot03", "mug02"]]  # only the missing GLBs are asked for (a pool of 2)
    assert sorted(objects.index[objects.status == "failed"]) == ["bot03", "mug02"]
    for uid in ["bot03", "mug02"]:
        reason = objects.loc[uid, "reason"]
        assert str(root / "glbs" / "000-000" / f"{uid}.glb") in reason and f"uid {uid}" in reason
        assert "download failed" in reason and "Name or service not known" in reason
        assert objects.loc[uid, "asset_path"] == ""
    pending = objects[objects.status == "pending"]
    assert len(pending) == 6 and all(pd.Series(pending.asset_path).map(lambda p: p.endswith(".glb")))


def test_a_render_shard_fetches_only_its_own_objects(tmp_path, monkeypatch, no_network):
    from mvclip_utils.core.shards import shard_items

    lay_out_cache(tmp_path, monkeypatch, absent={"mug02", "bot03"})
    whole = select_objects(ObjaverseConfig(lvis_min_objects=3), seed=0)
    for shard in range(2):
        objects = select_objects(ObjaverseConfig(lvis_min_objects=3), seed=0, shard=(shard, 2)).set_index("object_id")
        assert objects.index.tolist() == whole.object_id.tolist()  # every shard sees the same manifest
        mine = set(shard_items(whole.object_id.tolist(), shard, 2))
        failed = set(objects.index[objects.status == "failed"])
        assert failed == {"mug02", "bot03"} & mine  # a missing GLB fails only in the shard that renders it
        others = objects.drop(index=sorted(mine))
        assert (others.status == "pending").all() and (others.asset_path == "").all()


def test_empty_cache_offline_says_where_the_cache_is_and_how_to_fill_it(tmp_path, monkeypatch, no_network):
    root = lay_out_cache(tmp_path, monkeypatch, absent=set(ANNOTATIONS))
    with pytest.raises(RuntimeError) as info:
        select_objects(ObjaverseConfig(lvis_min_objects=3, download_processes=1), seed=0)
    message = str(info.value)
    assert f"none of the 8 selected Objaverse objects has its GLB in the local cache {root}" in message
    assert "Name or service not known" in message and "Run once with network access" in message
    assert str(root / "glbs" / "000-000") in message


@pytest.mark.slow
def test_objaverse_run_renders_real_glbs_and_records_a_corrupt_one(tmp_path):
    # Three mugs and three bottles (two LVIS categories, one object of each per split) and a
    # corrupt fourth mug; the car is not food-drink.
    specs = {uid: make_object(category, index, 0) for category, uids in [("mug", MUGS), ("bottle", BOTTLES[:3])]
             for index, uid in enumerate(uids)}
    specs["ccc333"] = make_object("car", 0, 0)
    glbs = dict(zip(specs, export_glbs([s.to_json() for s in specs.values()], tmp_path / "export")))
    glbs["ddd444"] = tmp_path / "export" / "corrupt.glb"
    glbs["ddd444"].write_bytes(b"glTF\x02\x00\x00\x00" + bytes(range(256)) * 4)
    home = tmp_path / "home"
    write_local_cache(home, {uid: (glb, ANNOTATIONS[uid]) for uid, glb in glbs.items()},
                      # The corrupt asset is a fourth mug: failing, it must not take one of the mugs' split places.
                      lvis={"mug": MUGS + ["ddd444"], "bottle": BOTTLES[:3], "car_(automobile)": ["ccc333"]})
    config = write_config(tmp_path / "cfg.yaml", {
        "run_name": "objaverse_test",
        "dataset": {"source": "objaverse", "objaverse": {"download_processes": 4,
                                                             "lvis_categories": ["mug", "bottle"]},
                    "splits": {"pretrain": 0.0, "train": 0.34, "val": 0.33, "test": 0.33}},
        # The real study's backbone (not pretrained here, so no pretrain split, and so no clean views
        # for OVT); 01 never loads it.
        "backbone": {"model": "ViT-B-32", "pretrained": "openai"}, "ovt": {"clean_per_batch": 0}})
    run_dir = tmp_path / "run"
    result = run_module("mvclip_utils", "render", "--config", str(config), "--run-dir", str(run_dir), "--quiet",
                        env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["failed"] == 1

    layout = RunLayout(run_dir)
    objects = pd.read_parquet(layout.objects_table).set_index("object_id")
    assert sorted(objects.index) == sorted(MUGS + BOTTLES[:3] + ["ddd444"])  # the car is not food-drink
    assert objects.loc["bbb222", "caption"] == "Glass bottle"
    assert objects.loc["aaa111", "category"] == "mug" and objects.loc["bbb222", "category"] == "bottle"
    assert (objects.source == "objaverse").all()
    assert objects.loc["ddd444", "status"] == "failed" and objects.loc["ddd444", "reason"]
    assert "retried" not in objects.loc["ddd444", "reason"]  # the asset's fault: a rerun does not try it again
    again = run_module("mvclip_utils", "render", "--config", str(config), "--run-dir", str(run_dir), "--quiet",
                       env={"HOME": str(home)})
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["rendered"], summary["skipped"], summary["failed"]) == (0, 7, 1)  # skipped, still failed
    assert not layout.image_dir("ddd444").exists()
    ok = objects[objects.status == "ok"]
    assert len(ok) == 6 and (pd.crosstab(ok.category, ok.split) == 1).all().all()
    for uid in ["aaa111", "bbb222"]:
        mask = load_mask(layout, uid, "el+30_az000")
        assert set(np.unique(mask)) == {0, 1}  # Objaverse objects are one part
        image = load_image(layout, uid, "el+30_az000")
        assert (image[mask == 1] < 250).any(axis=-1).mean() > 0.8
    # The imported GLB was normalised like the procedural original: similar silhouettes.
    assert (load_mask(layout, "aaa111", "el+10_az090") > 0).mean() > 0.1
