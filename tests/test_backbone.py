"""Backbone loading, the tiny model's tokenizer and checkpoint round trip, spatial features."""

import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.schema import BackboneConfig
from mvclip_utils.models.backbone import (
    Backbone,
    BackboneLoadError,
    CaptionTokenizer,
    create_tiny_model,
    load_backbone,
    spatial_features,
    uint8_to_input,
)


def test_tokenizer_keeps_end_of_text_the_largest_id():
    tok = CaptionTokenizer.from_texts(["a red mug", "a tall chair with armrests"], vocab_size=64, context_length=8)
    ids = tok(["a red mug", "a purple spaceship", "a tall chair with armrests and more words beyond"])
    assert ids.shape == (3, 8)
    assert (ids.argmax(-1) == torch.tensor([4, 4, 7])).all()  # pooling position = end of text
    assert ids[0, 0] == tok.sot_token_id == 62 and ids[0, 4] == tok.eot_token_id == 63
    assert ids[1, 2] == 1 and ids[1, 3] == 1  # unknown words
    assert (ids[0, 5:] == 0).all()


def test_tokenizer_round_trip(tmp_path):
    tok = CaptionTokenizer.from_texts(["a blue car"], vocab_size=32, context_length=6)
    tok.save(tmp_path / "vocab.json")
    again = CaptionTokenizer.load(tmp_path / "vocab.json")
    assert torch.equal(tok(["a blue car", "a car"]), again(["a blue car", "a car"]))
    with pytest.raises(ValueError, match="do not fit"):
        CaptionTokenizer([f"w{i}" for i in range(40)], vocab_size=32, context_length=6)


def save_tiny(layout: RunLayout) -> torch.nn.Module:
    torch.manual_seed(0)
    model, _ = create_tiny_model()
    layout.backbone.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict()}, layout.backbone_checkpoint("mvclip-tiny"))
    CaptionTokenizer.from_texts(["a red mug", "a photo of a chair"], model.vocab_size, model.context_length).save(
        layout.backbone_vocabulary("mvclip-tiny"))
    return model.eval()


def test_tiny_checkpoint_loads_through_open_clip(tmp_path):
    layout = RunLayout(tmp_path)
    original = save_tiny(layout)
    backbone = load_backbone(BackboneConfig(device="cpu"), layout)
    images = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    x = backbone.uint8_to_input(images)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(original.encode_image(x), dim=-1)
    torch.testing.assert_close(backbone.encode_images(x), expected)
    text = backbone.encode_texts(["a red mug", "a photo of a chair"])
    assert text.shape == (2, 128) and torch.allclose(text.norm(dim=-1), torch.ones(2))
    assert backbone.slug == "mvclip-tiny" and "pretrained here" in backbone.name
    # The same checkpoint named as a file (vocabulary beside it) is the same backbone.
    as_file = load_backbone(BackboneConfig(pretrained=str(layout.backbone_checkpoint("mvclip-tiny")), device="cpu"))
    torch.testing.assert_close(as_file.encode_images(x), expected)
    assert as_file.identity == backbone.identity


def test_missing_tiny_checkpoint_says_which_notebook_makes_it(tmp_path):
    with pytest.raises(BackboneLoadError, match="pretrained by notebook 02_backbone"):
        load_backbone(BackboneConfig(device="cpu"), RunLayout(tmp_path))


def test_offline_tag_names_model_tag_and_both_fixes(tmp_path):
    code = ("from mvclip_utils.models.backbone import load_backbone\n"
            "from mvclip_utils.core.schema import BackboneConfig\n"
            "load_backbone(BackboneConfig(model='ViT-B-32', pretrained='openai', device='cpu'))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0
    message = result.stderr
    assert "BackboneLoadError" in message and "'ViT-B-32'" in message and "'openai'" in message
    assert "network access" in message and "backbone.pretrained" in message


def test_uint8_path_matches_open_clips_transform():
    model, preprocess = create_tiny_model()
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = preprocess(Image.fromarray(image))
    got = uint8_to_input(model, torch.from_numpy(image)[None])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_spatial_features_of_a_vit_and_a_resnet(tmp_path):
    model, _ = create_tiny_model()
    vit = Backbone(model.eval(), None, None, torch.device("cpu"), False, "tiny", "tiny", "tiny")
    x = torch.randn(2, 3, 64, 64)
    grid = spatial_features(vit, x)
    assert grid.shape == (2, 128, 4, 4)  # 64 px / patch 16, projected to the 128-d joint space
    # Averaging the unprojected tokens is not the CLS embedding, but the shapes follow the tower.
    assert spatial_features(vit, x, project=False).shape == (2, 128, 4, 4)

    config = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                                                "patch_size": None},
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "tiny-rn.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "tiny-rn.json")
    rn = open_clip.create_model("tiny-rn").eval()
    features = spatial_features(Backbone(rn, None, None, torch.device("cpu"), False, "rn", "rn", "rn"), x)
    assert features.shape == (2, 8 * 8 * 4, 2, 2)  # layer4: width x 8 x bottleneck 4 channels, 1/32 of the side


def test_openai_weights_are_loaded_with_the_quick_gelu_they_were_trained_with():
    from mvclip_utils.models.backbone import needs_quick_gelu

    # open_clip 3 builds ViT-B-32 with GELU and only warns when OpenAI's QuickGELU weights are loaded into it.
    assert needs_quick_gelu("ViT-B-32", "openai") and needs_quick_gelu("RN50", "openai")
    assert not needs_quick_gelu("ViT-B-32", "laion2b_s34b_b79k")
    assert not needs_quick_gelu("ViT-B-32", "") and not needs_quick_gelu("ViT-B-32", "/data/my_checkpoint.pt")
