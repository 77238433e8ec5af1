"""The training loop: AdamW with linear warm-up and cosine decay, a progress bar, the loss curve.

The caller supplies `loss_at_step(step) -> loss` (it samples its own batch), so the
same loop trains the tiny backbone and, later, heads and adapters.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from .progress import progress_bar


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    val_steps: list[int] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    best_step: int = -1  # the step whose weights were kept (-1: the last)
    stopped_early: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses)


def describe_training(result: TrainResult, planned_steps: int, patience: int | None = None) -> str:
    """What happened in training, in a sentence computed from the result (for the reports, where no
    progress bar shows it): steps run, where validation was best, whether training stopped early."""
    text = f"Trained for {result.steps} of {planned_steps} steps in {result.seconds:.1f} s."
    if result.val_steps:
        first = result.best_step == result.val_steps[0]
        which = ("the first check" if first
                 else f"check {result.val_steps.index(result.best_step) + 1} of {len(result.val_steps)}")
        text += (f" The validation loss was lowest at step {result.best_step} ({min(result.val_losses):.4g}, "
                 f"{which}); "
                 f"those weights are kept.")
        if first:
            text += (" Every later check was worse: what the training objects teach does not carry over to the "
                     "validation objects after that point.")
    if result.stopped_early:
        text += (f" Training stopped early at step {result.steps}, after {patience} checks without improvement "
                 f"(the early stop is intended, not a crash).")
    return text


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
             progress: bool = True, after_step: Callable[[int], None] | None = None,
             validate: Callable[[], float] | None = None, validate_every: int = 50, patience: int | None = None,
             model: torch.nn.Module | None = None, schedule: bool = True) -> TrainResult:
    """Run `steps` optimiser steps (AdamW; with weight_decay 0 it is Adam).

    With `validate`, the validation loss is computed every `validate_every` steps; the
    weights of `model` at the best validation are restored at the end, and training stops
    after `patience` validations without improvement.
    """
    optimizer = torch.optim.AdamW(parameter_groups(named_parameters, weight_decay), lr=lr)
    factor = (lambda s: warmup_cosine(s, steps, warmup_steps)) if schedule else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    result = TrainResult()
    best_state, since_best = None, 0
    start = time.perf_counter()
    bar = progress_bar(range(steps), desc=desc, disable=not progress)
    for step in bar:
        loss = loss_at_step(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step)
        result.losses.append(float(loss.detach()))
        if validate is not None and (step % validate_every == validate_every - 1 or step == steps - 1):
            with torch.no_grad():
                val = float(validate())
            result.val_steps.append(step)
            result.val_losses.append(val)
            if val <= min(result.val_losses):
                result.best_step, since_best = step, 0
                if model is not None:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            if patience is not None and since_best >= patience:
                result.stopped_early = True
                break
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(result.losses[-20:]) / len(result.losses[-20:]):.3f}")
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds = time.perf_counter() - start
    return result


class SettingReducedWarning(UserWarning):
    """A batch setting larger than the data it draws from, reduced to what the data has."""


def fit_to_data(requested: int, available: int, key: str, what: str, multiple_of: int = 1) -> int:
    """`requested`, or the most `available` allows (a multiple of `multiple_of`), with a warning that
    names the key: a batch larger than its data would draw the same items again and again, and the
    reports must print what was used, not what was asked."""
    if requested <= available:
        return requested
    used = max(multiple_of, available // multiple_of * multiple_of)
    warnings.warn(f"{key}: {requested} asked, but the data has {available} {what}: using {used} "
                  f"(set {key} to at most {available} to silence this)", SettingReducedWarning, stacklevel=2)
    return used
