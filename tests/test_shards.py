"""Rendering in shards: shard arithmetic, two shard processes writing one run directory at the same
time, a merge that refuses an incomplete set, and the SLURM scripts' shard arithmetic."""

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
from helpers import PYTHON, REPO, run_module, write_config

from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.shards import parse_shard, shard_items
from mvclip_utils.data.dataset import load_image

SLURM = REPO / "scripts" / "slurm"


def test_shards_are_disjoint_cover_every_item_and_are_balanced():
    items = [f"obj{i}" for i in range(11)]
    shards = [shard_items(items, i, 4) for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(items) and len(set(sum(shards, []))) == 11
    assert [len(s) for s in shards] == [3, 3, 3, 2]
    assert shard_items(items, 1, 4) == ["obj1", "obj5", "obj9"]  # a fixed order: every run agrees
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("4/4", "1/0", "-1/3", "two/4", ""):
        with pytest.raises(ValueError, match="expected I/N with 0 <= I < N"):
            parse_shard(bad)


@pytest.mark.slow
def test_two_concurrent_shards_then_a_merge_equal_one_unsharded_build(tmp_path):
    config = write_config(tmp_path / "cfg.yaml")
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    command = [PYTHON, "-m", "mvclip_utils", "render", "--config", str(config), "--run-dir", str(sharded), "--quiet"]
    shards = [subprocess.Popen(command + ["--shard", f"{i}/2"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for i in range(2)]
    for shard in shards:  # both at once, into one run directory
        out, err = shard.communicate(timeout=600)
        assert shard.returncode == 0, err[-3000:]
    layout = RunLayout(sharded)
    assert not layout.objects_table.exists()  # shards never write the manifests
    record = layout.render_shard_record(1, 2)
    saved = record.read_text()
    record.unlink()
    refused = run_module("mvclip_utils", "render", "--config", str(config), "--run-dir", str(sharded), "--merge", "2")
    assert refused.returncode == 2
    assert "render shard(s) 1 of 2 have not finished" in refused.stderr and "--shard 1/2" in refused.stderr
    record.write_text(saved)
    merged = run_module("mvclip_utils", "render", "--config", str(config), "--run-dir", str(sharded), "--merge", "2")
    assert merged.returncode == 0, merged.stderr[-3000:]
    summary = json.loads(merged.stdout.strip().splitlines()[-1])  # strict JSON: a merge renders nothing, no NaN rate
    assert summary["images_per_second"] is None and summary["rendered"] == 0
    assert run_module("mvclip_utils", "render", "--config", str(config), "--run-dir", str(whole),
                      "--quiet").returncode == 0

    columns = ["object_id", "category", "status", "split"]
    a, b = pd.read_parquet(layout.objects_table), pd.read_parquet(RunLayout(whole).objects_table)
    pd.testing.assert_frame_equal(a[columns], b[columns])
    assert (a.status == "ok").all() and not list(layout.staging.glob("*"))
    views = pd.read_parquet(layout.views_table).view_id.tolist()
    for object_id in a.object_id:
        for view_id in views:
            sharded_image = load_image(layout, object_id, view_id).astype(int)
            whole_image = load_image(RunLayout(whole), object_id, view_id).astype(int)
            assert np.abs(sharded_image - whole_image).max() <= 2  # the same renders


def _run_script(script, *args, env):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, **env})


@pytest.mark.parametrize("stage", ["render", "embed"])
def test_slurm_array_task_runs_its_shard_and_the_submit_script_chains_the_merge(tmp_path, stage):
    # The array task's shard is its place in the --array range, of the array's task count.
    result = _run_script(SLURM / f"{stage}_array.sbatch", "params/objaverse_vitb32.yaml", "/runs/x",
                         env={"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_COUNT": "3",
                              "MVCLIP_PYTHON": "echo"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["-m", "mvclip_utils", stage, "--config", "params/objaverse_vitb32.yaml",
                                     "--run-dir", "/runs/x", "--quiet", "--shard", "2/3"]
    merge = _run_script(SLURM / "merge.sbatch", stage, "c.yaml", "3", env={"MVCLIP_PYTHON": "echo"})
    assert merge.stdout.split()[:3] == ["-m", "mvclip_utils", stage] and merge.stdout.split()[-2:] == ["--merge", "3"]
    assert "--run-dir" not in merge.stdout
    # submit: an array of N tasks, then the merge after all of them succeeded (sbatch replaced by a recorder).
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/bash\necho \"$@\" >> " + str(tmp_path / "calls") + "\necho 4242\\;cluster\n")
    fake.chmod(0o755)
    submitted = _run_script(SLURM / "submit.sh", stage, "c.yaml", "16", env={"SBATCH": str(fake)})
    assert submitted.returncode == 0, submitted.stderr
    array, merge_call = (tmp_path / "calls").read_text().splitlines()
    assert "--array=0-15" in array and array.endswith(f"{stage}_array.sbatch c.yaml")
    assert "--dependency=afterok:4242" in merge_call and merge_call.endswith(f"merge.sbatch {stage} c.yaml 16")
    wrong = _run_script(SLURM / "submit.sh", "train", "c.yaml", "2", env={"SBATCH": str(fake)})
    assert wrong.returncode == 2 and "expected render or embed" in wrong.stderr
