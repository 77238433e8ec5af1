"""Shards of a list of work items (`I/N` on the command line): render and embedding shards that may
run at once, e.g. as SLURM array tasks."""

from __future__ import annotations

import re


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), shard I of N counted from 0 (SLURM's array index)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not int(match[2]) or int(match[1]) >= int(match[2]):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/4 for the first of four shards")
    return int(match[1]), int(match[2])


def shard_items(items: list, shard: int, n_shards: int) -> list:
    """Shard `shard` of `n_shards` of a list in a fixed order: every n-th item from the shard's index,
    so the shards are disjoint, cover every item, and differ in size by at most one."""
    return list(items[shard::n_shards])
