"""Pretraining the tiny backbone and embedding a real rendered dataset, with their caches."""

import numpy as np
import pytest
import torch

from mvclip_utils.backbone import load_backbone, tiny_checkpoint
from mvclip_utils.dataset import build_dataset
from mvclip_utils.embed import embed_dataset, embeddings_path, load_embeddings
from mvclip_utils.pretrain import pretrain_tiny_clip, pretrain_view_ids, random_crops
from mvclip_utils.runs import RunLayout

from conftest import make_config

pytestmark = pytest.mark.slow

FAST = {"backbone": {"pretrain": {"steps": 6, "batch_size": 4, "torch_threads": 1}},
        "embed": {"batch_size": 16, "loader_workers": 0}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    layout = RunLayout(tmp_path_factory.mktemp("run"))
    build_dataset(make_config(FAST), layout, progress=False)
    return layout


def test_pretraining_writes_a_loadable_checkpoint_and_is_cached(rendered):
    layout = rendered
    cfg = make_config(FAST)
    record = pretrain_tiny_clip(cfg, layout, progress=False)
    assert record.steps == 6 and len(record.losses) == 6 and record.n_objects == 3  # half of 6 objects
    assert record.view_ids == ["el+10_az000"] and record.n_images == 3
    assert all(np.isfinite(record.losses))
    mtime = tiny_checkpoint(layout).stat().st_mtime_ns
    again = pretrain_tiny_clip(cfg, layout, progress=False)
    assert again == record and tiny_checkpoint(layout).stat().st_mtime_ns == mtime
    control = make_config({**FAST, "backbone": {"pretrain": {**FAST["backbone"]["pretrain"], "views": "all"}}})
    assert pretrain_view_ids(control, layout) == [f"el+{e}_az{a:03d}" for e in (30, 10) for a in (0, 90, 180, 270)]
    backbone = load_backbone(cfg.backbone, layout)
    assert backbone.encode_texts(["a red mug"]).shape == (1, 128)


def test_embeddings_cover_every_view_and_are_cached(rendered):
    layout = rendered
    cfg = make_config(FAST)
    pretrain_tiny_clip(cfg, layout, progress=False)
    backbone = load_backbone(cfg.backbone, layout)
    emb = embed_dataset(cfg, layout, backbone, progress=False)
    assert emb.image.shape == (6, 10, 128) and emb.text.shape == (6, 128) and emb.category_text.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(emb.image, axis=-1), 1, atol=1e-5)
    assert list(emb.category_names) == ["bottle", "car", "mug"]
    assert [emb.category_names[k] for k in emb.labels] == list(emb.categories)
    # Batched embeddings equal one-image-at-a-time ones.
    from mvclip_utils.dataset import load_image

    single = backbone.encode_images(backbone.uint8_to_input(torch.from_numpy(load_image(layout, "car_0001", "ood_below"))[None]))
    i, v = list(emb.object_ids).index("car_0001"), list(emb.view_ids).index("ood_below")
    np.testing.assert_allclose(emb.image[i, v], single[0].numpy(), atol=1e-5)

    path = embeddings_path(layout, backbone.slug)
    mtime = path.stat().st_mtime_ns
    assert not emb.from_cache
    assert embed_dataset(cfg, layout, backbone, progress=False).from_cache
    assert path.stat().st_mtime_ns == mtime, "same backbone and dataset: loaded from the cache"
    loaded = load_embeddings(layout, backbone.slug)
    np.testing.assert_array_equal(loaded.image, emb.image)
    assert loaded.split("test").image.shape[0] == 3

    # Other weights: the cache is stale and recomputed.
    other = make_config({**FAST, "backbone": {"pretrain": {**FAST["backbone"]["pretrain"], "seed": 1}}})
    pretrain_tiny_clip(other, layout, progress=False)
    changed = embed_dataset(other, layout, load_backbone(other.backbone, layout), progress=False)
    assert path.stat().st_mtime_ns != mtime
    assert not np.allclose(changed.image, emb.image)


def test_random_crops_keep_shape_and_change_content():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    out = random_crops(x, 0.5)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.testing.assert_close(random_crops(x, 1.0), x)
