"""Consistency metrics of multi-view embeddings, in closed form.

Embeddings come as `image` [N objects, V views, D] and `text` [N, D], L2-normalised.
The seed's names are confusing, so both are given:

- same-object similarity (seed: "inter-object"): cosine between two different views of
  one object (the diagonal excluded);
- cross-object similarity (seed: "intra-object"): cosine between views of different objects;
- text-image similarity: each view against its own object's caption.

Each comes with its mean, the pooled std over pairs (what the seed code computed) and
the std across objects of per-object means (what its README describes; population std).
Means and stds come from sums, per-object V x V Gram matrices and the D x D second
moment, never from the full NV x NV matrix, so they scale to Objaverse. Pairs are
ordered pairs; every mean is the same over unordered ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .runs import RunLayout, atomic_write_text


@dataclass(frozen=True)
class SimilarityStats:
    mean: float
    pooled_std: float  # std over all pairs
    object_std: float  # std across objects of each object's mean
    pairs: int


def _stats(total: float, total_sq: float, pairs: int, per_object_means: torch.Tensor) -> SimilarityStats:
    mean = total / pairs
    var = max(total_sq / pairs - mean * mean, 0.0)
    return SimilarityStats(float(mean), float(np.sqrt(var)), float(per_object_means.std(unbiased=False)), int(pairs))


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()


@dataclass
class _GramSums:
    """What the per-object V x V Gram matrices give, accumulated in float64 over chunks."""

    gram_sum: torch.Tensor  # [V, V] sum over objects of G_i
    gram_sq_sum: torch.Tensor  # [V, V] sum over objects of G_i ** 2
    offdiag_sum: torch.Tensor  # [N] sum of G_i off the diagonal
    offdiag_sq: torch.Tensor  # [N] sum of G_i ** 2 off the diagonal
    all_sq: torch.Tensor  # [N] sum of G_i ** 2 (diagonal included)


def _gram_sums(image: torch.Tensor, chunk: int = 2048) -> _GramSums:
    n, v, _ = image.shape
    eye = torch.eye(v, dtype=torch.bool)
    sums = _GramSums(torch.zeros(v, v, dtype=torch.float64), torch.zeros(v, v, dtype=torch.float64),
                     torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64),
                     torch.empty(n, dtype=torch.float64))
    for start in range(0, n, chunk):
        block = image[start: start + chunk]
        gram = torch.bmm(block, block.transpose(1, 2)).double()  # [n, V, V]
        sq = gram * gram
        sums.gram_sum += gram.sum(0)
        sums.gram_sq_sum += sq.sum(0)
        sums.all_sq[start: start + len(block)] = sq.sum((1, 2))
        sums.offdiag_sum[start: start + len(block)] = gram.masked_fill(eye, 0).sum((1, 2))
        sums.offdiag_sq[start: start + len(block)] = sq.masked_fill(eye, 0).sum((1, 2))
    return sums


def same_object_similarity(image, grams: _GramSums | None = None) -> SimilarityStats:
    """Cosine between different views of the same object."""
    image = _as_tensor(image)
    n, v, _ = image.shape
    g = grams or _gram_sums(image)
    pairs_per_object = v * (v - 1)
    return _stats(float(g.offdiag_sum.sum()), float(g.offdiag_sq.sum()), n * pairs_per_object,
                  g.offdiag_sum / pairs_per_object)


def cross_object_similarity(image, chunk: int = 65536, grams: _GramSums | None = None) -> SimilarityStats:
    """Cosine between views of different objects, from global and per-object sums."""
    image = _as_tensor(image)
    n, v, d = image.shape
    per_object = image.double().sum(1)  # [N, D]
    total_vec = per_object.sum(0)  # [D]
    flat = image.reshape(n * v, d)
    second_moment = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, n * v, chunk):
        block = flat[start: start + chunk]
        second_moment += (block.T @ block).double()
    g = grams or _gram_sums(image)
    within_sum = (per_object * per_object).sum()  # all ordered pairs inside objects, self-pairs included
    total = float(total_vec @ total_vec - within_sum)
    total_sq = float((second_moment * second_moment).sum() - g.all_sq.sum())
    pairs = (n * v) ** 2 - n * v * v
    per_object_means = (per_object @ total_vec - (per_object * per_object).sum(1)) / (v * (n * v - v))
    return _stats(total, total_sq, pairs, per_object_means)


def text_image_similarity(image, text) -> SimilarityStats:
    """Cosine between each view and its own object's caption."""
    image, text = _as_tensor(image), _as_tensor(text)
    n, v, _ = image.shape
    sims = torch.einsum("nvd,nd->nv", image, text).double()
    return _stats(float(sims.sum()), float((sims * sims).sum()), n * v, sims.mean(1))


def view_pair_matrices(image, grams: _GramSums | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[V, V] mean and std over objects of the cosine between view v and view w of the same object."""
    image = _as_tensor(image)
    g = grams or _gram_sums(image)
    n = image.shape[0]
    mean = g.gram_sum / n
    std = (g.gram_sq_sum / n - mean * mean).clamp_min(0).sqrt()
    return mean.numpy(), std.numpy()


def view_retrieval(image, chunk: int = 1024) -> dict[str, float]:
    """Given one view, rank every other image: are the object's other views on top?

    recall@1: the nearest other image is a view of the same object. mAP: mean average
    precision with the V-1 other views of the object as positives. Collapse-aware:
    when every embedding is the same, ranks are arbitrary and both drop to chance.
    """
    image = _as_tensor(image)
    n, v, d = image.shape
    flat = image.reshape(n * v, d)
    owner = torch.arange(n).repeat_interleave(v)
    hits, ap_sum = 0.0, 0.0
    for start in range(0, n * v, chunk):
        queries = torch.arange(start, min(start + chunk, n * v))
        sims = flat[queries] @ flat.T
        rows = torch.arange(len(queries))
        sims[rows, queries] = -torch.inf  # never retrieve the query itself: it sorts last
        is_positive = owner[None, :] == owner[queries][:, None]
        is_positive[rows, queries] = False
        # Ties are broken against the positives (negatives first, then a stable sort by
        # similarity), so a collapsed embedding scores chance rather than a perfect 1.
        negatives_first = torch.argsort(is_positive.to(torch.int8), dim=1, stable=True)
        by_similarity = torch.argsort(sims.gather(1, negatives_first), dim=1, descending=True, stable=True)
        positive = is_positive.gather(1, negatives_first.gather(1, by_similarity))
        hits += float(positive[:, 0].sum())
        ranks = torch.arange(1, n * v + 1, dtype=torch.float64)
        precision = positive.double().cumsum(1) / ranks
        ap_sum += float(((precision * positive).sum(1) / (v - 1)).sum())
    return {"recall_at_1": hits / (n * v), "mAP": ap_sum / (n * v)}


def zero_shot_predictions(image, category_text) -> np.ndarray:
    """[N, V] index of the closest category prompt embedding."""
    return torch.einsum("nvd,cd->nvc", _as_tensor(image), _as_tensor(category_text)).argmax(-1).numpy()


def zero_shot_by_view(image, category_text, labels, views: pd.DataFrame) -> pd.DataFrame:
    """Per view: zero-shot accuracy and its standard error over objects, with the view's angles."""
    correct = zero_shot_predictions(image, category_text) == np.asarray(labels)[:, None]
    acc = correct.mean(0)
    out = views[["view_id", "azimuth_deg", "elevation_deg", "distance", "kind"]].copy().reset_index(drop=True)
    out["accuracy"] = acc
    out["stderr"] = np.sqrt(acc * (1 - acc) / correct.shape[0])
    return out


def caption_retrieval(image, text, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Image -> caption recall@k among the objects' captions, averaged over all views given.

    `image` is [N, D] (one view) or [N, V, D].
    """
    image, text = _as_tensor(image), _as_tensor(text)
    if image.ndim == 2:
        image = image[:, None]
    sims = torch.einsum("nvd,md->nvm", image, text)
    own = sims.diagonal(dim1=0, dim2=2).T  # [N, V]: similarity to the object's own caption
    # Captions at least as close as the right one, itself excluded: ties count against it, so a
    # collapsed embedding scores chance rather than a perfect recall (as in view_retrieval).
    rank = (sims >= own[..., None]).sum(-1) - 1
    return {f"recall_at_{k}": float((rank < k).double().mean()) for k in ks}


def similarity_stats(image, text) -> dict[str, SimilarityStats]:
    """The seed's three metrics, sharing one pass over the per-object Gram matrices."""
    image = _as_tensor(image)
    grams = _gram_sums(image)
    return {"same_object": same_object_similarity(image, grams),
            "cross_object": cross_object_similarity(image, grams=grams),
            "text_image": text_image_similarity(image, text)}


def brute_force_similarity(image, text) -> dict[str, SimilarityStats]:
    """Reference implementation over the full NV x NV matrix (tests and benchmarks only)."""
    image, text = _as_tensor(image).double(), _as_tensor(text).double()
    n, v, d = image.shape
    flat = image.reshape(n * v, d)
    sims = flat @ flat.T
    owner = torch.arange(n).repeat_interleave(v)
    same = owner[:, None] == owner[None, :]
    diag = torch.eye(n * v, dtype=torch.bool)

    def stats(mask: torch.Tensor) -> SimilarityStats:
        values = sims[mask]
        per_object = torch.stack([sims[owner == i][mask[owner == i]].mean() for i in range(n)])
        return SimilarityStats(float(values.mean()), float(values.std(unbiased=False)),
                               float(per_object.std(unbiased=False)), int(mask.sum()))

    text_sims = (image * text[:, None]).sum(-1)
    return {
        "same_object": stats(same & ~diag),
        "cross_object": stats(~same),
        "text_image": SimilarityStats(float(text_sims.mean()), float(text_sims.std(unbiased=False)),
                                      float(text_sims.mean(1).std(unbiased=False)), n * v),
    }


def consistency_metrics(image, text, category_text, labels, views: pd.DataFrame) -> dict[str, float]:
    """The flat metrics row of one method on one split: the seed's three similarities, retrieval, zero-shot."""
    row: dict[str, float] = {}
    for name, stats in similarity_stats(image, text).items():
        row[f"{name}_mean"], row[f"{name}_pooled_std"], row[f"{name}_object_std"] = \
            stats.mean, stats.pooled_std, stats.object_std
    retrieval = view_retrieval(image)
    row["view_retrieval_recall_at_1"], row["view_retrieval_mAP"] = retrieval["recall_at_1"], retrieval["mAP"]
    for k, value in caption_retrieval(image, text).items():
        row[f"caption_{k}"] = value
    by_view = zero_shot_by_view(image, category_text, labels, views)
    row["zero_shot_accuracy"] = float(by_view.accuracy.mean())
    for kind, group in by_view.groupby("kind"):
        row[f"zero_shot_accuracy_{kind}"] = float(group.accuracy.mean())
    row["n_objects"], row["n_views"] = int(image.shape[0]), int(image.shape[1])
    return row


def evaluation_row(image, text, category_text, labels, views: pd.DataFrame) -> dict:
    """`consistency_metrics` plus zero-shot accuracy on the canonical view and on the other grid views."""
    from .dataset import canonical_view_id

    row = consistency_metrics(image, text, category_text, labels, views)
    by_view = zero_shot_by_view(image, category_text, labels, views)
    canonical = canonical_view_id(views)
    grid = by_view[by_view.kind == "grid"]
    row["zero_shot_accuracy_canonical"] = float(by_view.set_index("view_id").accuracy[canonical])
    row["zero_shot_accuracy_other_grid"] = float(grid[grid.view_id != canonical].accuracy.mean())
    return row


# Display order of results rows: the seed's order, then any other method alphabetically.
METHOD_ORDER = ("baseline", "object_head", "contrastive_head", "autoencoder", "omniview_tuning")


def caption_retrieval_table(image, text, views: pd.DataFrame, ks: tuple[int, ...] = (1, 5)) -> pd.DataFrame:
    """Image -> caption recall@k from the canonical view, from every grid view, and at chance."""
    from .dataset import canonical_view_id

    grid = (views.kind == "grid").to_numpy()
    canonical = canonical_view_id(views)
    at = int(np.flatnonzero(views.view_id.to_numpy() == canonical)[0])
    n = len(text)
    return pd.DataFrame({
        f"canonical view ({canonical})": caption_retrieval(_as_tensor(image)[:, at], text, ks),
        "all grid views": caption_retrieval(_as_tensor(image)[:, grid], text, ks),
        "chance": {f"recall_at_{k}": min(k / n, 1.0) for k in ks},
    }).T


def write_result(layout: RunLayout, method: str, metrics: dict, backbone: str, extra: dict | None = None) -> pd.DataFrame:
    """Write metrics/<method>.json and rebuild metrics/results.csv: one row per method JSON."""
    record = {"method": method, "backbone": backbone, **metrics, **(extra or {})}
    layout.metrics.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.metrics / f"{method}.json", json.dumps(record, indent=1, default=float))
    return rebuild_results_table(layout)


def load_results(layout: RunLayout) -> pd.DataFrame:
    if not layout.results_table.exists():
        raise FileNotFoundError(f"{layout.results_table} is missing: run notebook 04_baseline (and any method "
                                f"notebooks) first, e.g. python -m mvclip_utils.pipeline --config ... --only 04-07")
    return pd.read_csv(layout.results_table)


def rebuild_results_table(layout: RunLayout) -> pd.DataFrame:
    rows = [json.loads(p.read_text()) for p in sorted(layout.metrics.glob("*.json"))]
    table = pd.DataFrame(rows)
    if len(table):
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        table = table.sort_values("method", key=lambda s: s.map(lambda m: (order.get(m, len(order)), m)))
        table = table.reset_index(drop=True)
    atomic_write_text(layout.results_table, table.to_csv(index=False))
    return table


def stats_table(stats: dict[str, SimilarityStats]) -> pd.DataFrame:
    """The seed's three metrics as mean ± both stds, both names given."""
    seed_names = {"same_object": "inter-object", "cross_object": "intra-object", "text_image": "text2image"}
    return pd.DataFrame([{"metric": k.replace("_", "-") + " similarity", "seed name": seed_names[k],
                          **{f: getattr(s, f) for f in ("mean", "pooled_std", "object_std")}}
                         for k, s in stats.items()]).set_index("metric")



SUMMARY_COLUMNS = {
    "same_object_mean": "same-object", "cross_object_mean": "cross-object", "text_image_mean": "text-image",
    "view_retrieval_recall_at_1": "view R@1", "view_retrieval_mAP": "view mAP",
    "zero_shot_accuracy_canonical": "zero-shot canonical", "zero_shot_accuracy_other_grid": "zero-shot other grid",
    "zero_shot_accuracy_ood": "zero-shot ood",
}


def comparison_table(results: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """The headline metrics of some methods (rows) from metrics/results.csv."""
    table = results.set_index("method")
    if methods:
        table = table.loc[[m for m in methods if m in table.index]]
    return table[[c for c in SUMMARY_COLUMNS if c in table.columns]].rename(columns=SUMMARY_COLUMNS)
