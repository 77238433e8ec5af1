"""The transfer protocol: category groups, seen poses, what tuning may see, per-object scores and
the paired bootstrap."""

import numpy as np
import pandas as pd
import pytest

from mvclip_utils.core.cameras import views_table
from mvclip_utils.core.protocol import (
    CLEAN,
    MULTI_VIEW,
    OOD,
    SEEN_POSES,
    SINGLE_VIEW,
    UNSEEN,
    UNSEEN_POSES,
    category_groups,
    pose_groups,
    seen_pose_mask,
    tuning_scope,
)
from mvclip_utils.core.schema import ConfigError, ProtocolConfig, RenderConfig
from mvclip_utils.evaluation.stats import bootstrap_indices, paired_difference, paired_table
from mvclip_utils.evaluation.transfer import chance_levels, per_object_scores, transfer_table

CATEGORIES = [f"c{i:02d}" for i in range(10)]


def test_named_groups_are_kept_and_fractions_draw_among_the_rest_reproducibly():
    p = ProtocolConfig(single_view_categories=["c03"], unseen_fraction=0.2)
    groups = category_groups(p, CATEGORIES, seed=0)
    assert groups["c03"] == SINGLE_VIEW and list(groups.values()).count(SINGLE_VIEW) == 1
    unseen = sorted(c for c, g in groups.items() if g == UNSEEN)
    assert len(unseen) == 2 and "c03" not in unseen
    assert category_groups(p, CATEGORIES, seed=0) == groups  # the same draw for the same seed
    draws = {tuple(sorted(c for c, g in category_groups(p, CATEGORIES, s).items() if g == UNSEEN)) for s in range(8)}
    assert len(draws) > 1  # and another for another seed
    assert set(category_groups(ProtocolConfig(), CATEGORIES, 0).values()) == {MULTI_VIEW}


@pytest.mark.parametrize("protocol, says", [
    (ProtocolConfig(single_view_categories=["dragon"]), "protocol.single_view_categories: dragon not among"),
    (ProtocolConfig(single_view_categories=["c01"], unseen_categories=["c01"]),
     "protocol.unseen_categories: c01 also in protocol.single_view_categories"),
    (ProtocolConfig(unseen_fraction=0.04), "protocol.unseen_fraction: 0.04 of 10 categories is no category"),
    (ProtocolConfig(single_view_fraction=0.5, unseen_fraction=0.5), "protocol: every category is single-view or "
                                                                      "unseen"),
])
def test_a_protocol_that_leaves_a_group_empty_or_names_nonsense_is_refused_naming_the_key(protocol, says):
    with pytest.raises(ConfigError) as info:
        category_groups(protocol, CATEGORIES, 0)
    assert str(info.value).startswith(says)


def test_seen_poses_are_the_named_rings_and_the_front_half_and_the_rest_is_held_out():
    views = views_table(RenderConfig(azimuths=12, elevations_deg=[70, 40, 10]))
    p = ProtocolConfig(seen_elevations_deg=[40, 10], seen_azimuths_deg=[-90, 90])
    seen = seen_pose_mask(p, views)
    picked = views[seen]
    assert set(picked.elevation_deg) == {40, 10} and set(picked.azimuth_deg) == {270, 300, 330, 0, 30, 60}
    assert seen.sum() == 12 and (views.kind[seen] == "grid").all()
    poses = pose_groups(p, views, "el+40_az030")
    assert (poses == CLEAN).sum() == 1 and poses[views.view_id == "el+40_az030"][0] == CLEAN
    assert (poses == SEEN_POSES).sum() == 11 and (poses == UNSEEN_POSES).sum() == 24
    assert (poses == OOD).sum() == (views.kind == "ood").sum()
    assert seen_pose_mask(ProtocolConfig(), views).sum() == 36  # no pose split: every grid view is seen


def _objects():
    rows = []
    for c in ["mug", "car", "boat", "lamp"]:
        for i, split in enumerate(["pretrain", "pretrain", "train", "train", "val", "test"]):
            rows.append({"object_id": f"{c}{i}", "category": c, "split": split, "status": "ok"})
    rows.append({"object_id": "mug9", "category": "mug", "split": "", "status": "failed"})
    return pd.DataFrame(rows)


def test_tuning_sees_only_multi_view_train_objects_at_seen_poses_and_clean_views_of_seen_categories():
    views = views_table(RenderConfig(azimuths=4, elevations_deg=[40, 10]))
    p = ProtocolConfig(single_view_categories=["boat"], unseen_categories=["lamp"], seen_elevations_deg=[40])
    scope = tuning_scope(p, _objects(), views, 0, "el+40_az000")
    assert scope.multi_view_objects == ["mug2", "mug3", "car2", "car3"]
    assert scope.seen_views == ["el+40_az000", "el+40_az090", "el+40_az180", "el+40_az270"]
    assert scope.clean_objects == ["mug0", "mug1", "car0", "car1", "boat0", "boat1", "boat2", "boat3"]
    assert not any(o.startswith("lamp") for o in scope.multi_view_objects + scope.clean_objects)
    assert "nothing of the unseen categories (lamp)" in scope.describe()
    with pytest.raises(ConfigError, match="the canonical view el\\+10_az000 .* is not a seen pose"):
        tuning_scope(p, _objects(), views, 0, "el+10_az000")
    with pytest.raises(ConfigError, match="select every grid view, so no pose is held out"):
        tuning_scope(ProtocolConfig(seen_elevations_deg=[40, 10]), _objects(), views, 0, "el+40_az000")


def test_per_object_scores_match_a_loop_over_objects_and_views():
    g = np.random.default_rng(0)
    n, v, d, names = 7, 5, 8, np.array(["a", "b", "c", "d"])
    image = g.normal(size=(n, v, d))
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text = g.normal(size=(4, d))
    labels = g.integers(0, 4, n)
    groups = {"a": MULTI_VIEW, "b": MULTI_VIEW, "c": UNSEEN, "d": UNSEEN}
    poses = np.array([CLEAN, SEEN_POSES, SEEN_POSES, UNSEEN_POSES, UNSEEN_POSES])
    scores = per_object_scores(image, text, labels, names, groups, poses, [f"o{i}" for i in range(n)])
    for row in scores.itertuples():
        wanted = [SEEN_POSES, UNSEEN_POSES] if row.poses == "other_grid" else [row.poses]
        i, keep = int(row.object_id[1:]), np.flatnonzero(np.isin(poses, wanted))
        allowed = [c for c in range(4) if groups[names[c]] == groups[names[labels[i]]]]
        hits = [int(np.argmax(text @ image[i, j]) == labels[i]) for j in keep]
        hits_in = [int(allowed[int(np.argmax(text[allowed] @ image[i, j]))] == labels[i]) for j in keep]
        pairs = [image[i, a] @ image[i, b] for a in keep for b in keep if a != b]
        assert row.zero_shot == pytest.approx(np.mean(hits))
        assert row.zero_shot_in_group == pytest.approx(np.mean(hits_in))
        assert row.category_group == groups[names[labels[i]]] and row.n_views == len(keep)
        if pairs:
            assert row.same_object_similarity == pytest.approx(np.mean(pairs))
        else:
            assert np.isnan(row.same_object_similarity)
    assert chance_levels(groups)[("zero_shot", UNSEEN)] == 0.25
    assert chance_levels(groups)[("zero_shot_in_group", UNSEEN)] == 0.5
    table = transfer_table(scores.assign(method="m"))
    cell = table[(table.category_group == MULTI_VIEW) & (table.poses == SEEN_POSES)].iloc[0]
    mine = scores[(scores.category_group == MULTI_VIEW) & (scores.poses == SEEN_POSES)]
    assert cell.zero_shot == pytest.approx(mine.zero_shot.mean()) and cell.n_objects == len(mine)


def test_the_paired_bootstrap_equals_a_brute_force_loop_with_the_same_draws():
    g = np.random.default_rng(1)
    a, b = g.random(40), g.random(40) - 0.1
    indices = bootstrap_indices(40, 500, seed=3)
    result = paired_difference(a, b, indices)
    loop = sorted(np.mean([a[j] - b[j] for j in draw]) for draw in indices)
    assert result.low == pytest.approx(np.percentile(loop, 2.5)) and result.high == pytest.approx(
        np.percentile(loop, 97.5))
    assert result.difference == pytest.approx(np.mean(a - b))
    assert result.paired_stderr == pytest.approx(np.std(a - b, ddof=1) / np.sqrt(40))
    same = paired_difference(a, a, indices)
    assert (same.difference, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "not resolved")
    assert paired_difference(a + 1, a, indices).verdict == "better"
    assert paired_difference(a, a + 0.01, indices).within(0.02) and not paired_difference(a, a + 0.03,
                                                                                         indices).within(0.02)


def test_paired_table_shares_one_draw_per_cell_across_pairs_and_refuses_unpaired_objects():
    g = np.random.default_rng(2)
    rows = []
    for method, shift in [("frozen", 0.0), ("ovt", 0.2), ("ours", 0.3)]:
        for cell in ["x", "y"]:
            for i in range(30):
                rows.append({"method": method, "object_id": f"o{i}", "cell": cell, "acc": g.random() + shift})
    scores = pd.DataFrame(rows)
    table = paired_table(scores, [("ovt", "frozen"), ("ours", "frozen"), ("ours", "ovt")], ["acc"], ["cell"],
                         n_resamples=300, seed=0)
    assert len(table) == 6 and set(table.verdict) <= {"better", "worse", "not resolved"}
    wide = scores[scores.cell == "x"].pivot(index="object_id", columns="method", values="acc")
    indices = bootstrap_indices(30, 300, 0)
    expected = paired_difference(wide["ours"].to_numpy(), wide["ovt"].to_numpy(), indices)
    row = table[(table.a == "ours") & (table.b == "ovt") & (table.cell == "x")].iloc[0]
    assert (row.low, row.high) == pytest.approx((expected.low, expected.high))
    # the same resample for every pair: differences of differences add up draw by draw
    ab = paired_difference(wide["ours"].to_numpy(), wide["frozen"].to_numpy(), indices)
    ov = paired_difference(wide["ovt"].to_numpy(), wide["frozen"].to_numpy(), indices)
    assert ab.difference == pytest.approx(ov.difference + expected.difference)
    with pytest.raises(ValueError, match="ours and frozen were not scored on the same objects"):
        paired_table(scores.drop(index=scores.index[(scores.method == "ours")][:1]), [("ours", "frozen")], ["acc"],
                     ["cell"])


@pytest.mark.parametrize("protocol, says", [
    ({"unseen_categories": ["dragon"]}, "protocol.unseen_categories: dragon not among the dataset's categories"),
    ({"unseen_fraction": 0.01}, "protocol.unseen_fraction: 0.01 of 3 categories is no category"),
    ({"unseen_fraction": 1.5}, "protocol.unseen_fraction: expected a fraction of the categories between 0 and 1"),
    ({"seen_elevations_deg": [55]}, "protocol.seen_elevations_deg: 55 are not rings of render.elevations_deg "
                                    "(10, 30)"),
    ({"seen_azimuths_deg": [0]}, "protocol.seen_azimuths_deg: expected [from, to] in degrees"),
    ({"seen_elevations_deg": [10]}, "protocol.seen_elevations_deg / seen_azimuths_deg: the canonical view"),
    ({"seen_elevations_deg": [30, 10]}, "protocol.seen_elevations_deg / seen_azimuths_deg: select every grid view"),
])
def test_a_config_whose_protocol_leaves_a_group_empty_is_refused_at_load_naming_the_key(protocol, says):
    from helpers import make_config

    with pytest.raises(ConfigError) as info:
        make_config({"protocol": protocol})
    assert str(info.value).startswith(says)


def test_the_supervised_control_starts_at_zero_shot_and_learns_the_labels_it_sees():
    import torch

    from mvclip_utils.studies.control import fit_category_classifier

    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    labels = torch.arange(3).repeat_interleave(20)  # classes 0-2 seen, class 3 never
    features = centres[labels] + 0.1 * torch.randn(60, 16, generator=g)
    prompts = torch.roll(centres, 1, 0) + 0.3 * torch.randn(4, 16, generator=g)  # a wrong zero-shot classifier
    untrained = fit_category_classifier(features, labels, prompts, 100.0, epochs=0, lr=0.01)
    torch.testing.assert_close(untrained, torch.nn.functional.normalize(prompts, dim=-1) * 100.0)
    trained = fit_category_classifier(features, labels, prompts, 100.0, epochs=200, lr=0.5)

    def accuracy(weight):
        return float(((torch.nn.functional.normalize(features, dim=-1) @ weight.T).argmax(1) == labels).float().mean())

    assert accuracy(trained) > accuracy(untrained) and accuracy(trained) > 0.9
    # the unseen class's row moves only as the negative of the others: away from their features
    assert float(trained[3] @ centres[:3].T.mean(1)) <= float(untrained[3] @ centres[:3].T.mean(1))


def test_views_are_binned_by_their_angle_from_the_canonical_view():
    from mvclip_utils.core.cameras import angle_from_view
    from mvclip_utils.core.protocol import angle_bins

    views = views_table(RenderConfig(azimuths=12, elevations_deg=[70, 40, 10]))
    angle = angle_from_view(views, "el+40_az030")
    at = dict(zip(views.view_id, angle))
    assert at["el+40_az030"] == pytest.approx(0, abs=1e-6)
    assert at["el+40_az210"] == pytest.approx(100)  # across the top: 180 - 2 x 40
    assert at["el+70_az030"] == pytest.approx(30) and at["el+10_az030"] == pytest.approx(30)
    bins = angle_bins(views, "el+40_az030")
    grid = (views.kind == "grid").to_numpy()
    assert (sum(m.astype(int) for m in bins.values()) == grid).all()  # every grid view in exactly one bin
    assert bins["angle_090_120"][views.view_id == "el+40_az210"].all()
    assert bins["angle_030_060"][views.view_id == "el+70_az030"].all()  # 30 degrees opens the second bin


def test_pose_is_decodable_from_pose_dependent_embeddings_and_not_from_invariant_ones():
    from mvclip_utils.evaluation.metrics import pose_decodability

    views = views_table(RenderConfig(azimuths=6, elevations_deg=[40, 10]))
    grid = (views.kind == "grid").to_numpy()
    g = np.random.default_rng(0)
    n, d = 20, 32
    view_code = g.normal(size=(len(views), d))  # every view adds its own direction
    objects = g.normal(size=(n, 1, d))
    posed = objects + 2.0 * view_code[None] + 0.3 * g.normal(size=(n, len(views), d))
    invariant = np.repeat(objects, len(views), axis=1) + 0.3 * g.normal(size=(n, len(views), d))
    seen = pose_decodability(posed, views)
    blind = pose_decodability(invariant, views)
    assert seen["pose_azimuth_accuracy"] > 0.95 and seen["pose_elevation_accuracy"] > 0.95
    assert blind["pose_azimuth_accuracy"] < 0.4 and blind["pose_elevation_accuracy"] < 0.75
    assert seen["pose_azimuth_chance"] == pytest.approx(1 / 6) and seen["pose_elevation_chance"] == 0.5
    assert grid.sum() == 12


def test_the_choice_on_val_takes_the_best_transfer_within_the_clean_budget_and_never_reads_test():
    from mvclip_utils.studies.transfer import choose_on_val

    rows = pd.DataFrame({
        "variant": ["a", "b", "c"],
        "val_zero_shot_multi_view_unseen_poses": [0.50, 0.70, 0.60],
        "val_zero_shot_single_view_other_grid": [0.40, 0.60, 0.50],
        "val_zero_shot_unseen_other_grid": [0.30, 0.50, 0.40],
        "val_zero_shot_all_clean": [0.80, 0.70, 0.795],  # b loses 10 points of clean accuracy
        "zero_shot_all_clean": [0.0, 1.0, 0.0],  # a test column: ignored
    })
    table = choose_on_val(rows, frozen_clean=0.80)
    assert table.eligible.tolist() == [True, False, True]
    assert table.val_transfer.tolist() == pytest.approx([0.40, 0.60, 0.50])
    assert table.chosen.tolist() == [False, False, True]
    none_kept = choose_on_val(rows.assign(val_zero_shot_all_clean=[0.5, 0.7, 0.6]), frozen_clean=0.9)
    assert none_kept.chosen.tolist() == [False, True, False]  # the least clean loss when none is within budget
    with pytest.raises(ValueError, match="the variants have no val columns"):
        choose_on_val(rows[["variant", "zero_shot_all_clean"]], 0.8)


def test_the_variance_table_sets_training_and_dataset_seeds_side_by_side(tmp_path):
    from mvclip_utils.core.runs import RunLayout
    from mvclip_utils.evaluation.results import load_dataset_seed_table, write_dataset_seed_table
    from mvclip_utils.studies.transfer import variance_table

    def table(mean, stderr, runs):
        return pd.DataFrame({"method": ["baseline", "omniview_tuning"], "n_runs": [runs, runs],
                             "zero_shot_multi_view_unseen_poses": mean,
                             "zero_shot_multi_view_unseen_poses_seed_stderr": stderr})

    layout = RunLayout(tmp_path / "run")
    with pytest.raises(ValueError, match="is not among the collected runs"):
        write_dataset_seed_table(layout, table([0.4, 0.5], [0.0, 0.01], 3), [tmp_path / "other"])
    write_dataset_seed_table(layout, table([0.4, 0.5], [0.03, 0.04], 3), [layout.root, tmp_path / "seed-1"])
    both = variance_table(table([0.4, 0.52], [0.0, 0.01], 3).set_index("method"), load_dataset_seed_table(layout))
    row = both.loc[("Omniview-Tuning", "unseen poses")]
    assert row[("stderr", "training seeds")] == 0.01 and row[("stderr", "dataset seeds")] == 0.04
    assert row[("mean", "dataset seeds")] == 0.5 and row[("runs", "training seeds")] == 3
    assert variance_table(None, None).empty
    decoding = pd.DataFrame({"method": ["vqvae_own_encoder"], "n_runs": [3], "zero_shot_multi_view_unseen_poses":
                             [float("nan")], "zero_shot_multi_view_unseen_poses_seed_stderr": [float("nan")]})
    assert variance_table(decoding.set_index("method"), None).empty  # no zero-shot: no row


def test_the_headline_states_chance_for_the_categories_competing_in_each_regime():
    from mvclip_utils.studies.transfer import ALL, TransferResults, headline_table

    groups = {"a": MULTI_VIEW, "b": MULTI_VIEW, "c": SINGLE_VIEW, "d": UNSEEN, "e": UNSEEN}
    rows = [{"method": "baseline", "object_id": f"o{c}", "category": c, "category_group": g, "poses": p,
             "zero_shot": 0.5, "zero_shot_in_group": 0.5, "same_object_similarity": 0.9}
            for c, g in groups.items() for p in (CLEAN, UNSEEN_POSES, "other_grid")]
    scores = pd.DataFrame(rows)
    scores = pd.concat([scores, scores[scores.poses == CLEAN].assign(category_group=ALL)], ignore_index=True)
    paired = pd.DataFrame(columns=["a", "b", "category_group", "poses", "metric"])  # no other method
    results = TransferResults(scores, transfer_table(scores), paired, 10)
    assert headline_table(results).loc["chance"].unique().tolist() == ["0.200"]  # 1 / every category
    in_group = headline_table(results, "zero_shot_in_group").loc["chance"]
    assert (in_group["unseen poses"], in_group["single-view categories"], in_group["unseen categories"]) == (
        "0.500", "1.000", "0.500")


def test_findings_state_each_verdict_from_its_interval_and_the_clean_budget_against_the_right_row():
    from mvclip_utils.studies.transfer import ALL, REGIMES, TransferResults, findings

    def cell(a, b, regime, low, high):
        group, poses = REGIMES[regime]
        verdict = "better" if low > 0 else "worse" if high < 0 else "not resolved"
        return {"a": a, "b": b, "category_group": group, "poses": poses, "metric": "zero_shot",
                "difference": (low + high) / 2, "low": low, "high": high, "paired_stderr": 0.01, "n_objects": 40,
                "verdict": verdict}

    paired = pd.DataFrame([cell("omniview_tuning", "baseline", "clean", -0.035, -0.005),
                           cell("omniview_tuning", "baseline", "unseen poses", 0.02, 0.06),
                           cell("centroid_distillation", "omniview_tuning", "clean", -0.008, 0.02),
                           cell("centroid_distillation", "omniview_tuning", "unseen poses", -0.01, 0.01)])
    scores = pd.DataFrame([{"method": "baseline", "object_id": "o1", "category": "a", "category_group": ALL,
                            "poses": CLEAN, "zero_shot": 1.0}])
    text = findings(TransferResults(scores, pd.DataFrame(), paired, 100))
    ovt, ours = [line for line in text.splitlines() if line.startswith("- ")]
    assert "clean -2.0 [-3.5, -0.5] (**worse**)" in ovt and "unseen poses +4.0 [+2.0, +6.0] (**better**)" in ovt
    assert ovt.endswith("Clean accuracy within 1 point of the frozen backbone's or above: not shown "
                        "(the interval reaches -3.5).")
    assert "unseen poses +0.0 [-1.0, +1.0] (not resolved)" in ours
    assert ours.endswith("Clean accuracy within 1 point of Omniview-Tuning's or above: yes.")
