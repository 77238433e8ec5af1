"""Typed run configuration: one YAML per run, validated before any work starts.

Every section is a dataclass; `load_config` walks the YAML against the type hints and
fails with the key's dotted path and what was expected (unknown keys get a
did-you-mean). Later notebooks add sections by adding a dataclass field here.
"""

from __future__ import annotations

import dataclasses
import re
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import yaml

from .runs import atomic_write_text


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the key and the fix."""


class ExistingFile(str):
    """A path in the config that must point at an existing file (resolved against the YAML's folder)."""


@dataclass
class ViewSpec:
    """One named camera: azimuth 0 looks at the object's front (from -Y), elevation 90 straight down."""

    name: str
    azimuth_deg: float
    elevation_deg: float
    distance: float


def _default_ood_views() -> list[ViewSpec]:
    return [
        ViewSpec("below_front", 0.0, -50.0, 1.5),
        ViewSpec("below_back", 180.0, -50.0, 1.5),
        ViewSpec("top_down", 0.0, 90.0, 1.5),
        ViewSpec("close_front", 30.0, 20.0, 0.8),
        ViewSpec("far_side", 120.0, 20.0, 4.0),
        ViewSpec("level_back", 200.0, 0.0, 1.5),
    ]


@dataclass
class ProceduralConfig:
    categories: list[str] = field(default_factory=list)  # empty = every registered category
    objects_per_category: int = 56


@dataclass
class ObjaverseConfig:
    # The seed code keeps every object whose annotation `categories` contain food-drink.
    annotation_categories: list[str] = field(default_factory=lambda: ["food-drink"])
    # The category of each object (what zero-shot and the probes classify): "auto" keeps
    # every LVIS category with at least `lvis_min_objects` objects among the selection;
    # a list keeps those LVIS categories; [] = no LVIS filter (category = annotation
    # category, a single class for food-drink: zero-shot would be trivially 1.0).
    lvis_categories: Union[Literal["auto"], list[str]] = "auto"
    lvis_min_objects: int = 5
    uids_file: Optional[ExistingFile] = None  # one uid per line: render exactly these
    max_objects: Optional[int] = None
    download_processes: int = 8


SPLITS = ("pretrain", "train", "val", "test")


@dataclass
class SplitConfig:
    pretrain: float = 0.5
    train: float = 0.25
    val: float = 0.05
    test: float = 0.2

    def sizes(self, n: int) -> dict[str, int]:
        """How many of `n` objects (one category) each split gets: largest remainders, so the
        counts sum to `n` and follow the fractions as closely as whole objects can."""
        exact = np.array([getattr(self, s) for s in SPLITS]) * n
        counts = np.floor(exact + 1e-9).astype(int)
        counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
        return dict(zip(SPLITS, counts.tolist()))


@dataclass
class Cifar100Config:
    """CIFAR-100 for notebook 09 alone (params/cifar100_vitb32.yaml): the seed's own benchmark."""

    root: str = "~/.cache/cifar100"  # torchvision's layout: <root>/cifar-100-python/{train,test,meta}
    download: bool = True  # fetched once by torchvision when missing
    val_fraction: float = 0.1  # of each class's training images, held out to pick the linear probe's C


@dataclass
class DatasetConfig:
    # cifar100: no renders; only notebook 09 runs (pipeline.notebooks: "09").
    source: Literal["procedural", "objaverse", "cifar100"] = "procedural"
    procedural: ProceduralConfig = field(default_factory=ProceduralConfig)
    objaverse: ObjaverseConfig = field(default_factory=ObjaverseConfig)
    cifar100: Cifar100Config = field(default_factory=Cifar100Config)
    splits: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class RenderConfig:
    engine: Literal["workbench", "cycles"] = "workbench"
    resolution: int = 64
    azimuths: int = 12
    # The seed renders polar angles 20/50/80 deg, i.e. elevations 70/40/10 deg.
    elevations_deg: list[float] = field(default_factory=lambda: [70.0, 40.0, 10.0])
    distance: float = 1.5
    fov_deg: float = 50.0
    ood_views: list[ViewSpec] = field(default_factory=_default_ood_views)
    cycles_samples: int = 16
    background: Literal["white", "random"] = "white"
    light_jitter: float = 0.0  # 0 = fixed lighting; 1 = strong random light direction/strength
    workers: int = 2
    objects_per_worker: int = 200  # restart a worker after this many objects (bpy leaks)
    max_attempts: int = 2  # an object whose worker dies this often is recorded as failed


TINY_MODEL = "mvclip-tiny"


@dataclass
class PretrainConfig:
    """Pretraining of the tiny offline CLIP (only used when backbone.model is mvclip-tiny and pretrained is empty)."""

    # canonical: ONE view per pretrain object, the stand-in for single-view web data;
    # all: every grid view, the compute-matched control.
    views: Literal["canonical", "all"] = "canonical"
    canonical_view: str = ""  # empty = the front three-quarter view (middle elevation, azimuth ~30 deg)
    caption_templates: list[str] = field(default_factory=lambda: [
        "{}", "a photo of {}", "a rendering of {}", "a picture of {}", "an image of {}"])
    # Alt-texts on the web range from a bare noun to a full description: with this
    # probability a training caption is just the category ("a photo of a mug").
    category_caption_prob: float = 0.3
    augment_scale: float = 1.0  # random crops covering [augment_scale, 1] of the image; 1 = none
    # CLIP's logit scale (inverse temperature), held fixed at real CLIP's final value: measured
    # here, it gives the tiny model real CLIP's geometry (cross-object cosine ~0.74, text-image
    # ~0.24, modality gap ~0.92) where a learned one (from open_clip's 1/0.07) spread the
    # embeddings out (cross-object ~0.10). 0 = learned from open_clip's initial value, capped at 100.
    logit_scale: float = 100.0
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    torch_threads: int = 0  # 0 = one per CPU core (measured fastest here for one process)
    seed: int = 0


@dataclass
class BackboneConfig:
    # Any open_clip model name (ViT-B-32, RN50, ...), hf-hub:org/repo, or the embedded mvclip-tiny.
    model: str = TINY_MODEL
    # An open_clip pretrained tag (openai, laion2b_s34b_b79k, ...) or a local checkpoint file;
    # empty with mvclip-tiny = pretrain it here on the run's pretrain split.
    pretrained: str = ""
    precision: Literal["auto", "fp32", "amp"] = "auto"  # auto = mixed precision on CUDA, fp32 on the CPU
    device: str = "auto"  # auto = cuda when available
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class EmbedConfig:
    batch_size: int = 256
    loader_workers: int = 2
    # Category prompts, averaged over templates as CLIP does for zero-shot classification.
    prompt_templates: list[str] = field(default_factory=lambda: [
        "a photo of a {}", "a rendering of a {}", "a picture of a {}", "a {}", "an image of a {}"])
    # Prompts in no pretraining caption (CLIP's ImageNet templates): zero-shot with them shows
    # how much the tiny backbone's accuracy owes to having seen the prompts verbatim.
    unseen_prompt_templates: list[str] = field(default_factory=lambda: [
        "a good photo of the {}.", "a close-up photo of the {}.", "a bright photo of the {}."])


@dataclass
class HeadsConfig:
    """Training of the seed methods on frozen embeddings (notebooks 05-07)."""

    views_per_object: int = 6  # seed: 6 random views per object per step
    objects_per_batch: int = 0  # 0 = every training object in each step (seed: full batch)
    steps: int = 1000  # seed: 1000 epochs of one full batch
    lr: float = 1e-3  # seed: Adam, lr 1e-3
    cosine_schedule: bool = False  # seed: constant learning rate
    validate_every: int = 25
    patience: int = 8  # validations without improvement before stopping; 0 = never stop early
    hidden: int = 0  # 0 = the backbone's embedding width (512-512-512 for ViT-B/32)
    contrastive: Literal["seed", "infonce"] = "seed"
    temperature: float = 0.07  # for infonce
    code_widths: list[int] = field(default_factory=list)  # autoencoder; empty = [D/2, D/4] (seed: 256, 128)
    reconstruction_weight: float = 1.0
    similarity_weight: float = 1.0
    dissimilarity_weight: float = 1.0
    seed: int = 0


@dataclass
class AdapterTuningConfig:
    """What every tuning of the image tower's adapters shares (08's Omniview-Tuning, 12's centroid
    distillation): LoRA + VIFormer, P objects x K grid views per step plus clean canonical views."""

    steps: int = 300
    objects_per_batch: int = 16  # P train objects ...
    views_per_object: int = 4  # ... x K grid views each
    clean_per_batch: int = 128  # canonical views of pretrain objects with their captions; 0 = no clean mix
    # ITC's texts, in pretraining's caption templates: with this probability a view is paired
    # with its bare category ("a photo of a mug", as ImageNet's class prompts in the paper)
    # rather than its caption.
    category_caption_prob: float = 1.0
    lr: float = 2e-3
    weight_decay: float = 0.0
    lora_rank: int = 8  # 0 = VIFormer only
    viformer_layers: int = 2  # 0 = LoRA only
    viformer_heads: int = 4
    residual_ratio: float = 0.1
    seed: int = 0


@dataclass
class OVTConfig(AdapterTuningConfig):
    """Omniview-Tuning (notebook 08): LoRA + VIFormer on the image tower, ITC + lambda * VC."""

    vc_weight: float = 1.0  # lambda; 0 = the plain multi-view fine-tune (ITC only)
    vc_views: Literal["outliers", "all"] = "outliers"  # minimax on the top-K outliers, or VC on every view
    outlier_views: int = 5  # K of the maximisation step
    anchor_neighbours: int = 5  # nearest neighbours that weigh each view in the anchor
    margin: float = 0.0  # of max(d + m, 0); the public scripts use 0.3 (a constant shift for m >= 0)


@dataclass
class DistillConfig(AdapterTuningConfig):
    """Centroid distillation (notebook 12): each view pulled to its object's frozen multi-view centroid,
    clean views kept at their frozen embeddings, captions kept aligned by ITC."""

    # clean_per_batch: as ovt.clean_per_batch when only that one is set
    # Each train object's fixed target: the normalised mean of its frozen grid views; its frozen canonical
    # view; or the mean weighted by each view's frozen zero-shot probability of the object's category.
    # All three gave the same viewpoint-OOD accuracy within 0.3 points on the default run (README, 12).
    target: Literal["centroid", "canonical_view", "confident_centroid"] = "centroid"
    distill_weight: float = 1.0  # mean cosine distance of each train view to its object's frozen target
    keep_weight: float = 1.0  # ... of each clean canonical view to its own frozen embedding
    itc_weight: float = 1.0  # image-text contrastive, as in OVT
    ablate: bool = False  # also train one variant without each term (params/distill_ablations.yaml)


@dataclass
class ProbesConfig:
    """Notebook 09: zero-shot, linear probe and few-shot classifiers on frozen features."""

    shots: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # per class
    seeds: int = 5  # draws of the shots per k (mean and standard error over them)
    epochs: int = 100  # full-batch Adam steps of a few-shot fit
    lr: float = 0.01
    # The linear probe's inverse regularisation, swept on `val` (the CLIP paper's protocol).
    # (on standardised features; swept upwards, each fit warm-started from the last).
    linear_probe_Cs: list[float] = field(default_factory=lambda: [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0,
                                                                  3.16, 10.0, 31.6, 100.0])
    max_iter: int = 1000  # of scikit-learn's L-BFGS


@dataclass
class DecodingConfig:
    """Notebook 10: a VQ-VAE decoding the renders from frozen CLIP spatial features vs its own encoder."""

    codebook_size: int = 128
    code_width: int = 32
    decay: float = 0.99  # of the EMA codebook
    restart_below: float = 0.1  # EMA count under which a code is restarted on a batch vector; 0 = never
    commitment: float = 0.25  # beta
    channels: int = 48  # of the conv decoder (and of the own encoder)
    steps: int = 1000  # measured: 1000 x 32 reaches val MSE ~0.017 where 500 x 64 stopped at ~0.022
    batch_size: int = 32
    lr: float = 0.002
    validate_every: int = 100
    seed: int = 0


@dataclass
class SegmentationConfig:
    """Notebook 11: part segmentation from frozen CLIP spatial features vs a linear patch probe vs a
    small UNet from scratch, all on the same data and steps."""

    # Measured on the default run: 1000 x 16 reaches the decoder's part mIoU of 1000 x 32 in half the time
    # (a step's cost is mostly the per-pixel loss on 64 x 64 x ~50 logits).
    steps: int = 1000
    batch_size: int = 16
    lr: float = 0.005  # of the models on frozen features
    unet_lr: float = 0.002  # of the UNet from scratch (at 0.005 it diverged)
    channels: int = 48  # of the frozen-feature decoder (notebook 10's decoder with class logits out)
    unet_channels: int = 8  # of the UNet's first stage (doubling per halving); 16 cost 2x for no gain
    unet_depth: int = 3  # halvings of the UNet
    validate_every: int = 100
    # The train views (pixels, labels, frozen features) are held in memory when they need at most this many
    # MiB, else read from disk every step (Objaverse at 224 px).
    cache_mb: int = 2048
    seed: int = 0


@dataclass
class PipelineConfig:
    notebook_timeout_s: int = 3600
    # Which notebooks a run has, as --only takes them ("09", "01-04,08"); empty = every one.
    notebooks: str = ""


@dataclass
class OVTAblation:
    """One variant of Omniview-Tuning for notebook 08's ablation table: the run's `ovt` section
    with some keys changed (given in the YAML as `- {name: lora_only, viformer_layers: 0}`)."""

    name: str
    ovt: OVTConfig


@dataclass
class RunConfig:
    run_name: str
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    ovt: OVTConfig = field(default_factory=OVTConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    # Variants of `ovt` that notebook 08 trains and tabulates too (params/ovt_ablations.yaml); none by default.
    ovt_ablations: list[OVTAblation] = field(default_factory=list, metadata={"internal": True})
    source_path: Optional[str] = field(default=None, metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the validated values (what `config.yaml` of a run holds)."""
        data = dataclasses.asdict(self)
        data.pop("source_path")
        default_ovt = data["ovt"]
        data["ovt_ablations"] = [{"name": a["name"], **{k: v for k, v in a["ovt"].items() if v != default_ovt[k]}}
                                 for a in data["ovt_ablations"]]  # the YAML form: only the changed keys
        if not data["ovt_ablations"]:
            data.pop("ovt_ablations")
        return data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if tp is ExistingFile:
        return "a path to an existing file"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in _public_fields(tp))}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _fail(path: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{path or '<top level>'}: {message}")


def _convert(value: Any, tp: Any, path: str, base_dir: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:  # Optional[X]: X's own message
            return _convert(value, non_null[0], path, base_dir)
        for alternative in non_null:  # the first alternative that fits
            try:
                return _convert(value, alternative, path, base_dir)
            except ConfigError:
                pass
        _fail(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(path, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            _fail(path, f"expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{path}[{i}]", base_dir) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, base_dir)
    if tp is ExistingFile:
        if not isinstance(value, str):
            _fail(path, f"expected a file path, got {value!r}")
        resolved = (base_dir / value).resolve()
        if not resolved.is_file():
            _fail(path, f"file {value!r} does not exist (looked at {resolved}); fix the path or remove the key")
        return str(resolved)
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(path, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(path, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {tp!r} at {path} is not supported by the validator")


def _build(cls: type, data: Any, path: str, base_dir: Path) -> Any:
    if not isinstance(data, dict):
        _fail(path, f"expected {_type_name(cls)}, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _public_fields(cls)}
    for key in data:
        if key not in fields:
            near = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            _fail(f"{path}.{key}".lstrip("."), f"unknown key{hint}; expected one of {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}".lstrip(".")
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path, base_dir)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            _fail(key_path, f"missing required key; expected {_type_name(hints[name])}")
    return cls(**kwargs)


MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048


def _check_range(key: str, value: float, low: float | None = None, high: float | None = None,
                 what: str = "") -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = (f"between {low:g} and {high:g}" if low is not None and high is not None
                   else f"of at least {low:g}" if low is not None else f"of at most {high:g}")
        _fail(key, f"expected {what or 'a value'} {allowed}, got {value}")


def _check_semantics(cfg: RunConfig) -> None:
    """Every value that would only fail later (or silently do the wrong thing) is refused here,
    with one line naming the key and the allowed range."""
    r = cfg.render
    _check_range("render.resolution", r.resolution, MIN_RESOLUTION, MAX_RESOLUTION, "a side in pixels")
    for key, value in {"render.azimuths": r.azimuths, "render.workers": r.workers,
                       "render.cycles_samples": r.cycles_samples, "render.max_attempts": r.max_attempts,
                       "render.objects_per_worker": r.objects_per_worker,
                       "dataset.procedural.objects_per_category": cfg.dataset.procedural.objects_per_category,
                       "dataset.objaverse.lvis_min_objects": cfg.dataset.objaverse.lvis_min_objects,
                       "dataset.objaverse.download_processes": cfg.dataset.objaverse.download_processes,
                       "pipeline.notebook_timeout_s": cfg.pipeline.notebook_timeout_s}.items():
        _check_range(key, value, 1, what="an integer")
    if cfg.dataset.objaverse.max_objects is not None:
        _check_range("dataset.objaverse.max_objects", cfg.dataset.objaverse.max_objects, 1,
                     what="null (every matching object) or a count")
    if r.distance <= 0:
        _fail("render.distance", f"expected a positive distance, got {r.distance}")
    if not 1.0 <= r.fov_deg < 179.0:
        _fail("render.fov_deg", f"expected a field of view in degrees between 1 and 179, got {r.fov_deg}")
    if not r.elevations_deg:
        _fail("render.elevations_deg", "expected at least one elevation")
    for i, el in enumerate(r.elevations_deg):
        if not -90.0 <= el <= 90.0:
            _fail(f"render.elevations_deg[{i}]", f"expected degrees in [-90, 90], got {el}")
    if r.azimuths * len(r.elevations_deg) < 2:
        _fail("render.azimuths", f"{r.azimuths} azimuth(s) x {len(r.elevations_deg)} elevation(s) give one grid "
                                 "view per object; the study compares views of one object: expected at least 2")
    _check_range("render.light_jitter", r.light_jitter, 0.0, 1.0, "a strength")
    for i, v in enumerate(r.ood_views):
        if not -90.0 <= v.elevation_deg <= 90.0:
            _fail(f"render.ood_views[{i}].elevation_deg", f"expected degrees in [-90, 90], got {v.elevation_deg}")
        if v.distance <= 0:
            _fail(f"render.ood_views[{i}].distance", f"expected a positive distance, got {v.distance}")
    names = [v.name for v in r.ood_views]
    if len(set(names)) != len(names):
        _fail("render.ood_views", f"view names must be unique, got {names}")
    p = cfg.backbone.pretrain
    for key, value in {"backbone.pretrain.steps": p.steps, "backbone.pretrain.batch_size": p.batch_size,
                       "backbone.pretrain.lr": p.lr,
                       "embed.batch_size": cfg.embed.batch_size, "heads.steps": cfg.heads.steps,
                       "heads.lr": cfg.heads.lr,
                       "heads.validate_every": cfg.heads.validate_every,
                       "heads.temperature": cfg.heads.temperature}.items():
        if value <= 0:
            _fail(key, f"expected a positive value, got {value}")
    for key, value in {"backbone.pretrain.warmup_steps": p.warmup_steps,
                       "backbone.pretrain.weight_decay": p.weight_decay,
                       "backbone.pretrain.logit_scale": p.logit_scale,
                       "backbone.pretrain.torch_threads": p.torch_threads,
                       "embed.loader_workers": cfg.embed.loader_workers,
                       "heads.patience": cfg.heads.patience, "heads.hidden": cfg.heads.hidden,
                       "heads.reconstruction_weight": cfg.heads.reconstruction_weight,
                       "heads.similarity_weight": cfg.heads.similarity_weight,
                       "heads.dissimilarity_weight": cfg.heads.dissimilarity_weight}.items():
        _check_range(key, value, 0)
    for key, o in [("ovt", cfg.ovt)] + [(f"ovt_ablations[{i}]", x.ovt) for i, x in enumerate(cfg.ovt_ablations)]:
        _check_ovt(key, o)
    _check_distill(cfg.distill)
    if cfg.pipeline.notebooks and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cfg.pipeline.notebooks.replace(" ", "")):
        _fail("pipeline.notebooks", f"expected numbers and ranges such as '09' or '01-04,08', got "
                                    f"{cfg.pipeline.notebooks!r}")
    if cfg.dataset.source == "cifar100":
        if cfg.pipeline.notebooks.strip() not in ("09", "9"):
            _fail("pipeline.notebooks", f"dataset.source cifar100 has no renders: only notebook 09 runs on it; set "
                                        f"pipeline.notebooks: \"09\" (got {cfg.pipeline.notebooks!r})")
        _check_range("dataset.cifar100.val_fraction", cfg.dataset.cifar100.val_fraction, 0.001, 0.5, "a fraction")
    dc = cfg.decoding
    for key, value in {"decoding.codebook_size": dc.codebook_size, "decoding.code_width": dc.code_width,
                       "decoding.channels": dc.channels, "decoding.steps": dc.steps,
                       "decoding.batch_size": dc.batch_size, "decoding.validate_every": dc.validate_every}.items():
        _check_range(key, value, 1, what="an integer")
    _check_range("decoding.decay", dc.decay, 0.0, 0.9999, "an EMA decay")
    _check_range("decoding.restart_below", dc.restart_below, 0.0, 1e6, "an EMA count")
    _check_range("decoding.commitment", dc.commitment, 0.0, 100.0, "a weight")
    _check_range("decoding.lr", dc.lr, 1e-8, 1.0, "a learning rate")
    sc = cfg.segmentation
    for key, value in {"segmentation.steps": sc.steps, "segmentation.batch_size": sc.batch_size,
                       "segmentation.channels": sc.channels, "segmentation.unet_channels": sc.unet_channels,
                       "segmentation.unet_depth": sc.unet_depth,
                       "segmentation.validate_every": sc.validate_every}.items():
        _check_range(key, value, 1, what="an integer")
    _check_range("segmentation.lr", sc.lr, 1e-8, 1.0, "a learning rate")
    _check_range("segmentation.unet_lr", sc.unet_lr, 1e-8, 1.0, "a learning rate")
    _check_range("segmentation.cache_mb", sc.cache_mb, 0, what="a size in MiB")
    if r.resolution % 2 ** sc.unet_depth:
        _fail("segmentation.unet_depth", f"the UNet halves the {r.resolution} px renders {sc.unet_depth} times; "
                                         f"choose a depth whose 2**depth divides render.resolution")
    pr = cfg.probes
    if not pr.shots or any(k < 1 for k in pr.shots):
        _fail("probes.shots", f"expected a list of shot counts of at least 1, got {pr.shots}")
    _check_range("probes.seeds", pr.seeds, 2, what="a number of seeds (standard errors need two)")
    _check_range("probes.epochs", pr.epochs, 1, what="an integer")
    _check_range("probes.max_iter", pr.max_iter, 1, what="an integer")
    _check_range("probes.lr", pr.lr, 1e-8, 10.0, "a learning rate")
    if not pr.linear_probe_Cs or any(c <= 0 for c in pr.linear_probe_Cs):
        _fail("probes.linear_probe_Cs", f"expected positive values of C, got {pr.linear_probe_Cs}")
    if cfg.heads.objects_per_batch == 1 or cfg.heads.objects_per_batch < 0:
        _fail("heads.objects_per_batch", f"expected 0 (every training object) or at least 2 (other objects are "
                                         f"the negatives), got {cfg.heads.objects_per_batch}")
    for i, width in enumerate(cfg.heads.code_widths):
        _check_range(f"heads.code_widths[{i}]", width, 1, what="a width")
    for key, templates in {"backbone.pretrain.caption_templates": p.caption_templates,
                           "embed.prompt_templates": cfg.embed.prompt_templates,
                           "embed.unseen_prompt_templates": cfg.embed.unseen_prompt_templates}.items():
        if not templates or any("{}" not in t for t in templates):
            _fail(key, f"expected templates that each contain '{{}}', got {templates}")
    if cfg.heads.views_per_object < 2:
        _fail("heads.views_per_object", f"expected at least 2 (pairs of views), got {cfg.heads.views_per_object}")
    if not 0.0 <= p.category_caption_prob <= 1.0:
        _fail("backbone.pretrain.category_caption_prob", f"expected a probability in [0, 1], got {p.category_caption_prob}")
    if not 0.0 < p.augment_scale <= 1.0:
        _fail("backbone.pretrain.augment_scale", f"expected a fraction in (0, 1], got {p.augment_scale}")
    if p.canonical_view:
        from .cameras import views_table  # local import: cameras imports this module

        view_ids = views_table(r).view_id.tolist()
        if p.canonical_view not in view_ids:
            _fail("backbone.pretrain.canonical_view", f"{p.canonical_view!r} is not a view of render's grid and ood "
                                                      f"views; expected one of {', '.join(view_ids)}")
    pretrained = cfg.backbone.pretrained
    if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
        if not Path(pretrained).is_file():
            _fail("backbone.pretrained", f"checkpoint file {pretrained!r} does not exist; give an existing file "
                                         "or an open_clip pretrained tag such as 'openai'")
    if cfg.backbone.model != TINY_MODEL and not pretrained and not cfg.backbone.model.startswith("hf-hub:"):
        _fail("backbone.pretrained", f"model {cfg.backbone.model!r} needs pretrained weights: an open_clip tag "
                                     "(e.g. 'openai') or a checkpoint file")
    _check_splits(cfg)
    for key, o in ([("ovt", cfg.ovt), ("distill", cfg.distill)]
                   + [(f"ovt_ablations[{i}]", x.ovt) for i, x in enumerate(cfg.ovt_ablations)]):
        if o.clean_per_batch and cfg.dataset.splits.pretrain <= 0:
            _fail(f"{key}.clean_per_batch", f"is {o.clean_per_batch} but dataset.splits.pretrain is 0: the clean "
                                            "views are the canonical views of pretrain objects; give that split a "
                                            f"fraction (e.g. 0.2) or set {key}.clean_per_batch: 0 (no clean mix)")
    from .objects import CATEGORIES  # local import: objects imports nothing from here

    categories = cfg.dataset.procedural.categories
    for i, name in enumerate(categories):
        if name not in CATEGORIES:
            _fail(f"dataset.procedural.categories[{i}]", f"unknown category {name!r}; expected one of {', '.join(CATEGORIES)}")
    if cfg.dataset.source == "procedural" and len(set(categories)) == 1:
        _fail("dataset.procedural.categories", f"expected at least 2 categories (zero-shot accuracy and the probes "
                                               f"classify them) or [] for all, got {categories}")
    if isinstance(cfg.dataset.objaverse.lvis_categories, list) and len(cfg.dataset.objaverse.lvis_categories) == 1:
        _fail("dataset.objaverse.lvis_categories", "expected at least 2 LVIS categories, 'auto', or [] for the "
                                                   f"annotation categories; got {cfg.dataset.objaverse.lvis_categories}")
    if not cfg.run_name or "/" in cfg.run_name or cfg.run_name.startswith("."):
        _fail("run_name", f"expected a plain folder name, got {cfg.run_name!r}")


def _check_tuning(section: str, o: AdapterTuningConfig) -> None:
    """The ranges every adapter-tuning section shares (`ovt`, an ovt ablation, `distill`)."""
    for key, value in {f"{section}.steps": o.steps, f"{section}.objects_per_batch": o.objects_per_batch,
                       f"{section}.views_per_object": o.views_per_object,
                       f"{section}.viformer_heads": o.viformer_heads}.items():
        _check_range(key, value, 1, what="an integer")
    for key, value in {f"{section}.clean_per_batch": o.clean_per_batch, f"{section}.weight_decay": o.weight_decay,
                       f"{section}.lora_rank": o.lora_rank, f"{section}.viformer_layers": o.viformer_layers}.items():
        _check_range(key, value, 0)
    _check_range(f"{section}.lr", o.lr, 1e-8, 1.0, "a learning rate")
    _check_range(f"{section}.residual_ratio", o.residual_ratio, 0.0, 1.0, "a ratio")
    _check_range(f"{section}.category_caption_prob", o.category_caption_prob, 0.0, 1.0, "a probability")
    if not o.lora_rank and not o.viformer_layers:
        _fail(f"{section}.lora_rank", f"and {section}.viformer_layers are both 0: nothing to train; set one of them")


def _check_ovt(section: str, o: OVTConfig) -> None:
    """The ranges of an `ovt` section (the run's, or an ablation's)."""
    _check_tuning(section, o)
    for key, value in {f"{section}.outlier_views": o.outlier_views,
                       f"{section}.anchor_neighbours": o.anchor_neighbours}.items():
        _check_range(key, value, 1, what="an integer")
    _check_range(f"{section}.vc_weight", o.vc_weight, 0)


def _check_distill(d: DistillConfig) -> None:
    _check_tuning("distill", d)
    for key in ("distill_weight", "keep_weight", "itc_weight"):
        _check_range(f"distill.{key}", getattr(d, key), 0)
    if not (d.distill_weight or d.keep_weight or d.itc_weight):
        _fail("distill.distill_weight", "and keep_weight and itc_weight are all 0: no loss to train on")


def _build_ablations(entries: Any, ovt: dict, base_dir: Path) -> list[OVTAblation]:
    """`ovt_ablations`: a list of `{name: ..., <ovt key>: value, ...}`, each applied over the run's `ovt`."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        _fail("ovt_ablations", f"expected a list of {{name: ..., <ovt key>: value}}, got {type(entries).__name__}")
    out, names = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            _fail(f"ovt_ablations[{i}]", f"expected a mapping with a name and ovt keys, got {entry!r}")
        name = entry["name"]
        if name in names or not name.replace("_", "").replace(".", "").isalnum():
            _fail(f"ovt_ablations[{i}].name", f"expected a unique name of letters, digits, '_' and '.', got {name!r}")
        names.add(name)
        changes = {k: v for k, v in entry.items() if k != "name"}
        out.append(OVTAblation(name, _build(OVTConfig, {**ovt, **changes}, f"ovt_ablations[{i}]", base_dir)))
    return out


def pretrains_here(cfg: RunConfig) -> bool:
    """Whether notebook 02 pretrains the tiny backbone on the run's `pretrain` split."""
    return cfg.backbone.model == TINY_MODEL and not cfg.backbone.pretrained


def _check_splits(cfg: RunConfig) -> None:
    splits = cfg.dataset.splits
    fractions = dataclasses.asdict(splits)
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        _fail("dataset.splits", f"expected non-negative fractions summing to 1, got {fractions}")
    for name in ["test"] + (["pretrain"] if pretrains_here(cfg) else []):
        if fractions[name] <= 0:
            why = ("the tiny backbone is pretrained on it" if name == "pretrain"
                   else "every reported number is measured on it")
            _fail(f"dataset.splits.{name}", f"expected a fraction in (0, 1) ({why}), got {fractions[name]}")
    needed = needed_splits(cfg)
    objaverse = cfg.dataset.objaverse
    if cfg.dataset.source == "objaverse" and objaverse.lvis_categories == "auto":
        least = min_objects_per_category(splits, needed)
        if objaverse.lvis_min_objects < least:  # else a small category fails the split check after rendering
            _fail("dataset.objaverse.lvis_min_objects",
                  f"{objaverse.lvis_min_objects} objects per LVIS category leave a split empty with fractions "
                  f"{fractions}; expected at least {least}")
    if cfg.dataset.source == "procedural":
        per_category = cfg.dataset.procedural.objects_per_category
        sizes = splits.sizes(per_category)
        empty = [name for name in needed if sizes[name] == 0]
        if empty:
            _fail("dataset.procedural.objects_per_category",
                  f"{per_category} objects per category leave split(s) {', '.join(empty)} empty with fractions "
                  f"{fractions}; expected at least {min_objects_per_category(splits, needed)}")


def needed_splits(cfg: RunConfig) -> list[str]:
    """Splits that must hold objects of every category: test, pretrain when the tiny backbone is
    pretrained here, and any other split given a non-zero fraction."""
    splits = cfg.dataset.splits
    return [s for s in SPLITS if getattr(splits, s) > 0 or s == "test" or (s == "pretrain" and pretrains_here(cfg))]


def min_objects_per_category(splits: SplitConfig, needed: list[str]) -> int:
    """The fewest objects per category that give every needed split at least one."""
    n = 1
    while any(splits.sizes(n)[s] == 0 for s in needed):
        n += 1
    return n


def config_from_dict(data: Any, base_dir: Path | str = ".", source_path: str | None = None) -> RunConfig:
    """Validate a parsed YAML mapping; raises `ConfigError` naming the bad key."""
    data = dict(data) if isinstance(data, dict) else data
    ablations = data.pop("ovt_ablations", None) if isinstance(data, dict) else None
    ovt, distill = (data.get("ovt"), data.get("distill")) if isinstance(data, dict) else (None, None)
    if isinstance(ovt, dict) and "clean_per_batch" in ovt and isinstance(distill or {}, dict) \
            and "clean_per_batch" not in (distill or {}):
        # centroid distillation mixes in clean views as OVT does unless told otherwise (a run without a
        # pretrain split sets ovt.clean_per_batch: 0 once, for both)
        data["distill"] = {**(distill or {}), "clean_per_batch": ovt["clean_per_batch"]}
    cfg = _build(RunConfig, data, "", Path(base_dir))
    cfg.ovt_ablations = _build_ablations(ablations, data.get("ovt") or {}, Path(base_dir))
    cfg.source_path = source_path
    pretrained = cfg.backbone.pretrained
    if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))) \
            and not pretrained.startswith("hf-hub:"):
        cfg.backbone.pretrained = str((Path(base_dir) / pretrained).resolve())
    _check_semantics(cfg)
    return cfg


def load_config(path: Path | str) -> RunConfig:
    """Read and validate a run YAML. Errors start with the file name and the key's dotted path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass one of params/*.yaml")
    data = _read_params(path, ())
    try:
        return config_from_dict(data, base_dir=path.parent, source_path=str(path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_params(path: Path, chain: tuple[Path, ...]) -> Any:
    """A params file's YAML with what it `extends` (a chain of them, e.g. a sweep variant of a variant) under it."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "extends" in data:  # another params file, with this one's keys over it
        base = Path(path.parent / str(data.pop("extends")))
        if not base.is_file():
            raise ConfigError(f"{path}: extends: {base} does not exist; give a params file relative to {path.parent}")
        if base.resolve() in chain + (path.resolve(),):
            cycle = " -> ".join(p.name for p in chain + (path.resolve(), base.resolve()))
            raise ConfigError(f"{path}: extends: a cycle ({cycle})")
        data = _deep_merge(_read_params(base, chain + (path.resolve(),)) or {}, data)
    return data


def _deep_merge(base: dict, over: dict) -> dict:
    """`over`'s keys over `base`'s, mappings merged key by key (lists and values replaced)."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (_deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def dump_config_text(cfg: RunConfig) -> str:
    """The validated config (defaults filled in) as YAML."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def dump_config(cfg: RunConfig, path: Path | str) -> None:
    """Write the validated config as YAML, atomically."""
    atomic_write_text(Path(path), dump_config_text(cfg))
