"""Config validation: every error names the key's path and what was expected."""

import pytest
import yaml
from helpers import TINY, deep_update, make_config

from mvclip_utils.core.config import config_from_dict, dump_config, load_config
from mvclip_utils.core.protocol import category_groups
from mvclip_utils.core.runs import PARAMS_DIR
from mvclip_utils.core.schema import PROCEDURAL_CATEGORIES, ConfigError


def error_of(overrides: dict) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(deep_update(TINY, overrides))
    return str(info.value)


@pytest.mark.parametrize("name", ["default", "smoke", "objaverse_vitb32"])
def test_shipped_params_validate(name):
    cfg = load_config(PARAMS_DIR / f"{name}.yaml")
    assert cfg.run_name == name


def test_objaverse_params_match_the_seed_code():
    cfg = load_config(PARAMS_DIR / "objaverse_vitb32.yaml")
    assert cfg.dataset.source == "objaverse"
    assert cfg.dataset.objaverse.annotation_categories == ["food-drink"]
    assert (cfg.render.engine, cfg.render.resolution, cfg.render.azimuths) == ("cycles", 224, 12)
    assert cfg.render.elevations_deg == [70.0, 40.0, 10.0]
    assert cfg.render.distance == 1.5


def test_default_meets_the_dataset_targets():
    cfg = load_config(PARAMS_DIR / "default.yaml")
    n_categories = len(cfg.dataset.procedural.categories or PROCEDURAL_CATEGORIES)
    assert n_categories >= 30 and n_categories * cfg.dataset.procedural.objects_per_category >= 600
    groups = category_groups(cfg.protocol, list(PROCEDURAL_CATEGORIES), cfg.seed)
    test_per_category = cfg.dataset.splits.sizes(cfg.dataset.procedural.objects_per_category)["test"]
    for group in set(groups.values()):  # every protocol group has enough test objects to compare methods on
        assert list(groups.values()).count(group) * test_per_category >= 80
    assert cfg.render.azimuths * len(cfg.render.elevations_deg) + len(cfg.render.ood_views) >= 40
    assert cfg.render.resolution == 64


def test_unknown_key_names_path_and_suggests():
    msg = error_of({"render": {"resolutoin": 64}})
    assert msg.startswith("render.resolutoin: unknown key")
    assert "did you mean 'resolution'" in msg


def test_unknown_top_level_key():
    assert error_of({"renderer": {}}).startswith("renderer: unknown key (did you mean 'render'?)")


def test_wrong_type_names_path_and_expected_type():
    msg = error_of({"render": {"resolution": "big"}})
    assert msg == "render.resolution: expected an integer, got str 'big'"


def test_bool_is_not_an_integer():
    assert "expected an integer, got bool True" in error_of({"render": {"azimuths": True}})


def test_literal_lists_the_choices():
    msg = error_of({"render": {"engine": "eevee"}})
    assert msg == "render.engine: expected one of 'workbench', 'cycles', got 'eevee'"


def test_nested_list_item_path():
    bad_view = {"name": "x", "azimuth_deg": 0, "elevation_deg": 0, "distance": "far"}
    msg = error_of({"render": {"ood_views": [TINY["render"]["ood_views"][0], bad_view]}})
    assert msg.startswith("render.ood_views[1].distance: expected a number")


def test_missing_required_key():
    data = deep_update(TINY, {})
    del data["run_name"]
    with pytest.raises(ConfigError, match=r"^run_name: missing required key; expected a string"):
        config_from_dict(data)


def test_missing_file_names_key_and_fix(tmp_path):
    msg = error_of({"dataset": {"objaverse": {"uids_file": str(tmp_path / "nope.txt")}}})
    assert msg.startswith("dataset.objaverse.uids_file: file")
    assert "does not exist" in msg and "fix the path" in msg


def test_existing_file_is_resolved_against_the_yaml_folder(tmp_path):
    (tmp_path / "uids.txt").write_text("abc\n")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"dataset": {"objaverse": {"uids_file": "uids.txt"}}})))
    assert load_config(path).dataset.objaverse.uids_file == str(tmp_path / "uids.txt")


def test_semantic_checks():
    assert (error_of({"render": {"resolution": 0}})
            == "render.resolution: expected a side in pixels between 16 and 2048, got 0")
    assert error_of({"dataset": {"splits": {"test": 0.9}}}).startswith("dataset.splits: expected non-negative")
    assert "unknown category 'spaceship'" in error_of({"dataset": {"procedural": {"categories": ["spaceship"]}}})
    assert error_of({"render": {"elevations_deg": [100]}}).startswith("render.elevations_deg[0]")
    assert error_of({"backbone": {"pretrain": {"torch_threads": -1}}}) == \
        "backbone.pretrain.torch_threads: expected a value of at least 0, got -1"
    assert error_of({"heads": {"views_per_object": 1}}).startswith("heads.views_per_object: expected at least 2")


def test_load_config_prefixes_the_file_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deep_update(TINY, {"render": {"engine": 3}})))
    with pytest.raises(ConfigError, match=r"bad\.yaml: render\.engine: expected one of"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("render: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_dump_and_load_round_trip(tmp_path):
    cfg = config_from_dict(TINY)
    dump_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict()
    assert again.render.ood_views[0].name == "top_down"


@pytest.mark.parametrize("overrides,message", [
    # each one passed validation before and failed later with a message that named nothing
    ({"render": {"azimuths": 1, "elevations_deg": [30]}},
     "render.azimuths: 1 azimuth(s) x 1 elevation(s) give one grid view per object"),
    ({"heads": {"patience": -1}}, "heads.patience: expected a value of at least 0, got -1"),
    ({"heads": {"objects_per_batch": -3}}, "heads.objects_per_batch: expected 0 (every training object) or at least 2"),
    ({"heads": {"objects_per_batch": 1}}, "heads.objects_per_batch: expected 0 (every training object) or at least 2"),
    ({"embed": {"loader_workers": -1}}, "embed.loader_workers: expected a value of at least 0, got -1"),
    ({"dataset": {"objaverse": {"max_objects": -5}}},
     "dataset.objaverse.max_objects: expected null (every matching object) or a count of at least 1, got -5"),
    ({"dataset": {"objaverse": {"max_objects": 0}}}, "dataset.objaverse.max_objects: expected null"),
    ({"dataset": {"splits": {"pretrain": 0.5, "train": 0.25, "val": 0.25, "test": 0.0}}},
     "dataset.splits.test: expected a fraction in (0, 1) (every reported number is measured on it), got 0.0"),
    ({"dataset": {"splits": {"pretrain": 0.0, "train": 0.5, "val": 0.0, "test": 0.5}}},
     "dataset.splits.pretrain: expected a fraction in (0, 1) (the tiny backbone is pretrained on it)"),
    ({"dataset": {"procedural": {"objects_per_category": 3},
                  "splits": {"pretrain": 0.4, "train": 0.3, "val": 0.1, "test": 0.2}}},
     "dataset.procedural.objects_per_category: 3 objects per category leave split(s) val empty"),
    ({"render": {"resolution": 8}}, "render.resolution: expected a side in pixels between 16 and 2048, got 8"),
    ({"render": {"resolution": 36}, "segmentation": {"unet_depth": 3}},
     "segmentation.unet_depth: the UNet halves the 36 px renders 3 times; choose a depth whose 2**depth divides"),
    ({"segmentation": {"unet_lr": 0}}, "segmentation.unet_lr: expected a learning rate between"),
    ({"segmentation": {"cache_mb": -1}}, "segmentation.cache_mb: expected a size in MiB of at least 0, got -1"),
    ({"render": {"resolution": 100000}},
     "render.resolution: expected a side in pixels between 16 and 2048, got 100000"),
    ({"dataset": {"procedural": {"categories": ["mug"]}}}, "dataset.procedural.categories: expected at least 2"),
    ({"dataset": {"objaverse": {"lvis_categories": ["mug"]}}},
     "dataset.objaverse.lvis_categories: expected at least 2"),
    ({"dataset": {"objaverse": {"lvis_categories": "some"}}},
     "dataset.objaverse.lvis_categories: expected one of 'auto' or a list"),
    ({"dataset": {"source": "objaverse", "objaverse": {"lvis_min_objects": 5},
                  "splits": {"pretrain": 0.0, "train": 0.7, "val": 0.1, "test": 0.2}},
      "backbone": {"model": "ViT-B-32", "pretrained": "openai"}},
     "dataset.objaverse.lvis_min_objects: 5 objects per LVIS category leave a split empty"),
    ({"dataset": {"splits": {"pretrain": 0.0, "train": 0.5, "val": 0.0, "test": 0.5}},
      "backbone": {"model": "ViT-B-32", "pretrained": "openai"}},
     "ovt.clean_per_batch: is 128 but dataset.splits.pretrain is 0"),
    ({"ovt": {"category_caption_prob": 1.5}}, "ovt.category_caption_prob: expected a probability"),
    ({"backbone": {"pretrain": {"canonical_view": "el+40_az031"}}},
     "backbone.pretrain.canonical_view: 'el+40_az031' is not a view"),
])
def test_bad_values_are_refused_before_any_work_naming_the_key(overrides, message):
    msg = error_of(overrides)
    assert msg.startswith(message), msg
    assert "\n" not in msg


def test_too_few_objects_message_gives_the_minimum_and_a_pretrained_backbone_needs_no_pretrain_split():
    msg = error_of({"dataset": {"procedural": {"objects_per_category": 3},
                                "splits": {"pretrain": 0.4, "train": 0.3, "val": 0.1, "test": 0.2}}})
    assert msg.endswith("expected at least 6"), msg  # 5 would give val 0.5 object, rounded to train
    cfg = make_config({"dataset": {"splits": {"pretrain": 0.0, "train": 0.5, "val": 0.0, "test": 0.5}},
                       "backbone": {"model": "ViT-B-32", "pretrained": "openai"}, "ovt": {"clean_per_batch": 0}})
    assert cfg.dataset.splits.sizes(2) == {"pretrain": 0, "train": 1, "val": 0, "test": 1}
    assert cfg.distill.clean_per_batch == 0  # follows ovt.clean_per_batch when not set itself


def test_lvis_categories_take_auto_or_a_list():
    assert make_config().dataset.objaverse.lvis_categories == "auto"
    cfg = make_config({"dataset": {"objaverse": {"lvis_categories": ["mug", "bottle"], "lvis_min_objects": 3}}})
    assert cfg.dataset.objaverse.lvis_categories == ["mug", "bottle"]
    assert make_config({"dataset": {"objaverse": {"lvis_categories": []}}}).dataset.objaverse.lvis_categories == []


def test_extends_merges_a_params_file_under_this_one(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(deep_update(TINY, {"ovt": {"steps": 7, "lr": 0.01}})))
    (tmp_path / "child.yaml").write_text("extends: base.yaml\novt: {steps: 9}\nseed: 3\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.ovt.steps, cfg.ovt.lr, cfg.seed) == (9, 0.01, 3)  # mappings merge key by key
    assert cfg.render.resolution == TINY["render"]["resolution"]
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="extends: .*nowhere.yaml does not exist"):
        load_config(tmp_path / "orphan.yaml")
    # A chain (a sweep variant of a sweep variant): each file over the one it extends.
    (tmp_path / "grandchild.yaml").write_text("extends: child.yaml\novt: {lr: 0.02}\n")
    cfg = load_config(tmp_path / "grandchild.yaml")
    assert (cfg.ovt.steps, cfg.ovt.lr, cfg.seed) == (9, 0.02, 3)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"a cycle \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(tmp_path / "a.yaml")


def test_ovt_ablations_change_only_the_keys_they_name_and_round_trip(tmp_path):
    cfg = make_config({"ovt": {"steps": 5, "vc_weight": 1.0},
                       "ovt_ablations": [{"name": "lora_only", "viformer_layers": 0},
                                         {"name": "lambda_2", "vc_weight": 2}]})
    lora_only, lambda_2 = cfg.ovt_ablations
    assert lora_only.name == "lora_only" and lora_only.ovt.viformer_layers == 0 and lora_only.ovt.steps == 5
    assert lambda_2.ovt.vc_weight == 2.0 and lambda_2.ovt.viformer_layers == cfg.ovt.viformer_layers
    path = tmp_path / "run.yaml"
    dump_config(cfg, path)
    assert yaml.safe_load(path.read_text())["ovt_ablations"] == [{"name": "lora_only", "viformer_layers": 0},
                                                                 {"name": "lambda_2", "vc_weight": 2.0}]
    assert load_config(path).ovt_ablations == cfg.ovt_ablations
    assert load_config(PARAMS_DIR / "ovt_ablations.yaml").run_name == "default"  # reuses the default run


@pytest.mark.parametrize("ablations, message", [
    ([{"name": "x", "lora_rank": 0, "viformer_layers": 0}],
     "ovt_ablations[0].lora_rank: and ovt_ablations[0].viformer_layers are both 0"),
    ([{"name": "x", "vc_wieght": 2}], "ovt_ablations[0].vc_wieght: unknown key (did you mean 'vc_weight'?)"),
    ([{"vc_weight": 2}], "ovt_ablations[0]: expected a mapping with a name"),
    ([{"name": "a"}, {"name": "a"}], "ovt_ablations[1].name: expected a unique name"),
    ({"name": "a"}, "ovt_ablations: expected a list"),
])
def test_bad_ovt_ablations_name_the_entry(ablations, message):
    assert error_of({"ovt_ablations": ablations}).startswith(message)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("overrides,message", [
    # NaN and infinity pass every range check: refused for every float setting, lists included
    ({"render": {"distance": NAN}}, "render.distance: expected a finite number, got nan"),
    ({"dataset": {"splits": {"pretrain": NAN}}}, "dataset.splits.pretrain: expected a finite number, got nan"),
    ({"heads": {"lr": NAN}}, "heads.lr: expected a finite number, got nan"),
    ({"ovt": {"lr": INF}}, "ovt.lr: expected a finite number, got inf"),
    ({"render": {"elevations_deg": [10, -INF]}}, "render.elevations_deg[1]: expected a finite number, got -inf"),
    # names that reach the file system, and a negative seed, name the real cause
    ({"render": {"ood_views": [{"name": "../../escape", "azimuth_deg": 0, "elevation_deg": 10, "distance": 1.5}]}},
     "render.ood_views[0].name: expected a file name of letters, digits"),
    ({"render": {"ood_views": [{"name": ".hidden", "azimuth_deg": 0, "elevation_deg": 10, "distance": 1.5}]}},
     "render.ood_views[0].name: expected a file name"),
    ({"seed": -1}, "seed: expected a random seed of at least 0, got -1"),
    # an open_clip model or tag it does not know: before 01 renders, with no advice to go online
    ({"backbone": {"model": "ViT-B-99", "pretrained": "openai"}},
     "backbone.model: 'ViT-B-99' is not an open_clip model (did you mean ['ViT-B-32'"),
    ({"backbone": {"model": "ViT-B-32", "pretrained": "openaii"}},
     "backbone.pretrained: 'openaii' is not a pretrained tag open_clip knows for 'ViT-B-32'; expected one of openai,"),
])
def test_non_finite_numbers_unsafe_names_and_unknown_backbones_are_refused(overrides, message):
    msg = error_of(overrides)
    assert msg.startswith(message), msg
    assert "\n" not in msg and "network" not in msg


def test_known_open_clip_names_and_checkpoint_files_pass(tmp_path):
    assert config_from_dict(deep_update(TINY, {"backbone": {"model": "ViT-B-32", "pretrained": "OpenAI"}}))
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"")
    assert config_from_dict(deep_update(TINY, {"backbone": {"model": "ViT-B-32", "pretrained": str(checkpoint)}}))
    assert config_from_dict(deep_update(TINY, {"render": {"ood_views": [
        {"name": "el+40_az000-close.v2", "azimuth_deg": 0, "elevation_deg": 40, "distance": 1.0}]}}))


def test_extends_pointing_at_a_list_is_one_line_naming_both_files(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "run.yaml").write_text("extends: list.yaml\nseed: 1\n")
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "run.yaml")
    message = str(refused.value)
    assert "\n" not in message and "run.yaml: extends:" in message
    assert "list.yaml holds a list, not a mapping" in message


def test_segmentation_evaluation_subset_is_a_count_of_at_least_zero():
    assert make_config({"segmentation": {"test_objects_per_category": 0}}).segmentation.test_objects_per_category == 0
    with pytest.raises(ConfigError, match=r"segmentation.test_objects_per_category: expected an integer of at least 0"):
        make_config({"segmentation": {"test_objects_per_category": -1}})


def test_ovt_switches_are_checked_with_their_keys():
    cfg = make_config({"ovt": {"anchor_weights": "public", "anchor_floor": 0.5, "margin_mode": "hinge",
                               "margin": 0.1, "residual": "writeup", "mask_category_negatives": True}})
    assert (cfg.ovt.anchor_weights, cfg.ovt.residual, cfg.ovt.mask_category_negatives) == ("public", "writeup", True)
    with pytest.raises(ConfigError, match=r"ovt.anchor_floor: expected a fraction of the mean neighbour distance"):
        make_config({"ovt": {"anchor_floor": 1.5}})
    with pytest.raises(ConfigError, match=r"ovt.margin: expected a cosine distance for the hinge between 0 and 2"):
        make_config({"ovt": {"margin_mode": "hinge", "margin": -0.1}})
    with pytest.raises(ConfigError, match=r"ovt.anchor_weights"):
        make_config({"ovt": {"anchor_weights": "median"}})
