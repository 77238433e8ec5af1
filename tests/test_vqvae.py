"""VQ-VAE: the EMA codebook's update, straight-through gradients, decoding that learns."""

import numpy as np
import pytest
import torch

from mvclip_utils.studies.vqvae import VQVAE, EMACodebook, codebook_usage, psnr, sample_from_codes, vqvae_loss


def test_ema_codebook_update_equals_its_formula_on_a_constructed_batch():
    book = EMACodebook(size=3, width=2, decay=0.9, eps=1e-5)
    with torch.no_grad():
        book.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
        book.embedding_sum.copy_(book.embedding)
        book.cluster_size.fill_(1.0)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [11.0, -1.0]])  # codes 0, 0, 1, 1; code 2 unused
    codes = book.assign(z)
    assert codes.tolist() == [0, 0, 1, 1]
    book.update(z, codes)
    n = torch.tensor([2.0, 2.0, 0.0])
    size = 0.9 * torch.ones(3) + 0.1 * n
    sums = 0.9 * torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]) + 0.1 * torch.tensor([[1.0, 1.0], [20.0, 0.0],
                                                                                            [0.0, 0.0]])
    smoothed = (size + 1e-5) / (size.sum() + 3e-5) * size.sum()
    torch.testing.assert_close(book.cluster_size, size)
    torch.testing.assert_close(book.embedding_sum, sums)
    torch.testing.assert_close(book.embedding, sums / smoothed[:, None])
    book.eval()  # no update outside training
    before = book.embedding.clone()
    book(torch.randn(2, 2, 3, 3))
    assert torch.equal(book.embedding, before)


def test_the_straight_through_gradient_reaches_the_projection_and_the_codebook_does_not_need_one():
    model = VQVAE("clip", feature_channels=16, grid=4, size=16, codebook_size=8, code_width=4, channels=8)
    features = torch.randn(2, 16, 4, 4)
    reconstruction, codes, commitment = model(features)
    assert reconstruction.shape == (2, 3, 16, 16) and codes.shape == (2, 4, 4)
    with torch.no_grad():
        shown = model.eval()(features)[0]
    assert 0 <= float(shown.min()) and float(shown.max()) <= 1  # clamped outside training
    model.train()
    vqvae_loss(reconstruction, torch.rand(2, 3, 16, 16), commitment).backward()
    assert model.encoder.weight.grad is not None and model.encoder.weight.grad.abs().sum() > 0
    assert not model.codebook.embedding.requires_grad  # updated by the EMA
    with pytest.raises(ValueError, match="expected 'clip'"):
        VQVAE("resnet", 16, 4, 16, 8, 4)


@pytest.mark.slow  # trains two VQ-VAEs for a while: half a minute
def test_decoding_a_fixed_batch_lowers_the_loss_for_both_encoders():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    features = torch.randn(4, 16, 4, 4)
    for kind, inputs in (("clip", features), ("conv", images)):
        model = VQVAE(kind, feature_channels=16, grid=4, size=16, codebook_size=16, code_width=8, channels=16)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        losses = []
        for _ in range(60):
            reconstruction, _, commitment = model(inputs)
            loss = vqvae_loss(reconstruction, images, commitment)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), kind


def test_psnr_codebook_usage_and_samples():
    assert psnr(0.01) == pytest.approx(20.0) and psnr(np.array([1.0, 1e-4])).tolist() == pytest.approx([0.0, 40.0])
    usage = codebook_usage(np.array([0, 0, 1, 1]), size=4)
    assert usage == {"perplexity": pytest.approx(2.0), "dead_codes": 2, "used_codes": 2}
    model = VQVAE("conv", 3, grid=2, size=8, codebook_size=4, code_width=4, channels=8).eval()
    samples = sample_from_codes(model, np.array([0, 1, 0, 0]), grid=2, n=3)
    assert samples.images.shape == (3, 3, 8, 8) and set(samples.codes.unique().tolist()) == {1}


def test_spatial_features_of_a_random_vit_b_32_at_224_px_are_a_7_by_7_grid():
    import open_clip

    from mvclip_utils.models.backbone import Backbone, spatial_features

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32").eval()
    backbone = Backbone(model, None, None, torch.device("cpu"), False, "vit", "vit", "vit")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert spatial_features(backbone, x).shape == (2, 512, 7, 7)  # projected into the joint space
        assert spatial_features(backbone, x, project=False).shape == (2, 768, 7, 7)  # the tower's width
    # Reports describe the grid from the model itself, never from a fixed sentence.
    from mvclip_utils.models.backbone import describe_architecture

    assert describe_architecture(model) == "ViT width 768, 12 layers, patch 32 at 224 px (7 x 7 feature grid)"


def test_a_dead_code_is_restarted_on_a_vector_of_the_batch():
    book = EMACodebook(size=3, width=2, decay=0.5, restart_below=0.6)
    with torch.no_grad():
        book.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [100.0, 100.0]]))
        book.embedding_sum.copy_(book.embedding)
        book.cluster_size.fill_(1.0)
    z = torch.tensor([[1.0, 0.0], [9.0, 0.0]])
    book.update(z, book.assign(z))  # code 2 unused: its count falls to 0.5 < 0.6
    assert book.cluster_size[2] == 1.0 and any(torch.equal(book.embedding[2], v) for v in z)
    torch.testing.assert_close(book.cluster_size[:2], torch.tensor([1.0, 1.0]))  # 0.5 * 1 + 0.5 * 1
