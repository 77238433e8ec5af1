"""Closed-form consistency metrics against the brute-force NV x NV reference.

    python benchmarks/metrics.py [--brute-objects 200] [--large-objects 20000]

Prints the time of both at the largest size the brute force handles comfortably (and
their ratio, measured in the same run), then the closed-form time for the seed's
Objaverse-scale shape: 20,000 objects x 36 views x 512 dims.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mvclip_utils.evaluation import metrics, reference


def embeddings(n: int, v: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n, 1, d, generator=g)
    image = F.normalize(centres + torch.randn(n, v, d, generator=g), dim=-1)
    text = F.normalize(centres[:, 0] + torch.randn(n, d, generator=g), dim=-1)
    return image, text


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brute-objects", type=int, default=200)
    parser.add_argument("--large-objects", type=int, default=20000)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    image, text = embeddings(args.brute_objects, 36, 512)
    brute, brute_s = timed(reference.brute_force_similarity, image, text)
    closed, closed_s = timed(metrics.similarity_stats, image, text)
    worst = max(abs(getattr(closed[k], f) - getattr(brute[k], f))
                for k in brute for f in ("mean", "pooled_std", "object_std"))
    print(f"{args.brute_objects} objects x 36 views x 512: brute force {brute_s:7.2f} s, "
          f"closed form {closed_s:6.3f} s, ratio {brute_s / closed_s:6.0f}x, max difference {worst:.1e}")

    image, text = embeddings(args.large_objects, 36, 512)
    _, large_s = timed(metrics.similarity_stats, image, text)
    _, pairs_s = timed(metrics.view_pair_matrices, image)
    print(f"{args.large_objects} objects x 36 views x 512: closed-form means and stds {large_s:6.2f} s "
          f"(+ V x V matrices {pairs_s:5.2f} s); the NV x NV matrix would hold "
          f"{(args.large_objects * 36) ** 2 / 1e9:.0f} G entries")


if __name__ == "__main__":
    main()
