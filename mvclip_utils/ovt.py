"""Omniview-Tuning (OVT, the seed write-up `omniview-tuning.txt`): LoRA on the image tower's
attention plus a VIFormer adapter after it; the text tower stays frozen.

The model is a backbone like any other (`tuned_backbone`): `encode_image` / `encode_text`
as open_clip's, so notebook 03's embedding path and 04's metrics evaluate it unchanged.
Only the trainable weights are saved (`save_adapters`); loading them onto the base model
(`load_adapters`) reproduces its embeddings exactly. Works on any open_clip ViT: the
embedded mvclip-tiny and ViT-B-32 alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from .backbone import Backbone
from .config import AdapterTuningConfig, OVTConfig, RunConfig
from .distributed import Ranks
from .progress import note
from .runs import atomic_torch_save, file_digest


@dataclass(frozen=True)
class AdapterConfig:
    lora_rank: int = 8  # 0 = no LoRA (the VIFormer-only ablation)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    viformer_layers: int = 2  # 0 = no VIFormer (the LoRA-only ablation)
    viformer_heads: int = 4
    viformer_ff_mult: int = 4  # feed-forward width / embedding width (public code: 2048 for 512)
    residual_ratio: float = 0.1  # alpha: the same in training and evaluation


class VIFormer(nn.Module):
    """`alpha * f(z) + (1 - alpha) * z` with f a small self-attention encoder (2 layers, 4 heads).

    As in the public code, f sees the pooled embedding as a sequence of one token, so its
    self-attention has nothing to attend across: in effect a residual MLP block with
    LayerNorms. f(z) = z + W enc(z) with W starting at zero, so training starts from the
    backbone's own embeddings (the public code started from a random f scaled by alpha).
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, ff_mult: int = 4, alpha: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"VIFormer: embedding width {dim} is not divisible by {heads} heads")
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.alpha = alpha

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        f = z + self.out(self.encoder(z[:, None])[:, 0])
        return self.alpha * f + (1 - self.alpha) * z


class OmniviewCLIP(nn.Module):
    """An open_clip model with LoRA in its image tower and a VIFormer after it."""

    def __init__(self, base: nn.Module, cfg: AdapterConfig = AdapterConfig()):
        super().__init__()
        self.base, self.cfg = base, cfg
        for p in base.parameters():
            p.requires_grad_(False)
        if cfg.lora_rank:
            from peft import LoraConfig, inject_adapter_in_model

            if not hasattr(base.visual, "transformer"):
                raise NotImplementedError(f"OVT needs a ViT image tower; {type(base.visual).__name__} has no attention "
                                          "blocks for LoRA")
            inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                               lora_dropout=cfg.lora_dropout, target_modules=["attn"]), base.visual)
            for name, p in base.visual.named_parameters():
                p.requires_grad_("lora_" in name)
        dim = int(base.text_projection.shape[1]) if hasattr(base, "text_projection") else int(base.visual.output_dim)
        self.viformer = (VIFormer(dim, cfg.viformer_layers, cfg.viformer_heads, cfg.viformer_ff_mult,
                                  cfg.residual_ratio) if cfg.viformer_layers else None)

    @property
    def visual(self) -> nn.Module:  # image size and normalisation, for InputTransform
        return self.base.visual

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.base.logit_scale

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        z = self.base.encode_image(images)
        z = self.viformer(z) if self.viformer is not None else z
        return nn.functional.normalize(z, dim=-1) if normalize else z

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.base.encode_text(tokens, normalize=normalize)

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """Only the trainable weights: LoRA's and the VIFormer's."""
        return {k: v.detach().clone() for k, v in self.named_parameters() if v.requires_grad}


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def save_adapters(model: OmniviewCLIP, path: Path) -> None:
    """The adapter weights and their config, atomically (a few MB, not the backbone)."""
    atomic_torch_save({"config": asdict(model.cfg), "state": model.adapter_state()}, Path(path))


def load_adapters(base: nn.Module, path: Path) -> OmniviewCLIP:
    """The base model with the saved adapters put back: the tuned model's embeddings, exactly."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = OmniviewCLIP(base, AdapterConfig(**saved["config"]))
    missing = set(model.adapter_state()) - set(saved["state"])
    if missing:
        raise ValueError(f"{path} lacks adapter weights {sorted(missing)[:3]}: it was saved from another config")
    model.load_state_dict(saved["state"], strict=False)
    return model.eval()


def tuned_backbone(base: Backbone, adapters: Path, method: str = "omniview_tuning") -> Backbone:
    """A Backbone whose image tower carries the saved adapters: 03's embedding path and 04's metrics
    evaluate it like any other. Its identity includes the adapters' hash. `base` is left untouched (peft
    injects LoRA in place, so the adapters go onto a copy)."""
    import copy

    model = load_adapters(copy.deepcopy(base.model), adapters).to(base.device)
    return replace(base, model=model, name=f"{base.name} + {method}", slug=f"{base.slug}+{method}",
                   identity=f"{base.identity}|{method}:{file_digest(adapters)}")


# ----------------------------------------------------------------------------- training


def adapter_config(cfg: AdapterTuningConfig) -> AdapterConfig:
    return AdapterConfig(lora_rank=cfg.lora_rank, viformer_layers=cfg.viformer_layers,
                         viformer_heads=cfg.viformer_heads, residual_ratio=cfg.residual_ratio)


@dataclass
class CaptionBank:
    """The frozen text side of ITC, drawn as in the backbone's pretraining: an object's caption in a
    random caption template or, with probability `category_prob`, its bare category in one ("a
    photo of a mug", the pairs zero-shot classification relies on). Embedded once: the text tower
    is frozen."""

    caption: torch.Tensor  # [N objects, T templates, D]
    category: torch.Tensor  # [C categories, T, D]
    object_category: torch.Tensor  # [N] category index of each object
    category_prob: float

    @classmethod
    def build(cls, backbone: Backbone, captions: list[str], categories: list[int], category_names: list[str],
              templates: list[str], category_prob: float) -> "CaptionBank":
        from .embed import category_prompt

        def embed(texts: list[str]) -> torch.Tensor:
            flat = [t.format(text) for text in texts for t in templates]
            return backbone.encode_texts(flat).cpu().float().reshape(len(texts), len(templates), -1)

        return cls(embed(captions), embed([f"a {category_prompt(c)}" for c in category_names]),
                   torch.as_tensor(categories), category_prob)

    def sample(self, objects: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts [B, D] for the objects [B] and an id per text [B]: equal ids are identical texts
        (two objects' bare category captions in one template), which ITC must not count as negatives."""
        n, t = self.caption.shape[:2]
        template = torch.randint(t, (len(objects),), generator=generator)
        bare = torch.rand(len(objects), generator=generator) < self.category_prob
        category = self.object_category[objects]
        text = torch.where(bare[:, None], self.category[category, template], self.caption[objects, template])
        ids = torch.where(bare, n * t + category * t + template, objects * t + template)
        return text, ids


@dataclass
class TuningHistory:
    """What every adapter tuning records; each objective adds its own losses."""

    epochs: int = 0
    seconds: float = 0.0
    processes: int = 1  # data-parallel processes that trained it (torchrun)


@dataclass
class OVTHistory(TuningHistory):
    itc: list[float] = field(default_factory=list)
    vc: list[float] = field(default_factory=list)
    outlier_drift: list[float] = field(default_factory=list)  # per epoch after the first: outlier views changed


def embed_views(model: nn.Module, data, batch_size: int = 256, workers: int = 0) -> torch.Tensor:
    """[N objects, V views, D] normalised embeddings of a uint8 ViewImages by a model being tuned (in
    eval mode, on the model's device, through notebook 03's `embed.encode_views`), on the CPU."""
    from .embed import encode_views

    was_training = model.training
    device = next(model.parameters()).device
    as_backbone = Backbone(model.eval(), None, None, device, False, "tuning", "tuning", "")
    image = encode_views(as_backbone, data, batch_size, workers, progress=False)
    model.train(was_training)
    return torch.from_numpy(image)


class _ImageTower(nn.Module):
    """`encode_image` as `forward`: what DistributedDataParallel wraps (it hooks `forward` only)."""

    def __init__(self, model: OmniviewCLIP):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


@dataclass
class TuningStep:
    """One global batch in one process's order (every rank's train views, then every rank's clean views),
    its embeddings differentiable through this rank's slices only, and ITC on it with its drawn texts."""

    z: torch.Tensor  # [B train views + C clean views, D]
    object_index: torch.Tensor  # [B] the train object of each train view
    view_index: torch.Tensor  # [B] its view
    clean_index: torch.Tensor  # [C] the pretrain object of each clean view
    itc: torch.Tensor


class TuningObjective(Protocol):
    """What a tuning method adds to the shared loop: work before each epoch (`embed_train()` gives every
    train view's embedding by the current model, [N, V, D]) and the loss of a step; it keeps its history."""

    history: TuningHistory

    def start_epoch(self, embed_train: Callable[[], torch.Tensor]) -> None: ...

    def loss(self, step: TuningStep) -> torch.Tensor: ...


def tune_adapters(cfg: RunConfig, key: str, layout, backbone: Backbone, objective: TuningObjective,
                  progress: bool = True, ranks: Ranks | None = None, desc: str = "tuning",
                  expect_objects: dict[str, list[str]] | None = None) -> OmniviewCLIP:
    """The one loop of every adapter tuning (08's OVT and ITC-only fine-tune, 12's centroid distillation).

    LoRA + VIFormer on a copy of the backbone (the adapter settings of the config section `key`: `ovt`,
    `distill`); each step draws P train
    objects x K of their grid views (`ObjectViewBatches`, an epoch being one pass over every view) plus
    the canonical views of `clean_per_batch` pretrain objects, each paired with its caption or bare
    category (`CaptionBank`), and minimises `objective.loss` of the step, which carries ITC over the whole
    batch (views of one object, and identical texts, are not each other's negatives).

    With `ranks` of several processes (torchrun, `distributed.from_environment`), each rank encodes its
    slice of the same global batch and its share of the train objects for `embed_train`; the loss is
    computed on the gathered whole, so N processes train the adapters one process would (`distributed`
    explains the gradients). `expect_objects` ({split: object ids}) guards the order fixed targets rely on.
    """
    import copy
    import time

    from . import losses
    from .backbone import InputTransform
    from .cameras import canonical_view_id
    from .dataset import ObjectViewBatches, ViewImages, collate_views, load_views
    from .distributed import RankBatches, data_parallel
    from .train import optimise

    o: AdapterTuningConfig = getattr(cfg, key)
    ranks = ranks or Ranks.single(backbone.device)
    device = ranks.device
    torch.manual_seed(o.seed)
    model = OmniviewCLIP(copy.deepcopy(backbone.model).float().cpu(), adapter_config(o)).to(device)
    transform = InputTransform.for_model(model)
    views = load_views(layout)
    grid = views[views.kind == "grid"].view_id.tolist()
    train = ViewImages(layout, ["train"], grid)  # uint8: the model input is made per batch
    clean = (ViewImages(layout, ["pretrain"], [canonical_view_id(views, cfg.backbone.pretrain.canonical_view)])
             if o.clean_per_batch else None)
    for split, data in (("train", train), ("pretrain", clean)):
        if data is not None and expect_objects and split in expect_objects \
                and list(data.objects.object_id) != list(expect_objects[split]):
            raise ValueError(f"the {split} objects of the dataset and of the embeddings differ: rerun notebook 03_embed")
    pool = [train] + ([clean] if clean is not None else [])  # clean objects are indexed after the train ones
    with torch.no_grad():
        bank = CaptionBank.build(backbone, [c for d in pool for c in d.objects.caption],
                                 np.concatenate([d.categories for d in pool]).tolist(), train.category_names,
                                 cfg.backbone.pretrain.caption_templates, o.category_caption_prob)
    text_generator = torch.Generator().manual_seed(o.seed + 1)  # the same texts on every rank
    sampler = ObjectViewBatches(train.n_objects, train.n_views, o.objects_per_batch,
                                min(o.views_per_object, train.n_views), o.seed)
    ranks.check_divides(sampler.p, "objects per batch", f"{key}.objects_per_batch")
    workers = min(cfg.embed.loader_workers, 2)
    start, stop = ranks.bounds(train.n_objects)  # this rank's objects in `embed_train`
    own_objects = (train if not ranks.distributed else
                   ViewImages(layout, ["train"], grid, object_ids=train.objects.object_id[start:stop].tolist()))
    clean_batches = None
    if clean is not None:  # decoded in workers, drawn without replacement per pass
        ranks.check_divides(o.clean_per_batch, "clean views per batch", f"{key}.clean_per_batch")
        generator = torch.Generator().manual_seed(o.seed)
        drawn = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(
            clean, num_samples=o.clean_per_batch * o.steps, generator=generator), o.clean_per_batch, drop_last=True)
        clean_batches = iter(torch.utils.data.DataLoader(clean, batch_sampler=RankBatches(drawn, ranks),
                                                         collate_fn=collate_views, num_workers=workers))
    state = {"epoch": -1, "batches": iter(())}
    tower = data_parallel(_ImageTower(model), ranks)
    began = time.perf_counter()

    def embed_train() -> torch.Tensor:
        return ranks.gather_shares(embed_views(model, own_objects, workers=workers).to(device), train.n_objects)

    def next_batch():
        batch = next(state["batches"], None)
        if batch is None:  # a new epoch: the objective's work first, then a fresh pass over the objects
            state["epoch"] += 1
            objective.start_epoch(embed_train)
            sampler.set_epoch(state["epoch"])
            state["batches"] = iter(torch.utils.data.DataLoader(
                train, batch_sampler=RankBatches(sampler, ranks), collate_fn=collate_views, num_workers=workers))
            batch = next(state["batches"])
        return batch

    def loss_at_step(step: int) -> torch.Tensor:
        batch = next_batch()
        images, n_local = batch.image, len(batch.object_index)
        clean_batch = next(clean_batches) if clean_batches is not None else None
        if clean_batch is not None:
            images = torch.cat([images, clean_batch.image])
        z_local = tower(transform(images).to(device))
        z = ranks.gather_with_local_grad(z_local[:n_local])
        object_index = ranks.gather(batch.object_index.to(device))
        owner, clean_index = object_index, object_index.new_zeros(0)
        if clean_batch is not None:
            z = torch.cat([z, ranks.gather_with_local_grad(z_local[n_local:])])
            clean_index = ranks.gather(clean_batch.object_index.to(device))
            owner = torch.cat([owner, train.n_objects + clean_index])
        text, text_id = bank.sample(owner.cpu(), text_generator)
        text, text_id = text.to(device), text_id.to(device)
        not_negative = (owner[:, None] == owner[None]) | (text_id[:, None] == text_id[None])
        itc = losses.clip_loss(z, text, model.logit_scale.exp().detach(), not_negative)
        return objective.loss(TuningStep(z, object_index, ranks.gather(batch.view_index.to(device)), clean_index, itc))

    model.train()
    optimise(((n, p) for n, p in tower.named_parameters() if p.requires_grad), loss_at_step, o.steps, o.lr,
             o.weight_decay, warmup_steps=min(20, o.steps // 10), desc=desc, progress=progress and ranks.is_main)
    model.eval()
    objective.history.epochs, objective.history.seconds = state["epoch"] + 1, time.perf_counter() - began
    objective.history.processes = ranks.world_size
    return model


class OmniviewObjective:
    """OVT's minimax: before each epoch, every object's kNN-weighted anchor and its `outlier_views` farthest
    views (maximisation); each step, ITC plus lambda * VC on the batch's outlier views (or on all its
    views with `vc_views: all`)."""

    def __init__(self, o: OVTConfig, n_objects: int, n_views: int, device: torch.device):
        self.o, self.history = o, OVTHistory()
        self.outliers = torch.zeros(n_objects, n_views, dtype=torch.bool, device=device)
        self.anchor, self.first = None, True

    def start_epoch(self, embed_train: Callable[[], torch.Tensor]) -> None:
        from . import losses

        image = embed_train()
        anchor = losses.knn_weighted_anchor(image, self.o.anchor_neighbours)
        outliers = torch.zeros_like(self.outliers)
        outliers.scatter_(1, losses.outlier_views(image, anchor, self.o.outlier_views), True)
        if not self.first:
            self.history.outlier_drift.append(float((outliers & ~self.outliers).sum() / outliers.sum()))
        self.anchor, self.outliers, self.first = anchor, outliers, False

    def loss(self, step: TuningStep) -> torch.Tensor:
        from . import losses

        o, n = self.o, len(step.object_index)
        on = (torch.ones(n, dtype=torch.bool, device=step.z.device) if o.vc_views == "all"
              else self.outliers[step.object_index, step.view_index])
        vc = (losses.view_consistency_loss(step.z[:n][on], self.anchor[step.object_index[on]], o.margin)
              if o.vc_weight and on.any() else step.z.new_zeros(()))
        self.history.itc.append(float(step.itc.detach()))
        self.history.vc.append(float(vc.detach()))
        return step.itc + o.vc_weight * vc


def train_ovt(cfg: RunConfig, layout, backbone: Backbone, progress: bool = True,
              ranks: Ranks | None = None) -> tuple[OmniviewCLIP, OVTHistory]:
    """Omniview-Tuning of the backbone's image tower on the `train` objects' grid views (`OmniviewObjective`
    in the shared loop `tune_adapters`); with `vc_weight: 0`, the plain multi-view ITC fine-tune."""
    from .dataset import ViewImages, load_views

    ranks = ranks or Ranks.single(backbone.device)
    views = load_views(layout)
    train = ViewImages(layout, ["train"], views[views.kind == "grid"].view_id.tolist())
    objective = OmniviewObjective(cfg.ovt, train.n_objects, train.n_views, ranks.device)
    model = tune_adapters(cfg, "ovt", layout, backbone, objective, progress, ranks, "Omniview-Tuning")
    return model, objective.history


# ----------------------------------------------------------------------------- evaluation


@dataclass
class TunedEvaluation:
    row: dict  # metrics.evaluation_row on test, plus 2D-OOD accuracy
    image: torch.Tensor  # [N test, V, D] the model's test embeddings
    corruptions: pd.DataFrame  # kind, severity, accuracy on the corrupted canonical views


@torch.no_grad()
def evaluate_zero_shot_splits(model: nn.Module, layout, cfg: RunConfig, emb,
                              image: torch.Tensor | None = None) -> TunedEvaluation:
    """The OVT paper's splits on the `test` objects: clean (the canonical view), 2D-OOD (the canonical
    view under every corruption and severity, seeded), viewpoint-OOD (other grid views; ood views
    apart), with the consistency metrics of notebook 04. `emb` gives the frozen text side
    (captions, category prompts) of the run's embeddings; `image`, the model's test embeddings
    when they exist already (the frozen backbone's are in `emb`): only the corrupted views are
    embedded then."""
    from .cameras import canonical_view_id
    from .dataset import CORRUPTIONS, SEVERITIES, ViewImages, load_views
    from .metrics import evaluation_row, zero_shot_predictions

    views = load_views(layout)
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    test_emb = emb.split("test")
    if image is None:
        data = ViewImages(layout, ["test"], views.view_id.tolist())
        if list(data.objects.object_id) != list(test_emb.object_ids):
            raise ValueError("the test objects of the dataset and of the embeddings differ: rerun notebook 03_embed")
        image = embed_views(model, data)
    row = evaluation_row(image.numpy(), test_emb.text, test_emb.category_text, test_emb.labels, views, canonical,
                         test_emb.category_text_unseen)
    rows = []
    for kind in CORRUPTIONS:
        for severity in SEVERITIES:
            corrupted = ViewImages(layout, ["test"], [canonical], None, (kind, severity), cfg.seed)
            predictions = zero_shot_predictions(embed_views(model, corrupted).numpy(), test_emb.category_text)
            rows.append({"kind": kind, "severity": severity,
                         "accuracy": float((predictions[:, 0] == test_emb.labels).mean())})
    corruptions = pd.DataFrame(rows)
    row["zero_shot_accuracy_2d_ood"] = float(corruptions.accuracy.mean())
    row["zero_shot_accuracy_2d_ood_stderr"] = float(np.sqrt(row["zero_shot_accuracy_2d_ood"]
                                                            * (1 - row["zero_shot_accuracy_2d_ood"]) / len(image)))
    return TunedEvaluation(row, image, corruptions)


# ----------------------------------------------------------------------------- notebook 08

METHOD, ITC_ONLY = "omniview_tuning", "itc_finetune"


@dataclass
class OVTRun:
    """Everything notebook 08 shows."""

    evaluations: dict[str, TunedEvaluation]  # frozen, itc_finetune, omniview_tuning
    histories: dict[str, OVTHistory]
    trainable: tuple[int, int]  # OVT's trainable and total parameters
    results: pd.DataFrame
    backbone: str
    test: object  # embed.Embeddings of the test objects (the frozen text side: prompts, labels)
    views: pd.DataFrame
    ablations: pd.DataFrame | None = None  # one row per variant of cfg.ovt_ablations (after OVT and ITC-only)

    def zero_shot_by_view(self) -> dict[str, pd.DataFrame]:
        """Zero-shot accuracy per view of each model (metrics.zero_shot_by_view)."""
        from .metrics import zero_shot_by_view

        return {name: zero_shot_by_view(e.image.numpy(), self.test.category_text, self.test.labels, self.views)
                for name, e in self.evaluations.items()}


CONSISTENCY_COLUMNS = {"same_object_mean": "same-object", "cross_object_mean": "cross-object",
                       "text_image_mean": "text-image", "view_retrieval_recall_at_1": "view recall@1",
                       "view_retrieval_mAP": "view mAP", "caption_recall_at_1": "caption recall@1",
                       "modality_gap": "modality gap", "effective_rank": "effective rank"}


def consistency_table(run: OVTRun) -> pd.DataFrame:
    """Notebook 04's consistency metrics (grid views of the test objects) of each model."""
    return pd.DataFrame({name: {label: e.row[c] for c, label in CONSISTENCY_COLUMNS.items()}
                         for name, e in run.evaluations.items()}).T


def paper_table(run: OVTRun) -> pd.DataFrame:
    """The OVT paper's table: zero-shot on clean, 2D-OOD and viewpoint-OOD, plus ood views and consistency."""
    columns = {"zero_shot_accuracy_canonical": "clean (canonical view)", "zero_shot_accuracy_2d_ood": "2D-OOD",
               "zero_shot_accuracy_other_grid": "viewpoint-OOD (other grid views)",
               "zero_shot_accuracy_ood": "ood views", "same_object_mean": "same-object",
               "cross_object_mean": "cross-object", "view_retrieval_mAP": "view mAP"}
    return pd.DataFrame({name: {label: e.row[c] for c, label in columns.items()}
                         for name, e in run.evaluations.items()}).T


def training_plan(cfg: RunConfig) -> dict[str, OVTConfig]:
    """The two tunings of notebook 08 with the same budget: the ITC-only fine-tune and OVT."""
    return {ITC_ONLY: replace(cfg.ovt, vc_weight=0.0), METHOD: cfg.ovt}


def save_trained(layout, method: str, model: OmniviewCLIP, history: TuningHistory, provenance: dict[str, str],
                 ovt_cfg: AdapterTuningConfig) -> None:
    """The adapters and, next to them, the training history and what they were trained from."""
    from .results import made_from
    from .runs import atomic_write_json

    save_adapters(model, layout.adapters(method))
    atomic_write_json(layout.training_curves(method), {**asdict(history), **made_from(provenance, asdict(ovt_cfg)),
                                                       "adapters_digest": file_digest(layout.adapters(method))})


def read_trained(layout, method: str, provenance: dict[str, str], ovt_cfg: AdapterTuningConfig,
                 history_type: type = OVTHistory) -> TuningHistory | None:
    """The history of adapters trained earlier (by notebook 08 or 12, or by torchrun) with these settings
    from this dataset and backbone, when their file is the one recorded; else None."""
    from dataclasses import fields

    from .results import read_if_made_from

    record = read_if_made_from(layout.training_curves(method), provenance, asdict(ovt_cfg))
    path = layout.adapters(method)
    if record is None or not path.exists() or record.get("adapters_digest") != file_digest(path):
        return None
    return history_type(**{f.name: record[f.name] for f in fields(history_type) if f.name in record})


def train_or_reuse(cfg: RunConfig, ovt_cfg: AdapterTuningConfig, layout, backbone: Backbone,
                   provenance: dict[str, str], method: str, progress: bool = True, ranks: Ranks | None = None,
                   train: Callable[[], tuple[OmniviewCLIP, TuningHistory]] | None = None,
                   history_type: type = OVTHistory) -> tuple[OmniviewCLIP, TuningHistory]:
    """A method's adapters: read back when trained earlier with the same settings (so 08 evaluates what
    `torchrun -m mvclip_utils.ovt` trained, and an interrupted run keeps what it finished), else trained
    here (`train`, by default OVT with `ovt_cfg`) and saved (by the main process)."""
    import copy

    ranks = ranks or Ranks.single(backbone.device)
    history = read_trained(layout, method, provenance, ovt_cfg, history_type)
    if history is not None:
        if progress and ranks.is_main:
            note(f"{method}: adapters trained earlier ({len(history.itc)} steps on {history.processes} "
                 f"process(es), {history.seconds:.0f} s) read back from {layout.adapters(method)}")
        model = load_adapters(copy.deepcopy(backbone.model).float().cpu(), layout.adapters(method))
        return model.to(ranks.device), history
    model, history = (train() if train is not None
                      else train_ovt(replace(cfg, ovt=ovt_cfg), layout, backbone, progress, ranks))
    if ranks.is_main:
        save_trained(layout, method, model, history, provenance, ovt_cfg)
    return model, history


def _train_and_evaluate(cfg: RunConfig, ovt_cfg: OVTConfig, layout, backbone: Backbone, emb, progress: bool,
                        save_as: str | None = None) -> tuple[OmniviewCLIP, OVTHistory, TunedEvaluation]:
    """Train (or read back), then evaluate on the paper's splits. With `save_as` (a method name) the
    adapters are saved and the tuned backbone embeds the whole dataset as notebook 03 does
    (`embeddings/<slug>.npz`, read by 09)."""
    from .embed import embed_dataset

    test_image = None
    if save_as is not None:
        model, history = train_or_reuse(cfg, ovt_cfg, layout, backbone, emb.provenance, save_as, progress)
        tuned = embed_dataset(cfg, layout, tuned_backbone(backbone, layout.adapters(save_as), save_as), progress)
        test_image = torch.from_numpy(tuned.split("test").image)
    else:
        model, history = train_ovt(replace(cfg, ovt=ovt_cfg), layout, backbone, progress)
    evaluation = evaluate_zero_shot_splits(model, layout, cfg, emb, test_image)
    trainable, total = trainable_parameters(model)
    evaluation.row.update(trainable_parameters=trainable, trainable_share=trainable / total,
                          train_seconds=history.seconds, train_steps=len(history.itc), epochs=history.epochs)
    return model, history, evaluation


def changed_keys(variant: OVTConfig, base: OVTConfig) -> str:
    """What an ablation changes, as `key=value` pairs."""
    base_values = asdict(base)
    return ", ".join(f"{k}={v}" for k, v in asdict(variant).items() if v != base_values[k]) or "(none)"


def run_ovt(cfg: RunConfig, layout, progress: bool = True) -> OVTRun:
    """Train OVT and the ITC-only fine-tune with the same budget, evaluate both and the frozen backbone
    on the paper's splits, save the adapters, and write both results rows; then every variant of
    `cfg.ovt_ablations` (each read back when already trained with the same settings)."""
    from .backbone import load_backbone, read_backbone_record
    from .dataset import load_views
    from .embed import load_embeddings
    from .results import read_ablation, write_ablation, write_ablation_table, write_result

    record = read_backbone_record(layout)
    emb = load_embeddings(layout, cfg)
    backbone = load_backbone(cfg.backbone, layout)
    backbone = replace(backbone, model=backbone.model.float())  # tuned in float32 on the backbone's device
    evaluations = {"frozen": evaluate_zero_shot_splits(backbone.model, layout, cfg, emb,  # 03's embeddings reused
                                                       torch.from_numpy(emb.split("test").image))}
    histories, results, trainable = {}, None, (0, 0)
    for method, ovt_cfg in training_plan(cfg).items():
        model, history, evaluation = _train_and_evaluate(cfg, ovt_cfg, layout, backbone, emb, progress, method)
        trainable = trainable_parameters(model)
        results = write_result(layout, method, evaluation.row, record["name"], emb.provenance, asdict(ovt_cfg))
        evaluations[method], histories[method] = evaluation, history
    ablations = None
    if cfg.ovt_ablations:
        rows = [{"variant": name, "changes": "(the run's ovt)" if name == METHOD else "vc_weight=0.0",
                 **evaluations[name].row} for name in (METHOD, ITC_ONLY)]
        for i, ablation in enumerate(cfg.ovt_ablations):
            section = asdict(ablation.ovt)
            row = read_ablation(layout, METHOD, ablation.name, emb.provenance, section)
            if row is None:
                if progress:
                    note(f"ablation {i + 1}/{len(cfg.ovt_ablations)}: {ablation.name} "
                         f"({changed_keys(ablation.ovt, cfg.ovt)})")
                row = _train_and_evaluate(cfg, ablation.ovt, layout, backbone, emb, progress)[2].row
                write_ablation(layout, METHOD, ablation.name, row, emb.provenance, section)
            rows.append({**row, "variant": ablation.name, "changes": changed_keys(ablation.ovt, cfg.ovt)})
        ablations = write_ablation_table(layout, METHOD, rows)
    return OVTRun(evaluations, histories, trainable, results, record["name"], emb.split("test"), load_views(layout),
                  ablations)


ABLATION_COLUMNS = {"changes": "changes", "zero_shot_accuracy_canonical": "clean", "zero_shot_accuracy_2d_ood": "2D-OOD",
                    "zero_shot_accuracy_other_grid": "viewpoint-OOD", "zero_shot_accuracy_ood": "ood views",
                    "same_object_mean": "same-object", "cross_object_mean": "cross-object",
                    "trainable_parameters": "trainable", "train_seconds": "seconds"}


def ablation_table(run: OVTRun) -> pd.DataFrame:
    """The ablations as the paper reports them: zero-shot on the three splits per variant."""
    table = run.ablations.set_index("variant")
    return table[list(ABLATION_COLUMNS)].rename(columns=ABLATION_COLUMNS)


def describe_outcome(table: pd.DataFrame) -> str:
    """The issue's targets checked against the table (markdown), every sentence from the numbers:
    viewpoint-OOD +20 points over the frozen backbone, clean within 2 points, 2D-OOD within 3, and
    OVT against the ITC-only fine-tune."""
    frozen, tuned, itc = table.loc["frozen"], table.loc[METHOD], table.loc[ITC_ONLY]
    gain = tuned["viewpoint-OOD (other grid views)"] - frozen["viewpoint-OOD (other grid views)"]
    clean = tuned["clean (canonical view)"] - frozen["clean (canonical view)"]
    corrupted = tuned["2D-OOD"] - frozen["2D-OOD"]
    versus = tuned["viewpoint-OOD (other grid views)"] - itc["viewpoint-OOD (other grid views)"]
    check = lambda ok: "met" if ok else "**missed**"
    return "\n".join([
        f"- Viewpoint-OOD: {gain * 100:+.1f} points over the frozen backbone (target +20: {check(gain >= 0.2)}; "
        f"the paper: +9.6 on ViT-B/32).",
        f"- Clean: {clean * 100:+.1f} points (target within 2: {check(clean >= -0.02)}); 2D-OOD: "
        f"{corrupted * 100:+.1f} points (target within 3: {check(corrupted >= -0.03)}; the paper: -3.3).",
        f"- Against the ITC-only fine-tune with the same budget: {versus * 100:+.1f} points on viewpoint-OOD "
        + ("— OVT is better." if versus > 0 else "— OVT is **not** better here: a finding, not a failure to hide.")
        + f" Clean: OVT {tuned['clean (canonical view)']:.3f}, ITC-only {itc['clean (canonical view)']:.3f}.",
        "- What the VC loss adds to ITC alone, on the test grid views: same-object similarity "
        f"{(tuned['same-object'] - itc['same-object']) * 100:+.1f} points, cross-object "
        f"{(tuned['cross-object'] - itc['cross-object']) * 100:+.1f}, view-retrieval mAP "
        f"{(tuned['view mAP'] - itc['view mAP']) * 100:+.1f}"
        + (" — views pulled together more than objects kept apart." if
           tuned['cross-object'] - itc['cross-object'] >= tuned['same-object'] - itc['same-object'] else "."),
    ])


def describe_ablations(table: pd.DataFrame) -> str:
    """Each variant against the full OVT (markdown, from the numbers): points gained or lost on
    viewpoint-OOD and clean."""
    full = table.loc[METHOD]
    lines = []
    for variant, row in table.drop(index=METHOD).iterrows():
        vp, clean = (row["viewpoint-OOD"] - full["viewpoint-OOD"]) * 100, (row["clean"] - full["clean"]) * 100
        lines.append(f"- **{variant}** ({row['changes']}): viewpoint-OOD {vp:+.1f} points, clean {clean:+.1f} "
                     f"points against the full OVT.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- several processes (torchrun)


def main(argv: list[str] | None = None) -> None:
    """Train notebook 08's adapters data-parallel, before 08 evaluates them:

        torchrun --nproc_per_node 4 -m mvclip_utils.ovt --config params/objaverse_vitb32.yaml

    One process per GPU (gloo on the CPU without one). Needs 01-03 done; writes the adapters and
    training records that 08 then reads back instead of training (`train_or_reuse`). The global
    batch is the config's, split across the processes: the same adapters as one process."""
    import argparse

    from .backbone import load_backbone
    from .config import load_config
    from .distributed import from_environment, shutdown
    from .embed import load_embeddings
    from .runs import RunLayout

    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m mvclip_utils.ovt", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's params YAML")
    parser.add_argument("--run-dir", default=None, help="the run directory (default: outputs/<run_name>)")
    parser.add_argument("--methods", default=",".join([ITC_ONLY, METHOD]),
                        help=f"comma-separated, of {ITC_ONLY}, {METHOD} (default both)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    plan = training_plan(cfg)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(plan))
    if unknown:
        parser.error(f"unknown method(s) {unknown}: choose from {', '.join(plan)}")
    layout = RunLayout.for_run(cfg.run_name, args.run_dir)
    ranks = from_environment(cfg.backbone.device)
    try:
        provenance = load_embeddings(layout, cfg).provenance
        backbone = load_backbone(cfg.backbone, layout)
        backbone = replace(backbone, model=backbone.model.float().to(ranks.device), device=ranks.device)
        for method in methods:
            model, history = train_or_reuse(cfg, plan[method], layout, backbone, provenance, method,
                                            not args.quiet, ranks)
            if ranks.is_main:
                print(f"{method}: {len(history.itc)} steps, global batch {cfg.ovt.objects_per_batch} objects x "
                      f"{cfg.ovt.views_per_object} views + {cfg.ovt.clean_per_batch} clean, on {history.processes} "
                      f"process(es) in {history.seconds:.0f} s -> {layout.adapters(method)}", flush=True)
    finally:
        shutdown(ranks)


if __name__ == "__main__":
    main()
