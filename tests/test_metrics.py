"""Closed-form metrics against brute force, and known values on constructed embeddings."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mvclip_utils.evaluation import metrics, reference


def random_embeddings(n=7, v=5, d=16, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n, 1, d, generator=g)
    image = F.normalize(centres + spread * torch.randn(n, v, d, generator=g), dim=-1)
    text = F.normalize(centres[:, 0] + torch.randn(n, d, generator=g), dim=-1)
    return image, text


@pytest.mark.parametrize("seed,spread", [(0, 1.0), (1, 0.3), (2, 3.0)])
def test_closed_form_agrees_with_brute_force(seed, spread):
    image, text = random_embeddings(seed=seed, spread=spread)
    expected = reference.brute_force_similarity(image, text)
    closed = {"same_object": metrics.same_object_similarity(image),
              "cross_object": metrics.cross_object_similarity(image),
              "text_image": metrics.text_image_similarity(image, text)}
    for name, ref in expected.items():
        got = closed[name]
        assert got.pairs == ref.pairs, name
        for field in ("mean", "pooled_std", "object_std"):
            assert getattr(got, field) == pytest.approx(getattr(ref, field), abs=1e-5), (name, field)


def test_chunking_does_not_change_results():
    image, _ = random_embeddings(n=30, v=4)
    a = metrics.cross_object_similarity(image)
    b = metrics.cross_object_similarity(image, chunk=7)
    assert a.mean == pytest.approx(b.mean, abs=1e-9) and a.pooled_std == pytest.approx(b.pooled_std, abs=1e-9)


def test_known_values_on_constructed_embeddings():
    # Two objects, every view of object 0 is e0 and of object 1 is e1: perfectly consistent,
    # perfectly separated.
    image = torch.zeros(2, 3, 4)
    image[0, :, 0] = 1
    image[1, :, 1] = 1
    text = torch.tensor([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
    same = metrics.same_object_similarity(image)
    cross = metrics.cross_object_similarity(image)
    assert (same.mean, same.pooled_std, same.pairs) == (1.0, 0.0, 12)
    assert (cross.mean, cross.pooled_std, cross.pairs) == (0.0, 0.0, 18)
    ti = metrics.text_image_similarity(image, text)
    assert ti.mean == 0.5 and ti.pooled_std == 0.5 and ti.object_std == 0.5
    assert metrics.view_retrieval(image) == {"recall_at_1": 1.0, "mAP": 1.0,
                                             "recall_at_1_stderr": 0.0, "mAP_stderr": 0.0}
    mean, std = metrics.view_pair_matrices(image)
    np.testing.assert_allclose(mean, np.ones((3, 3)))
    np.testing.assert_allclose(std, np.zeros((3, 3)))


def test_view_pair_matrices_agree_with_a_loop():
    image, _ = random_embeddings(n=9, v=4)
    mean, std = metrics.view_pair_matrices(image)
    sims = torch.einsum("nvd,nwd->nvw", image, image).double()
    np.testing.assert_allclose(mean, sims.mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(std, sims.std(0, unbiased=False).numpy(), atol=1e-6)


def test_collapse_is_not_rewarded_by_retrieval():
    collapsed = F.normalize(torch.ones(20, 4, 8), dim=-1)
    assert metrics.caption_retrieval(collapsed, collapsed[:, 0]) == {"recall_at_1": 0.0, "recall_at_5": 0.0}
    result = metrics.view_retrieval(collapsed)
    assert result["recall_at_1"] == 0.0  # ties broken against the positives
    assert result["mAP"] < 0.2
    assert metrics.same_object_similarity(collapsed).mean == pytest.approx(1.0)


def test_view_retrieval_matches_a_sklearn_average_precision():
    from sklearn.metrics import average_precision_score

    image, _ = random_embeddings(n=6, v=3, spread=2.0, seed=4)
    flat = image.reshape(18, -1)
    owner = np.repeat(np.arange(6), 3)
    aps, top1 = [], []
    for q in range(18):
        keep = np.arange(18) != q
        scores = (flat[keep] @ flat[q]).numpy()
        aps.append(average_precision_score(owner[keep] == owner[q], scores))
        top1.append(owner[keep][scores.argmax()] == owner[q])
    got = metrics.view_retrieval(image, chunk=5)
    assert got["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)
    assert got["recall_at_1"] == pytest.approx(np.mean(top1))


def test_zero_shot_and_caption_retrieval():
    image = torch.zeros(3, 2, 3)
    image[0, :, 0] = 1
    image[1, 0, 1] = 1
    image[1, 1, 0] = 1  # the second view of object 1 looks like category 0
    image[2, :, 2] = 1
    categories = torch.eye(3)
    views = pd.DataFrame({"view_id": ["a", "b"], "azimuth_deg": [0, 90], "elevation_deg": [10, 10],
                          "distance": [1.5, 1.5], "kind": ["grid", "ood"]})
    by_view = metrics.zero_shot_by_view(image, categories, [0, 1, 2], views)
    assert by_view.accuracy.tolist() == pytest.approx([1.0, 2 / 3])
    assert by_view.stderr.iloc[0] == 0.0
    recall = metrics.caption_retrieval(image, categories, ks=(1, 2))
    # Object 1 seen from b is caption 0 exactly and ties captions 1 and 2 at 0: ties count against it.
    assert recall == {"recall_at_1": pytest.approx(5 / 6), "recall_at_2": pytest.approx(5 / 6)}


def test_caption_retrieval_table_rows_and_missing_results(tmp_path):
    views = pd.DataFrame({"view_id": ["el+40_az000", "el+40_az090", "ood_x"], "azimuth_deg": [0, 90, 0],
                          "elevation_deg": [40, 40, 90], "distance": 1.5, "kind": ["grid", "grid", "ood"]})
    text = torch.eye(4)[:3]
    image = torch.zeros(3, 3, 4)
    image[:, 0, :3] = torch.eye(3)  # view az000 matches its own caption
    image[:, 1, 3] = 1  # view az090 matches nothing better than the others
    image[:, 2, :3] = torch.eye(3)
    table = metrics.caption_retrieval_table(image, text, views, "el+40_az000", ks=(1,))
    assert table.loc["canonical view (el+40_az000)", "recall_at_1"] == 1.0
    assert table.loc["all grid views", "recall_at_1"] == 0.5  # az090 ties every caption: ties count against it
    assert table.loc["chance", "recall_at_1"] == pytest.approx(1 / 3)


def grid_and_ood_views(n_grid=4, n_ood=2) -> pd.DataFrame:
    return pd.DataFrame({"view_id": [f"el+40_az{90 * i:03d}" for i in range(n_grid)]
                         + [f"ood_{i}" for i in range(n_ood)],
                         "azimuth_deg": [90.0 * i for i in range(n_grid)] + [0.0] * n_ood,
                         "elevation_deg": [40.0] * n_grid + [-50.0] * n_ood, "distance": 1.5,
                         "kind": ["grid"] * n_grid + ["ood"] * n_ood})


def test_headline_numbers_cover_the_grid_views_and_ood_views_have_their_own_columns():
    image, text = random_embeddings(n=6, v=6, seed=3)
    views = grid_and_ood_views()
    categories = F.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    labels = np.array([0, 1, 2, 0, 1, 2])
    row = metrics.evaluation_row(image, text, categories, labels, views, "el+40_az090")
    grid_only = metrics.similarity_stats(image[:, :4], text)
    all_views = metrics.similarity_stats(image, text)
    assert row["same_object_mean"] == pytest.approx(grid_only["same_object"].mean)
    assert row["same_object_mean"] != pytest.approx(all_views["same_object"].mean)
    assert row["cross_object_mean"] == pytest.approx(grid_only["cross_object"].mean)
    assert row["view_retrieval_mAP"] == pytest.approx(metrics.view_retrieval(image[:, :4])["mAP"])
    by_view = metrics.zero_shot_by_view(image, categories, labels, views).set_index("view_id").accuracy
    assert row["zero_shot_accuracy"] == pytest.approx(by_view.iloc[:4].mean())
    assert row["zero_shot_accuracy_ood"] == pytest.approx(by_view.iloc[4:].mean())
    # The configured canonical view is the canonical column, whichever it is.
    assert row["zero_shot_accuracy_canonical"] == pytest.approx(by_view["el+40_az090"])
    assert row["zero_shot_accuracy_other_grid"] == pytest.approx(by_view.drop("el+40_az090").iloc[:3].mean())
    ood_to_grid = torch.einsum("nod,ngd->nog", image[:, 4:], image[:, :4]).mean()
    assert row["ood_to_grid_similarity"] == pytest.approx(float(ood_to_grid))
    assert (row["n_grid_views"], row["n_ood_views"], row["n_categories"]) == (4, 2, 3)


def test_embedding_geometry_known_values():
    # Images all on e0, texts all on e1: the centroids are sqrt(2) apart; one direction used.
    image = torch.zeros(3, 2, 4)
    image[..., 0] = 1
    text = torch.zeros(3, 4)
    text[:, 1] = 1
    geometry = metrics.embedding_geometry(image, text)
    assert geometry["modality_gap"] == pytest.approx(np.sqrt(2))
    assert geometry["effective_rank"] == pytest.approx(1.0)
    # Four orthogonal directions used equally: effective rank 4; same centroid as text: gap 0.
    spread = torch.eye(4).reshape(2, 2, 4)
    assert metrics.embedding_geometry(spread, spread.mean(1))["effective_rank"] == pytest.approx(4.0)
    assert metrics.embedding_geometry(spread, spread.reshape(4, 4))["modality_gap"] == pytest.approx(0.0, abs=1e-9)


def test_miou_against_a_hand_computed_confusion_matrix():
    from mvclip_utils.evaluation.metrics import confusion_matrix, iou_per_class, mean_iou

    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    predicted = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    cm = confusion_matrix(predicted, truth, 4)
    # rows = truth: background 3 pixels (2 right, 1 called 1), class 1 two (both right),
    # class 2 three (2 right, 1 called background), class 3 absent.
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    iou = iou_per_class(cm)
    assert iou[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 2 / 3]) and np.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 2 / 3) / 2)  # background and the absent class left out
    assert mean_iou(cm, ignore_background=False) == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)


def test_paired_view_gap_is_the_per_object_mean_difference_and_its_standard_error():
    from mvclip_utils.evaluation.metrics import paired_view_gap

    scores = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0], [0.0, np.nan, 3.0], [np.nan, 1.0, 1.0]])
    others = np.array([False, True, True])
    gap, se = paired_view_gap(scores, 0, others)  # per object: 2, 0, 3 (the NaN canonical object left out)
    assert gap == pytest.approx(5 / 3) and se == pytest.approx(np.std([2, 0, 3], ddof=1) / np.sqrt(3))
