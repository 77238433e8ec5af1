"""Splits of the rendered dataset, image-level data, corruptions."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import make_config

from mvclip_utils.core.runs import RunLayout
from mvclip_utils.data.dataset import ObjectViewBatches, ViewImages, build_dataset, collate_views
from mvclip_utils.evaluation.corruptions import CORRUPTIONS, SEVERITIES, Corruption, corrupt


def test_failed_objects_take_no_split_place():
    from mvclip_utils.core.schema import SplitConfig
    from mvclip_utils.data.dataset import split_rendered

    objects = pd.DataFrame({"object_id": [f"m{i}" for i in range(4)] + [f"b{i}" for i in range(3)],
                            "category": ["mug"] * 4 + ["bottle"] * 3,
                            "status": ["ok", "failed", "ok", "ok", "ok", "ok", "ok"]})
    fractions = SplitConfig(pretrain=0.0, train=0.34, val=0.33, test=0.33)
    for seed in range(5):
        split = split_rendered(objects, fractions, seed).set_index("object_id").split
        assert split["m1"] == ""
        ok = split.drop("m1")
        assert sorted(ok[ok.index.str.startswith("m")]) == ["test", "train", "val"]  # one of each, whatever the seed


def _rendered(statuses: dict[str, tuple[str, str]], source: str = "procedural") -> pd.DataFrame:
    """An objects table after rendering: {object_id: (category, reason or "" when it rendered)}."""
    from mvclip_utils.core.schema import SplitConfig
    from mvclip_utils.data.dataset import split_rendered

    rows = [{"object_id": oid, "category": cat, "status": "failed" if reason else "ok", "reason": reason,
             "source": source, "asset_path": "" if "cache" in reason else f"/a/{oid}.glb"}
            for oid, (cat, reason) in statuses.items()]
    return split_rendered(pd.DataFrame(rows), SplitConfig(pretrain=0.5, train=0.0, val=0.0, test=0.5), 0)


def test_a_category_whose_objects_all_failed_is_an_error_that_says_why_and_that_a_rerun_retries():
    from mvclip_utils.core.schema import ConfigError
    from mvclip_utils.data.dataset import check_split_sizes
    from mvclip_utils.data.render_jobs import failure_record

    disk_full = failure_record(OSError(28, "No space left on device"))["reason"]
    objects = _rendered({"m0": ("mug", ""), "m1": ("mug", ""), "b0": ("bottle", ""), "b1": ("bottle", ""),
                         "c0": ("car", disk_full), "c1": ("car", disk_full)})
    cfg = make_config()
    with pytest.raises(ConfigError) as info:
        check_split_sizes(cfg, objects)
    message = str(info.value)
    assert message.startswith("dataset.splits: categories car have too few rendered objects (car: 0)")
    assert "2 of their objects failed to render (e.g. c0: OSError: [Errno 28] No space left on device" in message
    assert "the I/O failures are retried when you rerun" in message
    check_split_sizes(cfg, objects[objects.category != "car"])  # without the category, nothing is missing


def test_objaverse_glbs_missing_from_the_cache_are_named_with_the_command_that_fetches_them():
    from mvclip_utils.core.schema import ConfigError
    from mvclip_utils.data.dataset import check_split_sizes

    missing = "/c/glbs/000-000/d2.glb (uid d2) is not in the local Objaverse cache and the download failed"
    objects = _rendered({"m0": ("mug", ""), "m1": ("mug", ""), "b0": ("bottle", ""), "b1": ("bottle", ""),
                         "d0": ("donut", ""), "d1": ("donut", missing), "d2": ("donut", missing)}, "objaverse")
    cfg = make_config({"dataset": {"source": "objaverse"}})
    with pytest.raises(ConfigError) as info:
        check_split_sizes(cfg, objects)
    message = str(info.value)
    assert "categories donut have too few rendered objects (donut: 1)" in message
    assert "2 GLB(s) are missing from the local Objaverse cache (d1, d2)" in message
    assert "python -c \"import objaverse; objaverse.load_objects(['d1', 'd2'])\" and rerun" in message


def test_only_failures_that_can_pass_are_retried_on_the_next_run():
    from mvclip_utils.data.render_jobs import failure_record

    for exc in (OSError(28, "No space left on device"), PermissionError(13, "Read-only file system"),
                FileNotFoundError("asset file /x.glb does not exist")):
        record = failure_record(exc)
        assert record["retry_on_rerun"] and record["reason"].endswith("(an I/O error: retried on the next run)")
    for exc in (RuntimeError("Blender could not import /x.glb"), ValueError("the asset has no mesh geometry")):
        record = failure_record(exc)
        assert not record["retry_on_rerun"] and record["reason"] == f"{type(exc).__name__}: {exc}"


@pytest.mark.slow
def test_objects_that_failed_on_an_io_error_render_on_the_rerun_after_it_is_fixed(tmp_path):
    from mvclip_utils.core.schema import ConfigError

    cfg = make_config({"render": {"elevations_deg": [30], "ood_views": []}})
    layout = RunLayout(tmp_path)
    layout.staging.parent.mkdir(parents=True)
    layout.staging.write_text("")  # the workers cannot make their staging folders: an I/O error on every object
    with pytest.raises(ConfigError) as info:
        build_dataset(cfg, layout, progress=False)
    assert "objects rendered in 0 categories" in str(info.value) and "retried when you rerun" in str(info.value)
    objects = pd.read_parquet(layout.objects_table)
    assert (objects.status == "failed").all() and objects.reason.str.contains("retried on the next run").all()
    layout.staging.unlink()  # the cause is fixed: the rerun renders every object again
    objects, summary = build_dataset(cfg, layout, progress=False)
    assert summary.rendered == len(objects) == 6 and (objects.status == "ok").all()



def test_corruptions_are_deterministic_and_grow_with_severity():
    rng = np.random.default_rng(0)
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    image[8:24, 8:24] = 30  # some structure for blur and JPEG to destroy
    for kind in CORRUPTIONS:
        errors = []
        for severity in SEVERITIES:
            a, b = corrupt(image, kind, severity, seed=[1, 2]), corrupt(image, kind, severity, seed=[1, 2])
            assert a.dtype == np.uint8 and a.shape == image.shape
            np.testing.assert_array_equal(a, b)
            errors.append(float(((a.astype(float) - image) ** 2).mean()))
        assert 0 < errors[0] < errors[1] < errors[2], (kind, errors)
    noise = [corrupt(image, "gaussian_noise", 2, seed=s) for s in (1, 2)]
    assert not np.array_equal(*noise)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(image, "fog", 1, 0)
    with pytest.raises(ValueError, match="severity 4"):
        corrupt(image, "jpeg", 4, 0)


def test_object_view_batches_draw_p_objects_times_k_distinct_views():
    sampler = ObjectViewBatches(n_objects=10, n_views=6, objects_per_batch=4, views_per_object=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 * 2  # 6 // 3 rounds x 10 // 4 batches
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 2 * 2 * 12  # no image twice in an epoch
    full = ObjectViewBatches(n_objects=8, n_views=6, objects_per_batch=4, views_per_object=3, seed=0)
    assert sorted(i for b in full for i in b) == list(range(48))  # every view of every object once
    for batch in batches:
        objects, views = np.divmod(np.array(batch), 6)
        assert len(set(objects)) == 4 and len(batch) == 12
        for o in set(objects):
            assert len(set(views[objects == o])) == 3
    assert list(sampler) == batches  # seeded
    sampler.set_epoch(1)
    assert list(sampler) != batches
    with pytest.raises(ValueError, match="7 views per object"):
        ObjectViewBatches(10, 6, 4, 7)


@pytest.mark.slow
def test_view_images_stream_renders_with_the_backbone_transform(tmp_path):
    from mvclip_utils.data.dataset import load_image
    from mvclip_utils.models.backbone import InputTransform, create_tiny_model

    layout = RunLayout(tmp_path)
    build_dataset(make_config(), layout, progress=False)
    model, _ = create_tiny_model()
    transform = InputTransform.for_model(model)
    data = ViewImages(layout, ["test"], ["el+30_az000", "el+10_az090"], transform)
    assert data.n_objects == 3 and len(data) == 6 and data.category_names == ["bottle", "car", "mug"]
    item = data[data.index(1, 1)]
    assert item.image.shape == (3, 64, 64) and (item.object_index, item.view_index) == (1, 1)
    expected = transform(torch.from_numpy(load_image(layout, data.objects.object_id[1], "el+10_az090")))
    torch.testing.assert_close(item.image, expected)
    assert data.category_names[item.category] == data.objects.category[1] and item.caption == data.objects.caption[1]
    batch = collate_views([data[i] for i in range(4)])
    assert batch.image.shape == (4, 3, 64, 64) and batch.object_index.tolist() == [0, 0, 1, 1]
    corrupted = ViewImages(layout, ["test"], ["el+30_az000"], None, perturb=Corruption("gaussian_noise", 3, seed=5))
    clean = ViewImages(layout, ["test"], ["el+30_az000"])
    assert not torch.equal(corrupted[0].image, clean[0].image)
    assert torch.equal(corrupted[0].image, corrupted[0].image)  # the same every time it is read
    loader = torch.utils.data.DataLoader(data, batch_sampler=ObjectViewBatches(3, 2, 2, 2), collate_fn=collate_views,
                                         num_workers=1)
    first = next(iter(loader))
    assert first.image.shape == (4, 3, 64, 64)
    with pytest.raises(ValueError, match="no rendered objects in split"):
        ViewImages(layout, ["train"])


def test_the_global_part_class_map_round_trips_category_and_part():
    import pandas as pd

    from mvclip_utils.data.dataset import PartClasses

    objects = pd.DataFrame({"category": ["mug", "car", "mug"],
                            "part_names": [["body", "handle"], ["body", "wheel", "roof"], ["body", "handle"]]})
    classes = PartClasses.from_objects(objects)
    assert classes.category_names == ["car", "mug"] and classes.n_classes == 1 + 3 + 2
    assert classes.table.class_id.tolist() == [1, 2, 3, 4, 5]
    assert classes.table.part_name.tolist() == ["body", "wheel", "roof", "body", "handle"]
    masks = np.array([[[0, 1], [2, 3]], [[0, 1], [2, 2]]])  # a car, then a mug
    ids = classes.to_global(masks, np.array([0, 1]))
    assert ids.tolist() == [[[0, 1], [2, 3]], [[0, 4], [5, 5]]]
    category, part = classes.to_part(ids)
    assert np.array_equal(np.where(masks > 0, part, 0), masks)  # parts back
    assert np.array_equal(category[masks > 0], np.array([0, 0, 0, 1, 1, 1]))  # categories back
    assert category[0, 0, 0] == -1 and part[0, 0, 0] == 0  # background
