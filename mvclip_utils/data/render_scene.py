"""The Blender scene: everything that touches bpy, run only inside render worker processes.

`SceneRenderer` builds one object (procedural spec or an imported 3D file), places the cameras of the
requested views, renders RGB and the part-label mask pass, and resets the scene between objects. The
job pool, status files and retries of the parent process are in `render_jobs`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.schema import RenderConfig
from .objects import FINISHES, PALETTE, ObjectSpec

# Part label k is drawn in colour LABEL_LEVELS-coded RGB so that flat, unantialiased
# Workbench renders decode back to exact labels (0 = background comes from alpha).
_LEVELS = (0.0, 1.0, 0.5)


MAX_LABELS = len(_LEVELS) ** 3 - 1


def label_colour(label: int) -> tuple[float, float, float]:
    """Linear RGB colour that draws part `label` (1 .. MAX_LABELS) in the mask pass."""
    if not 1 <= label <= MAX_LABELS:
        raise ValueError(f"part label {label} outside 1..{MAX_LABELS}")
    digits = (label % 3, (label // 3) % 3, (label // 9) % 3)
    return tuple(_LEVELS[d] for d in digits)


def _srgb_bytes(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(srgb * 255)


def decode_label_image(rgba: np.ndarray, n_labels: int) -> np.ndarray:
    """uint8 labels [H, W] from a mask-pass render: nearest label colour where alpha > 0.5."""
    palette = _srgb_bytes(np.array([label_colour(k) for k in range(1, n_labels + 1)]))
    dist = ((rgba[..., None, :3].astype(np.float32) - palette[None, None]) ** 2).sum(-1)
    labels = dist.argmin(-1).astype(np.uint8) + 1
    labels[rgba[..., 3] < 128] = 0
    return labels


@dataclass(frozen=True)
class RenderJob:
    """One object to render: a procedural spec (JSON) or a 3D file bpy can import.

    `views` maps the view ids to render to their fingerprints; `keep` holds the object's
    earlier views that are still valid, merged with them into its status once rendered.
    """

    object_id: str
    spec_json: str | None = None
    asset_path: str | None = None
    n_labels: int = 1
    fingerprint: str = ""
    views: dict[str, str] = field(default_factory=dict)
    keep: dict[str, str] = field(default_factory=dict)


class SceneRenderer:
    """Everything that touches bpy; lives in a worker process."""

    def __init__(self, cfg: RenderConfig, views: list[dict], seed: int):
        import bpy  # noqa: F401  (imported here: worker processes only)

        self.cfg, self.views, self.seed = cfg, views, seed

    # -- scene construction
    def reset(self) -> None:
        import bpy  # late: bpy is loaded only in render workers

        bpy.ops.wm.read_factory_settings(use_empty=True)

    def build_procedural(self, spec_json: str) -> list:
        import bmesh  # late: bpy is loaded only in render workers
        import bpy  # late: bpy is loaded only in render workers


        spec = ObjectSpec.from_json(spec_json)
        materials: dict[tuple[str, str], object] = {}
        objects = []
        for i, part in enumerate(spec.parts):
            bm = bmesh.new()
            if part.primitive == "box":
                bmesh.ops.create_cube(bm, size=2.0)
            elif part.primitive == "cylinder":
                bmesh.ops.create_cone(bm, cap_ends=True, segments=part.segments, radius1=1.0,
                                      radius2=part.top_ratio, depth=2.0)
            elif part.primitive == "sphere":
                bmesh.ops.create_uvsphere(bm, u_segments=part.segments, v_segments=max(part.segments // 2, 4),
                                          radius=1.0)
            elif part.primitive == "torus":
                _torus(bm, part.minor_ratio, part.segments, max(part.segments // 2, 6))
            else:
                raise ValueError(f"unknown primitive {part.primitive!r} in {spec.object_id}")
            mesh = bpy.data.meshes.new(f"{spec.object_id}_{i}")
            bm.to_mesh(mesh)
            bm.free()
            key = (part.color, part.finish)
            if key not in materials:
                materials[key] = _make_material(f"{part.color}_{part.finish}", PALETTE[part.color],
                                                *FINISHES[part.finish])
            mesh.materials.append(materials[key])
            obj = bpy.data.objects.new(f"part{i}_{spec.part_names[part.label - 1]}", mesh)
            obj.location, obj.scale, obj.rotation_euler = part.location, part.scale, part.rotation
            obj["mvclip_label"] = part.label
            bpy.context.scene.collection.objects.link(obj)
            objects.append(obj)
        return objects

    def import_asset(self, path: str) -> list:
        import bpy  # late: bpy is loaded only in render workers

        suffix = Path(path).suffix.lower()
        if not Path(path).is_file():
            raise FileNotFoundError(f"asset file {path} does not exist")
        if suffix in (".glb", ".gltf"):
            result = bpy.ops.import_scene.gltf(filepath=path)
        elif suffix == ".obj":
            result = bpy.ops.wm.obj_import(filepath=path)
        else:
            raise ValueError(f"cannot import {suffix} files ({path}); expected .glb, .gltf or .obj")
        if "FINISHED" not in result:
            raise RuntimeError(f"Blender could not import {path}: {result}")
        meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
        for o in meshes:
            o["mvclip_label"] = 1
        return meshes

    def normalise(self, meshes: list) -> dict:
        """Centre the object and scale its bounding box to unit size (largest side 1)."""
        import bpy  # late: bpy is loaded only in render workers
        from mathutils import Matrix, Vector  # late: bpy is loaded only in render workers

        if not meshes:
            raise ValueError("the asset has no mesh geometry")
        bpy.context.view_layer.update()
        corners = np.array([tuple(o.matrix_world @ Vector(c)) for o in meshes for c in o.bound_box])
        lo, hi = corners.min(0), corners.max(0)
        size = float((hi - lo).max())
        if not np.isfinite(size) or size <= 1e-9:
            raise ValueError(f"degenerate geometry: bounding box {lo.tolist()} .. {hi.tolist()}")
        centre = (lo + hi) / 2
        scale = 1.0 / size
        fix = Matrix.Diagonal((scale, scale, scale, 1.0)) @ Matrix.Translation(Vector(-centre))
        for o in bpy.context.scene.objects:
            if o.parent is None:
                o.matrix_world = fix @ o.matrix_world
        return {"centre": centre.tolist(), "scale": scale}

    def setup_scene(self, rng: np.random.Generator) -> None:
        import bpy  # late: bpy is loaded only in render workers

        scene = bpy.context.scene
        cfg = self.cfg
        cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
        cam.data.angle = math.radians(cfg.fov_deg)
        cam.data.clip_start, cam.data.clip_end = 0.01, 100.0
        scene.collection.objects.link(cam)
        scene.camera = cam
        self.camera = cam
        render = scene.render
        render.resolution_x = render.resolution_y = cfg.resolution
        render.resolution_percentage = 100
        render.film_transparent = True
        render.dither_intensity = 0.0
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        render.image_settings.color_depth = "8"
        render.image_settings.compression = 0  # raw frames are read back at once: skip zlib
        scene.view_settings.view_transform = "Standard"
        light_turn = float(rng.uniform(-math.pi, math.pi) * cfg.light_jitter)
        light_gain = float(np.exp(rng.uniform(-0.5, 0.5) * cfg.light_jitter))
        if cfg.engine == "cycles":
            render.engine = "CYCLES"
            scene.cycles.device = "CPU"
            scene.cycles.samples = cfg.cycles_samples
            scene.cycles.use_denoising = False
            scene.cycles.use_adaptive_sampling = False
            world = bpy.data.worlds.new("world")
            world.use_nodes = True
            world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6 * light_gain
            scene.world = world
            sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", type="SUN"))
            sun.data.energy = 3.0 * light_gain
            sun.rotation_euler = (math.radians(40), 0.0, math.radians(30) + light_turn)
            scene.collection.objects.link(sun)
        else:
            render.engine = "BLENDER_WORKBENCH"
        self._rgb_display(light_turn)

    def _rgb_display(self, light_turn: float = 0.0) -> None:
        import bpy  # late: bpy is loaded only in render workers

        scene = bpy.context.scene
        scene.display.render_aa = "FXAA"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "MATERIAL"
        shading.studiolight_rotate_z = light_turn

    def _mask_display(self) -> None:
        import bpy  # late: bpy is loaded only in render workers

        scene = bpy.context.scene
        scene.render.engine = "BLENDER_WORKBENCH"  # the mask pass is always a flat Workbench render
        scene.display.render_aa = "OFF"
        shading = scene.display.shading
        shading.light = "FLAT"
        shading.color_type = "OBJECT"
        for o in scene.objects:
            if o.type == "MESH":
                o.color = (*label_colour(int(o.get("mvclip_label", 1))), 1.0)

    # -- rendering
    def _render_to(self, path: Path, pose: list[float]) -> None:
        import bpy  # late: bpy is loaded only in render workers
        from mathutils import Matrix  # late: bpy is loaded only in render workers

        self.camera.matrix_world = Matrix(np.asarray(pose).reshape(4, 4).tolist())
        bpy.context.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)

    def render_object(self, job: RenderJob, staging: Path) -> dict:
        """Render the views `job.views` names (in config order) into `staging`."""
        rng = np.random.default_rng([self.seed, _stable_hash(job.object_id)])  # light jitter: per object
        self.reset()
        meshes = self.build_procedural(job.spec_json) if job.spec_json else self.import_asset(job.asset_path)
        norm = self.normalise(meshes)
        self.setup_scene(rng)
        image_dir, mask_dir, raw_dir = staging / "images", staging / "masks", staging / "raw"
        for d in (image_dir, mask_dir, raw_dir):
            d.mkdir(parents=True, exist_ok=True)
        views = [v for v in self.views if v["view_id"] in job.views]
        for view in views:
            bg = (255.0 if self.cfg.background == "white"
                  else background_colour(self.seed, job.object_id, view["view_id"]))
            raw = raw_dir / f"{view['view_id']}.png"
            self._render_to(raw, view["camera_to_world"])
            rgba = np.asarray(Image.open(raw), dtype=np.float32)
            alpha = rgba[..., 3:] / 255.0
            rgb = rgba[..., :3] * alpha + bg * (1 - alpha)
            Image.fromarray(np.round(rgb).astype(np.uint8)).save(image_dir / f"{view['view_id']}.png")
        self._mask_display()
        for view in views:
            raw = raw_dir / f"{view['view_id']}.png"
            self._render_to(raw, view["camera_to_world"])
            labels = decode_label_image(np.asarray(Image.open(raw)), job.n_labels)
            Image.fromarray(labels).save(mask_dir / f"{view['view_id']}.png")
        shutil.rmtree(raw_dir)
        return {"normalisation": norm, "n_meshes": len(meshes)}


def _torus(bm, minor_ratio: float, major_segments: int, minor_segments: int) -> None:
    """A torus of major radius 1 in the XY plane (bmesh has no torus operator)."""
    u = np.linspace(0, 2 * np.pi, major_segments, endpoint=False)
    v = np.linspace(0, 2 * np.pi, minor_segments, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ring = 1.0 + minor_ratio * np.cos(vv)
    coords = np.stack([ring * np.cos(uu), ring * np.sin(uu), minor_ratio * np.sin(vv)], -1).reshape(-1, 3)
    verts = [bm.verts.new(c) for c in coords.tolist()]
    for i in range(major_segments):
        for j in range(minor_segments):
            a = i * minor_segments + j
            b = ((i + 1) % major_segments) * minor_segments + j
            c = ((i + 1) % major_segments) * minor_segments + (j + 1) % minor_segments
            d = i * minor_segments + (j + 1) % minor_segments
            bm.faces.new((verts[a], verts[b], verts[c], verts[d]))


def _make_material(name: str, colour: tuple[float, float, float], roughness: float, metallic: float):
    import bpy  # late: bpy is loaded only in render workers

    mat = bpy.data.materials.new(name)
    mat.diffuse_color = (*colour, 1.0)  # what Workbench draws
    mat.roughness, mat.metallic = roughness, metallic
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:  # what Cycles draws
        bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
        bsdf.inputs["Roughness"].default_value = roughness
        bsdf.inputs["Metallic"].default_value = metallic
    return mat


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def background_colour(seed: int, object_id: str, view_id: str) -> np.ndarray:
    """A view's random background (RGB 0..255), from its own rng: the same whichever other views exist."""
    return np.random.default_rng([seed, _stable_hash(object_id), _stable_hash(view_id)]).uniform(0, 255, size=3)


def export_worker(spec_jsons: list[str], out_dir: str) -> None:
    import bpy  # late: bpy is loaded only in render workers

    renderer = SceneRenderer(RenderConfig(), [], 0)
    for spec_json in spec_jsons:
        renderer.reset()
        meshes = renderer.build_procedural(spec_json)
        name = json.loads(spec_json)["object_id"]
        for o in meshes:
            o.select_set(True)
        result = bpy.ops.export_scene.gltf(filepath=str(Path(out_dir) / f"{name}.glb"), export_format="GLB")
        if "FINISHED" not in result:
            raise RuntimeError(f"glTF export of {name} failed: {result}")
