"""Procedural objects: deterministic, varied, captioned, with shared colours; per-view captions."""

import re
from collections import Counter

import numpy as np
import pytest

from mvclip_utils.core.cameras import views_table
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import PROCEDURAL_CATEGORIES, RenderConfig, ViewSpec
from mvclip_utils.data.dataset import load_mask
from mvclip_utils.data.objects import (
    CATEGORIES,
    PALETTE,
    ObjectSpec,
    Part,
    make_object,
    make_objects,
    part_bounds,
    view_caption,
)
from mvclip_utils.data.render_jobs import render_jobs
from mvclip_utils.data.render_scene import MAX_LABELS, RenderJob

FIRST_TWELVE = ("mug", "chair", "car", "house", "lamp", "bottle", "teapot", "sofa", "television", "bookshelf",
                "boat", "camera")
NEW_CATEGORIES = [name for name in CATEGORIES if name not in FIRST_TWELVE]


def test_thirty_categories_each_with_a_view_dependent_part_and_every_part_used():
    assert len(CATEGORIES) >= 30
    assert tuple(CATEGORIES)[:12] == FIRST_TWELVE  # existing runs depend on the first twelve
    assert tuple(CATEGORIES) == PROCEDURAL_CATEGORIES
    for cat in CATEGORIES.values():
        assert re.fullmatch("[a-z]+", cat.name), cat.name  # a plain noun for "a photo of a {name}"
        assert cat.view_dependent_part in cat.part_names
        assert 2 <= len(cat.part_names) <= min(6, MAX_LABELS), cat.name
        used = set()
        for i in range(30):
            obj = make_object(cat.name, i, seed=0)
            labels = {p.label for p in obj.parts}
            assert cat.part_names.index(cat.view_dependent_part) + 1 in labels, obj.object_id
            used |= labels
        assert used == set(range(1, len(cat.part_names) + 1)), (cat.name, cat.part_names, used)


def test_same_seed_same_object_other_seed_other_object():
    assert make_object("chair", 3, seed=7).to_json() == make_object("chair", 3, seed=7).to_json()
    assert make_object("chair", 3, seed=7).to_json() != make_object("chair", 3, seed=8).to_json()
    assert make_object("chair", 3, seed=7).to_json() != make_object("chair", 4, seed=7).to_json()


def test_json_round_trip():
    obj = make_object("car", 1, seed=0)
    assert ObjectSpec.from_json(obj.to_json()) == obj


def test_part_labels_are_valid():
    for obj in make_objects(None, 5, seed=1):
        for part in obj.parts:
            assert 1 <= part.label <= len(obj.part_names)
            assert part.color in PALETTE
            assert part.primitive in {"box", "cylinder", "sphere", "torus"}
            assert all(s > 0 for s in part.scale)


def test_colours_are_shared_across_categories():
    # No category is recognisable by colour alone: the main colours of every category
    # cover most of the palette, and no colour dominates a category.
    def main_colour(obj):  # the colour of the most volume
        volume = Counter()
        for p in obj.parts:
            volume[p.color] += float(np.prod(p.scale))
        return volume.most_common(1)[0][0]

    for name in CATEGORIES:
        colours = Counter(main_colour(make_object(name, i, seed=0)) for i in range(60))
        assert len(colours) >= 8, (name, colours)
        assert colours.most_common(1)[0][1] <= 20, (name, colours)


def test_proportions_vary_within_a_category():
    def aspect(obj):  # bounding-box proportions from the parts' centres and half-sizes
        lo = np.min([np.subtract(p.location, p.scale) for p in obj.parts], axis=0)
        hi = np.max([np.add(p.location, p.scale) for p in obj.parts], axis=0)
        return (hi - lo) / (hi - lo).max()

    for name in CATEGORIES:
        aspects = np.array([aspect(make_object(name, i, 0)) for i in range(20)])
        assert aspects.std(axis=0).max() > 0.05, name


def test_captions_follow_the_parameters():
    for obj in make_objects(None, 8, seed=0):
        assert obj.category in obj.caption.replace("desk lamp", "lamp")
        assert obj.caption.startswith(("a ", "an "))
        assert "  " not in obj.caption
        assert any(c in obj.caption.split() for c in PALETTE)
    mugs = [make_object("mug", i, 0) for i in range(30)]
    for m in mugs:
        assert ("big" in m.caption) == m.attributes["big_handle"]
    chairs = [make_object("chair", i, 0) for i in range(30)]
    for c in chairs:
        assert ("armrests" in c.caption) == c.attributes["armrests"]
        assert any(p.label == 4 for p in c.parts) == c.attributes["armrests"]


HOURS = ("twelve", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven")
# What each new category's caption must say given its sampled attributes.
CAPTION_RULES = {
    "table": lambda c, a: ("oval" in c) == a["oval"],
    "bed": lambda c, a: ("footboard" in c) == a["footboard"] and ("two pillows" in c) == (a["pillows"] == 2),
    "bicycle": lambda c, a: ("basket" in c) == a["basket"],
    "airplane": lambda c, a: ("propeller" in c) == a["propeller"] and ("jet" in c) != a["propeller"],
    "guitar": lambda c, a: ("pickguard" in c) == a["pickguard"],
    "clock": lambda c, a: ("alarm" in c) == a["alarm"] and f"showing {HOURS[a['hour'] % 12]} o'clock" in c,
    "helicopter": lambda c, a: ("skids" in c) == a["skids"] and {2: "two", 3: "three", 4: "four"}[a["blades"]] in c,
    "rocket": lambda c, a: ("three" in c) == (a["fins"] == 3) and ("four" in c) == (a["fins"] == 4),
    "tree": lambda c, a: ("pine" in c) == a["pine"] and ("fruit" in c) == a["fruit"],
    "umbrella": lambda c, a: ("closed" in c) != a["open"],
    "toaster": lambda c, a: ("four-slice" in c) == a["four_slice"] and c.endswith("with toast") == a["toast"],
    "robot": lambda c, a: ("antenna" in c) == a["antenna"] and ("round" in c) == a["round_head"],
    "backpack": lambda c, a: ("flap" in c) == a["flap"],
    "truck": lambda c, a: ("cargo box" in c) == a["closed"] and ("open bed" in c) != a["closed"],
    "tent": lambda c, a: ("open door" in c) == a["door_open"] and ("flag" in c) == a["flag"],
    "snowman": lambda c, a: ("hat" in c) == a["hat"],
    "windmill": lambda c, a: ("balcony" in c) == a["balcony"],
    "piano": lambda c, a: ("sheet music" in c) == a["sheet_music"],
}


@pytest.mark.parametrize("name", NEW_CATEGORIES)
def test_new_categories_vary_and_their_captions_follow_the_parameters(name):
    objects = [make_object(name, i, 0) for i in range(40)]
    attributes = {key: [o.attributes[key] for o in objects] for key in objects[0].attributes}
    # At least two continuous proportions and one optional part or variant, each really varying.
    proportions = [k for k, v in attributes.items() if isinstance(v[0], float) and np.std(v) > 0]
    variants = [k for k, v in attributes.items() if isinstance(v[0], (bool, int)) and len(set(v)) > 1]
    assert len(proportions) >= 2 and len(variants) >= 1, (name, attributes.keys())
    for o in objects:
        assert CAPTION_RULES[name](o.caption, o.attributes), (o.object_id, o.caption, o.attributes)
        assert " a a" not in o.caption and not re.search(r"\ba [aeiou]", o.caption), o.caption
    assert len({o.caption for o in objects}) >= 20, name  # the captions tell the objects apart


def test_parts_form_one_object_of_sane_size():
    # Every part's box touches another's, the parts chain into one object, it fits in about a
    # 2-unit box, and no part is degenerate: the renderer would drop or separate it otherwise.
    for obj in make_objects(None, 20, seed=0):
        boxes = [part_bounds(p) for p in obj.parts]
        assert all(min(p.scale) > 0.004 for p in obj.parts), obj.object_id
        group = {0}
        while True:
            grown = {j for j, (lo, hi) in enumerate(boxes) for i in group
                     if np.all(lo <= boxes[i][1] + 0.005) and np.all(boxes[i][0] <= hi + 0.005)}
            if grown == group:
                break
            group = grown
        assert group == set(range(len(boxes))), (obj.object_id, sorted(set(range(len(boxes))) - group))
        size = np.max([hi for _, hi in boxes], axis=0) - np.min([lo for lo, _ in boxes], axis=0)
        assert size.max() < 2.1 and size.min() > 0.1, (obj.object_id, size)


def test_part_bounds_follow_the_rotation():
    lying = Part("cylinder", 1, (1.0, 0.0, 0.5), (0.1, 0.1, 0.4), rotation=(0.0, np.pi / 2, 0.0))
    lo, hi = part_bounds(lying)
    np.testing.assert_allclose(lo, [0.6, -0.1, 0.4], atol=1e-9)
    np.testing.assert_allclose(hi, [1.4, 0.1, 0.6], atol=1e-9)


def test_view_caption_says_the_viewpoint_and_where_the_part_is():
    mug = make_object("mug", 0, seed=0)  # its handle is on the +X side
    assert view_caption(mug, 0, 10) == f"{mug.caption}, seen from the front, its handle on the right"
    assert view_caption(mug, 180, 10) == f"{mug.caption}, seen from the back, its handle on the left"
    # Azimuth 90 puts the camera on +X (core.cameras), the handle's side.
    assert view_caption(mug, 90, 10) == f"{mug.caption}, seen from the right side, its handle facing the camera"
    assert view_caption(mug, 270, 10) == f"{mug.caption}, seen from the left side, its handle behind it"
    assert view_caption(mug, 30, 80) == f"{mug.caption}, seen from above, its handle on the right"
    assert "seen from the front right," in view_caption(mug, 45, 0)
    assert "seen from the back left," in view_caption(mug, 225, 30)
    assert "seen from below" in view_caption(mug, 0, -50)
    # The same object from the front and the back; a car's headlights face the front camera.
    car = make_object("car", 3, seed=0)
    assert view_caption(car, 0, 20).endswith("seen from the front, its headlights facing the camera")
    assert view_caption(car, 180, 20).endswith("seen from the back, its headlights behind it")
    assert view_caption(car, 0, 80).endswith("seen from above, its headlights on the near side")
    assert view_caption(car, 180, 80).endswith("seen from above, its headlights on the far side")
    assert view_caption(car, 200, 20) == view_caption(car, 200, 20)  # deterministic


def test_view_caption_follows_the_part_not_the_category():
    # Move a mug's handle to the -X side: the words follow the geometry.
    mug = make_object("mug", 0, seed=0)
    mirrored = ObjectSpec(mug.object_id, mug.category, mug.caption, mug.part_names,
                          tuple(Part(p.primitive, p.label, (-p.location[0], *p.location[1:]), p.scale, p.rotation,
                                     p.color, p.finish, p.segments, p.top_ratio, p.minor_ratio) for p in mug.parts))
    assert view_caption(mirrored, 0, 10).endswith("its handle on the left")
    assert view_caption(mirrored, 270, 10).endswith("its handle facing the camera")


def test_every_category_faces_front_or_back_or_a_side_consistently():
    # Each category's view-dependent part sits on one side: over 20 objects the words for the four
    # cardinal views agree, and the four views give four different words.
    for name in CATEGORIES:
        words = {tuple(view_caption(make_object(name, i, 0), az, 10).rsplit(", its ", 1)[1]
                       for az in (0, 90, 180, 270)) for i in range(20)}
        assert len(words) == 1, (name, words)
        assert len(set(next(iter(words)))) == 4, (name, words)


@pytest.mark.slow
def test_one_object_of_every_category_renders_with_every_part_visible(tmp_path):
    render = RenderConfig(engine="workbench", resolution=32, azimuths=8, elevations_deg=[50.0, 15.0],
                          ood_views=[ViewSpec("top", 0.0, 90.0, 1.5), ViewSpec("below", 30.0, -50.0, 1.5)],
                          workers=2)
    views = views_table(render)
    records = [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views.itertuples()]
    specs = [make_object(name, 0, seed=0) for name in CATEGORIES]
    jobs = [RenderJob(s.object_id, spec_json=s.to_json(), n_labels=len(s.part_names)) for s in specs]
    layout = RunLayout(tmp_path)
    summary = render_jobs(jobs, layout, render, records, seed=0, progress=False)
    assert summary.rendered == len(specs) and summary.failed == 0
    for spec in specs:
        masks = {v: load_mask(layout, spec.object_id, v) for v in views.view_id}
        seen = set().union(*(np.unique(m).tolist() for m in masks.values()))
        missing = [spec.part_names[k - 1] for k in {p.label for p in spec.parts} - seen]
        assert not missing, (spec.object_id, "parts never visible", missing)
        # The views whose caption says the part faces the camera do show it: not each of them (a table's
        # top hides its drawer from above, an umbrella's canopy its handle), but one at least.
        part = spec.part_names.index(CATEGORIES[spec.category].view_dependent_part) + 1
        facing = [v.view_id for v in views.itertuples()
                  if view_caption(spec, v.azimuth_deg, v.elevation_deg).endswith("facing the camera")]
        assert facing and any((masks[v] == part).any() for v in facing), (spec.object_id, facing)


def test_unknown_category_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown category 'spaceship'; expected one of mug"):
        make_object("spaceship", 0, 0)
