"""Multi-view rendering with Blender (bpy): the parent's side (jobs, worker pool, status files).

The scene itself (everything that touches bpy) is in `render_scene`, run by the workers started here.

bpy is never imported in the notebook kernel or the parent process: it leaks memory,
slows down as scenes accumulate and can crash on a broken asset. Each worker renders
one object at a time (scene reset with `read_factory_settings(use_empty=True)`),
writes the views it was asked for into a per-object staging folder, moves each finished
file into place, then writes the object's status JSON atomically. The status maps every
view rendered to its fingerprint (only the settings its pixels depend on), so a config
change rerenders just the views it changes: adding a view renders that view only. A
worker that dies takes only its current object with it; that object is retried in a
fresh worker and recorded as failed after `max_attempts`. Why an object failed is recorded; a
cause that can pass (an I/O error, a killed worker) is retried by the next run, a broken asset is
not (`failure_record`). Workers die with the process
that started them, so killing a run leaves no Blender process behind.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..core.progress import progress_bar
from ..core.runs import RunLayout, atomic_write_text, digest
from ..core.schema import RenderConfig
from .render_scene import RenderJob, SceneRenderer, export_worker

# ----------------------------------------------------------------------------- worker side


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
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


RETRIED = "retried on the next run"


def failure_record(exc: BaseException) -> dict:
    """The status of an object whose render raised `exc`. An OSError (disk full, a read-only or
    vanished file, an asset not there yet) is the machine's, not the asset's: the object is tried
    again on the next run. Anything else (Blender cannot import it, no geometry) is the asset's and
    stays failed while its fingerprint is unchanged, so a corrupt asset is not rendered again and again."""
    transient = isinstance(exc, OSError)
    reason = f"{type(exc).__name__}: {exc}".strip()
    return {"status": "failed", "retry_on_rerun": transient,
            "reason": f"{reason} (an I/O error: {RETRIED})" if transient else reason}


def _worker_main(worker_id: int, tasks: mp.Queue, results: mp.Queue, cfg: RenderConfig, views: list[dict],
                 seed: int, run_root: str, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    layout = RunLayout(Path(run_root))
    _quiet_blender(layout.render_logs / f"worker-{os.getpid()}.log")
    renderer = SceneRenderer(cfg, views, seed)
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
            record = {**failure_record(exc), "traceback": traceback.format_exc(limit=5),
                      "seconds": time.perf_counter() - start}
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
                                      f"{attempts[job.object_id]} times while rendering it ({RETRIED})"})
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


def export_glbs(spec_jsons: list[str], out_dir: Path | str) -> list[Path]:
    """Export procedural objects as GLB files (in a spawned bpy process): test assets for the Objaverse path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = mp.get_context("spawn").Process(target=export_worker, args=(spec_jsons, str(out_dir)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"GLB export process failed with exit code {proc.exitcode}")
    return [out_dir / f"{json.loads(s)['object_id']}.glb" for s in spec_jsons]
