"""Batched embedding (DataLoader workers + batches) against a per-image loop.

    python benchmarks/embed.py [--run-dir outputs/default] [--objects 60] [--model ViT-B-32]

Uses the rendered images of a run (make run, or a smoke run) and its backbone if it
has one, otherwise a randomly initialised mvclip-tiny (throughput does not depend on
the weights). Prints images/s of both and their ratio, measured in the same run.
`--model ViT-B-32` measures a randomly initialised open_clip model instead (the real
study's; renders are resized to its 224 px input), on CUDA with mixed precision when there
is a GPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import OUTPUTS_DIR, RunLayout
from mvclip_utils.core.schema import SPLITS
from mvclip_utils.data.dataset import ViewImages, load_image, load_objects, load_views
from mvclip_utils.models.backbone import Backbone, create_tiny_model, load_backbone
from mvclip_utils.models.embed import encode_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(OUTPUTS_DIR / "default"))
    parser.add_argument("--objects", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="", help="an open_clip model name, randomly initialised")
    args = parser.parse_args()
    layout = RunLayout(Path(args.run_dir))
    if not layout.objects_table.exists():
        raise SystemExit(f"{layout.objects_table} is missing: render a run first (make run, or "
                         f"mvclip run --config params/smoke.yaml --only 01)")
    config = layout.notebook_config("02_backbone")
    if args.model:
        import open_clip

        from mvclip_utils.core.distributed import resolve_device

        device = resolve_device("auto")
        model = open_clip.create_model(args.model).to(device).eval()
        backbone = Backbone(model, None, open_clip.get_tokenizer(args.model), device, device.type == "cuda",
                            f"{args.model} (random)", "", "")
    elif config.exists():  # the backbone notebook 02 loaded
        backbone = load_backbone(load_config(config).backbone, layout)
    else:
        model, _ = create_tiny_model()
        backbone = Backbone(model.eval(), None, None, torch.device("cpu"), False, "mvclip-tiny (random)", "", "")
    objects = load_objects(layout)
    ids = objects[objects.status == "ok"].object_id.tolist()[: args.objects]
    view_ids = load_views(layout).view_id.tolist()
    n = len(ids) * len(view_ids)
    print(f"{backbone.name}, {len(ids)} objects x {len(view_ids)} views = {n} images, "
          f"torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    encode_views(backbone, ViewImages(layout, SPLITS, view_ids, object_ids=ids), args.batch_size, args.workers,
                 progress=False)
    batched = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for oid in ids:
        for vid in view_ids:
            backbone.encode_images(backbone.uint8_to_input(torch.from_numpy(load_image(layout, oid, vid))[None]))
    looped = n / (time.perf_counter() - start)
    print(f"batched (batch {args.batch_size}, {args.workers} loader workers): {batched:8.0f} images/s")
    print(f"per-image loop:                                {looped:8.0f} images/s")
    print(f"ratio: {batched / looped:.1f}x")


if __name__ == "__main__":
    main()
