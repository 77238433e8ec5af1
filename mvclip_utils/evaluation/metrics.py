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

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


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
    hits, average_precision = torch.zeros(n * v, dtype=torch.float64), torch.zeros(n * v, dtype=torch.float64)
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
        hits[queries] = positive[:, 0].double()
        ranks = torch.arange(1, n * v + 1, dtype=torch.float64)
        precision = positive.double().cumsum(1) / ranks
        average_precision[queries] = (precision * positive).sum(1) / (v - 1)
    return {"recall_at_1": float(hits.mean()), "mAP": float(average_precision.mean()),
            "recall_at_1_stderr": object_stderr(hits.reshape(n, v).mean(1).numpy()),
            "mAP_stderr": object_stderr(average_precision.reshape(n, v).mean(1).numpy())}


def object_stderr(per_object: np.ndarray) -> float:
    """Standard error over objects of a per-object value (sample std / sqrt(n)); NaN for one object."""
    per_object = np.asarray(per_object, dtype=float)
    return float(per_object.std(ddof=1) / np.sqrt(len(per_object))) if len(per_object) > 1 else float("nan")


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


def embedding_geometry(image, text) -> dict[str, float]:
    """The geometry real CLIP is known for, for judging any backbone against it.

    - cross-object similarity (real CLIP ViT-B/32 on one domain: ~0.7, the "cone");
    - modality gap: distance between the image and the text centroids of normalised
      embeddings (Liang et al. 2022; image and text embeddings sit in separate cones);
    - effective rank of the image embeddings (Roy & Vetterli 2007): exp of the entropy of
      the normalised singular values, from the D x D second moment (uncentred, so a
      shared component, the cone, lowers it).
    """
    image, text = _as_tensor(image), _as_tensor(text)
    flat = image.reshape(-1, image.shape[-1]).double()
    gap = float((flat.mean(0) - text.double().mean(0)).norm())
    singular = torch.linalg.eigvalsh(flat.T @ flat).clamp_min(0).sqrt()
    p = singular / singular.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"modality_gap": gap, "effective_rank": float(entropy.exp())}


def ood_to_grid_similarity(image, views: pd.DataFrame) -> float:
    """Mean cosine between each ood view and the grid views of the same object."""
    image = _as_tensor(image)
    grid, ood = (views.kind == "grid").to_numpy(), (views.kind == "ood").to_numpy()
    if not ood.any():
        return float("nan")
    return float(torch.einsum("nod,ngd->nog", image[:, ood], image[:, grid]).mean())


def consistency_metrics(image, text) -> dict[str, float]:
    """The seed's three similarities, view retrieval and caption retrieval over the views given."""
    row: dict[str, float] = {}
    n = len(image)
    for name, stats in similarity_stats(image, text).items():
        row[f"{name}_mean"], row[f"{name}_pooled_std"], row[f"{name}_object_std"] = \
            stats.mean, stats.pooled_std, stats.object_std
        # object_std is the population std of per-object means: its standard error divides by sqrt(n - 1)
        row[f"{name}_stderr"] = stats.object_std / np.sqrt(n - 1) if n > 1 else float("nan")
    for key, value in view_retrieval(image).items():
        row[f"view_retrieval_{key}"] = value
    for k, value in caption_retrieval(image, text).items():
        row[f"caption_{k}"] = value
    return row


def zero_shot_columns(image, category_text, labels, views: pd.DataFrame, canonical: str,
                      suffix: str = "") -> dict[str, float]:
    """Zero-shot accuracy over the grid views (headline), on the canonical view, on the other
    grid views and on the ood views."""
    correct = zero_shot_predictions(image, category_text) == np.asarray(labels)[:, None]  # [N, V]
    kind, view_id = views.kind.to_numpy(), views.view_id.to_numpy()
    subsets = {"": kind == "grid", "_canonical": view_id == canonical,
               "_other_grid": (kind == "grid") & (view_id != canonical), "_ood": kind == "ood"}
    row = {}
    for name, keep in subsets.items():
        # each object's accuracy over the subset's views; the standard error is over objects
        per_object = correct[:, keep].mean(1) if keep.any() else np.full(len(correct), np.nan)
        row[f"zero_shot_accuracy{name}{suffix}"] = float(per_object.mean())
        row[f"zero_shot_accuracy{name}{suffix}_stderr"] = object_stderr(per_object) if keep.any() else float("nan")
    return row


def _ridge_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                    n_classes: int, ridge: float = 1.0) -> np.ndarray:
    """[n test] whether a ridge-regression classifier (least squares onto one-hot targets, closed form on
    features standardised with the train statistics) gets each test item right."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    a, b = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    weight = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.eye(n_classes)[train_y])
    return (b @ weight).argmax(1) == test_y


def pose_decodability(image, views: pd.DataFrame) -> dict[str, float]:
    """How well a linear classifier reads a grid view's azimuth, and its elevation ring, from its embedding:
    fitted on half the objects' grid views and tested on the other half's, then the halves swapped (so
    no object is both fitted and tested). A view-invariant embedding loses the pose; chance is 1 / the
    number of azimuths (rings). image [N, V, D] (N >= 2), `views` its views table."""
    image = np.asarray(image, dtype=np.float64)
    grid = (views.kind == "grid").to_numpy()
    x = image[:, grid]
    n, g, d = x.shape
    half = np.arange(n) % 2
    row = {}
    for name, column in (("azimuth", "azimuth_deg"), ("elevation", "elevation_deg")):
        values, target = np.unique(views[column].to_numpy()[grid], return_inverse=True)
        y = np.broadcast_to(target, (n, g))
        correct = [_ridge_accuracy(x[half != h].reshape(-1, d), y[half != h].ravel(),
                                   x[half == h].reshape(-1, d), y[half == h].ravel(), len(values))
                   for h in (0, 1) if (half == h).any() and (half != h).any()]
        row[f"pose_{name}_accuracy"] = float(np.concatenate(correct).mean()) if correct else float("nan")
        row[f"pose_{name}_chance"] = 1 / len(values)
    return row


def evaluation_row(image, text, category_text, labels, views: pd.DataFrame, canonical: str,
                   category_text_unseen=None) -> dict:
    """The flat metrics row of one method on the test objects.

    Headline numbers (the seed's three similarities, view and caption retrieval, geometry,
    zero-shot accuracy) cover the **grid views** only, as the seed's table; the ood views
    have columns of their own (`*_ood`). `canonical` is the clean view (cameras.canonical_view_id).
    """
    image = np.asarray(image)
    grid = (views.kind == "grid").to_numpy()
    row = consistency_metrics(image[:, grid], text)
    row.update(embedding_geometry(image[:, grid], text))
    row.update(zero_shot_columns(image, category_text, labels, views, canonical))
    if category_text_unseen is not None:
        row.update(zero_shot_columns(image, category_text_unseen, labels, views, canonical, "_unseen_prompts"))
    row.update(pose_decodability(image, views))
    row["ood_to_grid_similarity"] = ood_to_grid_similarity(image, views)
    row["ood_text_image_mean"] = (float(np.einsum("nvd,nd->nv", image[:, ~grid], np.asarray(text)).mean())
                                  if (~grid).any() else float("nan"))
    row["canonical_view"] = canonical
    row["n_objects"], row["n_grid_views"], row["n_ood_views"] = int(image.shape[0]), int(grid.sum()), int((~grid).sum())
    row["n_categories"] = int(len(category_text))
    return row


def caption_retrieval_table(image, text, views: pd.DataFrame, canonical: str,
                            ks: tuple[int, ...] = (1, 5)) -> pd.DataFrame:
    """Image -> caption recall@k from the canonical view, from every grid view, and at chance."""
    grid = (views.kind == "grid").to_numpy()
    at = int(np.flatnonzero(views.view_id.to_numpy() == canonical)[0])
    n = len(text)
    return pd.DataFrame({
        f"canonical view ({canonical})": caption_retrieval(_as_tensor(image)[:, at], text, ks),
        "all grid views": caption_retrieval(_as_tensor(image)[:, grid], text, ks),
        "chance": {f"recall_at_{k}": min(k / n, 1.0) for k in ks},
    }).T


def stats_table(stats: dict[str, SimilarityStats]) -> pd.DataFrame:
    """The seed's three metrics as mean ± both stds, both names given."""
    seed_names = {"same_object": "inter-object", "cross_object": "intra-object", "text_image": "text2image"}
    return pd.DataFrame([{"metric": k.replace("_", "-") + " similarity", "seed name": seed_names[k],
                          **{f: getattr(s, f) for f in ("mean", "pooled_std", "object_std")}}
                         for k, s in stats.items()]).set_index("metric")


def zero_shot_prompt_table(emb, views: pd.DataFrame, canonical: str) -> pd.DataFrame:
    """Zero-shot accuracy with the prompt templates of `embed.prompt_templates` against those of
    `embed.unseen_prompt_templates` (an `embed.Embeddings`), on the canonical, other grid and ood views."""
    rows = {}
    for name, prompts in (("prompt templates", emb.category_text),
                          ("unseen prompt templates", emb.category_text_unseen)):
        columns = zero_shot_columns(emb.image, prompts, emb.labels, views, canonical)
        rows[name] = {"canonical view": columns["zero_shot_accuracy_canonical"],
                      "other grid views": columns["zero_shot_accuracy_other_grid"],
                      "ood views": columns["zero_shot_accuracy_ood"]}
    return pd.DataFrame(rows).T


# ----------------------------------------------------------------------------- segmentation (notebook 11)


def confusion_matrix(predicted, truth, n_classes: int) -> np.ndarray:
    """[K, K] pixel counts, rows = true class, columns = predicted class (one bincount)."""
    predicted, truth = np.asarray(predicted).ravel(), np.asarray(truth).ravel()
    return np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_from_counts(intersection, truth, predicted) -> np.ndarray:
    """IoU per class [..., K] from pixel counts [..., K] (correct, true, predicted); NaN where a class is
    absent from both truth and prediction."""
    intersection, truth, predicted = (np.asarray(x, dtype=float) for x in (intersection, truth, predicted))
    union = truth + predicted - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union of each class; NaN for a class absent from both truth and prediction."""
    confusion = np.asarray(confusion, dtype=float)
    return iou_from_counts(np.diag(confusion), confusion.sum(1), confusion.sum(0))


def class_pixel_counts(predicted: "torch.Tensor", truth: "torch.Tensor", n_classes: int):
    """Per image of class-id maps [B, H, W]: (correct, true, predicted) pixel counts per class, each [B, K].
    The per-image rows of a confusion matrix's diagonal and margins, without its K x K size (Objaverse
    has hundreds of classes)."""
    b = predicted.shape[0]
    offset = (torch.arange(b, device=truth.device) * n_classes)[:, None]
    truth, predicted = truth.reshape(b, -1) + offset, predicted.reshape(b, -1) + offset

    def count(x: "torch.Tensor") -> "torch.Tensor":
        return torch.bincount(x.reshape(-1), minlength=b * n_classes).reshape(b, n_classes)

    return count(truth[truth == predicted]), count(truth), count(predicted)


def mean_iou(confusion: np.ndarray, ignore_background: bool = True) -> float:
    """mIoU over the classes present (class 0, the background, left out by default)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou[1:] if ignore_background else iou))


def paired_view_gap(per_image: np.ndarray, canonical: int, others: np.ndarray) -> tuple[float, float]:
    """Per object, the mean of a per-image score [N, V] over the `others` views (a boolean mask over V)
    minus its value on the `canonical` view; the mean of that difference over objects and its standard
    error. Objects with no finite difference (NaN scores) are left out."""
    diff = np.nanmean(np.asarray(per_image, dtype=float)[:, others], 1) - per_image[:, canonical]
    diff = diff[np.isfinite(diff)]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return float(diff.mean()), se
