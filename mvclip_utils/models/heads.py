"""Heads trained on frozen CLIP embeddings: the seed's MLP head and its view autoencoder.

Differences from the seed code, on purpose:
- no ReLU after the last layer of any head, encoder or decoder: CLIP components are
  signed, and a final ReLU would make every output non-negative;
- the autoencoder's forward pass is the same in training and evaluation (the seed
  tested `if self.train:`, a bound method, which is always true).
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(widths: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class MLPHead(nn.Module):
    """The seed's head: D -> hidden -> hidden -> D (512-512-512 for ViT-B/32)."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or dim
        self.net = mlp([dim, hidden, hidden, dim])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    embed = forward  # what evaluation uses


class ViewAutoencoder(nn.Module):
    """View-independent (VI) and view-dependent (VD) encoders and decoders; output = VI + VD.

    Seed widths for D = 512: encoders 512-512-256-128, decoders back. At test time only the
    VI path is used: `embed(x) = vi_decoder(vi_encoder(x))`.
    """

    def __init__(self, dim: int, code_widths: tuple[int, ...] = (256, 128)):
        super().__init__()
        widths = [dim, dim, *code_widths]
        self.vi_encoder, self.vd_encoder = mlp(widths), mlp(widths)
        self.vi_decoder, self.vd_decoder = mlp(widths[::-1]), mlp(widths[::-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction VI + VD, VI codes, VI decoding)."""
        vi_code = self.vi_encoder(x)
        vi_decoded = self.vi_decoder(vi_code)
        return vi_decoded + self.vd_decoder(self.vd_encoder(x)), vi_code, vi_decoded

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.vi_decoder(self.vi_encoder(x))
