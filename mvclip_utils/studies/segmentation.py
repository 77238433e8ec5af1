"""Part segmentation of the renders (notebook 11; the seed write-up `clip-feature-probes.txt`,
"Training segmentation from CLIP"): how much of *where things are* survives in CLIP's spatial
features. Three models on the same data and steps, all predicting the global (category, part)
classes of `dataset.PartClasses` plus the background:

- `FeatureDecoder`: an upsampling conv decoder on the **frozen spatial features** (the seed's
  idea, without UNet skip connections; the decoder of notebook 10's VQ-VAE with class logits out);
- `LinearPatchProbe`: one linear map per patch token, upsampled bilinearly (the probe3d-style floor);
- `SmallUNet`: a small UNet trained from scratch on the pixels (the seed's comparison).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..core.cameras import canonical_view_id, example_views
from ..core.runs import atomic_torch_save, atomic_write_json
from ..core.train import optimise
from ..data.dataset import (
    PartClasses,
    ViewImages,
    collate_views,
    first_objects_per_category,
)
from ..evaluation.metrics import class_pixel_counts, iou_from_counts, paired_view_gap
from ..evaluation.results import write_result
from ..models.backbone import (
    InputTransform,
    load_backbone,
    spatial_features,
    unit_pixels,
)
from ..models.embed import embed_settings
from ..models.opened_run import OpenedRun
from .vqvae import Decoder


class FeatureDecoder(nn.Module):
    """Frozen spatial features [B, F, h, w] -> class logits [B, K, S, S]."""

    def __init__(self, feature_channels: int, grid: int, size: int, n_classes: int, channels: int = 64):
        super().__init__()
        self.decoder = Decoder(feature_channels, grid, size, channels, out_channels=n_classes, head_kernel=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features)


class LinearPatchProbe(nn.Module):
    """A linear classifier on each patch token, its logits upsampled bilinearly to the image."""

    def __init__(self, feature_channels: int, size: int, n_classes: int):
        super().__init__()
        self.linear, self.size = nn.Conv2d(feature_channels, n_classes, 1), size

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.linear(features), size=(self.size, self.size), mode="bilinear", align_corners=False)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.ReLU())


class SmallUNet(nn.Module):
    """A UNet from scratch on the pixels [B, 3, S, S] (in [0, 1]) -> class logits [B, K, S, S]:
    `depth` halvings with skip connections, channels doubling from `channels`."""

    def __init__(self, n_classes: int, channels: int = 16, depth: int = 3):
        super().__init__()
        widths = [channels * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips, x = [], images
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.merge[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy over the global classes (background included)."""
    return F.cross_entropy(logits, target)


# ----------------------------------------------------------------------------- notebook 11

METHODS = {"decoder": "segmentation_clip_decoder", "linear": "segmentation_linear_probe",
           "unet": "segmentation_unet"}  # their results rows
LABELS = {"decoder": "decoder on frozen CLIP features", "linear": "linear probe on patch tokens",
          "unet": "UNet from scratch (pixels)"}
# Baselines that learn nothing from the pixels: what a model must beat to have found parts.
BASELINES = {"prior": "location prior (one fixed mask)", "foreground": "foreground only (true silhouette, one class)",
             "category": "true silhouette and category, its largest part"}
BASELINE_METHODS = {"prior": "segmentation_location_prior", "foreground": "segmentation_foreground_only",
                    "category": "segmentation_category_silhouette"}


@dataclass
class PixelStats:
    """Pixel counts of one predictor on every view of the test objects."""

    correct: np.ndarray  # [V, K] pixels of class k predicted correctly, summed over objects
    truth: np.ndarray  # [V, K] true pixels of class k
    predicted: np.ndarray  # [V, K] predicted pixels of class k
    image_miou: np.ndarray  # [N, V] mIoU of each image over the part classes in its truth or prediction
    foreground_iou: np.ndarray  # [N, V] IoU of the predicted object silhouette (any class > 0) with the true one

    def iou(self, views: np.ndarray | None = None) -> np.ndarray:
        """IoU per class [K] over the chosen views (a boolean mask over V; all by default)."""
        keep = slice(None) if views is None else views
        return iou_from_counts(*(x[keep].sum(0) for x in (self.correct, self.truth, self.predicted)))

    def miou(self, views: np.ndarray | None = None) -> float:
        """Dataset-level mIoU over the part classes (background excluded) of the chosen views."""
        iou = self.iou(views)[1:]
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self, views: np.ndarray | None = None) -> float:
        keep = slice(None) if views is None else views
        return float(self.correct[keep].sum() / max(self.truth[keep].sum(), 1))


class _StatsAccumulator:
    def __init__(self, n_objects: int, n_views: int, n_classes: int):
        self.k = n_classes
        self.sums = [np.zeros((n_views, n_classes)) for _ in range(3)]
        self.image_miou, self.foreground_iou = np.full((n_objects, n_views), np.nan), np.zeros((n_objects, n_views))

    def add(self, predicted: torch.Tensor, truth: torch.Tensor, objects: np.ndarray, views: np.ndarray) -> None:
        counts = [c.cpu().numpy().astype(float) for c in class_pixel_counts(predicted, truth, self.k)]
        for total, c in zip(self.sums, counts):
            np.add.at(total, views, c)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = iou_from_counts(*counts)[:, 1:]
            present = np.isfinite(iou).any(1)
            self.image_miou[objects[present], views[present]] = np.nanmean(iou[present], 1)
        fg_pred, fg_true = (predicted > 0).flatten(1), (truth > 0).flatten(1)
        both = (fg_pred & fg_true).sum(1).cpu().numpy()
        either = (fg_pred | fg_true).sum(1).cpu().numpy()
        self.foreground_iou[objects, views] = np.where(either > 0, both / np.maximum(either, 1), 1.0)

    def result(self) -> PixelStats:
        return PixelStats(*self.sums, self.image_miou, self.foreground_iou)


def _labels(batch, classes: PartClasses, device: torch.device) -> torch.Tensor:
    """A batch's part masks -> global class ids [B, S, S] (`dataset.PartClasses`)."""
    return torch.from_numpy(classes.to_global(batch.mask.numpy(), batch.category.numpy())).to(device)


class _Inputs:
    """What each model reads from renders: the frozen backbone's spatial features (without gradients) or
    the pixels."""

    def __init__(self, backbone, transform):
        self.backbone, self.transform = backbone, transform

    def features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return spatial_features(self.backbone, self.transform(images).to(self.backbone.device))

    def __call__(self, images: torch.Tensor, kind: str) -> torch.Tensor:
        return unit_pixels(images, self.backbone.device) if kind == "unet" else self.features(images)


class TrainBatches:
    """The `train` views as the models read them, in one seeded sequence of `steps` batches shared by every
    model (same data, same steps). Held in memory (pixels, class ids and the frozen features, computed
    once) when they need at most `cache_mb`, else read from disk for each batch."""

    def __init__(self, train, classes: PartClasses, inputs: _Inputs, cfg, feature_shape: tuple[int, int],
                 workers: int = 0):
        s = cfg.segmentation
        generator = torch.Generator().manual_seed(s.seed)
        self.order = torch.randint(len(train), (s.steps, s.batch_size), generator=generator)
        self.train, self.classes, self.inputs, self.workers = train, classes, inputs, workers
        size = int(train[0].mask.shape[-1])
        channels, grid = feature_shape
        self.megabytes = len(train) * (4 * size * size + 4 * channels * grid * grid) / 2 ** 20
        self.cached = self.megabytes <= s.cache_mb
        if self.cached:
            images, labels, features = [], [], []
            loader = torch.utils.data.DataLoader(train, batch_size=256, collate_fn=collate_views, num_workers=workers)
            for batch in loader:
                images.append(batch.image)
                labels.append(_labels(batch, classes, torch.device("cpu")).to(torch.int16))
                features.append(inputs.features(batch.image).cpu())
            self.images, self.labels, self.features = torch.cat(images), torch.cat(labels), torch.cat(features)

    def __call__(self, kind: str):
        """An iterator of (model input, class ids [B, S, S]) over the sequence, for a model of `kind`."""
        device = self.inputs.backbone.device
        if self.cached:
            for index in self.order:
                x = unit_pixels(self.images[index], device) if kind == "unet" else self.features[index].to(device)
                yield x, self.labels[index].to(device).long()
            return
        loader = torch.utils.data.DataLoader(self.train, batch_size=self.order.shape[1], collate_fn=collate_views,
                                             sampler=self.order.reshape(-1).tolist(), num_workers=self.workers)
        for batch in loader:
            yield self.inputs(batch.image, kind), _labels(batch, self.classes, device)


def build_segmenter(kind: str, feature_channels: int, grid: int, size: int, n_classes: int, cfg) -> nn.Module:
    """One of the three models of notebook 11 (`cfg`: config.SegmentationConfig), seeded."""
    torch.manual_seed(cfg.seed)
    if kind == "decoder":
        return FeatureDecoder(feature_channels, grid, size, n_classes, cfg.channels)
    if kind == "linear":
        return LinearPatchProbe(feature_channels, size, n_classes)
    if kind == "unet":
        return SmallUNet(n_classes, cfg.unet_channels, cfg.unet_depth)
    raise ValueError(f"segmentation model {kind!r}: expected one of {sorted(LABELS)}")


@dataclass
class SegmentationRun:
    models: dict  # kind -> trained nn.Module
    curves: dict  # kind -> train.TrainResult (train loss per step, validation cross-entropy)
    stats: dict  # kind or baseline -> PixelStats on every view of the test objects
    rows: dict  # kind or baseline -> its results row
    results: object  # the results table after every row
    classes: PartClasses
    views: object  # views table
    canonical: str
    test: object  # dataset.ViewImages(masks=True) of the test objects, every view
    backbone: str
    grid: int  # side of the backbone's feature grid
    size: int  # side of the masks
    inputs: object = None  # _Inputs (the frozen backbone), for the examples
    prior: torch.Tensor | None = None  # [S, S] the location prior's fixed mask
    largest_part: np.ndarray | None = None  # [C + 1] class id of each category's largest part, then of the overall

    def view_groups(self) -> dict[str, np.ndarray]:
        """Boolean masks over the views: canonical, the other grid views, ood, all grid views."""
        kind = self.views.kind.to_numpy()
        canonical = (self.views.view_id == self.canonical).to_numpy()
        return {"grid": kind == "grid", "canonical": canonical, "other_grid": (kind == "grid") & ~canonical,
                "ood": kind != "grid"}

    def by_view(self, kinds: list[str] | None = None) -> dict[str, "pd.DataFrame"]:
        """Per view: mean per-image mIoU over test objects and its standard error, the dataset-level mIoU,
        the foreground IoU."""
        out = {}
        for kind in kinds or list(self.models):
            st = self.stats[kind]
            frame = self.views[["view_id", "azimuth_deg", "elevation_deg", "kind"]].copy().reset_index(drop=True)
            frame["image_miou"] = np.nanmean(st.image_miou, 0)
            frame["stderr"] = np.nanstd(st.image_miou, 0, ddof=1) / np.sqrt(np.isfinite(st.image_miou).sum(0))
            with np.errstate(invalid="ignore"):  # a view with no part pixels at all: NaN
                frame["miou"] = np.nanmean(iou_from_counts(st.correct, st.truth, st.predicted)[:, 1:], 1)
            frame["foreground_iou"] = st.foreground_iou.mean(0)
            out[kind] = frame
        return out


def train_segmenter(kind: str, cfg, batches: TrainBatches, val_batch, n_classes: int, shape: tuple[int, int],
                    size: int, progress: bool = True):
    """Train one model on the shared sequence of train batches; validation cross-entropy on a fixed batch
    of `val` views (inputs, class ids), the best weights kept."""
    s = cfg.segmentation
    model = build_segmenter(kind, *shape, size, n_classes, s).to(batches.inputs.backbone.device)
    stream = batches(kind)
    val_inputs, val_labels = batches.inputs(val_batch[0], kind), val_batch[1]

    def loss_at_step(step: int) -> torch.Tensor:
        model.train()
        x, labels = next(stream)
        return segmentation_loss(model(x), labels)

    def validate() -> float:
        model.eval()
        return float(segmentation_loss(model(val_inputs), val_labels))

    lr = s.unet_lr if kind == "unet" else s.lr
    result = optimise(((n, p) for n, p in model.named_parameters() if p.requires_grad), loss_at_step, s.steps, lr,
                      warmup_steps=min(50, s.steps // 10), desc=f"segmentation, {LABELS[kind]}", progress=progress,
                      validate=validate, validate_every=s.validate_every, model=model)
    return model.eval(), result


def _baseline_statistics(batches: TrainBatches, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """From the train views' masks: the most frequent class at each pixel (the location prior) and each
    category's largest part by pixels (the true-category baseline); the most frequent part class overall
    is the last entry (the foreground-only baseline)."""
    classes = batches.classes
    counts = torch.zeros(classes.n_classes, size * size, dtype=torch.int64)

    def add(labels: torch.Tensor) -> None:
        labels = labels.reshape(len(labels), -1).long()
        counts.scatter_add_(0, labels, torch.ones_like(labels))

    if batches.cached:
        for chunk in batches.labels.split(1024):
            add(chunk)
    else:
        for batch in torch.utils.data.DataLoader(batches.train, batch_size=256, collate_fn=collate_views,
                                                 num_workers=batches.workers):
            add(_labels(batch, classes, torch.device("cpu")))
    totals = counts.sum(1).numpy()
    parts = [np.arange(1, classes.n_classes)[classes.table.category.to_numpy() == c] for c in classes.category_names]
    largest = np.array([p[np.argmax(totals[p])] if len(p) else 0 for p in parts] + [1 + np.argmax(totals[1:])])
    return counts.argmax(0).reshape(size, size), largest


@torch.no_grad()
def evaluate(run: SegmentationRun, batch_size: int = 256, workers: int = 0) -> dict[str, PixelStats]:
    """Every model and baseline on every view of the test objects, in one pass over the images."""
    device = run.inputs.backbone.device
    data = run.test
    names = list(run.models) + list(BASELINES)
    accumulators = {k: _StatsAccumulator(data.n_objects, data.n_views, run.classes.n_classes) for k in names}
    largest = torch.as_tensor(run.largest_part, device=device)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, collate_fn=collate_views, num_workers=workers)
    for batch in loader:
        truth = _labels(batch, run.classes, device)
        features = run.inputs.features(batch.image)
        # max().indices: argmax over the class axis of [B, K, S, S] is a strided reduction, twice as slow
        predictions = {k: m(run.inputs(batch.image, k) if k == "unet" else features).max(1).indices
                       for k, m in run.models.items()}
        predictions["prior"] = run.prior.to(device).expand_as(truth)
        predictions["foreground"] = torch.where(truth > 0, largest[-1], 0)
        predictions["category"] = torch.where(truth > 0, largest[batch.category.to(device)][:, None, None], 0)
        objects, views = batch.object_index.numpy(), batch.view_index.numpy()
        for k, predicted in predictions.items():
            accumulators[k].add(predicted, truth, objects, views)
    return {k: a.result() for k, a in accumulators.items()}


def _row(run: SegmentationRun, stats: PixelStats) -> dict:
    groups = run.view_groups()
    return {"seg_miou": stats.miou(groups["grid"]), "seg_pixel_accuracy": stats.pixel_accuracy(groups["grid"]),
            "seg_foreground_iou": float(stats.foreground_iou[:, groups["grid"]].mean()),
            "seg_miou_canonical": stats.miou(groups["canonical"]),
            "seg_miou_other_grid": stats.miou(groups["other_grid"]),
            "seg_miou_ood": stats.miou(groups["ood"]) if groups["ood"].any() else float("nan"),
            "seg_foreground_iou_ood": (float(stats.foreground_iou[:, groups["ood"]].mean()) if groups["ood"].any()
                                       else float("nan")),
            "seg_image_miou": float(np.nanmean(stats.image_miou[:, groups["grid"]])),
            "n_classes": run.classes.n_classes, "feature_grid": run.grid, "mask_size": run.size,
            "n_objects": int(stats.image_miou.shape[0])}


def run_segmentation(opened: OpenedRun, progress: bool = True) -> SegmentationRun:
    """Train the three models on the same batches of `train` grid views, evaluate them and the two
    baselines on every view of the `test` objects, save models and curves, write the results rows."""
    cfg, layout = opened.cfg, opened.layout

    s = cfg.segmentation
    dataset = opened.dataset_fingerprint
    record = opened.backbone_record
    backbone = load_backbone(cfg.backbone, layout)
    views = opened.views.reset_index(drop=True)
    objects = opened.objects
    classes = PartClasses.from_objects(objects[objects.status == "ok"])
    grid_views = views[views.kind == "grid"].view_id.tolist()
    train = ViewImages(layout, ["train"], grid_views, masks=True)
    val = ViewImages(layout, ["val"], grid_views, masks=True)
    test = ViewImages(layout, ["test"], views.view_id.tolist(), masks=True,
                      object_ids=first_objects_per_category(objects, "test", s.test_objects_per_category))
    inputs = _Inputs(backbone, InputTransform.for_model(backbone.model))
    size = int(train[0].mask.shape[-1])
    probe = spatial_features(backbone, inputs.transform(train[0].image[None]).to(backbone.device))
    shape = (int(probe.shape[1]), int(probe.shape[-1]))
    workers = min(cfg.embed.loader_workers, 2)
    val_items = sorted(np.random.default_rng(s.seed).choice(len(val), size=min(len(val), s.val_views),
                                                            replace=False).tolist())
    val_images = collate_views([val[i] for i in val_items])
    val_batch = (val_images.image, _labels(val_images, classes, backbone.device))
    batches = TrainBatches(train, classes, inputs, cfg, shape, workers)
    prior, largest = _baseline_statistics(batches, size)
    run = SegmentationRun({}, {}, {}, {}, None, classes, views,
                          canonical_view_id(views, cfg.backbone.pretrain.canonical_view), test, record["name"],
                          shape[1], size, inputs, prior, largest)
    for kind in METHODS:
        run.models[kind], run.curves[kind] = train_segmenter(kind, cfg, batches, val_batch, classes.n_classes, shape,
                                                             size, progress)
    run.stats = evaluate(run, workers=workers)
    provenance = {"dataset_fingerprint": dataset, "backbone_identity": record["identity"],
                  "embed_settings": embed_settings(cfg)}
    for kind in list(METHODS) + list(BASELINES):
        run.rows[kind] = _row(run, run.stats[kind])
    for kind, method in METHODS.items():
        curve = run.curves[kind]
        run.rows[kind] |= {"train_loss_final": float(np.mean(curve.losses[-20:])), "best_val_step": curve.best_step,
                           "train_seconds": curve.seconds,
                           "trainable_parameters": sum(p.numel() for p in run.models[kind].parameters())}
        atomic_torch_save({"config": asdict(s), "kind": kind, "n_classes": classes.n_classes,
                           "feature_shape": shape, "size": size, "state_dict": run.models[kind].state_dict()},
                          layout.model_weights(method))
        atomic_write_json(layout.training_curves(method), {"losses": curve.losses, "val_steps": curve.val_steps,
                                                          "val_losses": curve.val_losses})
        run.results = write_result(layout, method, run.rows[kind], record["name"], provenance, asdict(s))
    for kind, method in BASELINE_METHODS.items():
        run.results = write_result(layout, method, run.rows[kind], record["name"], provenance, asdict(s))
    return run


# ----------------------------------------------------------------------------- tables, examples, findings

def names(run: SegmentationRun) -> dict[str, str]:
    """Display name of every model and baseline."""
    return {**{k: LABELS[k] for k in run.models}, **{k: f"baseline: {v}" for k, v in BASELINES.items()}}


def segmentation_table(run: SegmentationRun) -> "pd.DataFrame":
    columns = {"seg_miou": "part mIoU", "seg_pixel_accuracy": "pixel accuracy", "seg_foreground_iou": "foreground IoU",
               "seg_miou_canonical": "mIoU canonical", "seg_miou_other_grid": "mIoU other grid",
               "seg_miou_ood": "mIoU ood", "seg_foreground_iou_ood": "foreground IoU ood",
               "train_loss_final": "final train loss", "train_seconds": "train s"}
    label = names(run)
    return pd.DataFrame({label[k]: {name: row.get(c, np.nan) for c, name in columns.items()}
                         for k, row in run.rows.items()}).T


def per_part_iou(run: SegmentationRun) -> "pd.DataFrame":
    """IoU of every (category, part) class over the grid views of the test objects, per model and baseline."""
    table = run.classes.table[["category", "part", "part_name"]].copy()
    grid = run.view_groups()["grid"]
    for kind, label in names(run).items():
        table[label] = run.stats[kind].iou(grid)[1:]
    return table


@torch.no_grad()
def segmentation_examples(run: SegmentationRun, objects: int = 4) -> tuple[list[str], dict[str, np.ndarray]]:
    """For a few test objects (one per category, in order) and three views (canonical, the grid view
    opposite it, an ood view): the render [n, S, S, 3] and the true and predicted class ids [n, S, S]."""
    views = run.views
    picked = example_views(views, run.canonical)
    first = run.test.objects.drop_duplicates("category").index[:objects]
    batch = collate_views([run.test[run.test.index(int(o), v)] for o in first for v in picked])
    out = {"render": batch.image.numpy(), "truth": _labels(batch, run.classes, torch.device("cpu")).numpy()}
    for kind, model in run.models.items():
        out[LABELS[kind]] = model(run.inputs(batch.image, kind)).argmax(1).cpu().numpy()
    labels = [f"{run.test.objects.object_id[int(o)]}\n{views.view_id[v]}" for o in first for v in picked]
    return labels, out


def _paired_view_gap(image_miou: np.ndarray, groups: dict[str, np.ndarray]) -> tuple[float, float]:
    """Per object, other grid views' mean per-image mIoU minus the canonical view's: mean and standard error."""
    return paired_view_gap(image_miou, int(np.flatnonzero(groups["canonical"])[0]), groups["other_grid"])


def describe_segmentation(run: SegmentationRun) -> str:
    """The issue's findings (markdown), every sentence from the numbers."""
    r = run.rows
    decoder, linear, unet = r["decoder"]["seg_miou"], r["linear"]["seg_miou"], r["unet"]["seg_miou"]
    prior, foreground, category = (r[k]["seg_miou"] for k in ("prior", "foreground", "category"))
    floor = max(prior, foreground)
    lines = [
        f"- **Frozen features against a UNet from scratch:** part mIoU {decoder:.3f} from the frozen "
        f"{run.grid} x {run.grid} feature grid against {unet:.3f} for the UNet on the pixels (same data, same "
        f"{len(run.curves['decoder'].losses)} steps): the frozen features segment "
        + ("**nearly as well or better**" if decoder >= 0.9 * unet else "**clearly worse**")
        + f" ({decoder / max(unet, 1e-9):.2f}x; the seed's claim was 'nearly as well'). Foreground IoU "
        f"{r['decoder']['seg_foreground_iou']:.3f} against {r['unet']['seg_foreground_iou']:.3f}: "
        + ("the UNet draws the silhouette better, the features know the category and parts better."
           if r["unet"]["seg_foreground_iou"] > r["decoder"]["seg_foreground_iou"] and decoder > unet else
           "the same order as mIoU." if (r["unet"]["seg_foreground_iou"] > r["decoder"]["seg_foreground_iou"])
           == (unet > decoder) else "the opposite order to mIoU."),
        f"- **Against the baselines:** a constant location prior reaches {prior:.3f} and the true silhouette "
        f"with one class (foreground only) {foreground:.3f}: the decoder is "
        + (f"**clearly above both** (+{decoder - floor:.3f}), so the {run.grid} x {run.grid} grid holds part "
           "information" if decoder > floor + 0.05 else
           f"**not clearly above** them ({decoder - floor:+.3f}): this grid is too coarse for parts")
        + f". The linear patch probe (the floor of probing) reaches {linear:.3f}. A stronger bar, the true "
        f"silhouette *and* true category filled with the category's largest part, reaches {category:.3f}: the "
        + (f"decoder is above it (+{decoder - category:.3f})." if decoder > category else
           f"decoder is below it ({decoder - category:+.3f})"
           + (", so what it gets right is mostly the category and the largest part, not the small parts (next line)."
              if decoder > floor + 0.05 else ".")),
    ]
    part_iou = per_part_iou(run)
    largest = set(run.largest_part[:-1].tolist())
    small = ~part_iou.index.map(lambda i: i + 1 in largest).to_numpy(bool)
    lines.append("- **Small parts** (every part but each category's largest): mean IoU "
                 + ", ".join(f"{np.nanmean(part_iou[LABELS[k]].to_numpy()[small]):.3f} ({LABELS[k]})"
                             for k in run.models)
                 + ".")
    groups = run.view_groups()
    for kind in run.models:
        gap, se = _paired_view_gap(run.stats[kind].image_miou, groups)
        verdict = ("the canonical view is segmented **better**" if gap < -2 * se else
                   "the canonical view is segmented **worse**" if gap > 2 * se else
                   "no difference beyond two standard errors")
        lines.append(f"- **Per view, {LABELS[kind]}:** mIoU canonical {r[kind]['seg_miou_canonical']:.3f}, other grid "
                     f"{r[kind]['seg_miou_other_grid']:.3f}, ood {r[kind]['seg_miou_ood']:.3f}; per object, other grid "
                     f"minus canonical per-image mIoU {gap:+.3f} ± {se:.3f}: {verdict}.")
    grid = groups["grid"]
    elevations = run.views.elevation_deg.to_numpy()
    levels = sorted(set(elevations[grid]), reverse=True)
    by_elevation = {k: [float(np.nanmean(run.stats[k].image_miou[:, grid & (elevations == e)])) for e in levels]
                    for k in ("decoder", "unet")}
    lines.append("- **By elevation** (mean per-image mIoU over the grid views at each elevation; decoder / UNet): "
                 + ", ".join(f"{e:g}°: {d:.3f} / {u:.3f}" for e, d, u in zip(levels, *by_elevation.values()))
                 + (f". The decoder's spread across elevations "
                    f"({max(by_elevation['decoder']) - min(by_elevation['decoder']):.3f})"
                    f" is "
                    f"{'larger' if np.ptp(by_elevation['decoder']) > np.ptp(by_elevation['unet']) else 'not larger'}"
                    f" than the UNet's ({np.ptp(by_elevation['unet']):.3f})." if len(levels) > 1 else "."))
    clip_gap, unet_gap = (_paired_view_gap(run.stats[k].image_miou, groups)[0] for k in ("decoder", "unet"))
    lines.append(f"- **Is a view effect CLIP's?** Other-grid minus canonical per-image mIoU is {clip_gap:+.3f} from "
                 f"the frozen features and {unet_gap:+.3f} for the UNet, which never saw a canonical view: the "
                 "views differ in how hard they are for any model, so only the difference "
                 f"({clip_gap - unet_gap:+.3f}) can be the backbone's.")
    return "\n".join(lines)
