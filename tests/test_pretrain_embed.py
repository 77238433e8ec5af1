"""Pretraining the tiny backbone and embedding a real rendered dataset, with their caches."""

import json

import numpy as np
import pytest
import torch

from mvclip_utils.core.runs import RunLayout, StaleArtifactError
from mvclip_utils.data.dataset import build_dataset, load_objects
from mvclip_utils.models.backbone import CaptionTokenizer, load_backbone, read_backbone_record, write_backbone_record
from mvclip_utils.models.embed import embed_dataset, load_embeddings
from mvclip_utils.studies.pretrain import pretrain_tiny_clip, pretrain_view_ids, random_crops


def tiny_checkpoint(layout, slug="mvclip-tiny"):
    return layout.backbone_checkpoint(slug)

from helpers import make_config

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
    assert record.view_ids == ["el+30_az000"] and record.n_images == 3  # middle of the sorted elevations
    assert all(np.isfinite(record.losses))
    mtime = tiny_checkpoint(layout).stat().st_mtime_ns
    again = pretrain_tiny_clip(cfg, layout, progress=False)
    assert again == record and tiny_checkpoint(layout).stat().st_mtime_ns == mtime
    control = make_config({**FAST, "backbone": {"pretrain": {**FAST["backbone"]["pretrain"], "views": "all"}}})
    assert pretrain_view_ids(control, layout) == [f"el+{e}_az{a:03d}" for e in (30, 10) for a in (0, 90, 180, 270)]
    backbone = load_backbone(cfg.backbone, layout)
    assert backbone.encode_texts(["a red mug"]).shape == (1, 128)
    assert float(backbone.model.logit_scale.detach().exp()) == pytest.approx(100.0)  # held at real CLIP's final value
    # The all-views control is a backbone of its own: it never replaces the canonical model's files.
    pretrain_tiny_clip(control, layout, progress=False)
    assert tiny_checkpoint(layout).stat().st_mtime_ns == mtime
    control_backbone = load_backbone(control.backbone, layout)
    assert control_backbone.slug == "mvclip-tiny-allviews" and control_backbone.identity != backbone.identity
    assert tiny_checkpoint(layout, "mvclip-tiny-allviews").exists()


def test_vocabulary_comes_from_the_pretrain_split_only(rendered):
    layout = rendered
    cfg = make_config(FAST)
    pretrain_tiny_clip(cfg, layout, progress=False)
    vocabulary = set(CaptionTokenizer.load(layout.backbone_vocabulary("mvclip-tiny")).words)
    objects = load_objects(layout)
    def words(split):
        return {w for c in objects[objects.split == split].caption for w in CaptionTokenizer.split(c)}
    assert words("pretrain") <= vocabulary
    test_only = words("test") - words("pretrain") - {"mug", "bottle", "car"}
    assert test_only and not (test_only & vocabulary), "no word only test captions use is in the vocabulary"


def test_an_interrupted_pretraining_is_redone_and_never_read_under_the_old_record(rendered):
    layout = rendered
    cfg = make_config(FAST)
    pretrain_tiny_clip(cfg, layout, progress=False)
    backbone = load_backbone(cfg.backbone, layout)
    write_backbone_record(layout, backbone, pretrain_tiny_clip(cfg, layout, progress=False).dataset_fingerprint)
    assert read_backbone_record(layout)["identity"] == backbone.identity
    # New weights landed, the record did not (02 killed in between): the record refuses them ...
    torch.save({"state_dict": {}}, tiny_checkpoint(layout))
    with pytest.raises(StaleArtifactError, match="Rerun notebook 02_backbone"):
        read_backbone_record(layout)
    # ... and the next 02 pretrains again instead of trusting the record.
    mtime = tiny_checkpoint(layout).stat().st_mtime_ns
    record = pretrain_tiny_clip(cfg, layout, progress=False)
    assert tiny_checkpoint(layout).stat().st_mtime_ns != mtime
    from mvclip_utils.core.runs import file_digest
    assert record.checkpoint_sha == file_digest(tiny_checkpoint(layout))


def test_embeddings_cover_every_view_and_are_cached(rendered):
    layout = rendered
    cfg = make_config(FAST)
    record = pretrain_tiny_clip(cfg, layout, progress=False)
    backbone = load_backbone(cfg.backbone, layout)
    write_backbone_record(layout, backbone, record.dataset_fingerprint)
    emb = embed_dataset(cfg, layout, backbone, progress=False)
    assert emb.category_text_unseen.shape == (3, 128)
    assert not np.allclose(emb.category_text_unseen, emb.category_text)
    assert emb.image.shape == (6, 10, 128) and emb.text.shape == (6, 128) and emb.category_text.shape == (3, 128)
    assert emb.logit_scale == pytest.approx(100.0)  # the backbone's, carried for the probes' zero-shot classifier
    np.testing.assert_allclose(np.linalg.norm(emb.image, axis=-1), 1, atol=1e-5)
    assert list(emb.category_names) == ["bottle", "car", "mug"]
    assert [emb.category_names[k] for k in emb.labels] == list(emb.categories)
    # Batched embeddings equal one-image-at-a-time ones.
    from mvclip_utils.data.dataset import load_image

    single = backbone.encode_images(
        backbone.uint8_to_input(torch.from_numpy(load_image(layout, "car_0001", "ood_below"))[None]))
    i, v = list(emb.object_ids).index("car_0001"), list(emb.view_ids).index("ood_below")
    np.testing.assert_allclose(emb.image[i, v], single[0].numpy(), atol=1e-5)

    path = layout.embeddings_file(backbone.slug)
    mtime = path.stat().st_mtime_ns
    assert not emb.from_cache
    cached = embed_dataset(cfg, layout, backbone, progress=False)
    assert cached.from_cache and cached.logit_scale == emb.logit_scale
    assert path.stat().st_mtime_ns == mtime, "same backbone and dataset: loaded from the cache"
    loaded = load_embeddings(layout, cfg)
    np.testing.assert_array_equal(loaded.image, emb.image)
    assert loaded.split("test").image.shape[0] == 3
    # Other prompt settings than the file's: refused, naming the notebook to rerun.
    reworded = make_config({**FAST, "embed": {**FAST["embed"], "unseen_prompt_templates": ["the {} again"]}})
    with pytest.raises(StaleArtifactError, match=r"mvclip-tiny\.npz is stale: .*Rerun notebook 03_embed"):
        load_embeddings(layout, reworded)

    # Other weights: the reader refuses the old file until 03 reruns; the cache is then recomputed.
    other = make_config({**FAST, "backbone": {"pretrain": {**FAST["backbone"]["pretrain"], "seed": 1}}})
    other_record = pretrain_tiny_clip(other, layout, progress=False)
    other_backbone = load_backbone(other.backbone, layout)
    write_backbone_record(layout, other_backbone, other_record.dataset_fingerprint)
    with pytest.raises(StaleArtifactError, match="made by backbone mvclip-tiny"):
        load_embeddings(layout, other)
    changed = embed_dataset(other, layout, other_backbone, progress=False)
    assert path.stat().st_mtime_ns != mtime
    assert not np.allclose(changed.image, emb.image)
    assert load_embeddings(layout, other).backbone_identity == other_backbone.identity


def test_random_crops_keep_shape_and_change_content():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    out = random_crops(x, 0.5)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.testing.assert_close(random_crops(x, 1.0), x)


def test_an_opened_run_reads_and_checks_once_and_the_fingerprint_follows_the_status_files(rendered):
    from mvclip_utils.data.dataset import _fingerprint, dataset_fingerprint, load_views
    from mvclip_utils.models.embed import load_embeddings
    from mvclip_utils.models.opened_run import OpenedRun

    layout = rendered
    cfg = make_config(FAST)
    record = pretrain_tiny_clip(cfg, layout, progress=False)
    backbone = load_backbone(cfg.backbone, layout)
    write_backbone_record(layout, backbone, record.dataset_fingerprint)
    embed_dataset(cfg, layout, backbone, progress=False)
    opened = OpenedRun.open(cfg, layout)
    assert opened.dataset_fingerprint == _fingerprint(layout, load_objects(layout), load_views(layout))
    assert opened.backbone_record["identity"] == read_backbone_record(layout)["identity"]
    assert opened.embeddings is opened.embeddings  # read and checked once
    np.testing.assert_array_equal(opened.embeddings.image, load_embeddings(layout, cfg).image)
    # A status file changed behind the process's back (not by a rename) changes the fingerprint it gives.
    status = layout.status_path(opened.objects.object_id[0])
    text = status.read_text()
    changed = json.loads(text)
    changed["views"][opened.views.view_id[0]] = "a view rendered with other settings"
    try:
        status.write_text(json.dumps(changed))
        assert dataset_fingerprint(layout) != opened.dataset_fingerprint
    finally:
        status.write_text(text)
    assert dataset_fingerprint(layout) == opened.dataset_fingerprint
