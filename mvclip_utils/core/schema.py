"""The run config's schema: one dataclass per section of a params YAML, and the names they allow.

A new setting is a field here (with its default), a check in `config_checks` when its range
matters, and a line in `params/*.yaml` where a run changes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import numpy as np


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


# The procedural categories `data.objects` can build, in its order: listed here so that a config
# naming an unknown one is refused before any work without the core importing the data layer
# (`data.objects` refuses to import if the two lists disagree).
PROCEDURAL_CATEGORIES = ("mug", "chair", "car", "house", "lamp", "bottle", "teapot", "sofa", "television",
                         "bookshelf", "boat", "camera", "table", "bed", "bicycle", "airplane", "guitar", "clock",
                         "helicopter", "rocket", "tree", "umbrella", "toaster", "robot", "backpack", "truck", "tent",
                         "snowman", "windmill", "piano")


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
MIN_RESOLUTION, MAX_RESOLUTION = 16, 2048


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
    # ITC's texts (the caption regime, named in the reports): `category` pairs every view with its bare
    # category prompt ("a photo of a mug", as ImageNet's class prompts in the paper: supervised
    # classification against the zero-shot classifier); `caption` with its object's descriptive caption;
    # `per_view` with a caption of that view (`data.objects.view_caption`: "a red mug ..., seen from
    # above, its handle on the left", as the OVT write-up's MVCap); `none` drops ITC (image-only losses).
    text: Literal["category", "caption", "per_view", "none"] = "category"
    # With `caption` or `per_view`: the probability that a view gets its bare category prompt instead.
    category_caption_prob: float = 0.0
    lr: float = 2e-3
    weight_decay: float = 0.0
    lora_rank: int = 8  # 0 = VIFormer only
    viformer_layers: int = 2  # 0 = LoRA only
    viformer_heads: int = 4
    residual_ratio: float = 0.1
    # The VIFormer's residual (`models.adapters.VIFormer`): `step` (f = z + a learnt step started at zero:
    # alpha scales the step) or `writeup` (f a full map: alpha is the write-up's share of a new representation).
    residual: Literal["step", "writeup"] = "step"
    # Two views whose ITC texts are both bare prompts of one category (in any template) are not each
    # other's negatives when true (identical texts never are).
    mask_category_negatives: bool = False
    seed: int = 0


@dataclass
class OVTConfig(AdapterTuningConfig):
    """Omniview-Tuning (notebook 08): LoRA + VIFormer on the image tower, ITC + lambda * VC."""

    vc_weight: float = 1.0  # lambda; 0 = the plain multi-view fine-tune (ITC only)
    vc_views: Literal["outliers", "all"] = "outliers"  # minimax on the top-K outliers, or VC on every view
    outlier_views: int = 5  # K of the maximisation step
    anchor_neighbours: int = 5  # nearest neighbours that weigh each view in the anchor
    # Each view's weight in the anchor (`models.losses.knn_weighted_anchor`): `paper` 1 / its mean cosine
    # distance to its nearest views, `public` 1 / their mean similarity (the public code), `uniform`.
    anchor_weights: Literal["paper", "public", "uniform"] = "paper"
    # `paper`'s bound: a distance counts as at least this fraction of the object's mean, so no view weighs
    # more than 1 / anchor_floor times a view at the mean (0 = unbounded: a duplicate view takes the anchor).
    anchor_floor: float = 0.0
    margin: float = 0.0  # m of the VC term
    # `shift`: max(d + m, 0), as the write-up and public code (for m >= 0 a constant: changes nothing);
    # `hinge`: max(d - m, 0), views already within m of the anchor are not pulled (no over-alignment).
    margin_mode: Literal["shift", "hinge"] = "shift"


@dataclass
class DistillConfig(AdapterTuningConfig):
    """Centroid distillation (notebook 12): each view pulled to its object's frozen multi-view centroid,
    clean views kept at their frozen embeddings, captions kept aligned by ITC."""

    # clean_per_batch: as ovt.clean_per_batch when only that one is set
    # Each train object's fixed target: the normalised mean of its frozen views at the seen poses; its frozen canonical
    # view; or the mean weighted by each view's frozen zero-shot probability of the object's category.
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
    test_objects_per_category: int = 0  # evaluated test objects per category (table order; 0 = all)
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
    val_views: int = 512  # the fixed batch of val views validation cross-entropy is measured on
    # Test objects evaluated per category (the first in table order; 0 = every test object): evaluation
    # runs every view of them through every model and costs more than training with ~130 part classes.
    test_objects_per_category: int = 0
    # The train views (pixels, labels, frozen features) are held in memory when they need at most this many
    # MiB, else read from disk every step (Objaverse at 224 px).
    cache_mb: int = 2048
    seed: int = 0


@dataclass
class ProtocolConfig:
    """What every method that trains (heads 05-07, 08's tunings, 12's distillation) may see, and so
    what evaluation holds out (`core.protocol`). Categories fall in three groups: *multi-view*
    (tuning sees their train objects from the seen poses), *single-view* (tuning sees only the clean
    canonical view of their objects: the role ImageNet plays beside MVCap in the OVT write-up) and
    *unseen* (tuning sees nothing of them, not even their prompts). A group is given by name or,
    when the list is empty, as a fraction of the categories drawn with the run's `seed`."""

    single_view_categories: list[str] = field(default_factory=list)
    single_view_fraction: float = 0.0
    unseen_categories: list[str] = field(default_factory=list)
    unseen_fraction: float = 0.0
    # The seen poses: grid views on these elevation rings (empty = every ring) whose azimuth lies in
    # [from, to) degrees, wrapped (e.g. [-90, 90] = the front half; empty = every azimuth).
    # The other grid views are the unseen poses; the ood views are held out from every tuning.
    seen_elevations_deg: list[float] = field(default_factory=list)
    seen_azimuths_deg: list[float] = field(default_factory=list)


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
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
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


def pretrains_here(cfg: RunConfig) -> bool:
    """Whether notebook 02 pretrains the tiny backbone on the run's `pretrain` split."""
    return cfg.backbone.model == TINY_MODEL and not cfg.backbone.pretrained


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
