"""Every training loss of the seed methods, vectorised over objects and views (any device).

A batch is `image` [B objects, K views, D] and `text` [B, D]; an object's "group" is its
caption plus its K views. Similarities are cosines. Pair counts are exact: a group of
G = K + 1 embeddings has G(G-1) ordered same-object pairs, and different-object pairs
are all the others, minus the diagonal (the seed code miscounted these).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _groups(image: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
    """[B, G, D] normalised: the caption (if given) first, then the views."""
    image = F.normalize(image, dim=-1)
    if text is None:
        return image
    return torch.cat([F.normalize(text, dim=-1)[:, None], image], dim=1)


def _pair_sums(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Sum of cosines over same-object pairs and over different-object pairs, and their counts."""
    b, g, _ = groups.shape
    per_object = groups.sum(1)  # [B, D]
    total = per_object.sum(0)
    self_sum = (groups * groups).sum()  # the diagonal: b * g for unit vectors
    within = (per_object * per_object).sum() - self_sum
    across = total @ total - (per_object * per_object).sum()
    return within, across, b * g * (g - 1), (b * g) ** 2 - b * g * g


def object_similarity_loss(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Seed method 1: pull together every pair of one object's embeddings, caption and views.

    1 - mean cosine over all same-object pairs (so 0 when every group has collapsed
    to a point). Nothing pushes different objects apart, which is why it collapses.
    """
    within, _, n_within, _ = _pair_sums(_groups(image, text))
    return 1 - within / n_within


def seed_contrastive_loss(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Seed method 2: mean different-object cosine minus mean same-object cosine (correct counts)."""
    within, across, n_within, n_across = _pair_sums(_groups(image, text))
    return across / n_across - within / n_within


def multi_positive_infonce(image: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE with several positives (SupCon's L_out): every embedding of a group is an anchor
    whose positives are the other members of its group, against all other embeddings."""
    groups = _groups(image, text)
    b, g, d = groups.shape
    flat = groups.reshape(b * g, d)
    logits = flat @ flat.T / temperature
    owner = torch.arange(b, device=flat.device).repeat_interleave(g)
    self_mask = torch.eye(b * g, dtype=torch.bool, device=flat.device)
    positive = (owner[:, None] == owner[None, :]) & ~self_mask
    log_prob = logits.masked_fill(self_mask, float("-inf")).log_softmax(dim=1)
    return -(log_prob.masked_fill(~positive, 0).sum(1) / (g - 1)).mean()


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
              same_text: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over B image-caption pairs (as open_clip's ClipLoss), except that
    pairs whose captions are identical (`same_text` [B, B], e.g. two mugs both captioned "a photo of
    a mug") are not counted as each other's negatives: their logits are masked out."""
    logits = logit_scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    labels = torch.arange(len(logits), device=logits.device)
    if same_text is not None:
        duplicate = same_text & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(duplicate, float("-inf"))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def knn_weighted_anchor(image: torch.Tensor, neighbours: int = 5, eps: float = 1e-8, weighting: str = "paper",
                        floor: float = 0.0) -> torch.Tensor:
    """OVT's anchor: a weighted centroid of each object's views [N, V, D] -> [N, D] (normalised).

    `paper`: a view's weight is the inverse of its mean cosine distance to its `neighbours` nearest
    other views, so views in a dense cluster count more than isolated ones (the write-up: "a
    weighted centroid, where weights are determined by nearest neighbour distances"). Near-duplicate
    views have distances near 0 and weights up to 1 / eps: with `floor` > 0 each distance counts as at
    least `floor` times the object's mean, so no view weighs more than 1 / floor times a view at the
    mean distance. `public`: the inverse mean *similarity* to those neighbours (the public code; nearly
    uniform at CLIP's cosines, slightly favouring outliers). `uniform`: the plain centroid.
    """
    z = F.normalize(image, dim=-1)
    n, v, _ = z.shape
    k = max(1, min(neighbours, v - 1))
    sims = (z @ z.transpose(1, 2)).masked_fill(torch.eye(v, dtype=torch.bool, device=z.device), float("-inf"))
    nearest = sims.topk(k, dim=-1).values  # [N, V, k]
    if weighting == "paper":
        distance = (1 - nearest).mean(-1)  # [N, V]
        if floor > 0:
            distance = torch.maximum(distance, floor * distance.mean(1, keepdim=True))
        weights = 1 / (distance + eps)
    elif weighting == "public":
        weights = 1 / (nearest.mean(-1) + eps)
    elif weighting == "uniform":
        weights = torch.ones(n, v, dtype=z.dtype, device=z.device)
    else:
        raise ValueError(f"anchor weighting {weighting!r} is not one of paper, public, uniform")
    weights = weights / weights.sum(1, keepdim=True)
    return F.normalize((weights[..., None] * z).sum(1), dim=-1)


def outlier_views(image: torch.Tensor, anchor: torch.Tensor, k: int) -> torch.Tensor:
    """[N, k] indices of each object's k views farthest (in cosine distance) from its anchor:
    OVT's maximisation step picks them before each epoch."""
    sims = torch.einsum("nvd,nd->nv", F.normalize(image, dim=-1), F.normalize(anchor, dim=-1))
    return sims.topk(min(k, image.shape[1]), dim=1, largest=False).indices


def view_consistency_loss(image: torch.Tensor, anchor: torch.Tensor, margin: float = 0.0,
                          mode: str = "shift") -> torch.Tensor:
    """OVT's minimisation step on the outlier views [B, D] and their objects' anchors [B, D], with d the
    cosine distance, averaged over the non-zero terms (as the public code). `shift`: max(d + m, 0), the
    write-up's and public code's form: with m >= 0 the margin only shifts the loss. `hinge`: max(d - m, 0),
    which leaves views already within m of their anchor alone (the write-up's intent, no over-alignment)."""
    if mode not in ("shift", "hinge"):
        raise ValueError(f"view-consistency margin mode {mode!r} is not one of shift, hinge")
    distance = 1 - F.cosine_similarity(image, anchor, dim=-1)
    terms = F.relu(distance + margin if mode == "shift" else distance - margin)
    active = (terms > 0).sum()
    return terms.sum() / active.clamp_min(1)


def distance_to_targets(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Centroid distillation's terms: mean cosine distance 1 - cos(z, t) of embeddings [B, D] to fixed
    targets [B, D] (each view's object's frozen centroid, or a clean view's own frozen embedding); 0 for
    an empty batch."""
    if not len(image):
        return image.new_zeros(())
    return (1 - F.cosine_similarity(image, target.to(image.dtype), dim=-1)).mean()


def autoencoder_loss(original: torch.Tensor, reconstruction: torch.Tensor, vi_codes: torch.Tensor,
                     reconstruction_weight: float = 1.0, similarity_weight: float = 1.0,
                     dissimilarity_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Seed method 3: reconstruct the CLIP embedding from VI + VD decodings, while the
    view-independent codes [B, K, C] of one object agree and those of different objects do not.

    Returns the weighted total and its parts (reconstruction is an element-wise MSE).
    """
    parts = {"reconstruction": F.mse_loss(reconstruction, original)}
    within, across, n_within, n_across = _pair_sums(_groups(vi_codes, None))
    parts["vi_similarity"] = 1 - within / n_within
    parts["vi_dissimilarity"] = across / n_across
    total = (reconstruction_weight * parts["reconstruction"] + similarity_weight * parts["vi_similarity"]
             + dissimilarity_weight * parts["vi_dissimilarity"])
    return total, parts


# ----------------------------------------------------------------------------- loop references
# Straightforward loops over objects and pairs: the definitions the vectorised losses are
# tested against (tests/test_losses.py) and timed against (benchmarks/heads.py).


def _loop_pairs(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    b, g, _ = groups.shape
    within = across = groups.new_zeros(())
    n_within = n_across = 0
    for i in range(b):
        for p in range(g):
            for j in range(b):
                for q in range(g):
                    if i == j and p == q:
                        continue
                    cos = groups[i, p] @ groups[j, q]
                    if i == j:
                        within, n_within = within + cos, n_within + 1
                    else:
                        across, n_across = across + cos, n_across + 1
    return within, across, n_within, n_across


def object_similarity_loss_loop(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    within, _, n_within, _ = _loop_pairs(_groups(image, text))
    return 1 - within / n_within


def seed_contrastive_loss_loop(image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    within, across, n_within, n_across = _loop_pairs(_groups(image, text))
    return across / n_across - within / n_within


def multi_positive_infonce_loop(image: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    groups = _groups(image, text)
    b, g, _ = groups.shape
    losses = []
    for i in range(b):
        for p in range(g):
            anchor = groups[i, p]
            others = [(j, q) for j in range(b) for q in range(g) if (j, q) != (i, p)]
            denominator = torch.logsumexp(torch.stack([anchor @ groups[j, q] / temperature for j, q in others]), 0)
            terms = [anchor @ groups[i, q] / temperature - denominator for q in range(g) if q != p]
            losses.append(-torch.stack(terms).mean())
    return torch.stack(losses).mean()


def distance_to_targets_loop(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    terms = [1 - (z @ t) / (z.norm() * t.norm()) for z, t in zip(image, target)]
    return torch.stack(terms).mean() if terms else image.new_zeros(())


def view_consistency_loss_loop(image: torch.Tensor, anchor: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    terms = []
    for z, a in zip(image, anchor):
        d = 1 - (z @ a) / (z.norm() * a.norm())
        terms.append(torch.clamp(d + margin, min=0))
    nonzero = [t for t in terms if t > 0]
    return torch.stack(nonzero).mean() if nonzero else image.new_zeros(())
