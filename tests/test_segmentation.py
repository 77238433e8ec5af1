"""Notebook 11's models: shapes on a code grid and on pixels, and that training lowers the loss."""

import numpy as np
import pytest
import torch

from mvclip_utils.segmentation import FeatureDecoder, LinearPatchProbe, SmallUNet, segmentation_loss


@pytest.mark.parametrize("make, inputs", [
    (lambda: FeatureDecoder(16, grid=4, size=32, n_classes=5, channels=16), torch.randn(4, 16, 4, 4)),
    (lambda: LinearPatchProbe(16, size=32, n_classes=5), torch.randn(4, 16, 4, 4)),
    (lambda: SmallUNet(5, channels=8, depth=2), torch.rand(4, 3, 32, 32)),
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
