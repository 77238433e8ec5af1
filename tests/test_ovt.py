"""Omniview-Tuning's model: LoRA + VIFormer on any open_clip ViT, adapters saved and loaded exactly."""

import copy
import logging

import open_clip
import pytest
import torch

from mvclip_utils.backbone import Backbone, InputTransform, create_tiny_model
from mvclip_utils.ovt import AdapterConfig, OmniviewCLIP, VIFormer, load_adapters, save_adapters, trainable_parameters, \
    tuned_backbone


def tiny():
    torch.manual_seed(0)
    model, _ = create_tiny_model()
    return model.eval()


def test_lora_on_a_random_vit_b_32_has_the_expected_parameter_count():
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no weights were loaded: intended
    base = open_clip.create_model("ViT-B-32")
    lora_only = OmniviewCLIP(copy.deepcopy(base), AdapterConfig(viformer_layers=0))
    assert trainable_parameters(lora_only)[0] == 442_368  # rank 8 on 12 attention blocks of width 768
    full = OmniviewCLIP(base)
    viformer = sum(p.numel() for p in full.viformer.parameters())
    trainable, total = trainable_parameters(full)
    assert trainable == 442_368 + viformer and total > 150_000_000
    assert all(not p.requires_grad for p in full.base.transformer.parameters())  # the text tower stays frozen


def test_a_fresh_ovt_model_gives_the_backbones_embeddings():
    base = tiny()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = base.encode_image(x)
        torch.testing.assert_close(OmniviewCLIP(copy.deepcopy(base)).encode_image(x), expected)


def test_adapters_round_trip_exactly_and_make_a_backbone(tmp_path):
    base = tiny()
    model = OmniviewCLIP(copy.deepcopy(base))
    with torch.no_grad():  # as if trained: every adapter weight away from its initial value
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        tuned = model.eval().encode_image(x)
        assert not torch.allclose(tuned, base.encode_image(x), atol=1e-3)
    path = tmp_path / "adapters.pt"
    save_adapters(model, path)
    assert path.stat().st_size < 0.3 * 4 * trainable_parameters(model)[1]  # the adapters, not the backbone
    again = load_adapters(copy.deepcopy(base), path)
    with torch.no_grad():
        assert torch.equal(again.encode_image(x), tuned)
        tokens = torch.ones(2, 20, dtype=torch.long)
        torch.testing.assert_close(again.encode_text(tokens), base.encode_text(tokens))  # the text tower untouched
    backbone = Backbone(copy.deepcopy(base), None, None, torch.device("cpu"), False, "tiny", "tiny", "tiny|abc")
    tuned_bb = tuned_backbone(backbone, path)
    assert tuned_bb.slug == "tiny+omniview_tuning" and tuned_bb.identity.startswith("tiny|abc|omniview_tuning:")
    images = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    torch.testing.assert_close(tuned_bb.encode_images(InputTransform.for_model(base)(images)),
                               torch.nn.functional.normalize(again.encode_image(InputTransform.for_model(base)(images)),
                                                             dim=-1))
    # A file of another config is refused, naming what is missing.
    save_adapters(OmniviewCLIP(copy.deepcopy(base), AdapterConfig(lora_rank=0)), tmp_path / "viformer_only.pt")
    broken = torch.load(tmp_path / "viformer_only.pt", weights_only=True)
    broken["config"]["lora_rank"] = 8
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="lacks adapter weights"):
        load_adapters(copy.deepcopy(base), tmp_path / "broken.pt")


def test_viformer_keeps_the_residual_ratio_and_checks_heads():
    v = VIFormer(16, layers=1, heads=4, alpha=0.1)
    z = torch.randn(5, 16)
    torch.testing.assert_close(v(z), z)  # f starts as the identity
    with torch.no_grad():
        v.out.weight.normal_()
    f = z + v.out(v.encoder(z[:, None])[:, 0])
    torch.testing.assert_close(v(z), 0.1 * f + 0.9 * z)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        VIFormer(16, heads=3)
