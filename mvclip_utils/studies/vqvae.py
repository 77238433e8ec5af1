"""VQ-VAE decoding from frozen CLIP spatial features (notebook 10; the seed write-up
`clip-feature-probes.txt`, "Training a decoder using CLIP's features").

A VQ-VAE (van den Oord et al. 2017) whose encoder is either the **frozen backbone's spatial
features** (the ViT patch-token grid, or a ResNet's map before the attention pool;
`backbone.spatial_features`) followed by a 1x1 projection, or **its own trainable conv
encoder** reaching the same code grid (the seed's comparison). Codes are quantised against
an EMA codebook; a transposed-conv decoder maps the code grid back to the image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..core.cameras import canonical_view_id, example_views
from ..core.runs import atomic_torch_save, atomic_write_json
from ..core.train import optimise
from ..data.dataset import ViewImages, collate_views, first_objects_per_category, load_views
from ..evaluation.metrics import paired_view_gap
from ..evaluation.results import write_result
from ..models.backbone import (
    InputTransform,
    load_backbone,
    spatial_features,
    unit_pixels,
)
from ..models.embed import embed_settings
from ..models.opened_run import OpenedRun


class EMACodebook(nn.Module):
    """Vector quantisation with a codebook updated by exponential moving averages (the VQ-VAE
    paper's appendix): per code i, with n_i the vectors assigned to it in the batch,

        N_i <- decay * N_i + (1 - decay) * n_i
        m_i <- decay * m_i + (1 - decay) * sum of the vectors assigned to i
        e_i <- m_i / N~_i,  N~_i = (N_i + eps) / (sum N + K eps) * sum N   (Laplace smoothing)

    Only in training mode. The quantised output passes gradients straight through to the
    encoder (z + sg(e - z))."""

    def __init__(self, size: int, width: int, decay: float = 0.99, eps: float = 1e-5, seed: int = 0,
                 restart_below: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        embedding = torch.randn(size, width, generator=g)
        # Codes whose EMA count falls below this are moved onto random vectors of the batch (dead-code
        # restarts): without them the own-encoder VQ-VAE used ~11 of 128 codes. 0 = never.
        self.decay, self.eps, self.restart_below = decay, eps, restart_below
        self._restarts = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embedding_sum", embedding.clone())
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def initialise(self, z: torch.Tensor) -> None:
        """The codebook set to random vectors of the first training batch [N, C]: a random Gaussian
        codebook far from the encoder's outputs collapses onto one or two codes."""
        g = torch.Generator(device=z.device).manual_seed(0)
        picked = z[torch.randint(len(z), (self.size,), generator=g, device=z.device)]
        self.embedding.copy_(picked)
        self.embedding_sum.copy_(picked)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @property
    def size(self) -> int:
        return self.embedding.shape[0]

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """[N, C] vectors -> [N] index of the nearest code (squared Euclidean distance)."""
        distance = (z * z).sum(1, keepdim=True) - 2 * z @ self.embedding.T + (self.embedding ** 2).sum(1)
        return distance.argmin(1)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step from vectors [N, C] and their codes [N]."""
        onehot = F.one_hot(codes, self.size).type_as(z)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(onehot.T @ z, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        dead = self.cluster_size < self.restart_below
        if dead.any():
            picked = z[torch.randint(len(z), (int(dead.sum()),), generator=self._restarts).to(z.device)]
            self.embedding[dead] = picked
            self.embedding_sum[dead] = picked
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, C, h, w] -> (quantised with straight-through gradient, codes [B, h, w], commitment loss)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        if self.training and not bool(self.initialised):
            self.initialise(flat.detach())
        codes = self.assign(flat.detach())
        if self.training:
            self.update(flat.detach(), codes)
        quantised = self.embedding[codes].reshape(b, h, w, c).permute(0, 3, 1, 2)
        commitment = F.mse_loss(z, quantised.detach())
        return z + (quantised - z).detach(), codes.reshape(b, h, w), commitment

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, h, w] -> code vectors [B, C, h, w]."""
        return self.embedding[codes].permute(0, 3, 1, 2)


def _upsampling_stages(grid: int, size: int) -> int:
    return max(0, math.ceil(math.log2(size / grid)))


class Decoder(nn.Module):
    """Code grid [B, C, h, w] -> image [B, 3, S, S] (clamped to [0, 1] in eval mode): two 3x3 convs at the code
    grid, then transposed convs that double the side (halving the channels after the first, down to 16; cheap
    enough for a CPU), and a resize to S when S / h is not a power of two."""

    def __init__(self, width: int, grid: int, size: int, channels: int = 64, out_channels: int = 3,
                 head_kernel: int = 3):
        super().__init__()
        c = channels
        self.image = out_channels == 3  # else logits (notebook 11's segmentation decoder): never clamped
        layers: list[nn.Module] = [nn.Conv2d(width, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                                   nn.ReLU()]
        for stage in range(_upsampling_stages(grid, size)):
            out = c if stage == 0 else max(16, c // 2)
            layers += [nn.ConvTranspose2d(c, out, 4, stride=2, padding=1), nn.ReLU()]
            c = out
        # Segmentation uses a 1x1 head: a 3x3 conv to ~50 classes at full size was most of the decoder's time.
        layers.append(nn.Conv2d(c, out_channels, head_kernel, padding=head_kernel // 2))
        self.net, self.size = nn.Sequential(*layers), size

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.net(codes)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        # Linear in training: a sigmoid saturated on the white backgrounds and stopped learning.
        return x if self.training or not self.image else x.clamp(0, 1)


class ConvEncoder(nn.Module):
    """The seed's comparison: a trainable conv encoder from the image [B, 3, S, S] (in [0, 1]) to the
    same code grid as the backbone's [B, width, h, w]: strided convs that halve the side and double
    the channels (from 16 up to `channels`), the decoder's mirror."""

    def __init__(self, width: int, grid: int, size: int, channels: int = 64):
        super().__init__()
        stages = _upsampling_stages(grid, size)
        c = max(16, channels // 2 ** max(0, stages - 1))
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.ReLU()]
        for _ in range(stages):
            out = min(channels, c * 2)
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU()]
            c = out
        layers += [nn.AdaptiveAvgPool2d(grid), nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, width, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class VQVAE(nn.Module):
    """encoder (frozen CLIP features + 1x1 projection, or a ConvEncoder) -> EMA codebook -> Decoder."""

    def __init__(self, encoder: str, feature_channels: int, grid: int, size: int, codebook_size: int,
                 code_width: int, decay: float = 0.99, channels: int = 64, seed: int = 0,
                 restart_below: float = 0.0):
        super().__init__()
        if encoder not in ("clip", "conv"):
            raise ValueError(f"encoder {encoder!r}: expected 'clip' (frozen spatial features) or 'conv' (trainable)")
        torch.manual_seed(seed)
        self.encoder_kind = encoder
        self.encoder = (nn.Conv2d(feature_channels, code_width, 1) if encoder == "clip"
                        else ConvEncoder(code_width, grid, size, channels))
        self.codebook = EMACodebook(codebook_size, code_width, decay, seed=seed, restart_below=restart_below)
        self.decoder = Decoder(code_width, grid, size, channels)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """inputs: CLIP spatial features [B, F, h, w] or images [B, 3, S, S] -> (reconstruction, codes,
        commitment loss)."""
        quantised, codes, commitment = self.codebook(self.encoder(inputs))
        return self.decoder(quantised), codes, commitment


def vqvae_loss(reconstruction: torch.Tensor, target: torch.Tensor, commitment: torch.Tensor,
               beta: float = 0.25) -> torch.Tensor:
    """Reconstruction MSE + beta x commitment (the codebook itself follows the EMA, not a loss)."""
    return F.mse_loss(reconstruction, target) + beta * commitment


def psnr(mse: np.ndarray | float) -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB of images in [0, 1]."""
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-12))


def codebook_usage(codes: np.ndarray, size: int) -> dict[str, float]:
    """Perplexity of the code distribution (exp of its entropy; `size` if uniform) and dead codes."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=size).astype(float)
    p = counts / counts.sum()
    nonzero = p[p > 0]
    return {"perplexity": float(np.exp(-(nonzero * np.log(nonzero)).sum())), "dead_codes": int((counts == 0).sum()),
            "used_codes": int((counts > 0).sum())}


@dataclass
class DecodedSamples:
    images: torch.Tensor  # [n, 3, S, S]
    codes: torch.Tensor  # [n, h, w]


@torch.no_grad()
def sample_from_codes(model: VQVAE, frequencies: np.ndarray, grid: int, n: int, seed: int = 0) -> DecodedSamples:
    """Decode code grids drawn position by position from the codes' empirical frequencies (the seed
    showed decodings of random codes; a learned prior such as a PixelCNN is beyond this study)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.as_tensor(frequencies, dtype=torch.float64)
    codes = torch.multinomial(p / p.sum(), n * grid * grid, replacement=True, generator=g).reshape(n, grid, grid)
    return DecodedSamples(model.decoder(model.codebook.lookup(codes)), codes)


# ----------------------------------------------------------------------------- notebook 10

METHODS = {"clip": "vqvae_clip_features", "conv": "vqvae_own_encoder"}  # their results rows
LABELS = {"clip": "from frozen CLIP features", "conv": "own conv encoder"}


@dataclass
class DecodingRun:
    models: dict  # kind -> VQVAE
    curves: dict  # kind -> train.TrainResult (train loss per step, validation MSE)
    mse: dict  # kind -> [N test objects, V views] reconstruction MSE per image
    usage: dict  # kind -> codebook_usage on the test views
    frequencies: dict  # kind -> [codebook size] code counts on the test views
    rows: dict  # kind -> its results row
    results: object  # the results table after both rows
    views: object  # views table
    canonical: str
    test: object  # dataset.ViewImages of the test objects, every view
    backbone: str
    grid: int  # side of the code grid
    size: int  # side of the decoded image
    encoder: object = None  # the frozen backbone.Backbone (for reconstructing examples)

    def by_view(self) -> dict[str, "pd.DataFrame"]:
        """Per view: mean reconstruction MSE over test objects, its standard error and the PSNR."""
        out = {}
        for kind, mse in self.mse.items():
            frame = self.views[["view_id", "azimuth_deg", "elevation_deg", "kind"]].copy().reset_index(drop=True)
            frame["mse"], frame["stderr"] = mse.mean(0), mse.std(0, ddof=1) / np.sqrt(len(mse))
            frame["psnr"] = psnr(frame["mse"].to_numpy())
            out[kind] = frame
        return out


def _encoder_inputs(kind: str, backbone, transform, images: torch.Tensor) -> torch.Tensor:
    if kind == "conv":
        return unit_pixels(images, backbone.device)
    with torch.no_grad():  # the backbone stays frozen
        return spatial_features(backbone, transform(images).to(backbone.device))


@torch.no_grad()
def reconstruct(model: VQVAE, kind: str, backbone, transform, data, batch_size: int = 256,
                workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image MSE [N, V] and codes [N, V, h, w] of a uint8 `dataset.ViewImages`, in its order."""
    model.eval()
    errors, codes = [], []
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, collate_fn=collate_views, num_workers=workers)
    for batch in loader:
        reconstruction, c, _ = model(_encoder_inputs(kind, backbone, transform, batch.image))
        target = unit_pixels(batch.image, backbone.device)
        errors.append(((reconstruction - target) ** 2).mean((1, 2, 3)).cpu())
        codes.append(c.cpu())
    mse = torch.cat(errors).reshape(data.n_objects, data.n_views).numpy()
    return mse, torch.cat(codes).reshape(data.n_objects, data.n_views, *codes[0].shape[1:]).numpy()


def train_decoder(kind: str, cfg, layout, backbone, progress: bool = True) -> tuple[VQVAE, object]:
    """A VQ-VAE on the `train` objects' grid views, validation MSE on the `val` objects' (a fixed subset)."""
    d = cfg.decoding
    views = load_views(layout)
    grid_views = views[views.kind == "grid"].view_id.tolist()
    train = ViewImages(layout, ["train"], grid_views)
    val = ViewImages(layout, ["val"], grid_views)
    transform = InputTransform.for_model(backbone.model)
    size = int(train[0].image.shape[0])
    with torch.no_grad():
        probe = spatial_features(backbone, transform(train[0].image[None]).to(backbone.device))
    feature_channels, grid = int(probe.shape[1]), int(probe.shape[-1])
    model = VQVAE(kind, feature_channels, grid, size, d.codebook_size, d.code_width, d.decay, d.channels,
                  d.seed, d.restart_below).to(backbone.device)
    generator = torch.Generator().manual_seed(d.seed)
    workers = min(cfg.embed.loader_workers, 2)
    batches = iter(torch.utils.data.DataLoader(
        train, batch_size=d.batch_size, collate_fn=collate_views, num_workers=workers,
        sampler=torch.utils.data.RandomSampler(train, num_samples=d.batch_size * d.steps, generator=generator)))
    rng = np.random.default_rng(d.seed)
    val_items = sorted(rng.choice(len(val), size=min(len(val), 512), replace=False).tolist())
    val_batch = collate_views([val[i] for i in val_items]).image
    val_inputs, val_targets = (_encoder_inputs(kind, backbone, transform, val_batch),
                               unit_pixels(val_batch, backbone.device))

    def loss_at_step(step: int) -> torch.Tensor:
        model.train()
        images = next(batches).image
        reconstruction, _, commitment = model(_encoder_inputs(kind, backbone, transform, images))
        return vqvae_loss(reconstruction, unit_pixels(images, backbone.device), commitment, d.commitment)

    def validate() -> float:
        model.eval()
        return float(F.mse_loss(model(val_inputs)[0], val_targets))

    result = optimise(((n, p) for n, p in model.named_parameters() if p.requires_grad), loss_at_step, d.steps, d.lr,
                      warmup_steps=min(50, d.steps // 10), desc=f"VQ-VAE, {LABELS[kind]}", progress=progress,
                      validate=validate, validate_every=d.validate_every)
    return model.eval(), result


def run_decoding(opened: OpenedRun, progress: bool = True) -> DecodingRun:
    """Train both VQ-VAEs with the same code grid, codebook and steps; evaluate every view of the
    `test` objects; save the models and curves; write both results rows."""
    cfg, layout = opened.cfg, opened.layout

    dataset = opened.dataset_fingerprint
    record = opened.backbone_record
    backbone = load_backbone(cfg.backbone, layout)
    views = opened.views
    canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
    evaluated = first_objects_per_category(opened.objects, "test", cfg.decoding.test_objects_per_category)
    test = ViewImages(layout, ["test"], views.view_id.tolist(), object_ids=evaluated)
    transform = InputTransform.for_model(backbone.model)
    provenance = {"dataset_fingerprint": dataset, "backbone_identity": record["identity"],
                  "embed_settings": embed_settings(cfg)}
    grid_mask = (views.kind == "grid").to_numpy()
    c = views.view_id.tolist().index(canonical)
    other = grid_mask.copy()
    other[c] = False
    run = DecodingRun({}, {}, {}, {}, {}, {}, None, views, canonical, test, record["name"], 0, 0, backbone)
    for kind, method in METHODS.items():
        model, curve = train_decoder(kind, cfg, layout, backbone, progress)
        mse, codes = reconstruct(model, kind, backbone, transform, test, workers=min(cfg.embed.loader_workers, 2))
        usage = codebook_usage(codes[:, grid_mask], model.codebook.size)
        row = {"pixel_mse": float(mse[:, grid_mask].mean()),
               "pixel_psnr": float(psnr(mse[:, grid_mask].mean())),
               "pixel_mse_canonical": float(mse[:, c].mean()),
               "pixel_mse_other_grid": float(mse[:, other].mean()),
               "pixel_mse_ood": float(mse[:, ~grid_mask].mean()) if (~grid_mask).any() else float("nan"),
               "codebook_perplexity": usage["perplexity"], "dead_codes": usage["dead_codes"],
               "train_loss_final": float(np.mean(curve.losses[-20:])), "train_seconds": curve.seconds,
               "code_grid": int(codes.shape[-1]), "decoded_size": model.decoder.size,
               "n_objects": int(mse.shape[0])}
        atomic_torch_save({"config": asdict(cfg.decoding), "kind": kind, "state_dict": model.state_dict()},
                          layout.model_weights(method))
        atomic_write_json(layout.training_curves(method), {"losses": curve.losses, "val_steps": curve.val_steps,
                                                          "val_losses": curve.val_losses})
        run.results = write_result(layout, method, row, record["name"], provenance, asdict(cfg.decoding))
        run.models[kind], run.curves[kind], run.mse[kind], run.usage[kind] = model, curve, mse, usage
        run.frequencies[kind] = np.bincount(codes[:, grid_mask].ravel(), minlength=model.codebook.size)
        run.rows[kind] = row
        run.grid, run.size = int(codes.shape[-1]), model.decoder.size
    return run


def decoding_table(run: DecodingRun) -> "pd.DataFrame":
    columns = {"pixel_mse": "MSE (grid views)", "pixel_psnr": "PSNR dB (grid views)",
               "pixel_mse_canonical": "MSE canonical", "pixel_mse_other_grid": "MSE other grid",
               "pixel_mse_ood": "MSE ood", "train_loss_final": "final train loss",
               "codebook_perplexity": "codebook perplexity", "dead_codes": "dead codes"}
    return pd.DataFrame({LABELS[k]: {label: row[c] for c, label in columns.items()} for k, row in run.rows.items()}).T


def describe_decoding(run: DecodingRun) -> str:
    """The issue's findings (markdown), every sentence from the numbers."""
    clip, own = run.rows["clip"], run.rows["conv"]
    ratio = clip["pixel_mse"] / own["pixel_mse"]
    lines = [f"- **Blurrier from CLIP features?** Test MSE {clip['pixel_mse']:.4f} "
             f"({clip['pixel_psnr']:.1f} dB) from the frozen features against {own['pixel_mse']:.4f} "
             f"({own['pixel_psnr']:.1f} dB) with its own encoder: "
             + (f"{ratio:.1f}x the error, so yes" if ratio > 1.1 else
                f"{ratio:.2f}x the error, so no" if ratio < 0.9 else f"{ratio:.2f}x, about the same")
             + f" (final train loss {clip['train_loss_final']:.4f} vs {own['train_loss_final']:.4f}; the seed: 1.77 vs "
             "0.13 on its own scale)."]
    for kind, row in run.rows.items():
        grid = (run.views.kind == "grid").to_numpy()
        c = run.views.view_id.tolist().index(run.canonical)
        # per object, other minus canonical MSE: positive = the canonical view decodes better
        gap, se = paired_view_gap(run.mse[kind], c, grid & (np.arange(len(grid)) != c))
        verdict = ("the canonical view is decoded **better**" if gap > 2 * se else
                   "the canonical view is decoded **worse**" if gap < -2 * se else
                   "no difference beyond two standard errors")
        lines.append(f"- **Per view, {LABELS[kind]}:** canonical MSE {row['pixel_mse_canonical']:.4f}, "
                     f"other grid views {row['pixel_mse_other_grid']:.4f}, ood views "
                     f"{row['pixel_mse_ood']:.4f}: {verdict} (other minus canonical {gap:+.4f} ± "
                     f"{se:.4f} per object).")
    view_gap = {k: (run.rows[k]["pixel_mse_other_grid"] - run.rows[k]["pixel_mse_canonical"]) for k in run.rows}
    lines.append(f"- **Is a view effect CLIP's?** The canonical view's advantage (other minus canonical MSE) is "
                 f"{view_gap['clip']:+.4f} from CLIP features and {view_gap['conv']:+.4f} with the own encoder, "
                 f"which never saw a canonical view in pretraining: a difference of "
                 f"{view_gap['clip'] - view_gap['conv']:+.4f}"
                 + (" — the view effect is the images' own, not the backbone's." if
                    abs(view_gap["clip"] - view_gap["conv"]) < 0.25 * max(abs(view_gap["conv"]), 1e-9) else
                    " — the backbone adds a view effect of its own."))
    lines.append(f"- Codebooks: perplexity {clip['codebook_perplexity']:.1f} (CLIP features) and "
                 f"{own['codebook_perplexity']:.1f} (own encoder) of {run.models['clip'].codebook.size} codes; dead "
                 f"codes {clip['dead_codes']} and {own['dead_codes']}.")
    return "\n".join(lines)


@torch.no_grad()
def reconstruction_examples(run: DecodingRun, objects: int = 4) -> tuple[list[str], dict[str, np.ndarray]]:
    """For a few test objects (one per category, in order) and three views (the canonical view, the
    grid view farthest from it, an ood view): the truth and both reconstructions, [n, S, S, 3] each."""
    backbone = run.encoder
    transform = InputTransform.for_model(backbone.model)
    views = run.views.reset_index(drop=True)
    picked = example_views(views, run.canonical)
    first = run.test.objects.drop_duplicates("category").index[:objects]
    items = [run.test[int(o) * run.test.n_views + v] for o in first for v in picked]
    images = torch.stack([i.image for i in items])
    labels = [f"{run.test.objects.object_id[int(o)]}\n{views.view_id[v]}" for o in first for v in picked]
    out = {"truth": images.numpy()}
    for kind, model in run.models.items():
        reconstruction = model(_encoder_inputs(kind, backbone, transform, images))[0]
        out[LABELS[kind]] = (reconstruction.permute(0, 2, 3, 1).clamp(0, 1) * 255).byte().cpu().numpy()
    return labels, out


@torch.no_grad()
def random_code_samples(run: DecodingRun, n: int = 8) -> dict[str, np.ndarray]:
    """Decodings of random code grids (codes drawn from their test-set frequencies), [n, S, S, 3] per model."""
    return {LABELS[k]: (sample_from_codes(m, run.frequencies[k], run.grid, n, seed=0).images
                        .permute(0, 2, 3, 1).clamp(0, 1) * 255).byte().cpu().numpy()
            for k, m in run.models.items()}
