"""The one adapter-tuning loop every image-level method shares (08's OVT and ITC-only fine-tune, 12's
centroid distillation), and what they share around it.

A method is a `TuningObjective` (work before each epoch, the loss of a step); `tune_adapters` draws the
batches, runs the optimiser (data-parallel under torchrun) and keeps the history; `train_or_reuse`
reads adapters trained earlier with the same settings back instead of training again;
`evaluate_zero_shot_splits` scores a tuned model on the OVT write-up's clean, 2D-OOD and viewpoint-OOD splits.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.cameras import canonical_view_id
from ..core.distributed import RankBatches, Ranks, data_parallel
from ..core.progress import note
from ..core.protocol import TuningScope, run_tuning_scope
from ..core.runs import atomic_write_json, file_digest
from ..core.schema import AdapterTuningConfig, RunConfig
from ..core.train import fit_to_data, optimise
from ..data.dataset import ObjectViewBatches, ViewImages, collate_views, load_objects, load_views, view_captions
from ..evaluation.corruptions import CORRUPTIONS, SEVERITIES, Corruption
from ..evaluation.metrics import evaluation_row, zero_shot_predictions
from ..evaluation.results import made_from, read_if_made_from
from ..evaluation.transfer import split_scores, val_columns
from ..models import losses
from ..models.adapters import OmniviewCLIP, adapter_config, load_adapters, save_adapters
from ..models.backbone import Backbone, InputTransform
from ..models.embed import Embeddings, category_prompt, encode_views


@dataclass
class CaptionBank:
    """The frozen text side of ITC under the caption regime (`text` of the tuning section): an object's
    caption in a random caption template (`caption`), a caption of the very view (`per_view`, one
    template), or, with probability `category_prob` (always, for `category`), its bare category in a
    random template ("a photo of a mug", the pairs zero-shot classification relies on). Embedded once:
    the text tower is frozen."""

    caption: torch.Tensor  # [N objects, T templates, D], or per_view: [N objects, V views, D]
    category: torch.Tensor  # [C categories, T, D]
    object_category: torch.Tensor  # [N] category index of each object
    category_prob: float
    per_view: bool = False
    # Bare prompts of one category in different templates share one id (so ITC does not count two
    # objects of a category as each other's negatives); else only identical texts do.
    mask_category_negatives: bool = False

    @classmethod
    def build(cls, backbone: Backbone, captions: list[str] | list[list[str]], categories: list[int],
              category_names: list[str], templates: list[str], category_prob: float,
              per_view: bool = False, mask_category_negatives: bool = False) -> "CaptionBank":
        """`captions`: one per object, or with `per_view` one list per object of one caption per view."""
        def embed(texts: list[str], used: list[str]) -> torch.Tensor:
            flat = [t.format(text) for text in texts for t in used]
            return backbone.encode_texts(flat).cpu().float().reshape(len(texts), len(used), -1)

        if per_view:
            views = len(captions[0])
            side = embed([c for per_object in captions for c in per_object], templates[:1])
            side = side.reshape(len(captions), views, -1)
        else:
            side = embed(captions, templates)
        return cls(side, embed([f"a {category_prompt(c)}" for c in category_names], templates),
                   torch.as_tensor(categories), category_prob, per_view, mask_category_negatives)

    def sample(self, objects: torch.Tensor, generator: torch.Generator,
               views: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts [B, D] for the objects [B] (seen in `views` [B], indices into the bank's views, for
        per-view captions) and an id per text [B]: equal ids are identical texts (two objects' bare
        category captions in one template), or with `mask_category_negatives` any two bare prompts of
        one category, which ITC must not count as negatives."""
        n, t = self.caption.shape[:2]
        template = torch.randint(self.category.shape[1], (len(objects),), generator=generator)
        bare = torch.rand(len(objects), generator=generator) < self.category_prob
        category = self.object_category[objects]
        which = views if self.per_view else template  # per_view: the view's caption; else: a template
        text = torch.where(bare[:, None], self.category[category, template], self.caption[objects, which])
        prompt = torch.zeros_like(template) if self.mask_category_negatives else template
        ids = torch.where(bare, n * t + category * self.category.shape[1] + prompt, objects * t + which)
        return text, ids


@dataclass
class TuningHistory:
    """What every adapter tuning records; each objective adds its own losses."""

    epochs: int = 0
    seconds: float = 0.0
    processes: int = 1  # data-parallel processes that trained it (torchrun)
    # the global batch used: objects_per_batch, views_per_object, clean_per_batch (reduced to the data)
    batch: dict = field(default_factory=dict)


def pool_captions(cfg: RunConfig, layout, pool: list, regime: str) -> list[str] | list[list[str]]:
    """The texts of the tuning pool's objects (train objects, then clean ones) for the caption regime:
    one caption per object, or for `per_view` one per view of the train views (`ViewImages.view_ids`)
    and, for a clean object, its canonical view's caption in every slot (it is only seen from there)."""
    if regime != "per_view":
        return [c for d in pool for c in d.objects.caption]
    views = load_views(layout).set_index("view_id")
    train = pool[0]
    out = view_captions(train.objects, views.loc[train.view_ids].reset_index(), cfg.seed)
    for clean in pool[1:]:
        canonical = view_captions(clean.objects, views.loc[clean.view_ids].reset_index(), cfg.seed)
        out += [per_object * train.n_views for per_object in canonical]
    return out


def run_scope(cfg: RunConfig, layout) -> TuningScope:
    """What every tuning of this run may see (`core.protocol.tuning_scope`), from its tables."""
    return run_tuning_scope(cfg, load_objects(layout), load_views(layout))


def describe_batch(batch: dict) -> str:
    """A tuning's global batch as used (`TuningHistory.batch`) and its caption regime, for the reports."""
    if not batch:  # adapters trained before the history recorded it
        return "the configured batch"
    return (f"{batch['objects_per_batch']} objects x {batch['views_per_object']} views + "
            f"{batch['clean_per_batch']} clean views" + (f", ITC texts: {batch['text']}" if "text" in batch else ""))


def embed_views(model: nn.Module, data, batch_size: int = 256, workers: int = 0) -> torch.Tensor:
    """[N objects, V views, D] normalised embeddings of a uint8 ViewImages by a model being tuned (in
    eval mode, on the model's device, through notebook 03's `embed.encode_views`), on the CPU."""
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
                  progress: bool = True, ranks: Ranks | None = None, desc: str = "tuning") -> OmniviewCLIP:
    """The one loop of every adapter tuning (08's OVT and ITC-only fine-tune, 12's centroid distillation).

    LoRA + VIFormer on a copy of the backbone (the adapter settings of the config section `key`: `ovt`,
    `distill`); each step draws P train
    multi-view objects x K of their seen grid views (`ObjectViewBatches`, an epoch being one pass over
    every such view) plus the canonical views of `clean_per_batch` clean objects (the protocol's scope,
    `run_scope`: unseen categories and unseen poses are never drawn), each paired with its caption or bare
    category (`CaptionBank`), and minimises `objective.loss` of the step, which carries ITC over the whole
    batch (views of one object, and identical texts, are not each other's negatives).

    With `ranks` of several processes (torchrun, `distributed.from_environment`), each rank encodes its
    slice of the same global batch and its share of the train objects for `embed_train`; the loss is
    computed on the gathered whole, so N processes train the adapters one process would (`distributed`
    explains the gradients). The objects are the scope's, in its order: fixed targets computed from
    `Embeddings.select` of the same scope line up with them.
    """

    o: AdapterTuningConfig = getattr(cfg, key)
    ranks = ranks or Ranks.single(backbone.device)
    device = ranks.device
    torch.manual_seed(o.seed)
    model = OmniviewCLIP(copy.deepcopy(backbone.model).float().cpu(), adapter_config(o)).to(device)
    transform = InputTransform.for_model(model)
    scope = run_scope(cfg, layout)
    # uint8: the model input is made per batch
    train = ViewImages(layout, ["train"], scope.seen_views, object_ids=scope.multi_view_objects)
    clean = (ViewImages(layout, ["pretrain", "train"], [scope.canonical], object_ids=scope.clean_objects)
             if o.clean_per_batch else None)
    pool = [train] + ([clean] if clean is not None else [])  # clean objects are indexed after the train ones
    with torch.no_grad():
        bank = (None if o.text == "none" else
                CaptionBank.build(backbone, pool_captions(cfg, layout, pool, o.text),
                                  np.concatenate([d.categories for d in pool]).tolist(), train.category_names,
                                  cfg.backbone.pretrain.caption_templates,
                                  1.0 if o.text == "category" else o.category_caption_prob, o.text == "per_view",
                                  o.mask_category_negatives))
    text_generator = torch.Generator().manual_seed(o.seed + 1)  # the same texts on every rank
    # A batch larger than its data is reduced (with a warning) and the history records what was used.
    batch = {"objects_per_batch": fit_to_data(o.objects_per_batch, train.n_objects, f"{key}.objects_per_batch",
                                              "train objects", multiple_of=ranks.world_size),
             "views_per_object": fit_to_data(o.views_per_object, train.n_views, f"{key}.views_per_object",
                                             "seen grid views per object"),
             "clean_per_batch": 0 if clean is None else fit_to_data(
                 o.clean_per_batch, clean.n_objects, f"{key}.clean_per_batch",
                 "clean objects (one canonical view each)", multiple_of=ranks.world_size)}
    objective.history.batch = {**batch, "text": o.text}
    sampler = ObjectViewBatches(train.n_objects, train.n_views, batch["objects_per_batch"], batch["views_per_object"],
                                o.seed)
    ranks.check_divides(sampler.p, "objects per batch", f"{key}.objects_per_batch")
    workers = min(cfg.embed.loader_workers, 2)
    start, stop = ranks.bounds(train.n_objects)  # this rank's objects in `embed_train`
    own_objects = (train if not ranks.distributed else
                   ViewImages(layout, ["train"], scope.seen_views,
                              object_ids=train.objects.object_id[start:stop].tolist()))
    clean_batches = None
    if clean is not None:  # decoded in workers, drawn without replacement per pass
        n_clean = batch["clean_per_batch"]
        ranks.check_divides(n_clean, "clean views per batch", f"{key}.clean_per_batch")
        generator = torch.Generator().manual_seed(o.seed)
        drawn = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(
            clean, num_samples=n_clean * o.steps, generator=generator), n_clean, drop_last=True)
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
        view_index = ranks.gather(batch.view_index.to(device))
        if bank is None:  # text: none: image-only losses
            itc = z.new_zeros(())
        else:  # a clean view is its object's view 0 in the bank (its canonical view)
            seen_in = torch.cat([view_index, torch.zeros_like(clean_index)]).cpu()
            text, text_id = bank.sample(owner.cpu(), text_generator, seen_in)
            text, text_id = text.to(device), text_id.to(device)
            not_negative = (owner[:, None] == owner[None]) | (text_id[:, None] == text_id[None])
            itc = losses.clip_loss(z, text, model.logit_scale.exp().detach(), not_negative)
        return objective.loss(TuningStep(z, object_index, view_index, clean_index, itc))

    model.train()
    optimise(((n, p) for n, p in tower.named_parameters() if p.requires_grad), loss_at_step, o.steps, o.lr,
             o.weight_decay, warmup_steps=min(20, o.steps // 10), desc=desc, progress=progress and ranks.is_main)
    model.eval()
    objective.history.epochs, objective.history.seconds = state["epoch"] + 1, time.perf_counter() - began
    objective.history.processes = ranks.world_size
    return model


@dataclass
class TunedEvaluation:
    row: dict  # metrics.evaluation_row on test, plus 2D-OOD accuracy
    image: torch.Tensor  # [N test, V, D] the model's test embeddings
    corruptions: pd.DataFrame  # kind, severity, accuracy on the corrupted canonical views
    scores: pd.DataFrame  # per test object and pose group under the protocol (`evaluation.transfer`)


@torch.no_grad()
def evaluate_zero_shot_splits(model: nn.Module, layout, cfg: RunConfig, emb: Embeddings,
                              embedded: Embeddings | None = None) -> TunedEvaluation:
    """The OVT paper's splits on the `test` objects: clean (the canonical view), 2D-OOD (the canonical
    view under every corruption and severity, seeded), viewpoint-OOD (other grid views; ood views
    apart), with the consistency metrics of notebook 04. `emb` gives the frozen text side
    (captions, category prompts) of the run's embeddings; `embedded`, the model's own embeddings of
    the dataset when they exist already (`emb` itself for the frozen backbone, 08's `embeddings/<method>`
    for a tuned one): only the corrupted views are embedded then. The row also holds the protocol's
    cells on the `val` objects (`val_*` columns), from the same model's val embeddings."""
    views = load_views(layout)
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    test_emb, val_emb = emb.split("test"), emb.split("val")
    if embedded is not None:
        for split, run_split in (("test", test_emb), ("val", val_emb)):
            if list(embedded.split(split).object_ids) != list(run_split.object_ids):
                raise ValueError(f"the {split} objects of the model's embeddings and of the run's differ: "
                                 "rerun notebook 03_embed")
        image = torch.from_numpy(embedded.split("test").image)
        val_image = embedded.split("val").image
    else:
        data = ViewImages(layout, ["test"], views.view_id.tolist())
        if list(data.objects.object_id) != list(test_emb.object_ids):
            raise ValueError("the test objects of the dataset and of the embeddings differ: rerun notebook 03_embed")
        image = embed_views(model, data)
        val_image = (embed_views(model, ViewImages(layout, ["val"], views.view_id.tolist())).numpy()
                     if len(val_emb.object_ids) else None)
    row = evaluation_row(image.numpy(), test_emb.text, test_emb.category_text, test_emb.labels, views, canonical,
                         test_emb.category_text_unseen)
    if len(val_emb.object_ids):  # what `mvclip select` chooses settings on: the val objects, never test
        row.update(val_columns(val_image, val_emb, views, canonical, cfg))
    rows = []
    for kind in CORRUPTIONS:
        for severity in SEVERITIES:
            corrupted = ViewImages(layout, ["test"], [canonical], None, Corruption(kind, severity, cfg.seed))
            predictions = zero_shot_predictions(embed_views(model, corrupted).numpy(), test_emb.category_text)
            rows.append({"kind": kind, "severity": severity,
                         "accuracy": float((predictions[:, 0] == test_emb.labels).mean())})
    corruptions = pd.DataFrame(rows)
    row["zero_shot_accuracy_2d_ood"] = float(corruptions.accuracy.mean())
    row["zero_shot_accuracy_2d_ood_stderr"] = float(np.sqrt(row["zero_shot_accuracy_2d_ood"]
                                                            * (1 - row["zero_shot_accuracy_2d_ood"]) / len(image)))
    return TunedEvaluation(row, image, corruptions, split_scores(image.numpy(), test_emb, views, canonical, cfg))


def save_trained(layout, method: str, model: OmniviewCLIP, history: TuningHistory, provenance: dict[str, str],
                 ovt_cfg: AdapterTuningConfig) -> None:
    """The adapters and, next to them, the training history and what they were trained from."""
    save_adapters(model, layout.adapters(method))
    atomic_write_json(layout.training_curves(method), {**asdict(history), **made_from(provenance, asdict(ovt_cfg)),
                                                       "adapters_digest": file_digest(layout.adapters(method))})


def read_trained(layout, method: str, provenance: dict[str, str], ovt_cfg: AdapterTuningConfig,
                 history_type: type[TuningHistory]) -> TuningHistory | None:
    """The history of adapters trained earlier (by notebook 08 or 12, or by torchrun) with these settings
    from this dataset and backbone, when their file is the one recorded; else None."""

    record = read_if_made_from(layout.training_curves(method), provenance, asdict(ovt_cfg))
    path = layout.adapters(method)
    if record is None or not path.exists() or record.get("adapters_digest") != file_digest(path):
        return None
    return history_type(**{f.name: record[f.name] for f in fields(history_type) if f.name in record})


def train_or_reuse(cfg: RunConfig, ovt_cfg: AdapterTuningConfig, layout, backbone: Backbone,
                   provenance: dict[str, str], method: str, progress: bool = True, ranks: Ranks | None = None, *,
                   train: Callable[[], tuple[OmniviewCLIP, TuningHistory]],
                   history_type: type[TuningHistory]) -> tuple[OmniviewCLIP, TuningHistory]:
    """A method's adapters: read back when trained earlier with the same settings (so 08 evaluates what
    `torchrun ... mvclip tune` trained, and an interrupted run keeps what it finished), else trained
    here (`train()`, whose history is a `history_type`) and saved (by the main process)."""
    ranks = ranks or Ranks.single(backbone.device)
    history = read_trained(layout, method, provenance, ovt_cfg, history_type)
    if history is not None:
        if progress and ranks.is_main:
            note(f"{method}: adapters trained earlier ({len(history.itc)} steps on {history.processes} "
                 f"process(es), {history.seconds:.0f} s) read back from {layout.adapters(method)}")
        model = load_adapters(copy.deepcopy(backbone.model).float().cpu(), layout.adapters(method))
        return model.to(ranks.device), history
    model, history = train()
    if ranks.is_main:
        save_trained(layout, method, model, history, provenance, ovt_cfg)
    return model, history
