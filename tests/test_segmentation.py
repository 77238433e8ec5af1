"""Notebook 11's models: shapes on a code grid and on pixels, and that training lowers the loss."""

import numpy as np
import pytest
import torch

from mvclip_utils.studies.segmentation import FeatureDecoder, LinearPatchProbe, SmallUNet, segmentation_loss


@pytest.mark.parametrize("make, inputs", [
    (lambda: FeatureDecoder(16, grid=4, size=32, n_classes=5, channels=16), torch.randn(4, 16, 4, 4)),
    (lambda: LinearPatchProbe(16, size=32, n_classes=5), torch.randn(4, 16, 4, 4)),
    pytest.param(lambda: SmallUNet(5, channels=8, depth=2), torch.rand(4, 3, 32, 32), marks=pytest.mark.slow),
])
def test_each_model_gives_class_logits_per_pixel_and_training_lowers_the_loss(make, inputs):
    torch.manual_seed(0)
    model = make()
    target = torch.zeros(4, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = torch.arange(1, 5)[:, None, None]  # a square of one class per image
    logits = model(inputs)
    assert logits.shape == (4, 5, 32, 32)
    with torch.no_grad():  # logits: the same in eval mode (never clamped like 10's images)
        torch.testing.assert_close(model.eval()(inputs), model.train()(inputs))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = segmentation_loss(model(inputs), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_class_pixel_counts_are_the_diagonal_and_margins_of_each_images_confusion_matrix():
    from mvclip_utils.evaluation.metrics import class_pixel_counts, confusion_matrix

    g = torch.Generator().manual_seed(0)
    truth, predicted = torch.randint(5, (3, 6, 6), generator=g), torch.randint(5, (3, 6, 6), generator=g)
    correct, true, pred = class_pixel_counts(predicted, truth, 5)
    for i in range(3):
        confusion = confusion_matrix(predicted[i].numpy(), truth[i].numpy(), 5)
        assert np.array_equal(correct[i].numpy(), np.diag(confusion))
        assert np.array_equal(true[i].numpy(), confusion.sum(1)) and np.array_equal(pred[i].numpy(), confusion.sum(0))


def test_pixel_stats_on_constructed_masks():
    from mvclip_utils.studies.segmentation import _StatsAccumulator

    truth = torch.zeros(2, 4, 4, dtype=torch.long)
    truth[:, :2, :2] = 1
    truth[:, 2:, 2:] = 2
    wrong = truth.clone()
    wrong[1][truth[1] == 2] = 1  # image 1: part 2 predicted as part 1
    accumulator = _StatsAccumulator(n_objects=1, n_views=2, n_classes=3)
    accumulator.add(wrong, truth, np.array([0, 0]), np.array([0, 1]))
    stats = accumulator.result()
    assert stats.miou(np.array([True, False])) == 1.0  # view 0 perfect
    # view 1: part 1 IoU 4 / 8, part 2 IoU 0 -> mIoU 0.25; pixel accuracy 12 / 16
    assert stats.miou(np.array([False, True])) == pytest.approx(0.25)
    assert stats.pixel_accuracy(np.array([False, True])) == pytest.approx(0.75)
    assert stats.image_miou.tolist() == [[1.0, 0.25]] and stats.foreground_iou.tolist() == [[1.0, 1.0]]
    # pooled over both views: part 1 8 / 12, part 2 4 / 8
    assert stats.miou() == pytest.approx((8 / 12 + 4 / 8) / 2)


def test_evaluation_keeps_the_first_test_objects_of_each_category_in_table_order():
    import pandas as pd

    from mvclip_utils.data.dataset import first_objects_per_category

    objects = pd.DataFrame({"object_id": [f"o{i}" for i in range(8)],
                            "category": ["mug", "car", "mug", "mug", "car", "car", "mug", "car"],
                            "split": ["test", "test", "train", "test", "test", "test", "test", "test"],
                            "status": ["ok", "ok", "ok", "failed", "ok", "ok", "ok", "ok"]})
    assert first_objects_per_category(objects, "test", 2) == ["o0", "o1", "o4", "o6"]  # o2: train; o3: failed
    assert first_objects_per_category(objects, "test", 0) is None  # every test object
