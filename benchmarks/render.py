"""Render throughput on this machine, measured in one run so the ratios are comparable.

    python benchmarks/render.py [--objects-per-category 3] [--workers 2] [--real 3]

Prints images/s (RGB + mask per view) for the default settings (Workbench, 64 px,
12 x 3 grid + 6 ood views), for Cycles at the same size, and for persistent workers
against one fresh process per object (what a naive per-object subprocess would do).
With `--real N`, instead, the real study's settings (params/objaverse_vitb32.yaml: Cycles at
224 px with its samples, 12 x 3 grid + 6 ood views) on N objects: images/s per worker, and the
time and disk per 1000 objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from mvclip_utils.core.cameras import views_table
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import RenderConfig
from mvclip_utils.data.objects import CATEGORIES, make_objects
from mvclip_utils.data.render_jobs import render_jobs
from mvclip_utils.data.render_scene import RenderJob


def measure(label: str, cfg: RenderConfig, jobs: list[RenderJob], fresh: bool = False) -> float:
    views = views_table(cfg)
    records = [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views.itertuples()]
    with tempfile.TemporaryDirectory() as tmp:
        summary = render_jobs(jobs, RunLayout(Path(tmp)), cfg, records, seed=0, progress=False,
                              fresh_worker_per_object=fresh)
    assert summary.failed == 0, f"{label}: {summary.failed} objects failed"
    rate = summary.images_per_second
    print(f"{label:<46} {summary.rendered:>4} objects x {len(views)} views  {summary.seconds:6.1f} s  "
          f"{rate:7.1f} images/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects-per-category", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real", type=int, default=0, metavar="N",
                        help="measure the real study's render settings on N objects instead")
    args = parser.parse_args()
    specs = make_objects(None, args.objects_per_category, seed=0)
    jobs = [RenderJob(s.object_id, spec_json=s.to_json(), n_labels=len(s.part_names)) for s in specs]
    if args.real:  # the real study's settings only (minutes per object at 224 px)
        measure_real(jobs[:: max(1, len(jobs) // args.real)][: args.real], args.workers)
        return
    one_each = jobs[:: args.objects_per_category]  # one object per category
    default = RenderConfig(workers=args.workers)
    print(f"{len(CATEGORIES)} categories, {args.workers} workers\n")
    workbench = measure("workbench 64 px (default), persistent workers", default, jobs)
    fresh = measure("workbench 64 px, one process per object", default, jobs, fresh=True)
    cycles = measure("cycles 64 px, 16 samples", dataclasses.replace(default, engine="cycles"), one_each)
    print(f"\npersistent workers / one process per object: {workbench / fresh:5.2f}x")
    print(f"workbench / cycles:                          {workbench / cycles:5.2f}x")
    n_default = 12 * 56 * 42
    print(f"default dataset ({n_default} images) at this rate: {n_default / workbench / 60:.1f} min")


def measure_real(jobs: list[RenderJob], workers: int) -> None:
    """The real study's render section on a few procedural objects (Objaverse assets vary; these are
    simple meshes, so the figure is a lower bound on time): images/s, seconds and MB per object."""
    from mvclip_utils.core.config import load_config
    from mvclip_utils.core.runs import PARAMS_DIR

    real = dataclasses.replace(load_config(PARAMS_DIR / "objaverse_vitb32.yaml").render, workers=workers)
    views = views_table(real)
    records = [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views.itertuples()]
    with tempfile.TemporaryDirectory() as tmp:
        layout = RunLayout(Path(tmp))
        summary = render_jobs(jobs, layout, real, records, seed=0, progress=False)
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*.png")) / max(summary.rendered, 1)
    rate = summary.images_per_second
    per_object = len(views) / rate * workers  # seconds of one worker per object
    print(f"\nreal study: {real.engine} {real.resolution} px, {real.cycles_samples} samples, {len(views)} views, "
          f"{workers} workers: {rate:.2f} images/s ({rate / workers:.2f} per worker)")
    print(f"  per 1000 objects: {1000 * len(views) / rate / 3600:.1f} h with {workers} workers "
          f"({per_object:.0f} worker-seconds per object), {size * 1000 / 2**30:.2f} GiB of images and masks")


if __name__ == "__main__":
    main()
