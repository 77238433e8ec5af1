"""The seed methods as one registry: a model builder and a loss per method, one way to train
and to evaluate them. A new head method is one more entry in `METHODS` and one notebook.

Heads train on the `train` objects' grid views (ood views stay unseen), validate on
`val`, and are evaluated on `test` with exactly the metrics of notebook 04. Only image
embeddings pass through a head; captions and category prompts stay in CLIP's space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..core.cameras import canonical_view_id
from ..core.protocol import MULTI_VIEW, category_groups, seen_pose_mask
from ..core.runs import RunLayout, atomic_torch_save, atomic_write_json
from ..core.schema import HeadsConfig, RunConfig
from ..core.train import TrainResult, fit_to_data, optimise
from ..evaluation.metrics import (
    cross_object_similarity,
    evaluation_row,
    same_object_similarity,
)
from ..evaluation.results import write_result
from ..evaluation.transfer import split_scores, val_columns
from ..models import losses
from ..models.embed import Embeddings
from ..models.heads import MLPHead, ViewAutoencoder
from ..models.opened_run import OpenedRun

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, HeadsConfig], tuple[torch.Tensor, dict]]


@dataclass(frozen=True)
class HeadMethod:
    name: str
    title: str
    build: Callable[[int, HeadsConfig], nn.Module]
    loss: LossFn
    differences_from_seed: tuple[str, ...]


def _object_loss(model, image, text, cfg):
    return losses.object_similarity_loss(model(image), text), {}


def _contrastive_loss(model, image, text, cfg):
    if cfg.contrastive == "infonce":
        return losses.multi_positive_infonce(model(image), text, cfg.temperature), {}
    return losses.seed_contrastive_loss(model(image), text), {}


def _autoencoder_loss(model, image, text, cfg):
    reconstruction, codes, _ = model(image)
    total, parts = losses.autoencoder_loss(image, reconstruction, codes, cfg.reconstruction_weight,
                                           cfg.similarity_weight, cfg.dissimilarity_weight)
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _code_widths(dim: int, cfg: HeadsConfig) -> tuple[int, ...]:
    return tuple(cfg.code_widths) or (dim // 2, dim // 4)


NO_FINAL_RELU = "no ReLU on output layers (the seed's made every output component non-negative)"
METHODS: dict[str, HeadMethod] = {m.name: m for m in [
    HeadMethod("object_head", "Object head", lambda d, c: MLPHead(d, c.hidden or d), _object_loss,
               (NO_FINAL_RELU,)),
    HeadMethod("contrastive_head", "Contrastive head", lambda d, c: MLPHead(d, c.hidden or d), _contrastive_loss,
               (NO_FINAL_RELU, "different-object pairs counted exactly (the seed's normalisers miscounted them)",
                "optional InfoNCE with several positives (heads.contrastive: infonce)")),
    HeadMethod("autoencoder", "View autoencoder", lambda d, c: ViewAutoencoder(d, _code_widths(d, c)),
               _autoencoder_loss,
               (NO_FINAL_RELU, "the same forward pass in training and evaluation (the seed's `if self.train:` "
                "was always true)", "reconstruction reported as element-wise MSE and as mean L2 distance "
                "(the seed's 'L2 0.17' was an element-wise MSE)")),
]}


@dataclass
class TrainedMethod:
    method: HeadMethod
    model: nn.Module
    result: TrainResult
    heads: HeadsConfig  # the settings used: batch sizes reduced to what the data has


def sample_views(image: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """[N, k, D]: k distinct random views of every object, vectorised."""
    n, v, _ = image.shape
    idx = torch.rand(n, v, generator=generator).argsort(1)[:, :k]
    return image.gather(1, idx[..., None].expand(-1, -1, image.shape[-1]))


def tuning_views(emb: Embeddings, split: str, cfg: RunConfig, views: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """(image [N, V seen, D], caption text [N, D]) of the split's objects of the multi-view categories
    at the seen poses (`core.protocol`): all a head may train, or early-stop, on."""
    groups = category_groups(cfg.protocol, list(emb.category_names), cfg.seed)
    part = emb.split(split)
    keep = np.array([groups[c] == MULTI_VIEW for c in part.categories], dtype=bool)
    seen = seen_pose_mask(cfg.protocol, views)
    return torch.from_numpy(part.image[keep][:, seen]), torch.from_numpy(part.text[keep])


def train_method(name: str, cfg: RunConfig, emb: Embeddings, views: pd.DataFrame, layout: RunLayout | None = None,
                 progress: bool = True) -> TrainedMethod:
    """Train `name` on the train split's multi-view objects at the seen poses, early-stopped on the val
    split's (the protocol's scope: single-view and unseen categories, and unseen poses, stay held out)."""
    method, h = METHODS[name], cfg.heads
    train_image, train_text = tuning_views(emb, "train", cfg, views)
    val_image, val_text = tuning_views(emb, "val", cfg, views)
    if len(train_image) < 2:
        raise ValueError(f"{name}: only {len(train_image)} train objects of multi-view categories; raise "
                         "dataset.splits.train or lower protocol.single_view_fraction / unseen_fraction")
    k = fit_to_data(h.views_per_object, train_image.shape[1], "heads.views_per_object", "seen grid views per object")
    per_batch = fit_to_data(h.objects_per_batch or len(train_image), len(train_image), "heads.objects_per_batch",
                            "train objects")
    torch.manual_seed(h.seed)
    generator = torch.Generator().manual_seed(h.seed)
    model = method.build(train_image.shape[-1], h)

    def loss_at_step(step: int) -> torch.Tensor:
        objects = (torch.randperm(len(train_image), generator=generator)[:per_batch]
                   if per_batch < len(train_image) else slice(None))
        loss, _ = method.loss(model, sample_views(train_image[objects], k, generator), train_text[objects], h)
        return loss

    # Validation sees groups of k views per object, as training does: the losses count pairs within a
    # group, so a group of all V views would weigh view-view pairs against caption pairs differently
    # and the two curves could not be compared. Every val view is used once, in fixed groups.
    groups = val_image.shape[1] // k
    val_groups = (sample_views(val_image, groups * k, torch.Generator().manual_seed(h.seed + 1))
                  .reshape(len(val_image), groups, k, -1).transpose(0, 1))

    def validate() -> float:
        return float(torch.stack([method.loss(model, group, val_text, h)[0] for group in val_groups]).mean())

    result = optimise(model.named_parameters(), loss_at_step, h.steps, h.lr, 0.0, 0,
                      desc=f"training {name}", progress=progress, validate=validate if len(val_image) > 1 else None,
                      validate_every=h.validate_every, patience=h.patience or None, model=model,
                      schedule=h.cosine_schedule)
    model.eval()
    if layout is not None:
        atomic_torch_save(model.state_dict(), layout.model_weights(name))
        atomic_write_json(layout.training_curves(name), {
            "train_loss": result.losses, "val_steps": result.val_steps, "val_loss": result.val_losses,
            "best_step": result.best_step, "stopped_early": result.stopped_early, "seconds": result.seconds,
            **emb.provenance, "heads_config": asdict(h),
            "batch_used": {"views_per_object": k, "objects_per_batch": per_batch}})
    return TrainedMethod(method, model, result, replace(h, views_per_object=k, objects_per_batch=per_batch))


@torch.no_grad()
def apply_method(trained: TrainedMethod, emb: Embeddings) -> Embeddings:
    """The embeddings with every image embedding passed through the trained head (renormalised)."""
    image = trained.model.embed(torch.from_numpy(emb.image))
    return replace(emb, image=F.normalize(image, dim=-1).numpy())


@torch.no_grad()
def reconstruction_error(trained: TrainedMethod, emb: Embeddings) -> dict[str, float]:
    """Autoencoder output (VI + VD) against the CLIP embedding: element-wise MSE and mean L2 distance."""
    original = torch.from_numpy(emb.image)
    reconstruction, codes, _ = trained.model(original)
    codes = F.normalize(codes, dim=-1)
    return {"reconstruction_mse": float(F.mse_loss(reconstruction, original)),
            "reconstruction_l2": float((reconstruction - original).norm(dim=-1).mean()),
            # Where the consistency lives: the VI codes themselves, before decoding.
            "vi_code_same_object_mean": same_object_similarity(codes).mean,
            "vi_code_cross_object_mean": cross_object_similarity(codes).mean}


def evaluate_method(trained: TrainedMethod, emb: Embeddings, views: pd.DataFrame,
                    canonical: str) -> tuple[dict, Embeddings]:
    """The metrics row of a trained method on `test` (as notebook 04), and the transformed test embeddings."""
    test = apply_method(trained, emb.split("test"))
    row = evaluation_row(test.image, test.text, test.category_text, test.labels, views, canonical,
                         test.category_text_unseen)
    if isinstance(trained.model, ViewAutoencoder):  # on the grid views, as every headline number
        frozen = emb.split("test")
        row.update(reconstruction_error(trained,
                                        replace(frozen, image=frozen.image[:, views.kind.to_numpy() == "grid"])))
    row["train_steps"] = trained.result.steps
    row["best_step"] = trained.result.best_step
    row["train_seconds"] = trained.result.seconds
    row["trainable_parameters"] = sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
    return row, test


@dataclass
class MethodRun:
    """Everything a method notebook shows: the trained head, its row, the results table, both test sets."""

    trained: TrainedMethod
    row: dict
    results: pd.DataFrame
    test: Embeddings  # after the head
    baseline_test: Embeddings  # the frozen backbone's
    views: pd.DataFrame
    backbone: str
    heads: HeadsConfig  # the settings it was trained with
    protocol: str  # what it was trained on under the protocol, in a sentence (`TuningScope.describe`)


def run_method(name: str, opened: OpenedRun, progress: bool = True) -> MethodRun:
    """Train `name` on the run's embeddings, evaluate it on test, write metrics/<name>.json and results.csv."""
    cfg, layout = opened.cfg, opened.layout
    backbone = opened.backbone_record
    emb, views = opened.embeddings, opened.views
    trained = train_method(name, cfg, emb, views, layout, progress)
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    row, test = evaluate_method(trained, emb, views, canonical)
    val = emb.split("val")
    row.update(val_columns(apply_method(trained, val).image, val, views, canonical, cfg))
    results = write_result(layout, name, row, backbone["name"], emb.provenance, asdict(cfg.heads),
                           {"differences_from_seed": "; ".join(trained.method.differences_from_seed)},
                           split_scores(test.image, emb.split("test"), views, canonical, cfg))
    return MethodRun(trained, row, results, test, emb.split("test"), views, backbone["name"], trained.heads,
                     opened.scope.describe())
