"""The results table: one row per method, only rows of the current dataset and backbone, stale ones listed."""

import json

import pandas as pd
import pytest
from helpers import make_config

from mvclip_utils.core.cameras import views_table
from mvclip_utils.core.runs import RunLayout, StaleArtifactError, atomic_write_json, atomic_write_parquet
from mvclip_utils.data.dataset import dataset_fingerprint
from mvclip_utils.evaluation import results


def fake_run(tmp_path, identity="mvclip-tiny|abc", ood_views=None) -> RunLayout:
    """A run with a dataset manifest (no rendered object) and a backbone record: enough for provenance."""
    layout = RunLayout(tmp_path)
    cfg = make_config({"render": {"ood_views": ood_views or []}})
    atomic_write_parquet(views_table(cfg.render), layout.views_table)
    atomic_write_parquet(pd.DataFrame({"object_id": ["a"], "category": ["mug"], "caption": ["a mug"],
                                       "split": ["test"], "status": ["failed"]}), layout.objects_table)
    atomic_write_json(layout.backbone_record, {"name": identity, "slug": "tiny", "identity": identity})
    return layout


def provenance(layout: RunLayout) -> dict:
    return {**results.current_provenance(layout), "embed_settings": "e"}


def test_one_row_per_method_in_the_seeds_order(tmp_path):
    layout = fake_run(tmp_path)
    results.write_result(layout, "object_head", {"same_object_mean": 0.9}, "tiny", provenance(layout))
    table = results.write_result(layout, "baseline", {"same_object_mean": 0.8}, "tiny", provenance(layout))
    assert table.method.tolist() == ["baseline", "object_head"]
    again = results.write_result(layout, "baseline", {"same_object_mean": 0.7}, "tiny", provenance(layout))
    assert again.same_object_mean.tolist() == [0.7, 0.9]
    assert pd.read_csv(layout.results_table).method.tolist() == ["baseline", "object_head"]
    results.write_result(layout, "autoencoder", {"same_object_mean": 0.6}, "tiny", provenance(layout))
    table = results.write_result(layout, "a_new_method", {"same_object_mean": 0.5}, "tiny", provenance(layout),
                                 {"steps": 3})
    assert table.method.tolist() == ["baseline", "object_head", "autoencoder", "a_new_method"]
    assert json.loads(layout.metrics_file("a_new_method").read_text())["config_digest"]
    with pytest.raises(ValueError, match="provenance lacks"):
        results.write_result(layout, "x", {}, "tiny", {"dataset_fingerprint": "d"})


def test_rows_of_another_backbone_or_dataset_are_listed_as_stale_not_mixed_in(tmp_path):
    layout = fake_run(tmp_path)
    results.write_result(layout, "baseline", {"same_object_mean": 0.8}, "tiny", provenance(layout))
    results.write_result(layout, "object_head", {"same_object_mean": 0.9}, "tiny", provenance(layout))
    # Another backbone (e.g. the all-views control) becomes the run's backbone: its baseline only.
    atomic_write_json(layout.backbone_record, {"name": "control", "slug": "tiny-all", "identity": "mvclip-tiny|zzz"})
    table = results.write_result(layout, "baseline", {"same_object_mean": 0.5}, "control", provenance(layout))
    assert table.method.tolist() == ["baseline"] and table.same_object_mean.tolist() == [0.5]
    stale = results.stale_results(layout)
    assert stale.method.tolist() == ["object_head"] and "made by backbone tiny" in stale.reason[0]
    # The dataset changes under the results (one more view rendered): every row is stale.
    fake_run(tmp_path, identity="mvclip-tiny|zzz",
             ood_views=[{"name": "below", "azimuth_deg": 0, "elevation_deg": -60, "distance": 1.5}])
    assert len(results.load_results(layout)) == 0
    assert sorted(results.stale_results(layout).reason.str.contains("another version of the dataset")) == [False, True]


def test_missing_results_name_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 04_baseline"):
        results.load_results(RunLayout(tmp_path))


def test_a_backbone_record_of_another_dataset_is_refused(tmp_path):
    from mvclip_utils.models.backbone import read_backbone_record

    layout = fake_run(tmp_path)
    atomic_write_json(layout.backbone_record, {"name": "tiny", "slug": "mvclip-tiny", "identity": "mvclip-tiny|x",
                                               "dataset_fingerprint": "not-this-one"})
    with pytest.raises(StaleArtifactError, match=r"backbone\.json is stale: .*another version of the dataset. "
                                                 r"Rerun notebook 02_backbone"):
        read_backbone_record(layout)
    atomic_write_json(layout.backbone_record, {"name": "tiny", "slug": "mvclip-tiny", "identity": "mvclip-tiny|x",
                                               "dataset_fingerprint": dataset_fingerprint(layout)})
    with pytest.raises(StaleArtifactError, match="mvclip-tiny.pt is missing or is not the checkpoint it records"):
        read_backbone_record(layout)
    (layout.backbone / "mvclip-tiny.pt").write_bytes(b"weights")
    from mvclip_utils.core.runs import file_digest

    atomic_write_json(layout.backbone_record, {"name": "tiny", "slug": "mvclip-tiny",
                                               "identity": "mvclip-tiny|"
                                                           f"{file_digest(layout.backbone / 'mvclip-tiny.pt')}",
                                               "dataset_fingerprint": dataset_fingerprint(layout)})
    assert read_backbone_record(layout)["slug"] == "mvclip-tiny"



def test_an_ablation_variant_is_read_back_only_with_the_same_settings_dataset_and_backbone(tmp_path):
    layout = RunLayout(tmp_path)
    provenance = {"dataset_fingerprint": "d1", "backbone_identity": "b1", "embed_settings": "e1"}
    section = {"vc_weight": 2.0, "steps": 10}
    results.write_ablation(layout, "omniview_tuning", "lambda_2", {"zero_shot_accuracy_canonical": 0.5}, provenance,
                           section)
    row = results.read_ablation(layout, "omniview_tuning", "lambda_2", provenance, dict(section))
    assert row["zero_shot_accuracy_canonical"] == 0.5 and row["variant"] == "lambda_2"
    assert results.read_ablation(layout, "omniview_tuning", "lambda_2", provenance, {**section, "steps": 11}) is None
    assert results.read_ablation(layout, "omniview_tuning", "lambda_2", {**provenance, "backbone_identity": "b2"},
                                 section) is None
    assert results.read_ablation(layout, "omniview_tuning", "lambda_0.5", provenance, section) is None
    assert layout.metrics_files() == []  # ablations never enter results.csv
    table = results.write_ablation_table(layout, "omniview_tuning", [row, {**row, "variant": "other"}])
    assert list(pd.read_csv(layout.ablation_table("omniview_tuning")).variant) == list(table.variant) == \
        ["lambda_2", "other"]


def test_probe_columns_join_the_row_of_their_backbone_or_of_the_method_that_tuned_it(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path)
    base = {"dataset_fingerprint": "d1", "backbone_identity": "tiny|abc", "embed_settings": "e1"}
    for method in ("baseline", "omniview_tuning"):
        atomic_write_json(layout.metrics_file(method), {"method": method, "zero_shot_accuracy": 0.5, **base})
    tuned = {**base, "backbone_identity": "tiny|abc|omniview_tuning:f00"}
    monkeypatch.setattr(results, "rebuild_results_table", lambda layout: None)  # the join alone
    assert results.add_columns(layout, "baseline", {"probe_linear": 0.7}, base)
    assert results.add_columns(layout, "omniview_tuning", {"probe_linear": 0.8}, tuned)
    assert not results.add_columns(layout, "baseline", {"probe_linear": 0.9}, tuned)  # another backbone
    assert not results.add_columns(layout, "baseline", {"probe_linear": 0.9}, {**base, "dataset_fingerprint": "d2"})
    assert not results.add_columns(layout, "itc_finetune", {"probe_linear": 0.9}, base)  # no such row
    rows = {m: json.loads(layout.metrics_file(m).read_text()) for m in ("baseline", "omniview_tuning")}
    assert rows["baseline"]["probe_linear"] == 0.7 and rows["omniview_tuning"]["probe_linear"] == 0.8
    assert rows["baseline"]["zero_shot_accuracy"] == 0.5  # the row's own columns kept
