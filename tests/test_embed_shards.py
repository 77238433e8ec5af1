"""Embedding in shards: the merged file equals one unsharded embedding; missing and stale shards are refused."""

import copy

import numpy as np
import pytest
from helpers import rendered_run_with_backbone, run_module, write_config

from mvclip_utils.models.embed import embed_dataset, embed_shard, merge_embedding_shards

pytestmark = pytest.mark.slow

FAST = {"backbone": {"pretrain": {"steps": 4, "batch_size": 4, "torch_threads": 1}},
        "embed": {"batch_size": 8, "loader_workers": 0}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return rendered_run_with_backbone(tmp_path_factory.mktemp("run"), FAST)


def test_merged_shards_equal_one_embedding_and_the_merge_refuses_missing_or_stale_shards(run):
    cfg, layout, backbone = run
    whole = embed_dataset(cfg, layout, backbone, progress=False)
    layout.embeddings_file(backbone.slug).unlink()
    for shard in (0, 2):
        embed_shard(cfg, layout, backbone, shard, 3, progress=False)
    with pytest.raises(RuntimeError, match=r"embedding shard\(s\) 1 of 3 have not finished.*--shard 1/3"):
        merge_embedding_shards(cfg, layout, backbone, 3)
    embed_shard(cfg, layout, backbone, 1, 3, progress=False)
    merged = merge_embedding_shards(cfg, layout, backbone, 3)
    np.testing.assert_allclose(merged.image, whole.image, atol=1e-5)
    assert merged.provenance == whole.provenance and (merged.object_ids == whole.object_ids).all()
    np.testing.assert_allclose(merged.text, whole.text, atol=1e-6)
    again = embed_dataset(cfg, layout, backbone, progress=False)  # notebook 03 finds the merged file valid
    assert again.from_cache
    # A shard made with other prompt settings is stale: refused, naming it.
    other = copy.deepcopy(cfg)
    other.embed.prompt_templates = ["a picture of a {}"]
    with pytest.raises(RuntimeError, match=r"-0-of-3.npz was made from another embed_settings"):
        merge_embedding_shards(other, layout, backbone, 3)


def test_the_embed_command_line_shards_and_merges(run, tmp_path):
    cfg, layout, backbone = run
    config = write_config(tmp_path / "cfg.yaml", FAST)
    for shard in ("0/2", "1/2"):
        result = run_module("mvclip_utils", "embed", "--config", str(config), "--run-dir", str(layout.root), "--quiet",
                            "--shard", shard)
        assert result.returncode == 0, result.stderr[-2000:]
    result = run_module("mvclip_utils", "embed", "--config", str(config), "--run-dir", str(layout.root), "--merge", "2")
    assert result.returncode == 0 and result.stdout.strip().endswith(f"{backbone.slug}.npz")
    bad = run_module("mvclip_utils", "embed", "--config", str(config), "--run-dir", str(layout.root), "--merge", "4")
    assert bad.returncode == 2 and "embedding shard(s) 0, 1, 2, 3 of 4 have not finished" in bad.stderr
