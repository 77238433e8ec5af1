"""Centroid distillation (notebook 12): viewpoint invariance without forgetting, a method of our own.

The image tower gets the same light adapters as Omniview-Tuning (LoRA + optional VIFormer,
`ovt.OmniviewCLIP`). Every train view is pulled toward its object's **frozen** multi-view
centroid: the normalised mean of the frozen backbone's embeddings of the object's grid
views, computed once from notebook 03's embeddings. The target never moves, so nothing
can collapse onto a moving point. A **keep** term holds the canonical (clean) views of
pretrain objects at their frozen embeddings, and an image-text contrastive term (ITC, as
in OVT) keeps captions aligned:

    loss = distill_weight * mean(1 - cos(z_view, centroid)) + keep_weight * mean(1 - cos(z_clean, frozen))
           + itc_weight * ITC

The adapters start as the identity, so the keep term is zero at initialisation. Training
shares OVT's loop (`ovt.tune_adapters`): batches, clean views, texts, several processes.
`distill.target` swaps the centroid for the object's frozen canonical view, or for its centroid
with each view weighted by its frozen zero-shot probability of the object's category; the
ablations compare all three (README, 12).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core.distributed import Ranks
from ..core.progress import note
from ..core.schema import DistillConfig, RunConfig
from ..data.dataset import load_views
from ..evaluation.results import (
    method_label,
    read_ablation,
    seed_count,
    seeded_rows,
    write_ablation,
    write_ablation_table,
    write_result,
)
from ..models import losses
from ..models.adapters import trainable_parameters
from ..models.backbone import Backbone, load_backbone
from ..models.embed import backbone_logit_scale
from ..models.opened_run import OpenedRun
from .tuning import (
    TuningHistory,
    TuningStep,
    describe_batch,
    evaluate_zero_shot_splits,
    run_scope,
    train_or_reuse,
    tune_adapters,
)

METHOD = "centroid_distillation"
# Each term's ablation: the method with that term's weight at zero (`distill.ablate: true`).
# With the other targets (`distill.target`) beside them: does a target the backbone classifies better help?
ABLATIONS = {"without_distillation": {"distill_weight": 0.0}, "without_keep": {"keep_weight": 0.0},
             "without_itc": {"itc_weight": 0.0}, "canonical_view_target": {"target": "canonical_view"},
             "confident_centroid_target": {"target": "confident_centroid"}}


def frozen_centroids(image: np.ndarray | torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[N objects, V views, D] frozen embeddings -> [N, D]: each object's normalised mean view (weighted by
    `weights` [N, V] when given)."""
    image = F.normalize(torch.as_tensor(np.asarray(image)), dim=-1)
    mean = image.mean(1) if weights is None else (weights[..., None] * image).sum(1)
    return F.normalize(mean, dim=-1)


def category_log_confidence(image: torch.Tensor, category_text: torch.Tensor, labels: torch.Tensor,
                            logit_scale: float) -> torch.Tensor:
    """[N, V, D] views -> [N, V]: each view's zero-shot log-probability of its object's category."""
    logits = logit_scale * F.normalize(image, dim=-1) @ F.normalize(category_text, dim=-1).T
    return logits.log_softmax(-1).gather(-1, labels.view(-1, 1, 1).expand(*logits.shape[:2], 1))[..., 0]


@dataclass
class DistillHistory(TuningHistory):
    itc: list[float] = field(default_factory=list)
    distill: list[float] = field(default_factory=list)
    keep: list[float] = field(default_factory=list)


class CentroidDistillation:
    """The objective `ovt.tune_adapters` minimises (see the module docstring). `centroids` [N train, D] and
    `clean_targets` [N clean, D] are fixed tensors, never parameters."""

    def __init__(self, d: DistillConfig, centroids: torch.Tensor, clean_targets: torch.Tensor | None,
                 processes: int = 1):
        self.d = d
        self.centroids = F.normalize(centroids.detach().float(), dim=-1)
        self.clean_targets = None if clean_targets is None else F.normalize(clean_targets.detach().float(), dim=-1)
        self.history = DistillHistory(processes=processes)

    def to(self, device: torch.device) -> "CentroidDistillation":
        self.centroids = self.centroids.to(device)
        self.clean_targets = None if self.clean_targets is None else self.clean_targets.to(device)
        return self

    def start_epoch(self, embed_train) -> None:
        """Nothing to recompute: the targets are fixed."""

    def loss(self, step: TuningStep) -> torch.Tensor:
        n = len(step.object_index)
        distill = losses.distance_to_targets(step.z[:n], self.centroids[step.object_index])
        keep = (losses.distance_to_targets(step.z[n:], self.clean_targets[step.clean_index])
                if self.clean_targets is not None and len(step.clean_index) else step.z.new_zeros(()))
        for name, value in (("itc", step.itc), ("distill", distill), ("keep", keep)):
            getattr(self.history, name).append(float(value.detach()))
        return self.d.itc_weight * step.itc + self.d.distill_weight * distill + self.d.keep_weight * keep


def frozen_targets(cfg: RunConfig, layout, emb, logit_scale: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed targets from notebook 03's embeddings of the frozen backbone: each train object's target
    (`distill.target`: its centroid over the seen poses, its canonical view, or that centroid weighted by each
    view's zero-shot confidence at the backbone's `logit_scale`), and each clean object's canonical-view
    embedding (the protocol's scope, `tuning.run_scope`, in the order the tuning indexes them)."""
    views = load_views(layout)
    scope = run_scope(cfg, layout)
    grid = views.view_id.isin(scope.seen_views).to_numpy()  # the seen poses: what the tuning sees
    canonical = list(views.view_id).index(scope.canonical)
    train, clean = emb.select(scope.multi_view_objects), emb.select(scope.clean_objects)
    image = torch.from_numpy(train.image)
    if cfg.distill.target == "canonical_view":
        targets = F.normalize(image[:, canonical], dim=-1)
    elif cfg.distill.target == "confident_centroid":
        log_confidence = category_log_confidence(image[:, grid], torch.from_numpy(train.category_text),
                                                 torch.from_numpy(train.labels).long(), logit_scale)
        # p / sum(p) over the views, from log p: finite where every view's p underflows
        targets = frozen_centroids(image[:, grid], log_confidence.softmax(1))
    else:
        targets = frozen_centroids(image[:, grid])
    return targets, torch.from_numpy(clean.image[:, canonical])


def train_distillation(cfg: RunConfig, layout, backbone: Backbone, emb, progress: bool = True,
                       ranks: Ranks | None = None):
    """Centroid distillation of the backbone's image tower: (the tuned model, its history)."""
    ranks = ranks or Ranks.single(backbone.device)
    centroids, clean_targets = frozen_targets(cfg, layout, emb, backbone_logit_scale(backbone.model))
    objective = CentroidDistillation(cfg.distill, centroids, clean_targets if cfg.distill.clean_per_batch else None,
                                     ranks.world_size).to(ranks.device)
    model = tune_adapters(cfg, "distill", layout, backbone, objective, progress, ranks, "Centroid distillation")
    return model, objective.history


# ----------------------------------------------------------------------------- notebook 12


@dataclass
class DistillRun:
    """Everything notebook 12 shows."""

    evaluations: dict  # frozen, centroid_distillation (ovt.TunedEvaluation), plus OVT's when 08 has run
    history: DistillHistory
    trainable: tuple[int, int]
    results: pd.DataFrame
    backbone: str
    views: pd.DataFrame
    test: object  # embed.Embeddings of the test objects
    ablations: pd.DataFrame | None = None


def _evaluate(cfg: RunConfig, d: DistillConfig, layout, backbone: Backbone, emb, progress: bool,
              save_as: str | None = None):
    """Train (or, with `save_as`, read back or train and save) and evaluate on OVT's splits, as 08 does (only
    the test views are embedded: no later notebook reads this backbone's embeddings)."""
    run_cfg = replace(cfg, distill=d)
    if save_as is not None:
        model, history = train_or_reuse(run_cfg, d, layout, backbone, emb.provenance, save_as, progress,
                                        train=lambda: train_distillation(run_cfg, layout, backbone, emb, progress),
                                        history_type=DistillHistory)
    else:
        model, history = train_distillation(run_cfg, layout, backbone, emb, progress)
    evaluation = evaluate_zero_shot_splits(model, layout, cfg, emb)
    trainable, total = trainable_parameters(model)
    evaluation.row.update(trainable_parameters=trainable, trainable_share=trainable / total,
                          train_seconds=history.seconds, train_steps=len(history.itc), epochs=history.epochs)
    return model, history, evaluation


def run_distillation(opened: OpenedRun, progress: bool = True) -> DistillRun:
    """Train centroid distillation, evaluate it beside the frozen backbone (and OVT's row when 08 ran), write
    its results row; with `distill.ablate`, one variant without each term (read back when unchanged)."""
    cfg, layout = opened.cfg, opened.layout
    record = opened.backbone_record
    emb = opened.embeddings
    backbone = load_backbone(cfg.backbone, layout)
    backbone = replace(backbone, model=backbone.model.float())
    evaluations = {"frozen": evaluate_zero_shot_splits(backbone.model, layout, cfg, emb, emb)}  # 03's embeddings
    trained = replace(cfg.distill, ablate=False)  # whether ablations run too is not a setting of the method
    model, history, evaluation = _evaluate(cfg, trained, layout, backbone, emb, progress, METHOD)
    evaluations[METHOD] = evaluation
    results = write_result(layout, METHOD, evaluation.row, record["name"], emb.provenance, asdict(trained),
                           scores=evaluation.scores)
    ablations = None
    if cfg.distill.ablate:
        rows = [{"variant": METHOD, "changes": "(the run's distill)", **evaluation.row}]
        for i, (name, changes) in enumerate(ABLATIONS.items()):
            variant = replace(trained, **changes)
            section = asdict(variant)
            row = read_ablation(layout, METHOD, name, emb.provenance, section)
            if row is None:
                note(f"ablation {i + 1}/{len(ABLATIONS)}: {name}")
                row = _evaluate(cfg, variant, layout, backbone, emb, progress)[2].row
                write_ablation(layout, METHOD, name, row, emb.provenance, section)
            rows.append({**row, "variant": name, "changes": ", ".join(f"{k}={v}" for k, v in changes.items())})
        ablations = write_ablation_table(layout, METHOD, rows)
    return DistillRun(evaluations, history, trainable_parameters(model), results, record["name"], opened.views,
                      emb.split("test"), ablations)


def describe_run(run: DistillRun, d: DistillConfig) -> str:
    """Notebook 12's header (markdown): backbone, trainable parameters, budget, target, weights, training time."""
    trainable, total = run.trainable
    return (f"**Backbone:** {run.backbone} · trainable parameters: **{trainable:,}** of {total:,} "
            f"({trainable / total:.1%}) · {d.steps} steps of "
            f"{describe_batch(run.history.batch)} · target: {d.target.replace('_', ' ')} · weights: distill "
            f"{d.distill_weight}, keep {d.keep_weight}, ITC {d.itc_weight} · trained in {run.history.seconds:.0f} s "
            f"({run.history.epochs} epochs"
            + (f", {run.history.processes} processes" if run.history.processes > 1 else "") + ").")


ABLATION_COLUMNS = {"changes": "changes", "zero_shot_accuracy_canonical": "clean",
                    "zero_shot_accuracy_other_grid": "viewpoint-OOD", "zero_shot_accuracy_2d_ood": "2D-OOD",
                    "same_object_mean": "same-object", "cross_object_mean": "cross-object"}


def ablation_table(run: DistillRun) -> pd.DataFrame:
    """The ablations for display: zero-shot by split and consistency per variant."""
    return run.ablations.set_index("variant")[list(ABLATION_COLUMNS)].rename(columns=ABLATION_COLUMNS)


def outcome_table(run: DistillRun) -> pd.DataFrame:
    """Clean, 2D-OOD and viewpoint-OOD zero-shot accuracy (± standard error over test objects) of the frozen
    backbone, OVT (its results row, when 08 ran) and centroid distillation."""
    columns = {"zero_shot_accuracy_canonical": "clean (canonical view)", "zero_shot_accuracy_2d_ood": "2D-OOD",
               "zero_shot_accuracy_other_grid": "viewpoint-OOD (other grid views)",
               "zero_shot_accuracy_ood": "ood views", "same_object_mean": "same-object",
               "cross_object_mean": "cross-object"}
    rows = {name: e.row for name, e in run.evaluations.items()}
    table = run.results.set_index("method")
    if "omniview_tuning" in table.index:
        rows = {"frozen": rows["frozen"], "omniview_tuning": table.loc["omniview_tuning"].to_dict(),
                METHOD: rows[METHOD]}
    out = pd.DataFrame({name: {label: row.get(column, np.nan) for column, label in columns.items()}
                        for name, row in rows.items()}).T
    for column, label in (("zero_shot_accuracy_canonical", "clean"), ("zero_shot_accuracy_other_grid",
                                                                      "viewpoint-OOD")):
        out[f"{label} stderr"] = [row.get(f"{column}_stderr", np.nan) for row in rows.values()]
    return out


def describe_outcome(table: pd.DataFrame, results: pd.DataFrame) -> str:
    """Notebook 12's verdict (markdown, every sentence from the numbers): the method against the frozen
    backbone (`outcome_table`), then the issue's target on the run's results rows (`describe_target`)."""
    frozen, ours = table.loc["frozen"], table.loc[METHOD]
    vp, clean = "viewpoint-OOD (other grid views)", "clean (canonical view)"
    lost = (frozen[clean] - ours[clean]) * 100
    return (f"- Viewpoint-OOD: {ours[vp]:.3f} against the frozen backbone's {frozen[vp]:.3f} "
            f"({(ours[vp] - frozen[vp]) * 100:+.1f} points); clean {ours[clean]:.3f} against {frozen[clean]:.3f} "
            f"({-lost:+.1f} points: {'within' if lost <= 1 else '**more than**'} the 1-point budget).\n\n"
            + describe_target(results))


def describe_target(results: pd.DataFrame, seeds: pd.DataFrame | None = None) -> str:
    """The issue's target on every row of the summary (markdown, from the numbers): which method has the best
    viewpoint-OOD accuracy at no more than 1 point of clean loss against the frozen backbone, and whether
    ours beats OVT by more than OVT's standard error. Over a seeds sweep (means ± standard error over the
    seeds) when one covers these methods, else on this run (± standard error over test objects)."""
    clean, vp = "zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid"
    needed = {"baseline", "omniview_tuning", METHOD}
    seeded = seeded_rows(seeds)
    use_seeds = needed <= set(seeded.index)
    table = seeded if use_seeds else results.set_index("method")
    spread = f"{vp}_seed_stderr" if use_seeds else f"{vp}_stderr"
    if not needed <= set(table.index) or spread not in table:
        return "The target needs the frozen backbone's, OVT's (08) and centroid distillation's (12) rows."
    where = (f"Over {seed_count(table)} seeds (mean ± standard error over the seeds)" if use_seeds
             else "On this run (± standard error over test objects)")
    base = table.loc["baseline", clean]
    within = table[(base - table[clean]) * 100 <= 1 + 1e-9].dropna(subset=[vp])
    best = within[vp].idxmax()
    ours, ovt = table.loc[METHOD], table.loc["omniview_tuning"]
    margin, stderr = (ours[vp] - ovt[vp]) * 100, ovt[spread] * 100
    lost = (base - ours[clean]) * 100
    short = [f"{lost - 1:.1f} points of clean accuracy over the budget"] if lost > 1 + 1e-9 else []
    if margin <= stderr:
        short.append(f"{stderr - margin:.1f} points of viewpoint-OOD short of OVT plus its standard error")
    if best != METHOD and lost <= 1 + 1e-9:
        short.append(f"{method_label(best)} is better within the budget")
    met = not short
    uncovered = ("" if use_seeds or seeds is None else
                 f"The seeds sweep has no rows of {', '.join(sorted(needed - set(seeded.index)))}: "
                 "judged on this run. ")
    return "\n".join([
        f"{uncovered}{where}:",
        f"- Within 1 point of the frozen backbone's clean accuracy ({base:.3f}): "
        + ", ".join(f"{method_label(m)} {r[vp]:.3f}" for m, r in within.sort_values(vp, ascending=False).iterrows())
        + f" viewpoint-OOD; the best is **{method_label(best)}**.",
        f"- Centroid distillation: viewpoint-OOD {ours[vp]:.3f} ± {ours[spread]:.3f}, clean {ours[clean]:.3f} "
        f"({(ours[clean] - base) * 100:+.1f} points); OVT {ovt[vp]:.3f} ± {stderr / 100:.3f}, clean {ovt[clean]:.3f} "
        f"({(ovt[clean] - base) * 100:+.1f} points). Margin over OVT {margin:+.1f} points against its standard error "
        f"{stderr:.1f}: " + ("**target met**." if met else
                             f"**target missed** ({'; '.join(short)}): a negative result, stated with its numbers."),
    ])


def describe_ablations(table: pd.DataFrame) -> str:
    """Each term's ablation against the full method (markdown, from the numbers)."""
    full = table.set_index("variant").loc[METHOD]
    lines = []
    for row in table[table.variant != METHOD].itertuples():
        vp = (row.zero_shot_accuracy_other_grid - full.zero_shot_accuracy_other_grid) * 100
        clean = (row.zero_shot_accuracy_canonical - full.zero_shot_accuracy_canonical) * 100
        lines.append(f"- **{row.variant.replace('_', ' ')}** ({row.changes}): viewpoint-OOD {vp:+.1f} points, "
                     f"clean {clean:+.1f} points against the full method.")
    return "\n".join(lines)
