"""Image, caption and category-prompt embeddings of a run's dataset, cached per backbone.

`embeddings/<backbone>.npz` holds image [objects, views, D], text [objects, D] (each
object's caption), category_text [categories, D] (prompt templates averaged, as CLIP
does for zero-shot), category_text_unseen (the same with templates no pretraining
caption used), the ids, and what it was made from: the dataset's fingerprint, the
backbone's identity and the embed settings. A rerun with the same backbone weights and
dataset loads the file; a change in either recomputes it, and a reader
(`load_embeddings`) refuses a file made from anything else than the run's current
dataset and backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.progress import progress_bar
from ..core.runs import RunLayout, StaleArtifactError, atomic_savez, digest
from ..core.schema import SPLITS, RunConfig
from ..core.shards import shard_items
from ..data.dataset import (
    ViewImages,
    collate_views,
    dataset_fingerprint,
    load_objects,
    load_views,
)
from .backbone import Backbone, read_backbone_record


@dataclass
class Embeddings:
    image: np.ndarray  # [N, V, D] float32, L2-normalised
    text: np.ndarray  # [N, D]
    category_text: np.ndarray  # [C, D]
    object_ids: np.ndarray  # [N]
    view_ids: np.ndarray  # [V]
    categories: np.ndarray  # [N] category of each object
    category_names: np.ndarray  # [C]
    splits: np.ndarray  # [N]
    backbone: str
    category_text_unseen: np.ndarray  # [C, D] prompts from embed.unseen_prompt_templates
    dataset_fingerprint: str  # what the file was made from
    backbone_identity: str
    embed_settings: str  # digest of the prompt templates
    logit_scale: float  # the backbone's (exp of its parameter): zero-shot logits = scale x cosine
    from_cache: bool = field(default=False, compare=False)  # set by embed_dataset; not stored

    @property
    def provenance(self) -> dict[str, str]:
        """What every result computed from these embeddings was made from."""
        return {"dataset_fingerprint": self.dataset_fingerprint, "backbone_identity": self.backbone_identity,
                "embed_settings": self.embed_settings}

    @property
    def labels(self) -> np.ndarray:
        """[N] index of each object's category in `category_names`."""
        return np.searchsorted(self.category_names, self.categories)

    def split(self, name: str) -> "Embeddings":
        return self._rows(np.flatnonzero(self.splits == name))

    def select(self, object_ids: list[str]) -> "Embeddings":
        """These objects' rows, in the order given (a tuning's scope, `core.protocol.TuningScope`)."""
        position = {oid: i for i, oid in enumerate(self.object_ids)}
        missing = [oid for oid in object_ids if oid not in position]
        if missing:
            raise ValueError(f"objects {missing[:3]} have no embeddings: rerun notebook 03_embed")
        return self._rows(np.array([position[oid] for oid in object_ids], dtype=int))

    def _rows(self, index: np.ndarray) -> "Embeddings":
        return replace(self, image=self.image[index], text=self.text[index], object_ids=self.object_ids[index],
                       categories=self.categories[index], splits=self.splits[index], from_cache=False)


def backbone_logit_scale(model: torch.nn.Module) -> float:
    """exp(logit_scale) of an open_clip model (1 when it has none)."""
    scale = getattr(model, "logit_scale", None)
    return float(scale.detach().float().exp()) if scale is not None else 1.0


def category_prompt(category: str) -> str:
    return category.replace("-", " ").replace("_", " ")


def embed_settings(cfg: RunConfig) -> str:
    return digest([cfg.embed.prompt_templates, cfg.embed.unseen_prompt_templates])


def encode_category_prompts(backbone: Backbone, categories: list[str], templates: list[str]) -> torch.Tensor:
    """[C, D]: each category's prompt embeddings averaged over templates, renormalised."""
    texts = [t.format(category_prompt(c)) for c in categories for t in templates]
    per_prompt = backbone.encode_texts(texts).reshape(len(categories), len(templates), -1)
    return F.normalize(per_prompt.mean(1), dim=-1)


def encode_views(backbone: Backbone, data: ViewImages, batch_size: int = 256, workers: int = 2,
                 progress: bool = True) -> np.ndarray:
    """[N, V, D] image embeddings of a `dataset.ViewImages` of uint8 renders (no transform), batched:
    PNG decoding in DataLoader workers, the model input made per batch in the main process."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=collate_views,
                                         pin_memory=backbone.device.type == "cuda")
    out = []
    for batch in progress_bar(loader, desc=f"embedding {len(data)} images", disable=not progress):
        out.append(backbone.encode_images(backbone.uint8_to_input(batch.image)).cpu())
    return torch.cat(out).reshape(data.n_objects, data.n_views, -1).numpy()


def embed_dataset(cfg: RunConfig, layout: RunLayout, backbone: Backbone, progress: bool = True) -> Embeddings:
    """Embeddings of every rendered object and view (all splits), from the cache when still valid."""
    path = layout.embeddings_file(backbone.slug)
    made_from = _made_from(cfg, layout, backbone)
    if path.exists():
        cached = _read_npz(path)
        if cached is not None and cached.provenance == made_from:
            return replace(cached, from_cache=True)
    views = load_views(layout)
    data = ViewImages(layout, SPLITS, views.view_id.tolist())  # every rendered object, every view
    image = encode_views(backbone, data, cfg.embed.batch_size, min(cfg.embed.loader_workers, os.cpu_count() or 1),
                         progress)
    return _assemble(cfg, layout, backbone, data, views, image, made_from)


def _made_from(cfg: RunConfig, layout: RunLayout, backbone: Backbone) -> dict[str, str]:
    return {"dataset_fingerprint": dataset_fingerprint(layout), "backbone_identity": backbone.identity,
            "embed_settings": embed_settings(cfg)}


def _assemble(cfg: RunConfig, layout: RunLayout, backbone: Backbone, data: ViewImages, views, image: np.ndarray,
              made_from: dict[str, str]) -> Embeddings:
    """The embeddings file from the image embeddings of every object and view: captions and category
    prompts encoded here; written atomically."""
    path = layout.embeddings_file(backbone.slug)
    objects = data.objects
    categories = sorted(objects.category.unique())
    emb = Embeddings(
        image=image.astype(np.float32),
        text=backbone.encode_texts(objects.caption.tolist()).cpu().numpy(),
        category_text=encode_category_prompts(backbone, categories, cfg.embed.prompt_templates).cpu().numpy(),
        object_ids=objects.object_id.to_numpy(dtype=str), view_ids=views.view_id.to_numpy(dtype=str),
        categories=objects.category.to_numpy(dtype=str), category_names=np.array(categories, dtype=str),
        splits=objects.split.to_numpy(dtype=str), backbone=backbone.name,
        category_text_unseen=encode_category_prompts(backbone, categories,
                                                     cfg.embed.unseen_prompt_templates).cpu().numpy(),
        logit_scale=backbone_logit_scale(backbone.model),
        **made_from,
    )
    atomic_savez(path, **{k: v for k, v in emb.__dict__.items() if k != "from_cache"})
    return emb


def _shard_data(layout: RunLayout, shard: int, n_shards: int) -> ViewImages:
    objects = load_objects(layout)
    ids = objects.object_id[objects.status == "ok"].tolist()  # ViewImages' order: the table's
    return ViewImages(layout, SPLITS, load_views(layout).view_id.tolist(), object_ids=shard_items(ids, shard, n_shards))


def embed_shard(cfg: RunConfig, layout: RunLayout, backbone: Backbone, shard: int, n_shards: int,
                progress: bool = True) -> Path:
    """Image embeddings of shard `shard` of `n_shards` of the rendered objects (`dataset.shard_items` of the
    objects table's order), with what they were made from; `merge_embedding_shards` joins them."""
    data = _shard_data(layout, shard, n_shards)
    image = encode_views(backbone, data, cfg.embed.batch_size, min(cfg.embed.loader_workers, os.cpu_count() or 1),
                         progress)
    path = layout.embedding_shard(backbone.slug, shard, n_shards)
    atomic_savez(path, image=image.astype(np.float32), object_ids=data.objects.object_id.to_numpy(dtype=str),
                 **_made_from(cfg, layout, backbone))
    return path


def merge_embedding_shards(cfg: RunConfig, layout: RunLayout, backbone: Backbone, n_shards: int) -> Embeddings:
    """The embeddings file from N finished shards; refuses missing shards and shards made from another
    dataset, backbone or prompt settings, naming them."""
    paths = [layout.embedding_shard(backbone.slug, i, n_shards) for i in range(n_shards)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        raise RuntimeError(f"cannot merge: embedding shard(s) {', '.join(map(str, missing))} of {n_shards} have not "
                           f"finished (no {paths[missing[0]]}); run them with mvclip embed "
                           f"--config <config> --shard {missing[0]}/{n_shards}")
    made_from = _made_from(cfg, layout, backbone)
    views = load_views(layout)
    data = ViewImages(layout, SPLITS, views.view_id.tolist())
    image = np.zeros((data.n_objects, data.n_views, 0), np.float32)
    position = {oid: i for i, oid in enumerate(data.objects.object_id)}
    filled = np.zeros(data.n_objects, bool)
    for i, path in enumerate(paths):
        with np.load(path, allow_pickle=False) as shard:
            stale = [k for k, v in made_from.items() if str(shard[k]) != v]
            if stale:
                raise RuntimeError(f"{path} was made from another {', '.join(stale)} than the run's current "
                                         f"one; rerun embedding shard {i}/{n_shards}")
            if image.shape[-1] == 0:
                image = np.zeros((data.n_objects, data.n_views, shard["image"].shape[-1]), np.float32)
            rows = [position[o] for o in shard["object_ids"] if o in position]
            if len(rows) != len(shard["object_ids"]):
                raise RuntimeError(f"{path} holds objects the run no longer has; rerun embedding shard "
                                         f"{i}/{n_shards}")
            image[rows] = shard["image"]
            filled[rows] = True
    if not filled.all():
        raise RuntimeError(f"the {n_shards} embedding shards cover {int(filled.sum())} of {len(filled)} objects; "
                                 "rerun the shards with the run's current dataset")
    return _assemble(cfg, layout, backbone, data, views, image, made_from)


_STRING_FIELDS = ("backbone", "dataset_fingerprint", "backbone_identity", "embed_settings")


def _read_npz(path: Path) -> Embeddings | None:
    """The stored embeddings, or None for a file of an older format (it is recomputed)."""
    with np.load(path, allow_pickle=False) as data:
        fields = [f for f in Embeddings.__dataclass_fields__ if f != "from_cache"]
        if any(f not in data.files for f in fields):
            return None
        return Embeddings(**{f: (str(data[f]) if f in _STRING_FIELDS else float(data[f]) if f == "logit_scale"
                                 else data[f]) for f in fields})


def load_embeddings(layout: RunLayout, cfg: RunConfig, dataset: str | None = None,
                    backbone: dict | None = None) -> Embeddings:
    """The embeddings of the run's current backbone, refused (naming the notebook to rerun) when
    they were made from another backbone, dataset or prompt settings. `dataset` and `backbone`: the
    dataset fingerprint and checked backbone record when the caller has them (an `OpenedRun`)."""
    dataset = dataset or dataset_fingerprint(layout)
    backbone = backbone or read_backbone_record(layout, dataset=dataset)
    path = layout.embeddings_file(backbone["slug"])
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run notebook 03_embed first")
    emb = _read_npz(path)
    if emb is None:
        raise StaleArtifactError(path, "it was written by an older version of mvclip", "03_embed")
    if emb.backbone_identity != backbone["identity"]:
        raise StaleArtifactError(path, f"made by backbone {emb.backbone_identity}, the run's backbone is now "
                                       f"{backbone['identity']}", "03_embed")
    if emb.dataset_fingerprint != dataset:
        raise StaleArtifactError(path, "made from another version of the dataset (notebook 01 rendered since)",
                                 "03_embed")
    if emb.embed_settings != embed_settings(cfg):
        raise StaleArtifactError(path, "made with other embed.prompt_templates / unseen_prompt_templates",
                                 "03_embed")
    return emb


def backbone_variants(layout: RunLayout, cfg: RunConfig) -> dict[str, Embeddings]:
    """Every embeddings file of the run's backbone and of the backbones tuned from it (notebook 08
    writes `<slug>+<method>.npz`), keyed by the results row they belong to: `baseline` for the
    backbone itself, else the tuning method. Files of another backbone, dataset or prompt
    settings are left out."""
    dataset = dataset_fingerprint(layout)
    base = read_backbone_record(layout, dataset=dataset)["identity"]
    variants = {}
    for path in sorted(layout.embeddings.glob("*.npz")):
        emb = _read_npz(path)
        if emb is None or emb.dataset_fingerprint != dataset or emb.embed_settings != embed_settings(cfg):
            continue
        if emb.backbone_identity == base:
            variants["baseline"] = emb
        elif emb.backbone_identity.startswith(base + "|"):
            variants[emb.backbone_identity[len(base) + 1:].split(":")[0]] = emb
    if "baseline" not in variants:
        raise FileNotFoundError(f"no current embeddings of the run's backbone in {layout.embeddings}: run 03_embed")
    return dict(sorted(variants.items(), key=lambda kv: kv[0] != "baseline"))
