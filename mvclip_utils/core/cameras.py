"""Camera geometry shared by the renderer and the analysis code (numpy only, no bpy).

Object frame: +Z up, the object's front faces -Y. Azimuth 0 puts the camera in front
of the object (on -Y), azimuth 90 on its right (+X); elevation 90 looks straight down.
Cameras follow Blender's convention: they look along local -Z with local +Y up.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .schema import RenderConfig


def camera_position(azimuth_deg: float, elevation_deg: float, distance: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return distance * np.array([math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az), math.sin(el)])


def angle_from_view(views: pd.DataFrame, reference: str) -> np.ndarray:
    """[V] the angle in degrees between each view's direction from the object's centre and the
    `reference` view's (the viewpoint change, whatever the distance)."""
    directions = np.stack([camera_position(a, e, 1.0) for a, e in zip(views.azimuth_deg, views.elevation_deg)])
    ref = directions[views.view_id.to_numpy() == reference][0]
    return np.degrees(np.arccos(np.clip(directions @ ref, -1.0, 1.0)))


def camera_to_world(azimuth_deg: float, elevation_deg: float, distance: float) -> np.ndarray:
    """4x4 camera-to-world matrix of a camera on the orbit, looking at the origin.

    Straight above or below, "up" in the image is the direction away from the camera's
    azimuth (for azimuth 0: the object's back, +Y), so the roll is stable.
    """
    position = camera_position(azimuth_deg, elevation_deg, distance)
    forward = -position / np.linalg.norm(position)
    up = np.array([0.0, 0.0, 1.0])
    if abs(forward @ up) > 0.999:
        az = math.radians(azimuth_deg)
        up = np.array([-math.sin(az), math.cos(az), 0.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, -forward, position
    return pose


def views_table(render: RenderConfig) -> pd.DataFrame:
    """The grid views (rows = elevations, in config order; then azimuths) followed by the ood views."""
    rows = []
    for el in render.elevations_deg:
        for i in range(render.azimuths):
            az = 360.0 * i / render.azimuths
            rows.append((f"el{el:+03.0f}_az{az:03.0f}", az, el, render.distance, "grid"))
    for v in render.ood_views:
        rows.append((f"ood_{v.name}", v.azimuth_deg, v.elevation_deg, v.distance, "ood"))
    df = pd.DataFrame(rows, columns=["view_id", "azimuth_deg", "elevation_deg", "distance", "kind"])
    if df.view_id.duplicated().any():
        raise ValueError(f"duplicate view ids {df.view_id[df.view_id.duplicated()].tolist()}: "
                         "render.azimuths and render.elevations_deg give the same view twice")
    df["fov_deg"] = render.fov_deg
    df["resolution"] = render.resolution
    df["camera_to_world"] = [camera_to_world(r.azimuth_deg, r.elevation_deg, r.distance).ravel().tolist()
                             for r in df.itertuples()]
    return df


def project_points(camera_to_world_matrix: np.ndarray, fov_deg: float, resolution: int,
                   points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (column, row) of world points [N, 3] in a square image."""
    pose = np.asarray(camera_to_world_matrix, dtype=float).reshape(4, 4)
    local = (np.asarray(points, dtype=float) - pose[:3, 3]) @ pose[:3, :3]
    focal = 1.0 / math.tan(math.radians(fov_deg) / 2)
    x_ndc = focal * local[:, 0] / -local[:, 2]
    y_ndc = focal * local[:, 1] / -local[:, 2]
    return np.stack([(x_ndc + 1) / 2 * resolution, (1 - y_ndc) / 2 * resolution], axis=1)


def canonical_view_id(views: pd.DataFrame, configured: str = "", azimuth_deg: float = 30.0) -> str:
    """The canonical ("clean") view: `configured` (backbone.pretrain.canonical_view) when set,
    else a front three-quarter view, the grid view at the middle elevation (sorted, whatever
    the config's order) nearest `azimuth_deg`. The tiny backbone is pretrained on it, and every
    metric's "canonical" column is measured on it."""
    if configured:
        if configured not in set(views.view_id):
            raise ValueError(f"backbone.pretrain.canonical_view: {configured!r} is not a view of this dataset; "
                             f"expected one of {', '.join(views.view_id[:6])}, ...")
        return configured
    grid = views[views.kind == "grid"]
    elevations = sorted(set(grid.elevation_deg))
    ring = grid[grid.elevation_deg == elevations[len(elevations) // 2]]
    gap = (ring.azimuth_deg - azimuth_deg + 180) % 360 - 180
    return ring.view_id.iloc[int(np.argmin(np.abs(gap.to_numpy())))]


def example_views(views: pd.DataFrame, canonical: str) -> list[int]:
    """Row positions of the views a report shows for an object: the canonical view, the grid view
    opposite it in azimuth, and the first ood view (when there is one)."""
    views = views.reset_index(drop=True)
    c = views.view_id.tolist().index(canonical)
    grid = views[views.kind == "grid"]
    azimuth = ((grid.azimuth_deg - views.azimuth_deg[c] + 180) % 360 - 180).abs()
    ood = views.index[views.kind != "grid"]
    return [c, int(azimuth.idxmax())] + ([int(ood[0])] if len(ood) else [])
