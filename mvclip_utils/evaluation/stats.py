"""Paired statistics over test objects: every comparison of two methods is on the same objects.

A method's score on an object (its zero-shot accuracy over the object's views of one pose group,
its same-object similarity ...) is one number per object; two methods scored on the same objects
give a paired difference per object. The interval is a percentile bootstrap over objects that
draws **the same resample for every method** (so every pair of methods, and every method against
the frozen backbone, is judged on the same draws), and the verdict is read off the interval only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# What a verdict says, from the paired interval of (a - b):
BETTER, WORSE, UNRESOLVED = "better", "worse", "not resolved"


@dataclass(frozen=True)
class PairedDifference:
    difference: float  # mean over objects of a - b
    low: float  # 95 % percentile bootstrap interval of the mean difference
    high: float
    paired_stderr: float  # standard deviation of the per-object differences / sqrt(N)
    n_objects: int

    @property
    def verdict(self) -> str:
        """`better` when the whole interval is above zero, `worse` when below, else not resolved."""
        return BETTER if self.low > 0 else WORSE if self.high < 0 else UNRESOLVED

    def within(self, budget: float) -> bool:
        """Whether a loss of at most `budget` is shown: the whole interval lies above -budget."""
        return self.low > -budget


def bootstrap_indices(n_objects: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n_objects] object indices drawn with replacement: one draw shared by every method."""
    return np.random.default_rng(seed).integers(0, n_objects, size=(n_resamples, n_objects))


def paired_difference(a: np.ndarray, b: np.ndarray, indices: np.ndarray, level: float = 0.95) -> PairedDifference:
    """The paired difference of per-object scores `a` and `b` [N] (the same objects in the same order),
    with the percentile interval of its mean over the resamples `indices` [B, N] (`bootstrap_indices`)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two vectors over the same objects, got shapes {a.shape}, {b.shape}")
    d = a - b
    n = len(d)
    if n == 0:
        return PairedDifference(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    means = d[indices].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    stderr = float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return PairedDifference(float(d.mean()), float(low), float(high), stderr, n)


def resolvable_difference(paired_stderr: float, z: float = 1.96) -> float:
    """The smallest mean difference whose 95 % interval excludes zero, at this paired standard error."""
    return z * paired_stderr


def paired_table(scores: pd.DataFrame, pairs: list[tuple[str, str]], metrics: list[str],
                 cells: list[str], n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every pair's paired difference per cell and metric.

    `scores`: one row per (method, object_id, *cells) with the `metrics` as columns (e.g.
    `evaluation.protocol.per_object_scores` of every method, stacked with a `method` column).
    Within a cell (e.g. category group x pose group) both methods must have scored the same
    objects; the resample is drawn once per cell from `seed` and shared by every pair and metric.
    Returns columns a, b, *cells, metric, difference, low, high, paired_stderr, n_objects, verdict.
    """
    rows = []
    for cell_index, (cell, group) in enumerate(scores.groupby(cells, sort=True)):
        cell = cell if isinstance(cell, tuple) else (cell,)
        wide = {metric: group.pivot(index="object_id", columns="method", values=metric) for metric in metrics}
        objects = wide[metrics[0]].index
        indices = bootstrap_indices(len(objects), n_resamples, seed + cell_index)
        for a, b in pairs:
            for metric in metrics:
                table = wide[metric]
                if a not in table or b not in table:
                    continue
                both = table[[a, b]]
                if both.isna().all().all():
                    continue  # undefined in this cell for both (e.g. same-object similarity of one view)
                if both.isna().any().any():
                    missing = both.index[both.isna().any(axis=1)][:3].tolist()
                    raise ValueError(f"{a} and {b} were not scored on the same objects in {dict(zip(cells, cell))} "
                                     f"({metric}; e.g. {missing}): rerun the notebook of the one missing them")
                result = paired_difference(both[a].to_numpy(), both[b].to_numpy(), indices)
                rows.append({"a": a, "b": b, **dict(zip(cells, cell)), "metric": metric,
                             "difference": result.difference, "low": result.low, "high": result.high,
                             "paired_stderr": result.paired_stderr, "n_objects": result.n_objects,
                             "verdict": result.verdict})
    return pd.DataFrame(rows, columns=["a", "b", *cells, "metric", "difference", "low", "high", "paired_stderr",
                                       "n_objects", "verdict"])
