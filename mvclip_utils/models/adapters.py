"""The adapters image-level tuning trains on a frozen CLIP: LoRA on the vision attention (peft) and the
VIFormer, a residual block on the pooled image embedding (OVT's adapter, with one residual ratio in
training and evaluation). `OmniviewCLIP` wraps a backbone with both; saved and loaded as adapter weights only.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..core.runs import atomic_torch_save, file_digest
from ..core.schema import AdapterTuningConfig
from .backbone import Backbone


@dataclass(frozen=True)
class AdapterConfig:
    lora_rank: int = 8  # 0 = no LoRA (the VIFormer-only ablation)
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    viformer_layers: int = 2  # 0 = no VIFormer (the LoRA-only ablation)
    viformer_heads: int = 4
    viformer_ff_mult: int = 4  # feed-forward width / embedding width (public code: 2048 for 512)
    residual_ratio: float = 0.1  # alpha: the same in training and evaluation
    # `step`: f(z) = z + W enc(z) with W at zero, so alpha * f + (1 - alpha) * z = z + alpha W enc(z) and alpha
    # only scales a step from the backbone's embedding; `writeup`: f a full map (W initialised as any
    # linear layer), so the output is the write-up's alpha share of a new representation from the start.
    residual: str = "step"


RESIDUALS = ("step", "writeup")


class VIFormer(nn.Module):
    """`alpha * f(z) + (1 - alpha) * z` with f a small self-attention encoder (2 layers, 4 heads).

    As in the public code, f sees the pooled embedding as a sequence of one token, so its
    self-attention has nothing to attend across: in effect a residual MLP block with
    LayerNorms. f(z) = z + W enc(z) with W starting at zero, so training starts from the
    backbone's own embeddings (the public code started from a random f scaled by alpha).
    """

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, ff_mult: int = 4, alpha: float = 0.1,
                 residual: str = "step"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"VIFormer: embedding width {dim} is not divisible by {heads} heads")
        if residual not in RESIDUALS:
            raise ValueError(f"VIFormer: residual {residual!r} is not one of {', '.join(RESIDUALS)}")
        layer = nn.TransformerEncoderLayer(dim, heads, dim * ff_mult, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        if residual == "step":
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.alpha, self.residual = alpha, residual

    def f(self, z: torch.Tensor) -> torch.Tensor:
        """The new representation: z plus a learnt step (`step`), or a full map of z (`writeup`)."""
        mapped = self.out(self.encoder(z[:, None])[:, 0])
        return z + mapped if self.residual == "step" else mapped

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.f(z) + (1 - self.alpha) * z


class OmniviewCLIP(nn.Module):
    """An open_clip model with LoRA in its image tower and a VIFormer after it."""

    def __init__(self, base: nn.Module, cfg: AdapterConfig = AdapterConfig()):
        super().__init__()
        self.base, self.cfg = base, cfg
        for p in base.parameters():
            p.requires_grad_(False)
        if cfg.lora_rank:
            from peft import LoraConfig, inject_adapter_in_model  # late: heavy, and only LoRA needs it

            if not hasattr(base.visual, "transformer"):
                raise NotImplementedError(f"OVT needs a ViT image tower; {type(base.visual).__name__} has no attention "
                                          "blocks for LoRA")
            inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                               lora_dropout=cfg.lora_dropout, target_modules=["attn"]), base.visual)
            for name, p in base.visual.named_parameters():
                p.requires_grad_("lora_" in name)
        dim = int(base.text_projection.shape[1]) if hasattr(base, "text_projection") else int(base.visual.output_dim)
        self.viformer = (VIFormer(dim, cfg.viformer_layers, cfg.viformer_heads, cfg.viformer_ff_mult,
                                  cfg.residual_ratio, cfg.residual) if cfg.viformer_layers else None)

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
    model = load_adapters(copy.deepcopy(base.model), adapters).to(base.device)
    return replace(base, model=model, name=f"{base.name} + {method}", slug=f"{base.slug}+{method}",
                   identity=f"{base.identity}|{method}:{file_digest(adapters)}")


def adapter_config(cfg: AdapterTuningConfig) -> AdapterConfig:
    return AdapterConfig(lora_rank=cfg.lora_rank, viformer_layers=cfg.viformer_layers,
                         viformer_heads=cfg.viformer_heads, residual_ratio=cfg.residual_ratio,
                         residual=cfg.residual)
