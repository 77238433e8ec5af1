"""A config change rerenders only the views whose pixels it changes; a killed run leaves no process behind."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import REPO, TINY, make_config, write_config
from PIL import Image
from test_resume import LONGER, view_records

from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import RunConfig
from mvclip_utils.data import render_jobs as render
from mvclip_utils.data.dataset import source_manifest
from mvclip_utils.data.render_jobs import RenderSummary, _commit_object, pending_jobs, read_status, render_jobs
from mvclip_utils.data.render_scene import RenderJob

FAR_VIEW = {"name": "far", "azimuth_deg": 45, "elevation_deg": 20, "distance": 3.0}


def render_run(cfg: RunConfig, layout: RunLayout, object_ids: list[str] | None = None) -> RenderSummary:
    """`render_jobs` as `build_dataset` calls it, without the manifest tables and splits."""
    _, jobs = source_manifest(cfg)
    jobs = [j for j in jobs if object_ids is None or j.object_id in object_ids]
    return render_jobs(jobs, layout, cfg.render, view_records(cfg), cfg.seed, progress=False)


def png_mtimes(layout: RunLayout) -> dict[str, int]:
    return {str(p.relative_to(layout.dataset)): p.stat().st_mtime_ns
            for p in list(layout.images.glob("*/*.png")) + list(layout.masks.glob("*/*.png"))}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> RunLayout:
    layout = RunLayout(tmp_path_factory.mktemp("tiny"))
    summary = render_run(make_config(), layout)
    assert summary.rendered == 6 and summary.images == 60
    return layout


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> RunLayout:
    """A private copy of the tiny run (file times preserved), for a test to change."""
    shutil.copytree(tiny_run.root, tmp_path / "run")
    return RunLayout(tmp_path / "run")


@pytest.mark.slow
def test_an_added_view_renders_only_that_view(run_copy):
    layout = run_copy
    before = png_mtimes(layout)
    cfg = make_config({"render": {"ood_views": TINY["render"]["ood_views"] + [FAR_VIEW]}})
    summary = render_run(cfg, layout)
    assert summary.rendered == 6 and summary.images == 6 and summary.skipped == 0
    after = png_mtimes(layout)
    assert {k: after[k] for k in before} == before, "views already rendered were rendered again"
    new = sorted(set(after) - set(before))
    assert len(new) == 12 and all(k.endswith("/ood_far.png") for k in new)
    for oid in {Path(k).parent.name for k in new}:
        status = json.loads(layout.status_path(oid).read_text())
        assert status["status"] == "ok" and len(status["views"]) == 11 and "ood_far" in status["views"]
        assert Image.open(layout.image_path(oid, "ood_far")).size == (32, 32)
    # Dropping the view again renders nothing and deletes nothing: its files stay valid.
    again = render_run(make_config(), layout)
    assert again.rendered == 0 and again.skipped == 6
    assert png_mtimes(layout) == after


@pytest.mark.slow
def test_settings_that_do_not_change_pixels_render_nothing(run_copy):
    layout = run_copy
    before = png_mtimes(layout)
    statuses = {p.name: p.read_text() for p in layout.render_status.glob("*.json")}
    summary = render_run(make_config({"render": {"cycles_samples": 64, "workers": 1, "objects_per_worker": 3,
                                                 "max_attempts": 5}}), layout)
    assert summary.rendered == 0 and summary.images == 0 and summary.skipped == 6
    assert png_mtimes(layout) == before
    assert {p.name: p.read_text() for p in layout.render_status.glob("*.json")} == statuses


@pytest.mark.slow
def test_a_changed_resolution_rerenders_every_view(run_copy):
    layout = run_copy
    before = png_mtimes(layout)
    summary = render_run(make_config({"render": {"resolution": 24}}), layout)
    assert summary.rendered == 6 and summary.images == 60 and summary.skipped == 0
    after = png_mtimes(layout)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)
    assert all(Image.open(layout.dataset / k).size == (24, 24) for k in after)
    assert not any(layout.staging.glob("*"))


def test_pending_jobs_narrow_to_missing_views_and_keep_the_rest(tmp_path):
    layout = RunLayout(tmp_path)
    layout.render_status.mkdir(parents=True)
    job = RenderJob("a", spec_json="{}", fingerprint="obj1", views={"v1": "f1", "v2": "f2"})

    def status(oid: str, **record) -> None:
        layout.status_path(oid).write_text(json.dumps({"object_id": oid, **record}))

    status("a", status="ok", views={"v1": "f1", "v2": "old", "gone": "f9"})
    status("b", status="ok", views={"v1": "f1", "v2": "f2"})
    status("c", status="failed", fingerprint="obj1", views={})
    status("d", status="failed", fingerprint="obj1", views={}, retry_on_rerun=True)
    status("e", status="failed", fingerprint="obj0", views={"v1": "f1"})
    leftover = layout.image_path("f", "v1")  # an interrupted first render: no status vouches for it
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"")
    jobs = {j.object_id: j for j in pending_jobs(layout, [dataclasses.replace(job, object_id=o) for o in "abcdef"])}
    assert sorted(jobs) == ["a", "d", "e", "f"]
    assert jobs["a"].views == {"v2": "f2"} and jobs["a"].keep == {"v1": "f1", "gone": "f9"}
    assert jobs["d"].views == job.views and jobs["d"].keep == {}
    assert jobs["e"].views == {"v2": "f2"} and jobs["e"].keep == {"v1": "f1"}
    assert jobs["f"].views == job.views and not layout.image_dir("f").exists()


def test_a_commit_killed_mid_move_leaves_no_status_vouching_for_a_replaced_file(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path)
    for view_id, text in (("v1", "kept"), ("v2", "old")):
        for folder in (layout.image_dir("a"), layout.mask_dir("a")):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{view_id}.png").write_text(text)
    layout.render_status.mkdir(parents=True)
    earlier = {"object_id": "a", "status": "ok", "views": {"v1": "f1", "v2": "f0"}}
    layout.status_path("a").write_text(json.dumps(earlier))
    staging = layout.staging / "a"
    for sub_dir in ("images", "masks"):
        (staging / sub_dir).mkdir(parents=True)
        (staging / sub_dir / "v2.png").write_text("new")
    job = RenderJob("a", views={"v2": "f2"}, keep={"v1": "f1"})

    def killed(src, dst):  # the run dies once the first image is replaced
        os.rename(src, dst)
        if Path(dst).parent == layout.image_dir("a"):
            raise KeyboardInterrupt

    monkeypatch.setattr(render.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _commit_object(layout, job, staging, {"status": "ok", "views": {"v1": "f1", "v2": "f2"}})
    assert layout.image_path("a", "v2").read_text() == "new"
    assert read_status(layout, "a")["views"] == {"v1": "f1"}, "the status still vouches for the replaced v2"
    assert pending_jobs(layout, [RenderJob("a", views={"v1": "f1", "v2": "f2"})])[0].views == {"v2": "f2"}


def tagged_processes(tag: str) -> dict[int, str]:
    """{pid: command line} of the live processes whose environment carries `tag` (zombies have none left)."""
    found = {}
    needle = f"MVCLIP_TEST_TAG={tag}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:150]
            except OSError:  # gone meanwhile, or not ours
                pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_pipeline_leaves_no_process_behind(tmp_path):
    # The runner starts notebook 01 in a Jupyter kernel in its own session: killing the runner's
    # process group kills neither the kernel nor its render workers directly. The kernel exits
    # once its parent is gone; its workers (and the multiprocessing resource tracker) must follow.
    config = write_config(tmp_path / "cfg.yaml", LONGER)
    run_dir = tmp_path / "run"
    tag = uuid.uuid4().hex
    log = tmp_path / "pipeline.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mvclip_utils", "run", "--config", str(config), "--run-dir",
                                 str(run_dir), "--only", "01"], cwd=REPO, start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "MVCLIP_TEST_TAG": tag,  # the kernel imports this checkout
                                     "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    try:
        status_dir = RunLayout(run_dir).render_status
        deadline = time.time() + 180
        while not (status_dir.exists() and len(list(status_dir.glob("*.json"))) >= 2):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no object rendered in 180 s"
            time.sleep(0.1)
        assert len(tagged_processes(tag)) >= 4, "expected the runner, the kernel and two workers"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while tagged_processes(tag) and time.time() < deadline:
            time.sleep(0.2)
        survivors = tagged_processes(tag)
        assert not survivors, f"processes left running 10 s after the run was killed: {survivors}"
    finally:
        for pid in tagged_processes(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
