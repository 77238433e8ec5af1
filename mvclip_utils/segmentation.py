"""Part segmentation of the renders (notebook 11; the seed write-up `clip-feature-probes.txt`,
"Training segmentation from CLIP"): how much of *where things are* survives in CLIP's spatial
features. Three models on the same data and steps, all predicting the global (category, part)
classes of `dataset.PartClasses` plus the background:

- `FeatureDecoder`: an upsampling conv decoder on the **frozen spatial features** (the seed's
  idea, without UNet skip connections; the decoder of notebook 10's VQ-VAE with class logits out);
- `LinearPatchProbe`: one linear map per patch token, upsampled bilinearly (the probe3d-style floor);
- `SmallUNet`: a small UNet trained from scratch on the pixels (the seed's comparison).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vqvae import Decoder


class FeatureDecoder(nn.Module):
    """Frozen spatial features [B, F, h, w] -> class logits [B, K, S, S]."""

    def __init__(self, feature_channels: int, grid: int, size: int, n_classes: int, channels: int = 64):
        super().__init__()
        self.decoder = Decoder(feature_channels, grid, size, channels, out_channels=n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)


class LinearPatchProbe(nn.Module):
    """A linear classifier on each patch token, its logits upsampled bilinearly to the image."""

    def __init__(self, feature_channels: int, size: int, n_classes: int):
        super().__init__()
        self.linear, self.size = nn.Conv2d(feature_channels, n_classes, 1), size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.linear(features), size=(self.size, self.size), mode="bilinear", align_corners=False)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.ReLU())


class SmallUNet(nn.Module):
    """A UNet from scratch on the pixels [B, 3, S, S] (in [0, 1]) -> class logits [B, K, S, S]:
    `depth` halvings with skip connections, channels doubling from `channels`."""

    def __init__(self, n_classes: int, channels: int = 16, depth: int = 3):
        super().__init__()
        widths = [channels * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips, x = [], images
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy over the global classes (background included)."""
    return F.cross_entropy(logits, target)
