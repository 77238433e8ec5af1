"""Interrupted runs: no partial files, and only unfinished objects are redone."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, write_config
from PIL import Image

from mvclip_utils.core.cameras import views_table
from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import RunConfig
from mvclip_utils.data.dataset import build_dataset, source_manifest
from mvclip_utils.data.render_jobs import render_fingerprint, view_fingerprints

pytestmark = pytest.mark.slow

# 24 objects x 38 views (12 x 3 grid + the 2 ood views of the tiny config) at 48 px: long enough (several seconds)
# to interrupt.
LONGER = {"dataset": {"procedural": {"categories": ["mug", "chair", "car", "house", "lamp", "bottle"],
                                     "objects_per_category": 4}},
          "render": {"resolution": 48, "azimuths": 12, "elevations_deg": [70, 40, 10]}}


N_VIEWS = 38


def start_build(config: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mvclip_utils", "render", "--config", str(config),
                             "--run-dir", str(run_dir), "--quiet"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_statuses(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    status_dir = RunLayout(run_dir).render_status
    deadline = time.time() + timeout
    while time.time() < deadline:
        if status_dir.exists() and len(list(status_dir.glob("*.json"))) >= n:
            return
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    raise TimeoutError(f"fewer than {n} objects finished in {timeout} s")


def render_workers(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def assert_no_partial_files(layout: RunLayout, n_views: int) -> set[str]:
    """Every PNG in place is complete; every object with a status has all its views."""
    for png in list(layout.images.glob("*/*.png")) + list(layout.masks.glob("*/*.png")):
        Image.open(png).load()  # raises on a truncated file
    finished = {p.stem for p in layout.render_status.glob("*.json")}
    for oid in finished:
        if json.loads(layout.status_path(oid).read_text())["status"] != "ok":
            assert not layout.image_dir(oid).exists() and not layout.mask_dir(oid).exists()
            continue
        assert len(list(layout.image_dir(oid).glob("*.png"))) == n_views
        assert len(list(layout.mask_dir(oid).glob("*.png"))) == n_views
    assert not list(layout.images.glob("*/.*")), "temp files left in the final folders"
    return finished


def test_killed_run_resumes_with_only_unfinished_objects(tmp_path):
    config = write_config(tmp_path / "cfg.yaml", LONGER)
    run_dir = tmp_path / "run"
    proc = start_build(config, run_dir)
    wait_for_statuses(run_dir, 4, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, workers included, mid-object
    proc.wait()
    layout = RunLayout(run_dir)
    finished = assert_no_partial_files(layout, N_VIEWS)
    assert 4 <= len(finished) < 24, "the run must have been interrupted mid-way"
    before = {oid: layout.status_path(oid).stat().st_mtime_ns for oid in finished}

    objects, summary = build_dataset(load_config(config), layout, progress=False)
    assert summary.skipped == len(finished)
    assert summary.rendered == 24 - len(finished)
    assert {oid: layout.status_path(oid).stat().st_mtime_ns for oid in finished} == before
    assert (objects.status == "ok").all()
    assert_no_partial_files(layout, N_VIEWS)
    assert not list(layout.staging.glob("*"))


def test_a_killed_worker_is_replaced_and_its_object_retried(tmp_path):
    config = write_config(tmp_path / "cfg.yaml", LONGER)
    run_dir = tmp_path / "run"
    proc = start_build(config, run_dir)
    wait_for_statuses(run_dir, 2, proc)
    workers = render_workers(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] == 24 and summary["failed"] == 0
    objects = pd.read_parquet(RunLayout(run_dir).objects_table)
    assert (objects.status == "ok").all()


def test_an_object_that_keeps_killing_its_worker_is_recorded_failed(tmp_path):
    config = write_config(tmp_path / "cfg.yaml", {**LONGER, "render": {**LONGER["render"], "max_attempts": 1}})
    run_dir = tmp_path / "run"
    proc = start_build(config, run_dir)
    wait_for_statuses(run_dir, 2, proc)
    os.kill(render_workers(proc.pid)[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    objects = pd.read_parquet(RunLayout(run_dir).objects_table)
    failed = objects[objects.status == "failed"]
    assert len(failed) == 1 and (objects.status == "ok").sum() == 23
    assert failed.reason.iloc[0] == ("worker process died (exit code -9) 1 times while rendering it "
                                     "(retried on the next run)")
    layout = RunLayout(run_dir)
    assert_no_partial_files(layout, N_VIEWS)
    # A crash may be bad luck: a rerun tries that object again and keeps the others.
    objects, summary = build_dataset(load_config(config), layout, progress=False)
    assert summary.rendered == 1 and summary.skipped == 23
    assert (objects.status == "ok").all()


def test_workers_that_always_die_stop_the_run_with_a_pointer_to_the_logs(tmp_path):
    # A sitecustomize that kills every spawned render worker at start-up (bpy missing, a
    # broken GPU driver, ...): the run must stop with a clear error instead of marking
    # every object failed.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os\n"
        "if b'spawn_main' in open('/proc/self/cmdline', 'rb').read():\n"
        "    os._exit(3)\n")
    config = write_config(tmp_path / "cfg.yaml")
    env = {**os.environ, "PYTHONPATH": f"{hooks}:{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "mvclip_utils", "render", "--config", str(config), "--run-dir",
                             str(tmp_path / "run"), "--quiet"], cwd=REPO, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode != 0
    assert "render workers keep dying (last exit code 3)" in result.stderr
    assert "render_logs" in result.stderr
    statuses = list((tmp_path / "run" / "dataset" / "status").glob("*.json"))
    assert all(json.loads(p.read_text())["retry_on_rerun"] for p in statuses)  # nothing marked as a bad asset



def view_records(cfg: RunConfig) -> list[dict]:
    """The views as `build_dataset` hands them to `render_jobs`."""
    return [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views_table(cfg.render).itertuples()]


def resolution_by_fingerprint(*configs: Path) -> dict[str, int]:
    """{view fingerprint: resolution} of every view of every object of these configs."""
    out = {}
    for config in configs:
        cfg = load_config(config)
        for job in source_manifest(cfg)[1]:
            for fp in view_fingerprints(render_fingerprint(job, cfg.render, cfg.seed), view_records(cfg)).values():
                out[fp] = cfg.render.resolution
    return out


def vouched_resolutions(layout: RunLayout, resolution_of: dict[str, int], check_files: bool) -> dict[str, set[int]]:
    """Per object, the resolutions its status vouches for; with `check_files`, asserts that every
    file it vouches for has that resolution (only once no run is writing)."""
    out = {}
    for path in layout.render_status.glob("*.json"):
        vouched = json.loads(path.read_text()).get("views", {})
        out[path.stem] = {resolution_of[fp] for fp in vouched.values()}
        for view_id, fp in vouched.items() if check_files else ():
            size = (resolution_of[fp],) * 2
            assert Image.open(layout.image_path(path.stem, view_id)).size == size, (path.stem, view_id)
            assert Image.open(layout.mask_path(path.stem, view_id)).size == size, (path.stem, view_id)
    return out


def test_a_killed_rerender_never_leaves_a_status_vouching_for_a_replaced_file(tmp_path):
    # A resolution change replaces every file of every object in place: a run killed
    # meanwhile leaves each status vouching only for files that match its fingerprints.
    config = write_config(tmp_path / "cfg.yaml", LONGER)
    smaller = write_config(tmp_path / "smaller.yaml", {**LONGER, "render": {**LONGER["render"], "resolution": 40}})
    resolution_of = resolution_by_fingerprint(config, smaller)
    layout = RunLayout(tmp_path / "run")
    build_dataset(load_config(config), layout, progress=False)
    proc = start_build(smaller, layout.root)
    deadline = time.time() + 120
    while sum(res == {40} for res in vouched_resolutions(layout, resolution_of, False).values()) < 4:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [oid for oid, res in vouched_resolutions(layout, resolution_of, True).items() if res == {40}]
    assert 4 <= len(done) < 24, "the run must have been interrupted mid-way"

    objects, summary = build_dataset(load_config(smaller), layout, progress=False)
    assert summary.skipped == len(done) and summary.rendered == 24 - len(done)
    assert summary.images == (24 - len(done)) * N_VIEWS
    final = vouched_resolutions(layout, resolution_of, True)
    assert len(final) == 24 and all(res == {40} for res in final.values())
    assert (objects.status == "ok").all()
    assert_no_partial_files(layout, N_VIEWS)
