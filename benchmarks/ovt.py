"""Omniview-Tuning and centroid distillation (ours) against a full fine-tune of the same image tower:
training images/s and peak memory, on mvclip-tiny (64 px) and on a randomly initialised ViT-B-32
(224 px); CPU, or CUDA with bf16 autocast when a GPU is present.

    python benchmarks/ovt.py [--steps 5] [--batch 16] [--views 4]

A batch is batch / views objects x views views. OVT: ITC + VC to each object's kNN-weighted anchor
(computed once, as at an epoch's start); ours: ITC + the distance to each object's fixed target
(its frozen centroid); full: ITC with every image-tower weight trainable. Each variant runs in a
fresh process, so its peak resident memory is its own; the ratios are measured in the same run.
On a GPU the CUDA peak is reported as well.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch


def _run(model_name: str, size: int, variant: str, steps: int, batch: int, views: int, queue: mp.Queue) -> None:
    import logging

    import open_clip

    from mvclip_utils.models.adapters import OmniviewCLIP, trainable_parameters
    from mvclip_utils.models.backbone import create_tiny_model
    from mvclip_utils.models.losses import clip_loss, distance_to_targets, knn_weighted_anchor, view_consistency_loss

    logging.getLogger().setLevel(logging.ERROR)  # random weights are intended here
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = create_tiny_model()[0] if model_name == "mvclip-tiny" else open_clip.create_model(model_name)
    if variant in ("ovt", "ours"):  # the same adapters; only the loss differs
        model = OmniviewCLIP(base)
    else:  # every image-tower weight trainable, the text tower frozen as in OVT
        model = base
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("visual."))
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device)
    text = torch.nn.functional.normalize(torch.randn(batch, base.text_projection.shape[1], device=device), dim=-1)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad(), autocast:  # OVT's anchor / our target: from the tower before tuning, per object
        frozen = model.encode_image(images).float().reshape(batch // views, views, -1)
    anchor = knn_weighted_anchor(frozen).repeat_interleave(views, 0)
    target = torch.nn.functional.normalize(frozen.mean(1), dim=-1).repeat_interleave(views, 0)

    def step() -> None:
        with autocast:
            z = model.encode_image(images).float()
        loss = clip_loss(z, text, torch.tensor(100.0, device=device))
        if variant == "ovt":
            loss = loss + view_consistency_loss(z, anchor)
        elif variant == "ours":
            loss = loss + distance_to_targets(z, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    queue.put({"images_per_s": steps * batch / seconds, "trainable": trainable_parameters(model)[0],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None})


def measure(model_name: str, size: int, variant: str, steps: int, batch: int, views: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(model_name, size, variant, steps, batch, views, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--views", type=int, default=4, help="views per object in a batch")
    args = parser.parse_args()
    if args.batch % args.views:
        raise SystemExit(f"--batch {args.batch} is not a multiple of --views {args.views}")
    device = "CUDA, bf16 autocast" if torch.cuda.is_available() else "CPU, float32"
    print(f"{device}; {args.batch // args.views} objects x {args.views} views per step, {args.steps} steps")
    for model_name, size in (("mvclip-tiny", 64), ("ViT-B-32", 224)):
        results = {v: measure(model_name, size, v, args.steps, args.batch, args.views) for v in ("ovt", "ours", "full")}
        for variant, r in results.items():
            print(f"{model_name:12s} {size:3d} px  {variant:4s}: {r['images_per_s']:7.1f} images/s, "
                  f"{r['trainable']:>11,} trainable, peak RSS {r['peak_rss_mb']:7.0f} MB"
                  + (f", CUDA peak {r['cuda_peak_mb']:.0f} MB" if r["cuda_peak_mb"] is not None else ""))
        full = results["full"]
        for variant, label in (("ovt", "OVT"), ("ours", "ours")):
            r = results[variant]
            print(f"{model_name:12s} {label} / full fine-tune: {r['images_per_s'] / full['images_per_s']:.2f}x the "
                  f"speed, {r['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the peak memory, "
                  f"{r['trainable'] / full['trainable']:.3f}x the trainable parameters")
    print(json.dumps({"steps": args.steps, "batch": args.batch, "views": args.views, "device": device}))


if __name__ == "__main__":
    main()
