"""Camera geometry: poses, the views table and projection agree with the conventions."""

import numpy as np
import pytest
from helpers import make_config

from mvclip_utils.core.cameras import camera_position, camera_to_world, canonical_view_id, project_points, views_table
from mvclip_utils.core.schema import RenderConfig


@pytest.mark.parametrize("az,el", [(0, 0), (30, 40), (200, 70), (90, -50), (0, 90), (123, -90)])
def test_pose_is_orthonormal_and_looks_at_the_origin(az, el):
    pose = camera_to_world(az, el, 2.0)
    rot = pose[:3, :3]
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(pose[:3, 3], camera_position(az, el, 2.0))
    np.testing.assert_allclose(project_points(pose, 50, 64, np.zeros((1, 3))), [[32, 32]], atol=1e-9)


def test_azimuth_zero_is_the_front_and_ninety_the_right():
    np.testing.assert_allclose(camera_position(0, 0, 1), [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(camera_position(90, 0, 1), [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(camera_position(0, 90, 1), [0, 0, 1], atol=1e-12)
    # From the front, +X is on the image's right and +Z at its top.
    px = project_points(camera_to_world(0, 0, 1.5), 50, 64, np.array([[0.2, 0, 0], [0, 0, 0.2]]))
    assert px[0, 0] > 32 and px[0, 1] == pytest.approx(32)
    assert px[1, 1] < 32 and px[1, 0] == pytest.approx(32)


def test_straight_down_has_a_stable_roll():
    # Looking down from azimuth 0, the object's back (+Y) is at the top of the image and
    # +X on the right, as if the front camera had tilted up over the object.
    pose = camera_to_world(0, 90, 1.5)
    px = project_points(pose, 50, 64, np.array([[0, 0.2, 0], [0.2, 0, 0]]))
    assert px[0, 1] < 32 and px[0, 0] == pytest.approx(32)
    assert px[1, 0] > 32
    np.testing.assert_allclose(camera_to_world(0, 90, 1.5), camera_to_world(0, 89.99999, 1.5), atol=1e-4)


def test_views_table_grid_then_ood():
    cfg = make_config().render
    views = views_table(cfg)
    assert len(views) == cfg.azimuths * len(cfg.elevations_deg) + len(cfg.ood_views)
    assert views.view_id.is_unique
    grid = views[views.kind == "grid"]
    assert grid.elevation_deg.tolist() == [30.0] * 4 + [10.0] * 4
    assert grid.azimuth_deg.tolist()[:4] == [0, 90, 180, 270]
    assert views[views.kind == "ood"].view_id.tolist() == ["ood_top_down", "ood_below"]
    pose = np.array(views.camera_to_world.iloc[5]).reshape(4, 4)
    np.testing.assert_allclose(pose, camera_to_world(90, 10, 1.5))


def test_canonical_view_is_a_front_three_quarter_view():
    assert canonical_view_id(views_table(RenderConfig())) == "el+40_az030"
    # The middle of the SORTED elevations (config order [30, 10]), at the azimuth nearest 30 of 4.
    assert canonical_view_id(views_table(make_config().render)) == "el+30_az000"
    reordered = make_config({"render": {"elevations_deg": [10, 70, 40]}}).render
    assert canonical_view_id(views_table(reordered)) == "el+40_az000"
    # A configured canonical view wins (backbone.pretrain.canonical_view), and must exist.
    assert canonical_view_id(views_table(reordered), "el+70_az180") == "el+70_az180"
    with pytest.raises(ValueError, match="backbone.pretrain.canonical_view: 'nope' is not a view"):
        canonical_view_id(views_table(reordered), "nope")


def test_default_views_are_the_seed_grid_plus_ood():
    views = views_table(RenderConfig())
    assert (views.kind == "grid").sum() == 36 and (views.kind == "ood").sum() >= 4
    assert sorted(views[views.kind == "grid"].elevation_deg.unique()) == [10, 40, 70]


def test_example_views_are_the_canonical_the_opposite_grid_view_and_an_ood_view():
    import pandas as pd

    from mvclip_utils.core.cameras import example_views

    views = pd.DataFrame({"view_id": ["a0", "a90", "a180", "a270", "top"], "azimuth_deg": [0, 90, 180, 270, 0],
                          "kind": ["grid"] * 4 + ["ood"]})
    assert example_views(views, "a90") == [1, 3, 4]
    assert example_views(views[views.kind == "grid"], "a0") == [0, 2]  # no ood view: two
