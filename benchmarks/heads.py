"""One training step of each head with the vectorised losses against the loop references.

    python benchmarks/heads.py [--objects 16] [--views 6] [--dim 512]

The loop references iterate over objects and pairs in Python (they define the losses
in tests/test_losses.py); the ratio is measured in the same run. A full seed epoch
(every train object x 6 views) is then timed with the vectorised losses alone.
"""

from __future__ import annotations

import argparse
import time

import torch

from mvclip_utils.models import losses
from mvclip_utils.models.heads import MLPHead


def step_time(loss_fn, head: MLPHead, image: torch.Tensor, text: torch.Tensor, repeats: int) -> float:
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for _ in range(repeats):
        loss = loss_fn(head(image), text)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--views", type=int, default=6)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--epoch-objects", type=int, default=1000)
    args = parser.parse_args()
    torch.manual_seed(0)
    image, text = torch.randn(args.objects, args.views, args.dim), torch.randn(args.objects, args.dim)
    head = MLPHead(args.dim)
    print(f"{args.objects} objects x {args.views} views x {args.dim} dims, torch threads {torch.get_num_threads()}")
    for name, fast, loop in [
        ("object similarity", losses.object_similarity_loss, losses.object_similarity_loss_loop),
        ("seed contrastive", losses.seed_contrastive_loss, losses.seed_contrastive_loss_loop),
        ("multi-positive InfoNCE", losses.multi_positive_infonce, losses.multi_positive_infonce_loop),
    ]:
        vectorised = step_time(fast, head, image, text, repeats=20)
        looped = step_time(loop, head, image, text, repeats=1)
        print(f"{name:<24} vectorised {vectorised * 1e3:8.2f} ms/step   loop {looped * 1e3:9.1f} ms/step   "
              f"ratio {looped / vectorised:7.0f}x")
    image = torch.randn(args.epoch_objects, args.views, args.dim)
    text = torch.randn(args.epoch_objects, args.dim)
    epoch = step_time(losses.seed_contrastive_loss, head, image, text, repeats=5)
    print(f"seed epoch (full batch of {args.epoch_objects} objects x {args.views} views): {epoch * 1e3:.1f} ms, "
          f"so 1000 epochs take {epoch * 1000:.0f} s")


if __name__ == "__main__":
    main()
