"""Splits of the rendered dataset."""

import pandas as pd


def test_failed_objects_take_no_split_place():
    from mvclip_utils.config import SplitConfig
    from mvclip_utils.dataset import split_rendered

    objects = pd.DataFrame({"object_id": [f"m{i}" for i in range(4)] + [f"b{i}" for i in range(3)],
                            "category": ["mug"] * 4 + ["bottle"] * 3,
                            "status": ["ok", "failed", "ok", "ok", "ok", "ok", "ok"]})
    fractions = SplitConfig(pretrain=0.0, train=0.34, val=0.33, test=0.33)
    for seed in range(5):
        split = split_rendered(objects, fractions, seed).set_index("object_id").split
        assert split["m1"] == ""
        ok = split.drop("m1")
        assert sorted(ok[ok.index.str.startswith("m")]) == ["test", "train", "val"]  # one of each, whatever the seed
