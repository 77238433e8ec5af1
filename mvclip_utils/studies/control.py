"""The supervised control (notebook 09): what "ITC on category prompts" can be at best.

ITC that pairs every view with its bare category prompt, in the templates zero-shot averages, is
cross-entropy against the zero-shot classifier. The control does exactly that with the image tower
frozen: a cosine classifier initialised at the category prompts (W = prompts x logit scale, the
zero-shot classifier), trained with cross-entropy over **every** category's row on what tuning may
see (the multi-view categories' train objects at the seen poses, `core.protocol`). It is judged
like every method (per-object scores, paired against the frozen backbone in 13): a tuned method
that does no better than it on a regime has learnt nothing ITC on the labels would not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core.cameras import canonical_view_id
from ..core.protocol import MULTI_VIEW, seen_pose_mask
from ..evaluation.metrics import evaluation_row
from ..evaluation.results import write_result
from ..evaluation.transfer import split_scores, val_columns
from ..models.opened_run import OpenedRun

METHOD = "supervised_control"


def fit_category_classifier(features: torch.Tensor, labels: torch.Tensor, class_text: torch.Tensor,
                            logit_scale: float, epochs: int, lr: float) -> torch.Tensor:
    """[C, D] weights of a cosine classifier (logits = normalise(x) @ W.T, no bias), initialised at the
    zero-shot classifier (normalised prompts x `logit_scale`) and trained full batch with Adam on
    features [n, D] with labels [n] (any subset of the C classes), `epochs` steps."""
    x = F.normalize(features.float(), dim=-1)
    weight = (F.normalize(class_text.float(), dim=-1) * float(logit_scale)).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weight], lr=lr)
    for _ in range(epochs):
        loss = F.cross_entropy(x @ weight.T, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return weight.detach()


@dataclass
class ControlRun:
    weight: torch.Tensor  # [C, D] the trained classifier (zero-shot's rows moved by supervision)
    row: dict  # its results row on test
    scores: pd.DataFrame  # per test object and pose group
    n_train_views: int


def run_supervised_control(opened: OpenedRun) -> ControlRun:
    """Fit the control on the protocol's multi-view train views, evaluate it on test like every method, and
    write metrics/supervised_control.json with its per-object scores."""
    cfg, layout, emb, views = opened.cfg, opened.layout, opened.embeddings, opened.views
    scope = opened.scope
    train = emb.select(scope.multi_view_objects)
    seen = seen_pose_mask(cfg.protocol, views)
    features = torch.from_numpy(train.image[:, seen].reshape(-1, train.image.shape[-1]))
    labels = torch.from_numpy(np.repeat(train.labels, int(seen.sum()))).long()
    torch.manual_seed(cfg.seed)
    weight = fit_category_classifier(features, labels, torch.from_numpy(emb.category_text), emb.logit_scale,
                                     cfg.probes.epochs, cfg.probes.lr)
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    test = emb.split("test")
    classifier = weight.numpy()
    row = evaluation_row(test.image, test.text, classifier, test.labels, views, canonical)
    val = emb.split("val")
    row.update(val_columns(val.image, val, views, canonical, cfg, classifier))
    scores = split_scores(test.image, test, views, canonical, cfg, classifier)
    write_result(layout, METHOD, row, opened.backbone_name, emb.provenance,
                 {"epochs": cfg.probes.epochs, "lr": cfg.probes.lr}, scores=scores)
    return ControlRun(weight, row, scores, len(features))


def describe_control(run: ControlRun, opened: OpenedRun) -> str:
    """Notebook 09's paragraph on the control, from its numbers."""
    row = run.row
    return (f"**Supervised control:** the zero-shot classifier trained with cross-entropy over all "
            f"{len(opened.scope.groups)} categories on {run.n_train_views} frozen views (the multi-view "
            f"categories' train objects at the seen poses; {opened.cfg.probes.epochs} full-batch Adam steps at lr "
            f"{opened.cfg.probes.lr}). On the test objects: zero-shot accuracy "
            f"{row['zero_shot_accuracy_canonical']:.3f} on the canonical view and "
            f"{row['zero_shot_accuracy_other_grid']:.3f} on the other grid views; "
            f"13 sets it beside every method, regime by regime, with paired intervals. Rows of the "
            f"{len(opened.scope.categories(MULTI_VIEW))} multi-view categories move with the supervision; the others "
            f"only as the negatives of it.")
