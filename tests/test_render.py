"""Real bpy renders of a few objects: files, ids, masks, camera angles, reruns."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import make_config
from test_render_incremental import render_run

from mvclip_utils.core.cameras import project_points
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.data.dataset import build_dataset, load_image, load_mask
from mvclip_utils.data.objects import make_object
from mvclip_utils.data.render_scene import MAX_LABELS, _srgb_bytes, decode_label_image, label_colour

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cfg = make_config()
    layout = RunLayout(tmp_path_factory.mktemp("run"))
    objects, summary = build_dataset(cfg, layout, progress=False)
    return cfg, layout, objects, summary


def test_every_object_and_view_has_an_image_and_a_mask(rendered):
    cfg, layout, objects, summary = rendered
    views = pd.read_parquet(layout.views_table)
    assert summary.rendered == len(objects) == 6 and summary.failed == 0
    assert (objects.status == "ok").all()
    assert set(objects.columns) >= {"object_id", "source", "category", "caption", "split", "status"}
    for oid in objects.object_id:
        assert sorted(p.stem for p in layout.image_dir(oid).iterdir()) == sorted(views.view_id)
        assert sorted(p.stem for p in layout.mask_dir(oid).iterdir()) == sorted(views.view_id)
        image, mask = load_image(layout, oid, views.view_id[0]), load_mask(layout, oid, views.view_id[0])
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert mask.shape == (32, 32) and mask.dtype == np.uint8
    assert not any(layout.staging.glob("*")), "staging must be empty after a clean run"


def test_background_is_white_and_matches_mask_zero(rendered):
    _, layout, objects, _ = rendered
    image, mask = load_image(layout, "car_0000", "el+30_az090"), load_mask(layout, "car_0000", "el+30_az090")
    # Anti-aliasing softens the RGB edge by a pixel; beyond that the background is pure white.
    fg = np.pad(mask > 0, 1)
    near_object = np.zeros_like(mask, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            near_object |= fg[dy:dy + 32, dx:dx + 32]
    assert (image[~near_object] == 255).all()
    assert (image[mask > 0] < 250).any(axis=-1).mean() > 0.9
    assert (mask > 0).mean() > 0.05


def test_mask_labels_are_the_category_parts(rendered):
    _, layout, objects, _ = rendered
    views = pd.read_parquet(layout.views_table)
    for row in objects.itertuples():
        labels = set()
        for v in views.view_id:
            labels |= set(np.unique(load_mask(layout, row.object_id, v)).tolist())
        spec_labels = {p.label for p in make_object(row.category, int(row.object_id[-4:]), 0).parts}
        assert labels == {0} | spec_labels, row.object_id


def test_view_dependent_part_follows_the_camera(rendered):
    # A bottle's label sits on its front (-Y): seen from azimuth 0, hidden from azimuth 180.
    _, layout, _, _ = rendered
    label = 4  # bottle parts: body, neck, cap, label
    front = load_mask(layout, "bottle_0000", "el+10_az000")
    back = load_mask(layout, "bottle_0000", "el+10_az180")
    assert (front == label).sum() > 10
    assert (back == label).sum() == 0


def test_camera_angles_match_the_views_table(rendered):
    # Project the mug handle's 3D centre (after the renderer's normalisation) with the
    # camera stored in views.parquet: it lands on the handle's pixels in the mask.
    _, layout, _, _ = rendered
    views = pd.read_parquet(layout.views_table).set_index("view_id")
    spec = make_object("mug", 0, 0)
    handle = next(p for p in spec.parts if p.label == 2)
    norm = json.loads(layout.status_path("mug_0000").read_text())["normalisation"]
    centre = (np.array(handle.location) - norm["centre"]) * norm["scale"]
    for view_id in ["el+30_az000", "el+10_az090", "el+30_az270", "ood_top_down"]:
        v = views.loc[view_id]
        col, row = project_points(v.camera_to_world, v.fov_deg, 32, centre[None])[0]
        ys, xs = np.nonzero(load_mask(layout, "mug_0000", view_id) == 2)
        if view_id == "el+30_az270":  # from the left the body hides the handle's centre
            continue
        assert len(xs) > 0, view_id
        assert abs(xs.mean() + 0.5 - col) < 2.5 and abs(ys.mean() + 0.5 - row) < 2.5, (view_id, col, row)
    assert views.loc["el+10_az090", "azimuth_deg"] == 90 and views.loc["el+10_az090", "elevation_deg"] == 10


def test_rerun_skips_finished_objects(rendered):
    cfg, layout, objects, _ = rendered
    before = {p.name: p.stat().st_mtime_ns for p in layout.render_status.iterdir()}
    again, summary = build_dataset(cfg, layout, progress=False)
    assert summary.rendered == 0 and summary.skipped == len(objects)
    assert {p.name: p.stat().st_mtime_ns for p in layout.render_status.iterdir()} == before
    pd.testing.assert_frame_equal(again.drop(columns="render_seconds"), objects.drop(columns="render_seconds"))


def test_random_backgrounds_and_cycles(tmp_path):
    layout = RunLayout(tmp_path)
    cfg_overrides = {"engine": "cycles", "cycles_samples": 4, "background": "random", "light_jitter": 1.0,
                     "resolution": 24}
    summary = render_run(make_config({"render": cfg_overrides}), layout, ["car_0000"])
    assert summary.rendered == 1, json.loads(layout.status_path("car_0000").read_text())["reason"]
    corners = [tuple(load_image(layout, "car_0000", v)[0, 0]) for v in ["el+30_az000", "el+30_az090"]]
    assert corners[0] != corners[1] and corners[0] != (255, 255, 255)
    # A view's background is drawn for that view alone: the same without the other views.
    alone = RunLayout(tmp_path / "alone")
    render_run(make_config({"render": {**cfg_overrides, "azimuths": 2, "elevations_deg": [30], "ood_views": []}}),
               alone, ["car_0000"])
    assert tuple(load_image(alone, "car_0000", "el+30_az000")[0, 0]) == corners[0]
    mask = load_mask(layout, "car_0000", "el+30_az090")
    assert {0, 1, 2, 3} <= set(np.unique(mask)) <= {0, 1, 2, 3, 4}  # body, cabin, wheels (+ headlights)


def test_label_colours_decode_exactly():
    labels = np.arange(MAX_LABELS + 1, dtype=np.uint8).reshape(1, -1).repeat(3, 0)
    colours = np.array([(0, 0, 0)] + [label_colour(k) for k in range(1, MAX_LABELS + 1)])
    rgba = np.concatenate([_srgb_bytes(colours)[labels], np.where(labels > 0, 255, 0)[..., None]], -1)
    np.testing.assert_array_equal(decode_label_image(rgba.astype(np.uint8), MAX_LABELS), labels)
    with pytest.raises(ValueError, match="outside"):
        label_colour(MAX_LABELS + 1)
