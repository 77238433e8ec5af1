"""Notebook 11 end to end on a tiny rendered run: the shared train batches (held in memory or read
from disk: the same sequence), the two baselines, the results rows and the saved models."""

import json

import numpy as np
import pytest
import torch
from helpers import rendered_run_with_backbone

from mvclip_utils.data.dataset import PartClasses, ViewImages, load_mask, load_objects, load_views
from mvclip_utils.evaluation.results import load_results
from mvclip_utils.models.backbone import InputTransform, load_backbone
from mvclip_utils.models.opened_run import OpenedRun
from mvclip_utils.studies import segmentation

pytestmark = pytest.mark.slow

SETUP = {"dataset": {"procedural": {"categories": ["mug", "bottle", "car"], "objects_per_category": 4},
                     "splits": {"pretrain": 0.25, "train": 0.25, "val": 0.25, "test": 0.25}},
         "backbone": {"pretrain": {"steps": 4, "batch_size": 4, "torch_threads": 1}},
         "embed": {"batch_size": 16, "loader_workers": 0},
         "segmentation": {"steps": 6, "batch_size": 4, "validate_every": 3, "channels": 8, "unet_channels": 4,
                          "unet_depth": 2}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg, layout, _ = rendered_run_with_backbone(tmp_path_factory.mktemp("run"), SETUP)
    return cfg, layout


def test_view_images_carry_the_masks_of_their_views(run):
    cfg, layout = run
    data = ViewImages(layout, ["test"], masks=True)
    item = data[data.index(1, 2)]
    expected = load_mask(layout, data.objects.object_id[1], data.view_ids[2])
    assert item.mask.dtype == torch.uint8 and np.array_equal(item.mask.numpy(), expected)
    assert ViewImages(layout, ["test"])[0].mask is None


def test_train_batches_are_the_same_sequence_in_memory_and_from_disk(run):
    cfg, layout = run
    backbone = load_backbone(cfg.backbone, layout)
    objects = load_objects(layout)
    classes = PartClasses.from_objects(objects[objects.status == "ok"])
    grid = load_views(layout).query("kind == 'grid'").view_id.tolist()
    train = ViewImages(layout, ["train"], grid, masks=True)
    inputs = segmentation._Inputs(backbone, InputTransform.for_model(backbone.model))
    cached = segmentation.TrainBatches(train, classes, inputs, cfg, (128, 2))
    cfg.segmentation.cache_mb = 0
    streamed = segmentation.TrainBatches(train, classes, inputs, cfg, (128, 2))
    cfg.segmentation.cache_mb = 2048
    assert cached.cached and not streamed.cached
    for kind in ("decoder", "unet"):
        pairs = list(zip(cached(kind), streamed(kind)))
        assert len(pairs) == cfg.segmentation.steps
        for (x_cached, y_cached), (x_streamed, y_streamed) in pairs:
            torch.testing.assert_close(x_cached, x_streamed)
            assert torch.equal(y_cached, y_streamed) and y_cached.dtype == torch.long
    assert int(cached.labels.max()) < classes.n_classes and int(cached.labels.max()) > 0


def test_run_segmentation_writes_rows_models_and_sensible_baselines(run):
    cfg, layout = run
    result = segmentation.run_segmentation(OpenedRun.open(cfg, layout), progress=False)
    rows = result.rows
    assert rows["category"]["seg_foreground_iou"] == rows["foreground"]["seg_foreground_iou"] == 1.0  # true silhouettes
    assert rows["prior"]["seg_foreground_iou"] < 1.0
    for kind in segmentation.METHODS:
        assert 0.0 <= rows[kind]["seg_miou"] <= 1.0 and 0.0 <= rows[kind]["seg_pixel_accuracy"] <= 1.0
        assert len(result.curves[kind].losses) == 6 and result.curves[kind].val_steps == [2, 5]
        saved = torch.load(layout.model_weights(segmentation.METHODS[kind]), weights_only=False)
        assert saved["n_classes"] == result.classes.n_classes == 1 + 2 + 4 + 4  # mug, bottle, car parts
        assert json.loads(layout.training_curves(segmentation.METHODS[kind]).read_text())["val_steps"] == [2, 5]
    table = load_results(layout).set_index("method")
    for method in [*segmentation.METHODS.values(), *segmentation.BASELINE_METHODS.values()]:
        assert 0.0 <= table.loc[method, "seg_miou"] <= 1.0
    # The per-view frame: every view, the canonical marked, per-image mIoU in [0, 1].
    by_view = result.by_view()["decoder"]
    assert len(by_view) == len(result.views) and by_view.image_miou.between(0, 1).all()
    labels, examples = segmentation.segmentation_examples(result, objects=2)
    assert examples["render"].shape[-1] == 3 and examples["truth"].shape == examples[segmentation.LABELS["unet"]].shape
    assert len(labels) == len(examples["truth"]) == 2 * 3  # canonical, opposite, ood
    assert "Frozen features against a UNet" in segmentation.describe_segmentation(result)
    assert list(segmentation.per_part_iou(result).columns[:3]) == ["category", "part", "part_name"]
