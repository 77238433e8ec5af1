"""Pretraining the embedded tiny CLIP with the CLIP loss on the run's `pretrain` objects.

The stand-in for web-scale single-view data: ONE canonical view per object (the
default), or every grid view as the compute-matched control (same steps and batch).
The checkpoint is an ordinary open_clip state dict, loaded by `backbone.load_backbone`
exactly like downloaded weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..core.cameras import canonical_view_id
from ..core.runs import RunLayout, atomic_torch_save, atomic_write_json, file_digest
from ..core.schema import RunConfig
from ..core.train import optimise
from ..data.dataset import dataset_fingerprint, load_images, load_objects, load_views
from ..models.backbone import (
    CaptionTokenizer,
    create_tiny_model,
    tiny_slug,
    uint8_to_input,
)
from ..models.embed import category_prompt
from ..models.losses import clip_loss


@dataclass
class PretrainRecord:
    fingerprint: str  # of the pretrain settings, the prompts and the dataset
    dataset_fingerprint: str
    checkpoint_sha: str  # the checkpoint written with this record: a mismatch means an interrupted 02
    views: str
    view_ids: list[str]
    n_objects: int
    n_images: int
    steps: int
    batch_size: int
    seconds: float
    losses: list[float]
    torch_threads: int


def pretrain_view_ids(cfg: RunConfig, layout: RunLayout) -> list[str]:
    views = load_views(layout)
    p = cfg.backbone.pretrain
    if p.views == "all":
        return views[views.kind == "grid"].view_id.tolist()
    return [canonical_view_id(views, p.canonical_view)]


def vocabulary_texts(cfg: RunConfig, layout: RunLayout) -> list[str]:
    """The words the tiny model knows: captions of the `pretrain` objects only (no test caption
    leaks into the vocabulary), the category names, the caption and prompt templates. Any
    other word maps to the unknown id."""
    objects = load_objects(layout)
    objects = objects[objects.status == "ok"]
    pretrain = objects[objects.split == "pretrain"]
    return (list(pretrain.caption) + sorted(objects.category.unique()) + cfg.backbone.pretrain.caption_templates
            + cfg.embed.prompt_templates)


def pretrain_fingerprint(cfg: RunConfig, dataset: str) -> str:
    payload = json.dumps([asdict(cfg.backbone.pretrain), cfg.embed.prompt_templates, dataset], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_record(layout: RunLayout, slug: str) -> PretrainRecord | None:
    path = layout.pretrain_record(slug)
    try:
        return PretrainRecord(**json.loads(path.read_text())) if path.exists() else None
    except (TypeError, ValueError):  # a record of an older format: pretrain again
        return None


def is_current(record: PretrainRecord | None, fingerprint: str, layout: RunLayout, slug: str) -> bool:
    """The record matches the settings and dataset, and the checkpoint beside it is the one it wrote."""
    checkpoint = layout.backbone_checkpoint(slug)
    return (record is not None and record.fingerprint == fingerprint and checkpoint.exists()
            and file_digest(checkpoint) == record.checkpoint_sha)


def random_crops(x: torch.Tensor, min_scale: float) -> torch.Tensor:
    """Each image cropped to a random square covering [min_scale, 1] of its side, resized back
    (one batched affine resampling)."""
    b = x.shape[0]
    scale = torch.empty(b).uniform_(min_scale, 1.0)
    shift = (torch.rand(b, 2) * 2 - 1) * (1 - scale)[:, None]  # keeps the crop inside the image
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pretrain_tiny_clip(cfg: RunConfig, layout: RunLayout, progress: bool = True) -> PretrainRecord:
    """Pretrain (or reuse, when nothing it depends on changed) the tiny backbone of the run."""
    dataset = dataset_fingerprint(layout)
    fingerprint = pretrain_fingerprint(cfg, dataset)
    slug = tiny_slug(cfg.backbone)
    previous = load_record(layout, slug)
    if is_current(previous, fingerprint, layout, slug):
        return previous
    p = cfg.backbone.pretrain
    objects = load_objects(layout)
    train = objects[(objects.split == "pretrain") & (objects.status == "ok")]
    if len(train) < 2:
        raise ValueError(f"only {len(train)} rendered objects in the pretrain split; raise dataset.splits.pretrain")
    view_ids = pretrain_view_ids(cfg, layout)
    images = torch.from_numpy(load_images(layout, train.object_id.tolist(), view_ids))  # [N, V, H, W, 3]
    n_objects, n_views = images.shape[:2]

    torch.manual_seed(p.seed)
    rng = random.Random(p.seed)
    previous_threads = torch.get_num_threads()
    threads = p.torch_threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        model, _ = create_tiny_model()
        if p.logit_scale > 0:  # fixed, as real CLIP ends its training (see PretrainConfig.logit_scale)
            model.logit_scale.data.fill_(float(np.log(p.logit_scale)))
            model.logit_scale.requires_grad_(False)
        tokenizer = CaptionTokenizer.from_texts(vocabulary_texts(cfg, layout), model.vocab_size,
                                                model.context_length)
        # Every (object, template) caption tokenized once: [N, T, context], and the bare
        # category captions ("a mug" in every template) as [N, T, context] too.
        tokens = torch.stack([tokenizer([t.format(c) for t in p.caption_templates]) for c in train.caption])
        bare = torch.stack([tokenizer([t.format(f"a {category_prompt(c)}") for t in p.caption_templates])
                            for c in train.category])
        batch = min(p.batch_size, n_objects)
        order: list[int] = []

        def loss_at_step(step: int) -> torch.Tensor:
            nonlocal order
            if len(order) < batch:  # epochs over objects, so a batch never holds one object twice
                order = order + rng.sample(range(n_objects), n_objects)
            idx, order = order[:batch], order[batch:]
            view = torch.randint(n_views, (batch,))
            template = torch.randint(len(p.caption_templates), (batch,))
            x = uint8_to_input(model, images[idx, view])
            if p.augment_scale < 1:
                x = random_crops(x, p.augment_scale)
            text = torch.where((torch.rand(batch) < p.category_caption_prob)[:, None],
                               bare[idx, template], tokens[idx, template])
            image_features, text_features, scale = model(x, text)
            same_text = (text[:, None] == text[None]).all(-1)  # identical captions are not negatives
            return clip_loss(image_features, text_features, scale, same_text)

        def clamp_temperature(step: int) -> None:
            with torch.no_grad():
                model.logit_scale.clamp_(0, np.log(100))

        model.train()
        result = optimise(model.named_parameters(), loss_at_step, p.steps, p.lr, p.weight_decay, p.warmup_steps,
                          desc=f"pretraining mvclip-tiny on {n_objects} objects x {n_views} views",
                          progress=progress, after_step=clamp_temperature)
    finally:
        torch.set_num_threads(previous_threads)
    # Checkpoint, vocabulary, then the record holding the checkpoint's hash, each atomic: an
    # interrupted 02 leaves a record whose hash does not match, so the next run pretrains again.
    checkpoint = layout.backbone_checkpoint(slug)
    atomic_torch_save({"state_dict": model.state_dict()}, checkpoint)
    tokenizer.save(layout.backbone_vocabulary(slug))
    record = PretrainRecord(fingerprint, dataset, file_digest(checkpoint), p.views, view_ids, n_objects,
                            n_objects * n_views, p.steps, batch, result.seconds, result.losses, threads)
    atomic_write_json(layout.pretrain_record(slug), asdict(record))
    return record
