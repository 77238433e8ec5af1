"""Omniview-Tuning data-parallel under torchrun: 2 CPU processes (gloo) train the adapters one process
trains with the same global batch."""

import copy
import os
import shutil
import subprocess

import pytest
import torch
from helpers import PYTHON, REPO, rendered_run_with_backbone, write_config

from mvclip_utils.core.distributed import RankBatches, Ranks

OVT_RUN = {"dataset": {"procedural": {"objects_per_category": 4},
                       "splits": {"pretrain": 0.25, "train": 0.25, "val": 0.25, "test": 0.25}},
           "backbone": {"pretrain": {"steps": 20, "batch_size": 8}},
           "embed": {"loader_workers": 0},
           "ovt": {"steps": 6, "objects_per_batch": 2, "views_per_object": 2, "clean_per_batch": 2,
                   "outlier_views": 2, "viformer_layers": 1}}


def test_each_rank_gets_its_contiguous_slice_of_every_global_batch_and_shares_of_objects():
    global_batches = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert list(RankBatches(global_batches, Ranks(0, 2))) == [[0, 1, 2], [6, 7, 8]]
    assert list(RankBatches(global_batches, Ranks(1, 2))) == [[3, 4, 5], [9, 10, 11]]
    assert list(RankBatches(global_batches, Ranks.single())) == global_batches
    shares = [Ranks(r, 3).bounds(10) for r in range(3)]
    assert shares[0][0] == 0 and shares[-1][1] == 10 and all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
    assert max(b - a for a, b in shares) - min(b - a for a, b in shares) <= 1
    x = torch.arange(6.0)
    assert Ranks.single().gather(x) is x and Ranks.single().gather_with_local_grad(x) is x


def test_a_global_batch_that_does_not_split_evenly_names_the_setting_to_change():
    with pytest.raises(ValueError, match=r"ovt.objects_per_batch = 3.*3 processes|not divisible by the 2"):
        Ranks(0, 2).check_divides(3, "objects per batch", "ovt.objects_per_batch")
    Ranks(0, 2).check_divides(4, "objects per batch", "ovt.objects_per_batch")


def _train(config, run_dir, processes: int) -> subprocess.CompletedProcess:
    launcher = ([PYTHON, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [PYTHON])
    return subprocess.run([*launcher, "-m", "mvclip_utils", "tune", "--config", str(config), "--run-dir", str(run_dir),
                           "--methods", "omniview_tuning", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.mark.slow
def test_two_processes_train_the_adapters_of_one_process_with_the_same_global_batch(tmp_path):
    from mvclip_utils.core.runs import RunLayout
    from mvclip_utils.data.dataset import ViewImages
    from mvclip_utils.models.adapters import load_adapters
    from mvclip_utils.models.embed import embed_dataset, load_embeddings
    from mvclip_utils.studies.ovt import METHOD, OVTHistory
    from mvclip_utils.studies.tuning import embed_views, read_trained

    cfg, layout, backbone = rendered_run_with_backbone(tmp_path / "one", OVT_RUN)
    embed_dataset(cfg, layout, backbone, progress=False)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    config = write_config(tmp_path / "ovt.yaml", OVT_RUN)

    for run_dir, processes in ((tmp_path / "one", 1), (tmp_path / "two", 2)):
        done = _train(config, run_dir, processes)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"on {processes} process(es)" in done.stdout
    one, two = (torch.load(RunLayout(tmp_path / d).adapters(METHOD), weights_only=True)["state"]
                for d in ("one", "two"))
    assert one.keys() == two.keys() and any("lora_B" in k for k in one)
    for name in one:
        assert not torch.equal(one[name], torch.zeros_like(one[name])) or "lora_B" not in name  # LoRA B trained
        # Adam turns float rounding in near-zero gradients (the VIFormer's query and key over a one-token
        # sequence have none) into steps of up to lr; the two runs stay well within one step of lr 2e-3
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-3, msg=name)
    # and the two tuned models embed the test views alike
    data = ViewImages(layout, ["test"])
    one_image, two_image = (embed_views(load_adapters(copy.deepcopy(backbone.model), RunLayout(tmp_path / d)
                                                      .adapters(METHOD)), data) for d in ("one", "two"))
    torch.testing.assert_close(two_image, one_image, rtol=0, atol=1e-4)
    frozen = embed_views(backbone.model, data)
    assert (one_image - frozen).abs().max() > 100 * (two_image - one_image).abs().max()  # tuning moved them

    provenance = load_embeddings(layout, cfg).provenance
    histories = [read_trained(RunLayout(tmp_path / d), METHOD, provenance, cfg.ovt, OVTHistory) for d in ("one", "two")]
    assert [h.processes for h in histories] == [1, 2]
    assert histories[0].epochs == histories[1].epochs == 2  # two maximisation steps: anchors gathered over ranks
    torch.testing.assert_close(torch.tensor(histories[1].itc), torch.tensor(histories[0].itc), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(histories[1].vc), torch.tensor(histories[0].vc), rtol=1e-4, atol=1e-5)
    assert histories[1].outlier_drift == histories[0].outlier_drift

    # 08 then evaluates what torchrun trained instead of training again
    again = _train(config, tmp_path / "two", 1)
    assert again.returncode == 0 and "on 2 process(es)" in again.stdout, again.stderr[-3000:]
    odd = write_config(tmp_path / "odd.yaml", {**OVT_RUN, "ovt": {**OVT_RUN["ovt"], "clean_per_batch": 3}})
    refused = _train(odd, tmp_path / "two", 2)
    assert refused.returncode != 0 and "ovt.clean_per_batch = 3" in refused.stderr
