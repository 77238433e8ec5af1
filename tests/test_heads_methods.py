"""Heads, the training loop and the method registry on constructed embeddings."""

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TINY, deep_update

from mvclip_utils.core.config import config_from_dict
from mvclip_utils.core.runs import RunLayout
from mvclip_utils.core.train import SettingReducedWarning, optimise
from mvclip_utils.evaluation import metrics, results
from mvclip_utils.models.embed import Embeddings
from mvclip_utils.models.heads import MLPHead, ViewAutoencoder
from mvclip_utils.studies import summary
from mvclip_utils.studies.head_methods import METHODS, apply_method, evaluate_method, sample_views, train_method


def test_heads_can_output_negative_components_and_autoencoder_embeds_through_vi():
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    assert (MLPHead(16)(x) < 0).any(), "no ReLU on the output layer"
    ae = ViewAutoencoder(16, (8, 4))
    reconstruction, codes, vi = ae(x)
    assert codes.shape == (64, 4) and (codes < 0).any()
    torch.testing.assert_close(ae.embed(x), vi)
    torch.testing.assert_close(reconstruction, vi + ae.vd_decoder(ae.vd_encoder(x)))
    ae.eval()
    torch.testing.assert_close(ae(x)[0], reconstruction)  # same forward in eval mode


def test_sample_views_are_distinct_views_of_each_object():
    image = torch.arange(5 * 7, dtype=torch.float32).reshape(5, 7, 1)
    picked = sample_views(image, 4, torch.Generator().manual_seed(0))[..., 0]
    assert picked.shape == (5, 4)
    for i in range(5):
        values = picked[i].tolist()
        assert len(set(values)) == 4 and all(7 * i <= v < 7 * (i + 1) for v in values)


def test_training_loop_keeps_the_best_weights_and_stops_early():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    # Training pulls the weight to 1; validation prefers 0.5, so the best weights are mid-way.
    result = optimise(model.named_parameters(), lambda s: (model.weight - 1).pow(2).sum(), steps=400, lr=0.05,
                      validate=lambda: float((model.weight - 0.5).abs().sum()), validate_every=5, patience=3,
                      model=model, schedule=False, progress=False)
    assert result.stopped_early and result.steps < 400
    assert abs(model.weight.item() - 0.5) == pytest.approx(min(result.val_losses), abs=1e-6)
    assert result.val_steps[result.val_losses.index(min(result.val_losses))] == result.best_step


def synthetic_embeddings(n_per_split=8, views=6, dim=16, seed=0) -> tuple[Embeddings, pd.DataFrame]:
    """Objects of 4 categories; each view = category direction + object offset + view noise."""
    g = np.random.default_rng(seed)
    n = 3 * n_per_split
    categories = np.array(["a", "b", "c", "d"])[np.arange(n) % 4]
    base = g.normal(size=(4, dim))[np.arange(n) % 4] + 0.5 * g.normal(size=(n, dim))
    image = base[:, None] + 0.8 * g.normal(size=(n, views, dim))
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text = base / np.linalg.norm(base, axis=-1, keepdims=True)
    cat_text = np.stack([text[categories == c].mean(0) for c in "abcd"])
    cat_text /= np.linalg.norm(cat_text, axis=-1, keepdims=True)
    emb = Embeddings(image.astype(np.float32), text.astype(np.float32), cat_text.astype(np.float32),
                     np.array([f"o{i}" for i in range(n)]), np.array([f"el+10_az{a:03d}" for a in range(0, 300, 60)]
                                                                      + ["ood_x"]),
                     categories, np.array(list("abcd")), np.repeat(["train", "val", "test"], n_per_split), "synthetic",
                     cat_text.astype(np.float32), "dataset", "backbone", "embed", 100.0)
    views_table = pd.DataFrame({"view_id": emb.view_ids, "azimuth_deg": [0, 60, 120, 180, 240, 0],
                                "elevation_deg": [10] * 5 + [90], "distance": 1.5,
                                "kind": ["grid"] * 5 + ["ood"]})
    return emb, views_table


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_deterministically_and_is_evaluated(name, tmp_path):
    emb, views = synthetic_embeddings()
    cfg = config_from_dict(deep_update(TINY, {"heads": {"steps": 40, "validate_every": 5, "views_per_object": 3}}))
    a = train_method(name, cfg, emb, views, RunLayout(tmp_path), progress=False)
    b = train_method(name, cfg, emb, views, None, progress=False)
    np.testing.assert_array_equal(apply_method(a, emb).image, apply_method(b, emb).image)
    assert (tmp_path / "models" / name / "model.pt").exists() and (tmp_path / "models" / name / "curves.json").exists()
    row, test = evaluate_method(a, emb, views, "el+10_az060")
    assert test.image.shape == (8, 6, 16)
    np.testing.assert_allclose(np.linalg.norm(test.image, axis=-1), 1, atol=1e-5)
    assert 0 <= row["view_retrieval_mAP"] <= 1 and "zero_shot_accuracy_canonical" in row
    assert ("reconstruction_l2" in row) == (name == "autoencoder")


def test_a_head_batch_larger_than_the_data_is_reduced_with_a_warning_and_reported_as_used():
    emb, views = synthetic_embeddings()  # 8 train objects, 5 grid views each
    cfg = config_from_dict(deep_update(TINY, {"heads": {"steps": 3, "views_per_object": 20, "objects_per_batch": 100}}))
    with pytest.warns(SettingReducedWarning) as caught:
        trained = train_method("contrastive_head", cfg, emb, views, None, progress=False)
    messages = sorted(str(w.message) for w in caught)
    assert messages[0].startswith("heads.objects_per_batch: 100 asked, but the data has 8 train objects: using 8")
    assert messages[1].startswith("heads.views_per_object: 20 asked, but the data has 5 seen grid views per object: "
                                  "using 5")
    assert (trained.heads.views_per_object, trained.heads.objects_per_batch) == (5, 8)


def test_object_head_collapses_and_contrastive_head_does_not():
    emb, views = synthetic_embeddings(n_per_split=12)
    cfg = config_from_dict(deep_update(TINY, {"heads": {"steps": 300, "patience": 0, "views_per_object": 3}}))
    cross = {}
    for name in ["object_head", "contrastive_head"]:
        row, _ = evaluate_method(train_method(name, cfg, emb, views, None, progress=False), emb, views,
                                 "el+10_az060")
        cross[name] = row["cross_object_mean"]
    baseline = metrics.cross_object_similarity(emb.split("test").image).mean
    assert cross["object_head"] > baseline + 0.15
    assert cross["contrastive_head"] < baseline


def test_summary_lists_any_method_that_wrote_a_row(tmp_path):
    from test_results import fake_run

    layout = fake_run(tmp_path, identity="backbone")
    emb, views = synthetic_embeddings()
    test = emb.split("test")
    provenance = {**emb.provenance, "dataset_fingerprint": results.current_provenance(layout)["dataset_fingerprint"]}
    for method in ["baseline", "my_new_method"]:
        row = metrics.evaluation_row(test.image, test.text, test.category_text, test.labels, views, "el+10_az000")
        table = results.write_result(layout, method, row, "synthetic", provenance)
    shown = summary.summary_table(table)
    assert list(shown.index) == ["baseline (frozen)", "my new method"]  # display names
    assert shown.loc["baseline (frozen)", "same-object"].count("±") == 1
    assert "reconstruction MSE / L2" not in shown.columns
