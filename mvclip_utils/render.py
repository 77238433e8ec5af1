"""Multi-view rendering with Blender (bpy), in spawned worker processes only.

bpy is never imported in the notebook kernel or the parent process: it leaks memory,
slows down as scenes accumulate and can crash on a broken asset. Each worker renders
one object at a time (scene reset with `read_factory_settings(use_empty=True)`),
writes the views it was asked for into a per-object staging folder, moves each finished
file into place, then writes the object's status JSON atomically. The status maps every
view rendered to its fingerprint (only the settings its pixels depend on), so a config
change rerenders just the views it changes: adding a view renders that view only. A
worker that dies takes only its current object with it; that object is retried in a
fresh worker and recorded as failed after `max_attempts`. Workers die with the process
that started them, so killing a run leaves no Blender process behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .config import RenderConfig
from .progress import progress_bar
from .runs import RunLayout, atomic_write_text, digest

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


# ----------------------------------------------------------------------------- worker side


class _SceneRenderer:
    """Everything that touches bpy; lives in a worker process."""

    def __init__(self, cfg: RenderConfig, views: list[dict], seed: int):
        import bpy  # noqa: F401  (imported here: worker processes only)

        self.cfg, self.views, self.seed = cfg, views, seed

    # -- scene construction
    def reset(self) -> None:
        import bpy

        bpy.ops.wm.read_factory_settings(use_empty=True)

    def build_procedural(self, spec_json: str) -> list:
        import bmesh
        import bpy

        from .objects import FINISHES, PALETTE, ObjectSpec

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
                materials[key] = _make_material(f"{part.color}_{part.finish}", PALETTE[part.color], *FINISHES[part.finish])
            mesh.materials.append(materials[key])
            obj = bpy.data.objects.new(f"part{i}_{spec.part_names[part.label - 1]}", mesh)
            obj.location, obj.scale, obj.rotation_euler = part.location, part.scale, part.rotation
            obj["mvclip_label"] = part.label
            bpy.context.scene.collection.objects.link(obj)
            objects.append(obj)
        return objects

    def import_asset(self, path: str) -> list:
        import bpy

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
        import bpy
        from mathutils import Matrix, Vector

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
        import bpy

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
        import bpy

        scene = bpy.context.scene
        scene.display.render_aa = "FXAA"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "MATERIAL"
        shading.studiolight_rotate_z = light_turn

    def _mask_display(self) -> None:
        import bpy

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
        import bpy
        from mathutils import Matrix

        self.camera.matrix_world = Matrix(np.asarray(pose).reshape(4, 4).tolist())
        bpy.context.scene.render.filepath = str(path)
        bpy.ops.render.render(write_still=True)

    def render_object(self, job: RenderJob, staging: Path) -> dict:
        """Render the views `job.views` names (in config order) into `staging`."""
        from PIL import Image

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
    import bpy

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
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def background_colour(seed: int, object_id: str, view_id: str) -> np.ndarray:
    """A view's random background (RGB 0..255), from its own rng: the same whichever other views exist."""
    return np.random.default_rng([seed, _stable_hash(object_id), _stable_hash(view_id)]).uniform(0, 255, size=3)


def read_status(layout: RunLayout, object_id: str) -> dict | None:
    """An object's status record, None if it has none (or an unreadable one: then it is redone)."""
    try:
        return json.loads(layout.status_path(object_id).read_text())
    except (OSError, ValueError):
        return None


def _commit_object(layout: RunLayout, job: RenderJob, staging: Path, record: dict) -> None:
    """Move each finished image and mask into place, then write the status that records them.

    The status first stops vouching for the files about to be replaced, so a run killed
    mid-move never leaves a status whose fingerprint belongs to another file's pixels.
    """
    earlier = read_status(layout, job.object_id)
    if earlier is not None and earlier.get("views", {}).keys() - job.keep.keys():
        atomic_write_text(layout.status_path(job.object_id), json.dumps({**earlier, "views": job.keep}))
    for src, dst in ((staging / "images", layout.image_dir(job.object_id)),
                     (staging / "masks", layout.mask_dir(job.object_id))):
        dst.mkdir(parents=True, exist_ok=True)
        for view_id in job.views:
            os.replace(src / f"{view_id}.png", dst / f"{view_id}.png")
    shutil.rmtree(staging, ignore_errors=True)
    write_status(layout, job, record)


def _discard_views(layout: RunLayout, job: RenderJob) -> None:
    """After a failure is recorded, remove whatever of `job.views` an attempt moved into place."""
    for folder in (layout.image_dir(job.object_id), layout.mask_dir(job.object_id)):
        for view_id in job.views:
            (folder / f"{view_id}.png").unlink(missing_ok=True)
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()


def write_status(layout: RunLayout, job: RenderJob, record: dict) -> None:
    """An ok record carries `views` {view_id: fingerprint}; a failed one the object's `fingerprint`
    (and the earlier views it keeps)."""
    extra = {"fingerprint": job.fingerprint, "views": job.keep} if record["status"] == "failed" else {}
    atomic_write_text(layout.status_path(job.object_id), json.dumps({"object_id": job.object_id, **extra, **record}))


def _quiet_blender(log_path: Path) -> None:
    """Blender prints a few lines per frame at the C level: send stdout to /dev/null and
    stderr (EGL/import warnings, crashes) to a per-worker log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 1)
    os.dup2(log, 2)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """End this worker as soon as the process that started it is gone, even killed by SIGKILL.

    Otherwise a killed run (or a Jupyter kernel that exits when its runner dies) leaves its
    Blender workers (~400 MB each) idle under init for good, and with them the resource
    tracker, which exits only once every holder of its pipe is gone. On Linux the kernel
    sends SIGKILL (PR_SET_PDEATHSIG); a thread polling the parent pid is the portable fallback
    and also covers a parent that died before the prctl call.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(worker_id: int, tasks: mp.Queue, results: mp.Queue, cfg: RenderConfig, views: list[dict],
                 seed: int, run_root: str, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    layout = RunLayout(Path(run_root))
    _quiet_blender(layout.render_logs / f"worker-{os.getpid()}.log")
    renderer = _SceneRenderer(cfg, views, seed)
    done = 0
    while True:
        item = tasks.get()
        if item is None:
            return
        job = RenderJob(**item)
        staging = layout.staging / job.object_id
        shutil.rmtree(staging, ignore_errors=True)
        start = time.perf_counter()
        try:
            info = renderer.render_object(job, staging)
            record = {"status": "ok", "views": {**job.keep, **job.views}, "reason": "",
                      "seconds": time.perf_counter() - start, "n_rendered": len(job.views), **info}
            _commit_object(layout, job, staging, record)
        except Exception as exc:  # a broken asset is recorded and the run goes on
            shutil.rmtree(staging, ignore_errors=True)
            record = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}".strip(),
                      "traceback": traceback.format_exc(limit=5), "seconds": time.perf_counter() - start}
            write_status(layout, job, record)
            _discard_views(layout, job)
        done += 1
        retire = done >= cfg.objects_per_worker
        images = len(job.views) if record["status"] == "ok" else 0
        results.put((worker_id, job.object_id, record["status"], images, retire))
        if retire:
            return


# ----------------------------------------------------------------------------- parent side


@dataclass
class RenderSummary:
    rendered: int
    failed: int
    skipped: int
    seconds: float
    images: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def image_settings(cfg: RenderConfig, seed: int) -> dict:
    """The settings every pixel of every view depends on: not the worker counts, and the
    Cycles sample count only when Cycles renders."""
    settings = {"seed": seed, "engine": cfg.engine, "resolution": cfg.resolution, "fov_deg": cfg.fov_deg,
                "background": cfg.background, "light_jitter": cfg.light_jitter}
    if cfg.engine == "cycles":
        settings["cycles_samples"] = cfg.cycles_samples
    return settings


def render_fingerprint(job: RenderJob, cfg: RenderConfig, seed: int) -> str:
    """The object-level fingerprint (its geometry and the image settings): what a failure is recorded for."""
    return digest([image_settings(cfg, seed), job.spec_json, job.asset_path])


def view_fingerprints(object_fingerprint: str, views: list[dict]) -> dict[str, str]:
    """{view_id: fingerprint}: the object's fingerprint and the view's camera, nothing about other views."""
    return {v["view_id"]: digest([object_fingerprint, v["camera_to_world"]]) for v in views}


def sweep_stale_staging(layout: RunLayout, object_ids: Iterable[str]) -> None:
    """Remove the staging folders a killed run left behind for these objects (nothing in them was ever
    vouched for). Only these: render shards of one run work side by side, each on its own objects."""
    for object_id in object_ids:
        shutil.rmtree(layout.staging / object_id, ignore_errors=True)


def pending_jobs(layout: RunLayout, jobs: Iterable[RenderJob]) -> list[RenderJob]:
    """The jobs with views to render, narrowed to the views missing or changed since their status.

    Valid earlier views are kept (`keep`), also those no longer requested, and never deleted; a
    failed object is skipped while its fingerprint is unchanged, unless a crashed worker (maybe
    bad luck rather than a bad asset) marked it `retry_on_rerun`. Files of an object without a
    status are leftovers of an interrupted first render and are removed.
    """
    todo = []
    for job in jobs:
        record = read_status(layout, job.object_id)
        if record is None:
            for leftover in (layout.image_dir(job.object_id), layout.mask_dir(job.object_id)):
                shutil.rmtree(leftover, ignore_errors=True)
            todo.append(job)
            continue
        earlier = record.get("views", {})
        missing = {v: fp for v, fp in job.views.items() if earlier.get(v) != fp}
        if record["status"] == "ok" and not missing:
            continue
        if (record["status"] == "failed" and record.get("fingerprint") == job.fingerprint
                and not record.get("retry_on_rerun", False)):
            continue
        todo.append(dataclasses.replace(job, views=missing,
                                        keep={v: fp for v, fp in earlier.items() if v not in missing}))
    return todo


def drain_reports(queues: list[mp.Queue], wait_s: float = 0.5) -> list[tuple]:
    """Every report waiting in the workers' result queues, waiting up to `wait_s` for the first."""
    deadline = time.perf_counter() + wait_s
    while True:
        reports = []
        for q in queues:
            try:
                while True:
                    reports.append(q.get_nowait())
            except (queue.Empty, OSError, ValueError):  # empty, or closed with its dead worker
                pass
        if reports or time.perf_counter() >= deadline:
            return reports
        time.sleep(0.02)


def render_jobs(jobs: list[RenderJob], layout: RunLayout, cfg: RenderConfig, views: list[dict], seed: int,
                progress: bool = True, fresh_worker_per_object: bool = False) -> RenderSummary:
    """Render every view not rendered yet with these settings, with `cfg.workers` persistent worker processes.

    `fresh_worker_per_object` starts one process per object instead (for the benchmark).
    """
    sweep_stale_staging(layout, [job.object_id for job in jobs])
    fingerprinted = []
    for job in jobs:
        fingerprint = render_fingerprint(job, cfg, seed)
        fingerprinted.append(dataclasses.replace(job, fingerprint=fingerprint,
                                                 views=view_fingerprints(fingerprint, views)))
    todo = pending_jobs(layout, fingerprinted)
    skipped = len(jobs) - len(todo)
    start = time.perf_counter()
    if not todo:
        return RenderSummary(0, 0, skipped, 0.0, 0)
    layout.render_status.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    if fresh_worker_per_object:
        cfg = dataclasses.replace(cfg, objects_per_worker=1)
    queue_of_jobs = list(todo)
    attempts: dict[str, int] = {}
    # Each worker has its own task and result queues: a worker killed while writing to a queue
    # takes that queue's lock with it, and a shared queue would then block every other worker.
    workers: dict[int, tuple[mp.Process, mp.Queue, mp.Queue]] = {}
    assigned: dict[int, RenderJob | None] = {}
    next_id = 0
    deaths_in_a_row = 0
    counts = {"ok": 0, "failed": 0}
    images = 0
    n_workers = min(cfg.workers, len(todo))

    def start_worker() -> None:
        nonlocal next_id
        tasks, results = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_worker_main, daemon=True,
                           args=(next_id, tasks, results, cfg, views, seed, str(layout.root), os.getpid()))
        proc.start()
        workers[next_id], assigned[next_id] = (proc, tasks, results), None
        next_id += 1

    def stop_worker(wid: int) -> None:
        proc, tasks, results = workers.pop(wid)
        assigned.pop(wid, None)
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
        tasks.close()
        results.close()

    bar = progress_bar(total=len(todo), desc=f"rendering {sum(len(j.views) for j in todo)} views", unit="obj",
                       disable=not progress, smoothing=0.1)
    try:
        for _ in range(n_workers):
            start_worker()
        while queue_of_jobs or any(j is not None for j in assigned.values()):
            for wid in list(workers):
                if assigned[wid] is None and queue_of_jobs:
                    job = queue_of_jobs.pop(0)
                    assigned[wid] = job
                    workers[wid][1].put(asdict(job))
            # Drain every finished result before looking for dead workers, so a worker that
            # retired (or was killed) right after reporting is not taken for a crash.
            reports = drain_reports([w[2] for w in workers.values()])
            for wid, object_id, status, n_images, retire in reports:
                if wid not in workers or assigned[wid] is None or assigned[wid].object_id != object_id:
                    continue  # a stale report from a worker already written off
                assigned[wid] = None
                deaths_in_a_row = 0
                counts[status] += 1
                images += n_images
                bar.update(1)
                bar.set_postfix(failed=counts["failed"], img_per_s=f"{images / (time.perf_counter() - start):.0f}")
                if retire:
                    stop_worker(wid)
                    if queue_of_jobs:
                        start_worker()
            for wid in list(workers):
                proc = workers[wid][0]
                if proc.is_alive():
                    continue
                job = assigned.get(wid)
                stop_worker(wid)
                deaths_in_a_row += 1
                if deaths_in_a_row > 2 * n_workers + 2:
                    raise RuntimeError(
                        f"render workers keep dying (last exit code {proc.exitcode}) without finishing an object; "
                        f"see what Blender printed in {layout.render_logs}")
                if job is not None:  # the worker died while rendering this object
                    attempts[job.object_id] = attempts.get(job.object_id, 0) + 1
                    if attempts[job.object_id] < cfg.max_attempts:
                        queue_of_jobs.insert(0, job)
                    else:
                        write_status(layout, job, {
                            "status": "failed", "seconds": 0.0, "retry_on_rerun": True,
                            "reason": f"worker process died (exit code {proc.exitcode}) "
                                      f"{attempts[job.object_id]} times while rendering it"})
                        shutil.rmtree(layout.staging / job.object_id, ignore_errors=True)
                        _discard_views(layout, job)
                        counts["failed"] += 1
                        bar.update(1)
                if queue_of_jobs:
                    start_worker()
    finally:
        bar.close()
        for wid in list(workers):
            workers[wid][1].put(None)
        for wid in list(workers):
            stop_worker(wid)
    seconds = time.perf_counter() - start
    return RenderSummary(counts["ok"], counts["failed"], skipped, seconds, images)


def _export_worker(spec_jsons: list[str], out_dir: str) -> None:
    import bpy

    renderer = _SceneRenderer(RenderConfig(), [], 0)
    for spec_json in spec_jsons:
        renderer.reset()
        meshes = renderer.build_procedural(spec_json)
        name = json.loads(spec_json)["object_id"]
        for o in meshes:
            o.select_set(True)
        result = bpy.ops.export_scene.gltf(filepath=str(Path(out_dir) / f"{name}.glb"), export_format="GLB")
        if "FINISHED" not in result:
            raise RuntimeError(f"glTF export of {name} failed: {result}")


def export_glbs(spec_jsons: list[str], out_dir: Path | str) -> list[Path]:
    """Export procedural objects as GLB files (in a spawned bpy process): test assets for the Objaverse path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = mp.get_context("spawn").Process(target=_export_worker, args=(spec_jsons, str(out_dir)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"GLB export process failed with exit code {proc.exitcode}")
    return [out_dir / f"{json.loads(s)['object_id']}.glb" for s in spec_jsons]
