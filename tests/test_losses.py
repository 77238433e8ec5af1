"""Vectorised losses against loop references, and their known values."""

import pytest
import torch
import torch.nn.functional as F

from mvclip_utils.models import losses


def batch(b=4, k=3, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, d, generator=g), torch.randn(b, d, generator=g)


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_losses_match_the_loops(seed):
    image, text = batch(seed=seed)
    torch.testing.assert_close(losses.object_similarity_loss(image, text),
                               losses.object_similarity_loss_loop(image, text))
    torch.testing.assert_close(losses.seed_contrastive_loss(image, text),
                               losses.seed_contrastive_loss_loop(image, text))
    torch.testing.assert_close(losses.multi_positive_infonce(image, text, 0.1),
                               losses.multi_positive_infonce_loop(image, text, 0.1))


def test_collapse_is_optimal_for_the_object_loss_but_not_the_contrastive_ones():
    collapsed = F.normalize(torch.ones(4, 3, 8), dim=-1)
    text = collapsed[:, 0]
    assert losses.object_similarity_loss(collapsed, text).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.seed_contrastive_loss(collapsed, text).item() == pytest.approx(0.0, abs=1e-6)
    separated = torch.eye(8)[:4, None].repeat(1, 3, 1)  # each object its own axis, all views identical
    assert losses.object_similarity_loss(separated, separated[:, 0]).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.seed_contrastive_loss(separated, separated[:, 0]).item() == pytest.approx(-1.0, abs=1e-6)
    assert losses.multi_positive_infonce(separated, separated[:, 0], 0.1) < losses.multi_positive_infonce(
        collapsed, text, 0.1)


def test_autoencoder_loss_parts():
    original = torch.randn(4, 3, 8)
    codes = torch.eye(6)[:4, None].repeat(1, 3, 1)  # consistent within objects, orthogonal across
    total, parts = losses.autoencoder_loss(original, original, codes, 1.0, 2.0, 3.0)
    assert parts["reconstruction"].item() == 0.0
    assert parts["vi_similarity"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["vi_dissimilarity"].item() == pytest.approx(0.0, abs=1e-6)
    total, parts = losses.autoencoder_loss(original, torch.zeros_like(original), codes, 2.0, 1.0, 1.0)
    assert parts["reconstruction"].item() == pytest.approx((original ** 2).mean().item())
    assert total.item() == pytest.approx(2 * parts["reconstruction"].item(), abs=1e-6)


def test_clip_loss_matches_open_clip_and_masks_identical_captions():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    scale = torch.tensor(10.0)
    unique = torch.eye(6, dtype=torch.bool)
    torch.testing.assert_close(losses.clip_loss(image, text, scale, unique), ClipLoss()(image, text, scale))
    # Every caption identical: each image sees only its own caption, nothing to tell apart.
    assert float(losses.clip_loss(image, text, scale, torch.ones(6, 6, dtype=torch.bool))) == pytest.approx(0.0)
    # Pairs 0 and 1 share a caption: neither is the other's negative (a loop reference).
    same = unique.clone()
    same[0, 1] = same[1, 0] = True
    logits = scale * image @ text.T
    rows = [torch.logsumexp(logits[i][[j for j in range(6) if not (same[i, j] and j != i)]], 0) - logits[i, i]
            for i in range(6)]
    cols = [torch.logsumexp(logits[:, i][[j for j in range(6) if not (same[j, i] and j != i)]], 0) - logits[i, i]
            for i in range(6)]
    expected = (torch.stack(rows).mean() + torch.stack(cols).mean()) / 2
    torch.testing.assert_close(losses.clip_loss(image, text, scale, same), expected)


def test_knn_anchor_and_outliers_pick_the_farthest_views():
    # One object: four views clustered around e0 and one outlier along e1.
    views = torch.tensor([[1.0, 0.05, 0], [1.0, -0.05, 0], [1.0, 0, 0.05], [1.0, 0, -0.05], [0.2, 1.0, 0]])[None]
    anchor = losses.knn_weighted_anchor(views, neighbours=2)
    plain = F.normalize(F.normalize(views, dim=-1).mean(1), dim=-1)
    # The dense cluster outweighs the outlier: the anchor is closer to e0 than the plain mean.
    assert anchor[0, 0] > plain[0, 0] > 0 and abs(float(anchor.norm()) - 1) < 1e-6
    assert losses.outlier_views(views, anchor, 1).tolist() == [[4]]
    assert sorted(losses.outlier_views(views, anchor, 2)[0].tolist())[-1] == 4
    # Two objects at once, vectorised, each its own anchor.
    two = torch.cat([views, views[:, [4, 0, 1, 2, 3]].roll(1, dims=-1)])
    idx = losses.outlier_views(two, losses.knn_weighted_anchor(two, 2), 1)
    assert idx[0, 0] == 4 and idx[1, 0] == 0


@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_view_consistency_loss_equals_loop_reference(margin):
    g = torch.Generator().manual_seed(1)
    image, anchor = torch.randn(9, 8, generator=g), torch.randn(9, 8, generator=g)
    torch.testing.assert_close(losses.view_consistency_loss(image, anchor, margin),
                               losses.view_consistency_loss_loop(image, anchor, margin))
    assert float(losses.view_consistency_loss(anchor, anchor, -0.1)) == 0.0  # within the margin: no pull


def test_the_bounded_paper_anchor_keeps_a_duplicate_view_from_taking_the_anchor_alone():
    # A symmetric object: views 0 and 1 identical (a bottle seen twice from the top ring), 2 and 3 apart.
    e = torch.eye(3)
    views = torch.stack([e[0], e[0], F.normalize(e[0] + e[1], dim=0), F.normalize(e[0] + e[2], dim=0)])[None]
    z = F.normalize(views[0], dim=-1)
    # With one neighbour each: distances 0, 0, 1 - cos(45 deg), and for view 3 its nearest (view 0 or 2).
    d = torch.tensor([0.0, 0.0, 1 - 2 ** -0.5, 1 - 2 ** -0.5])
    unbounded = losses.knn_weighted_anchor(views, neighbours=1)
    torch.testing.assert_close(unbounded[0], e[0], atol=1e-6, rtol=0)  # the duplicate pair is the whole anchor
    bounded = losses.knn_weighted_anchor(views, neighbours=1, floor=0.5)
    floored = torch.maximum(d, 0.5 * d.mean())  # by hand: the duplicates count at half the mean distance
    w = 1 / (floored + 1e-8)
    torch.testing.assert_close(bounded[0], F.normalize((w / w.sum()) @ z, dim=0))
    # floor 0.5 x mean 0.146 = 0.073 against 0.293: the duplicates weigh 4x the others, 0.4 each, not 0.5 - 1e-8.
    torch.testing.assert_close(w / w.sum(), torch.tensor([0.4, 0.4, 0.1, 0.1]), atol=1e-6, rtol=0)
    assert float(w.max() / (1 / d.mean())) == pytest.approx(2.0)  # at most 1 / floor times a view at the mean
    public = losses.knn_weighted_anchor(views, neighbours=1, weighting="public")
    s = 1 - d  # the public code: 1 / mean similarity to the nearest views
    torch.testing.assert_close(public[0], F.normalize(((1 / s) / (1 / s).sum()) @ z, dim=0))
    torch.testing.assert_close(losses.knn_weighted_anchor(views, weighting="uniform")[0], F.normalize(z.mean(0), dim=0))
    with pytest.raises(ValueError, match="anchor weighting 'median'"):
        losses.knn_weighted_anchor(views, weighting="median")


def test_the_hinge_margin_leaves_views_within_it_untouched_and_the_shift_pulls_every_view():
    anchor = torch.tensor([[1.0, 0.0]]).repeat(2, 1)
    near = torch.tensor([[1.0, 0.1], [1.0, 2.0]], requires_grad=True)  # distances ~0.005 and ~0.553
    d = 1 - F.cosine_similarity(near.detach(), anchor, dim=-1)
    hinge = losses.view_consistency_loss(near, anchor, 0.1, "hinge")
    assert float(hinge.detach()) == pytest.approx(float(d[1] - 0.1))  # only the far view is active (mean over active)
    hinge.backward()
    assert torch.equal(near.grad[0], torch.zeros(2)) and near.grad[1].abs().sum() > 0  # the near view is not pulled
    near.grad = None
    shift = losses.view_consistency_loss(near, anchor, 0.1, "shift")
    assert float(shift.detach()) == pytest.approx(float((d + 0.1).mean()))
    shift.backward()
    assert (near.grad.abs().sum(1) > 0).all()  # m >= 0 shifts the value and pulls both
    with pytest.raises(ValueError, match="margin mode 'soft'"):
        losses.view_consistency_loss(near, anchor, 0.1, "soft")
