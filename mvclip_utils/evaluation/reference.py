"""Brute-force references the closed-form metrics are checked against (tests) and timed
against (benchmarks): the full NV x NV similarity matrix, no tricks. Never used in a run."""

from __future__ import annotations

import torch

from .metrics import SimilarityStats, _as_tensor


def brute_force_similarity(image, text) -> dict[str, SimilarityStats]:
    """Reference implementation over the full NV x NV matrix (tests and benchmarks only)."""
    image, text = _as_tensor(image).double(), _as_tensor(text).double()
    n, v, d = image.shape
    flat = image.reshape(n * v, d)
    sims = flat @ flat.T
    owner = torch.arange(n).repeat_interleave(v)
    same = owner[:, None] == owner[None, :]
    diag = torch.eye(n * v, dtype=torch.bool)

    def stats(mask: torch.Tensor) -> SimilarityStats:
        values = sims[mask]
        per_object = torch.stack([sims[owner == i][mask[owner == i]].mean() for i in range(n)])
        return SimilarityStats(float(values.mean()), float(values.std(unbiased=False)),
                               float(per_object.std(unbiased=False)), int(mask.sum()))

    text_sims = (image * text[:, None]).sum(-1)
    return {
        "same_object": stats(same & ~diag),
        "cross_object": stats(~same),
        "text_image": SimilarityStats(float(text_sims.mean()), float(text_sims.std(unbiased=False)),
                                      float(text_sims.mean(1).std(unbiased=False)), n * v),
    }


