"""The training loop: AdamW with linear warm-up and cosine decay, a progress bar, the loss curve.

The caller supplies `loss_at_step(step) -> loss` (it samples its own batch), so the
same loop trains the tiny backbone and, later, heads and adapters.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from tqdm import tqdm


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses)


def warmup_cosine(step: int, steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at `steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def parameter_groups(named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases, norms, embeddings of one dimension or scales)."""
    decay, no_decay = [], []
    for _, p in named:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimise(named_parameters: Iterable[tuple[str, torch.nn.Parameter]], loss_at_step: Callable[[int], torch.Tensor],
             steps: int, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0, desc: str = "training",
             progress: bool = True, after_step: Callable[[int], None] | None = None) -> TrainResult:
    optimizer = torch.optim.AdamW(parameter_groups(named_parameters, weight_decay), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup_steps))
    result = TrainResult()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        loss = loss_at_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step)
        result.losses.append(float(loss.detach()))
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(result.losses[-20:]) / len(result.losses[-20:]):.3f}")
    bar.close()
    result.seconds = time.perf_counter() - start
    return result
