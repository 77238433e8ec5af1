"""CLIP backbones through open_clip: loading, encoding, spatial features.

Any open_clip model works: a model name plus a pretrained tag (`ViT-B-32` + `openai`),
a local checkpoint file, or `hf-hub:org/repo`. The embedded default `mvclip-tiny` is a
CLIP-architecture model registered here (one JSON in `model_configs/`, as open_clip
registers its own) and pretrained on the run's data by notebook 02; its checkpoint
loads through the same open_clip path as real weights, next to the compact word
vocabulary its text tower was trained with.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from ..core.distributed import resolve_device
from ..core.runs import (
    RunLayout,
    StaleArtifactError,
    atomic_write_json,
    atomic_write_text,
    file_digest,
)
from ..core.schema import TINY_MODEL, BackboneConfig
from ..data.dataset import dataset_fingerprint

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIGS)


class BackboneLoadError(RuntimeError):
    """A backbone that cannot be loaded; the message names the model, the tag and the fixes."""


class CaptionTokenizer:
    """Word-level tokenizer over a compact vocabulary, in open_clip's calling convention.

    Ids: 0 = padding, 1 = unknown word, 2.. = words, then start-of-text and end-of-text
    as the two largest ids of the text tower's vocabulary: open_clip pools the text
    at the position of the largest token id, so end-of-text must stay the largest.
    """

    def __init__(self, words: list[str], vocab_size: int, context_length: int):
        if len(words) + 4 > vocab_size:
            raise ValueError(f"{len(words)} words do not fit a text vocabulary of {vocab_size} ids")
        self.words = list(words)
        self.vocab_size, self.context_length = vocab_size, context_length
        self.sot_token_id, self.eot_token_id = vocab_size - 2, vocab_size - 1
        self.index = {w: i + 2 for i, w in enumerate(self.words)}

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    @classmethod
    def from_texts(cls, texts: list[str], vocab_size: int, context_length: int) -> "CaptionTokenizer":
        words = sorted({w for t in texts for w in cls.split(t)})
        return cls(words, vocab_size, context_length)

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.LongTensor:
        texts = [texts] if isinstance(texts, str) else texts
        ctx = context_length or self.context_length
        out = torch.zeros(len(texts), ctx, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([self.sot_token_id] + [self.index.get(w, 1) for w in self.split(text)][: ctx - 2]
                   + [self.eot_token_id])
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"words": self.words, "vocab_size": self.vocab_size,
                                            "context_length": self.context_length}, indent=0))

    @classmethod
    def load(cls, path: Path) -> "CaptionTokenizer":
        data = json.loads(Path(path).read_text())
        return cls(data["words"], data["vocab_size"], data["context_length"])


@dataclass
class Backbone:
    model: torch.nn.Module
    preprocess: Callable  # PIL image -> tensor, open_clip's eval transform
    tokenizer: Callable
    device: torch.device
    use_amp: bool
    name: str  # e.g. "ViT-B-32 / openai" — what reports print
    slug: str  # file-name form, e.g. "ViT-B-32_openai"
    identity: str  # changes whenever the weights do (cache key)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.use_amp else contextlib.nullcontext()

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [B, D] (float32) of preprocessed images [B, 3, H, W]."""
        with self.autocast():
            return F.normalize(self.model.encode_image(images.to(self.device)).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised embeddings [N, D] (float32) of texts."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[i: i + batch_size]).to(self.device)
            with self.autocast():
                out.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0)

    def uint8_to_input(self, images: torch.Tensor) -> torch.Tensor:
        return uint8_to_input(self.model, images)


def unit_pixels(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 renders [B, H, W, 3] -> float [B, 3, H, W] in [0, 1] on `device` (what the decoders of
    notebooks 10-11 reconstruct and the UNet reads; InputTransform starts from it)."""
    return images.to(device).permute(0, 3, 1, 2).float().div(255)


@dataclass(frozen=True)
class InputTransform:
    """uint8 [..., H, W, 3] -> normalised float [..., 3, S, S] at a model's input size: the tensor
    path of open_clip's eval transform for square renders (resize, then the model's mean/std).
    Plain data, so DataLoader workers can apply it without a copy of the model."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> "InputTransform":
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        return cls(size, tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                   tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        single = images.ndim == 3
        x = unit_pixels(images[None] if single else images)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                              antialias=True).clamp(0, 1)
        x = (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
        return x[0] if single else x


def uint8_to_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> the model's normalised input [B, 3, S, S] (`InputTransform`)."""
    return InputTransform.for_model(model)(images)


def tiny_slug(cfg: BackboneConfig) -> str:
    """The file-name form of the tiny backbone pretrained here: the all-views control gets its own,
    so its checkpoint, embeddings and results never overwrite the canonical model's."""
    return TINY_MODEL if cfg.pretrain.views == "canonical" else f"{TINY_MODEL}-{cfg.pretrain.views}views"


def create_tiny_model() -> tuple[torch.nn.Module, Callable]:
    """A randomly initialised mvclip-tiny and its eval transform (for pretraining)."""
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # open_clip warns that no weights were loaded: intended here
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL)
    finally:
        root.setLevel(level)
    return model, preprocess


def _offline_message(model: str, tag: str, exc: Exception) -> str:
    return (f"could not load open_clip model {model!r} with pretrained {tag!r}: {exc}\n"
            f"The weights are not in the local cache and cannot be downloaded here. Fix it by either\n"
            f"  1. running once with network access so open_clip downloads and caches them, or\n"
            f"  2. setting backbone.pretrained to a local checkpoint file (e.g. /data/{model}-{tag or 'weights'}.pt).")


def needs_quick_gelu(model: str, tag: str) -> bool:
    """Whether open_clip's pretrained tag was trained with QuickGELU (OpenAI's weights: `ViT-B-32` /
    `openai`). open_clip 3 builds `ViT-B-32` with GELU and only warns on the mismatch; features of
    OpenAI's weights under GELU are not OpenAI's CLIP."""
    return bool(tag) and bool(open_clip.get_pretrained_cfg(model, tag).get("quick_gelu", False))


def load_backbone(cfg: BackboneConfig, layout: RunLayout | None = None) -> Backbone:
    """The configured backbone, in eval mode on its device (CUDA when present, mixed precision there)."""
    device = resolve_device(cfg.device)
    use_amp = device.type == "cuda" and cfg.precision in ("auto", "amp")
    pretrained_here = cfg.model == TINY_MODEL and not cfg.pretrained
    if pretrained_here:
        checkpoint = layout.backbone_checkpoint(tiny_slug(cfg)) if layout else Path(f"backbone/{tiny_slug(cfg)}.pt")
        if not checkpoint.exists():
            raise BackboneLoadError(f"{checkpoint} does not exist: the tiny backbone is pretrained by notebook "
                                    f"02_backbone (mvclip run --config ... --only 02)")
        tag = str(checkpoint)
    else:
        checkpoint, tag = (Path(cfg.pretrained) if Path(cfg.pretrained).is_file() else None), cfg.pretrained
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            cfg.model, pretrained=None if cfg.model.startswith("hf-hub:") else tag, device=device,
            force_quick_gelu=checkpoint is None and needs_quick_gelu(cfg.model, tag))
    except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors when offline
        raise BackboneLoadError(_offline_message(cfg.model, tag, exc)) from exc
    model.eval()
    if cfg.model == TINY_MODEL:
        vocab = checkpoint.with_name(f"{checkpoint.stem}-vocab.json")
        if not vocab.exists():
            raise BackboneLoadError(f"{vocab} is missing: an {TINY_MODEL} checkpoint needs the word vocabulary "
                                    "it was trained with beside it")
        tokenizer = CaptionTokenizer.load(vocab)
        name = (f"{TINY_MODEL} (pretrained here on {cfg.pretrain.views} views, {checkpoint.name})" if pretrained_here
                else f"{TINY_MODEL} ({checkpoint.name})")
        slug = tiny_slug(cfg) if pretrained_here else checkpoint.stem
    else:
        tokenizer = open_clip.get_tokenizer(cfg.model)
        name = f"{cfg.model} / {Path(tag).name if checkpoint else tag}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{cfg.model}_{Path(tag).stem if checkpoint else tag}").strip("_")
    identity = f"{cfg.model}|{file_digest(checkpoint) if checkpoint else tag}"
    return Backbone(model, preprocess, tokenizer, device, use_amp, name, slug, identity)


@torch.no_grad()
def spatial_features(backbone: Backbone, images: torch.Tensor, project: bool = True) -> torch.Tensor:
    """Dense features [B, C, h, w] for probes.

    ViT: the patch-token grid after the final LayerNorm (projected into the joint
    embedding space when `project`). ResNet CLIP: the layer4 feature map before the
    attention pool (RN50 at 224 px: 2048 x 7 x 7).
    """
    visual = backbone.model.visual
    x = images.to(backbone.device)
    with backbone.autocast():
        if hasattr(visual, "attnpool"):  # open_clip ModifiedResNet
            x = visual.stem(x)
            for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
                x = layer(x)
            return x.float()
        if not hasattr(visual, "transformer"):
            raise NotImplementedError(f"spatial features for {type(visual).__name__} towers are not implemented")
        previous = visual.output_tokens
        visual.output_tokens = True
        try:
            _, tokens = visual(x)
        finally:
            visual.output_tokens = previous
        if project and visual.proj is not None:
            tokens = tokens @ visual.proj
        side = int(round(np.sqrt(tokens.shape[1])))
        return tokens.float().transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def describe_architecture(model: torch.nn.Module) -> str:
    """The image tower's shape in words, read from the model (a ViT's width, depth, patch, input side and
    feature grid; a ResNet's input side), for the reports."""
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else int(visual.image_size)
    if hasattr(visual, "conv1") and hasattr(visual, "transformer"):
        patch = visual.conv1.kernel_size[0]
        return (f"ViT width {visual.conv1.out_channels}, {len(visual.transformer.resblocks)} layers, patch {patch} "
                f"at {size} px ({size // patch} x {size // patch} feature grid)")
    if hasattr(visual, "attnpool"):  # open_clip ModifiedResNet: stride 32 to the map before the attention pool
        return f"ResNet at {size} px ({size // 32} x {size // 32} map before the attention pool)"
    return f"{type(visual).__name__} at {size} px"


def write_backbone_record(layout: RunLayout, backbone: Backbone, dataset_fingerprint: str | None = None,
                          **extra) -> dict:
    """Which backbone this run uses (what later notebooks and reports name), with what it was made
    from: the checkpoint's hash and, for a backbone pretrained here, the dataset's fingerprint."""
    record = {"name": backbone.name, "slug": backbone.slug, "identity": backbone.identity,
              "device": str(backbone.device), "mixed_precision": backbone.use_amp,
              "parameters": sum(p.numel() for p in backbone.model.parameters()),
              "dataset_fingerprint": dataset_fingerprint, **extra}
    atomic_write_json(layout.backbone_record, record)
    return record


def read_backbone_record(layout: RunLayout, check: bool = True, dataset: str | None = None) -> dict:
    """The run's backbone record; with `check`, refuses one made from another dataset or whose
    checkpoint has changed since (an interrupted or partial rerun of notebook 02). `dataset`: the
    dataset's fingerprint if the caller has it already (it reads every status file)."""
    path = layout.backbone_record
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run notebook 02_backbone first")
    record = json.loads(path.read_text())
    if check:
        made_from = record.get("dataset_fingerprint")
        if made_from and made_from != (dataset or dataset_fingerprint(layout)):
            raise StaleArtifactError(path, "the backbone was pretrained on another version of the dataset",
                                     "02_backbone")
        checkpoint = layout.backbone_checkpoint(record["slug"])
        if made_from and (not checkpoint.exists() or record["identity"] != f"{TINY_MODEL}|{file_digest(checkpoint)}"):
            raise StaleArtifactError(path, f"{checkpoint.name} is missing or is not the checkpoint it records",
                                     "02_backbone")
    return record
