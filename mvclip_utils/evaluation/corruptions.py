"""2D-OOD corruptions: the OVT write-up's second zero-shot split, built from the canonical renders.

`corrupt` changes one image; `Corruption` is the seeded per-view perturbation that
`data.dataset.ViewImages(perturb=...)` applies on the fly (the same image each epoch).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

# ImageNet-C's severities 1, 3 and 5 of each corruption (Hendrycks & Dietterich 2019); blur
# sigmas are in pixels at 224 px and scaled to the render's resolution.
CORRUPTIONS: dict[str, tuple[float, float, float]] = {
    "gaussian_noise": (0.08, 0.18, 0.38),  # std of the noise on [0, 1] pixels
    "gaussian_blur": (1.0, 3.0, 6.0),  # sigma at 224 px
    "contrast": (0.4, 0.2, 0.05),  # factor towards the image mean
    "jpeg": (25, 15, 7),  # JPEG quality
}
SEVERITIES = (1, 2, 3)


def corrupt(image: np.ndarray, kind: str, severity: int, seed: int | list[int]) -> np.ndarray:
    """A 2D-OOD corruption of one uint8 RGB image [H, W, 3], deterministic for `seed`."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity {severity}: expected one of {SEVERITIES}")
    level = CORRUPTIONS[kind][severity - 1]
    x = image.astype(np.float32) / 255
    if kind == "gaussian_noise":
        x = x + np.random.default_rng(seed).normal(0, level, size=x.shape).astype(np.float32)
    elif kind == "gaussian_blur":
        radius = level * image.shape[0] / 224
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    elif kind == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * level + mean
    else:  # jpeg

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(level))
        return np.asarray(Image.open(buffer).convert("RGB"))
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


@dataclass(frozen=True)
class Corruption:
    """`corrupt` as a ViewImages perturbation, seeded by (seed, object, view); picklable for loader workers."""

    kind: str
    severity: int
    seed: int = 0

    def __post_init__(self) -> None:
        # fails now on an unknown kind/severity
        corrupt(np.zeros((8, 8, 3), np.uint8), self.kind, self.severity, seed=0)

    def __call__(self, image: np.ndarray, object_index: int, view_index: int) -> np.ndarray:
        return corrupt(image, self.kind, self.severity, seed=[self.seed, object_index, view_index])
