"""What a finer feature grid would cost the embedded backbone: the mvclip-tiny image tower at 64 px
with patch 16 (a 4 x 4 grid, the default) against patch 8 (8 x 8), forward and backward of one
batch, as pretraining (02) and Omniview-Tuning (08) run it. The ratio is measured in one run.

    python benchmarks/patch_grid.py [--batch 64] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import open_clip
import torch

from mvclip_utils.models.backbone import MODEL_CONFIGS


def step_ms(config: dict, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**config)
    optimizer = torch.optim.Adam(model.visual.parameters(), 1e-3)
    size = config["vision_cfg"]["image_size"]
    images = torch.randn(batch, 3, size, size)
    for i in range(steps + 3):  # three warm-up steps
        if i == 3:
            start = time.perf_counter()
        loss = model.encode_image(images).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    base = json.loads((MODEL_CONFIGS / "mvclip-tiny.json").read_text())
    size = base["vision_cfg"]["image_size"]
    times = {}
    for patch in (16, 8):
        config = copy.deepcopy(base)
        config["vision_cfg"]["patch_size"] = patch
        times[patch] = step_ms(config, args.batch, args.steps)
        print(f"patch {patch:2d} ({size // patch} x {size // patch} grid): {times[patch]:6.1f} ms per forward+backward "
              f"of {args.batch} images")
    print(f"patch 8 / patch 16: {times[8] / times[16]:.1f}x")


if __name__ == "__main__":
    main()
