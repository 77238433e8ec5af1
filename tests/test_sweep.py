"""Batch reruns: the variant grid, the variant configs, the results table over runs (mean and standard
error over seeds, checked by hand), and a real sweep whose variants share one rendered dataset."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, run_module

from mvclip_utils.core.config import load_config
from mvclip_utils.core.runs import VARIANT_FILE, RunLayout
from mvclip_utils.core.schema import ConfigError
from mvclip_utils.sweep import collect, nested, parse_set, variant_name, variants, write_variant_config

PARAMS = REPO / "params"


def test_the_variant_grid_and_its_names():
    sets = [parse_set("seed=0,1,2"), parse_set("heads.lr=1e-3,3e-4")]
    assert sets[1] == ("heads.lr", [0.001, 0.0003])
    grid = variants(sets)
    assert len(grid) == 6 and grid[0] == {"seed": 0, "heads.lr": 0.001} and grid[-1] == {"seed": 2, "heads.lr": 0.0003}
    assert variant_name(grid[1]) == "seed-0_heads.lr-0.0003"
    assert nested({"seed": 1, "heads.lr": 0.1, "heads.steps": 5}) == {"seed": 1, "heads": {"lr": 0.1, "steps": 5}}
    for bad in ("seed", "=1,2", "heads..lr=1", "seed="):
        with pytest.raises(ValueError, match="expected KEY=V1,V2"):
            parse_set(bad)
    with pytest.raises(ValueError, match="given twice"):
        variants([parse_set("seed=0"), parse_set("seed=1")])


def test_zipped_keys_take_their_values_together():
    key, values = parse_set("heads.seed, ovt.seed,distill.seed=0,1,2")
    assert (key, values) == ("heads.seed,ovt.seed,distill.seed", [0, 1, 2])
    grid = variants([(key, values), parse_set("heads.lr=0.1,0.2")])
    assert len(grid) == 6 and grid[1] == {key: 0, "heads.lr": 0.2}
    assert nested(grid[1]) == {"heads": {"seed": 0, "lr": 0.2}, "ovt": {"seed": 0}, "distill": {"seed": 0}}
    assert variant_name({key: 2}) == "seed-2" and variant_name({"heads.seed,ovt.lr": 1}) == "heads.seed-ovt.lr-1"
    with pytest.raises(ValueError, match="named twice"):
        parse_set("ovt.seed,ovt.seed=1")
    with pytest.raises(ValueError, match="given twice"):
        variants([parse_set("heads.seed,ovt.seed=0"), parse_set("ovt.seed=1")])


def test_a_variant_config_extends_the_base_and_a_bad_key_fails_before_any_work(tmp_path):
    path = write_variant_config(PARAMS / "smoke.yaml", {"seed": 3, "heads.lr": 0.01}, tmp_path / "v.yaml", "smoke-v")
    cfg = load_config(path)
    assert (cfg.seed, cfg.heads.lr, cfg.run_name) == (3, 0.01, "smoke-v")
    assert cfg.render.resolution == load_config(PARAMS / "smoke.yaml").render.resolution  # the rest is the base's
    with pytest.raises(ConfigError, match="heads.lrr: unknown key"):
        write_variant_config(PARAMS / "smoke.yaml", {"heads.lrr": 1}, tmp_path / "w.yaml", "x")


def _fake_run(root, name, overrides, rows):
    run = root / name
    (run / "metrics").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run / "metrics" / "results.csv", index=False)
    (run / VARIANT_FILE).write_text(json.dumps({"overrides": overrides}))
    return run


def test_collect_gives_mean_and_standard_error_over_seeds_per_method_and_setting(tmp_path):
    runs = [_fake_run(tmp_path, f"s{seed}-lr{lr}", {"seed": seed, "heads.lr": lr},
                      [{"method": "baseline", "score": 0.5}, {"method": "object_head", "score": value}])
            for seed, lr, value in [(0, 0.1, 0.2), (1, 0.1, 0.4), (2, 0.1, 0.9), (0, 0.3, 0.7), (1, 0.3, 0.7)]]
    table = collect(runs).set_index(["method", "heads.lr"])
    row = table.loc[("object_head", "0.1")]
    assert row.n_runs == 3 and row.score == pytest.approx(0.5)
    assert row.score_seed_stderr == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1) / np.sqrt(3))
    assert table.loc[("object_head", "0.3")].score_seed_stderr == 0.0 and table.loc[("baseline", "0.3")].n_runs == 2
    with pytest.raises(FileNotFoundError, match="has no results"):
        collect([tmp_path / "nowhere"])


def test_collect_averages_over_zipped_seed_keys_by_their_label(tmp_path, capsys):
    zipped = "heads.seed,ovt.seed"
    runs = [_fake_run(tmp_path, f"seed-{seed}", {zipped: seed}, [{"method": "omniview_tuning", "score": value}])
            for seed, value in [(0, 0.5), (1, 0.6), (2, 0.9)]]
    assert (collect(runs, "heads.lr").n_runs == 1).all()  # not a key of theirs: a row per run (the CLI says so)
    from mvclip_utils.cli import main

    assert main(["collect", *map(str, runs), "--over", "heads.lr"]) == 0
    assert "no run was swept over heads.lr (they were over heads.seed,ovt.seed)" in capsys.readouterr().err
    for over in ("seed", zipped):
        row = collect(runs, over).set_index("method").loc["omniview_tuning"]
        assert row.n_runs == 3 and row.score == pytest.approx(2 / 3)
        assert row.score_seed_stderr == pytest.approx(np.std([0.5, 0.6, 0.9], ddof=1) / np.sqrt(3))
    # `make seeds`: the default run (no variant file, training seed 0) beside the variants of seeds 1 and 2.
    base = tmp_path / "default"
    (base / "metrics").mkdir(parents=True)
    pd.DataFrame([{"method": "omniview_tuning", "score": 0.5}]).to_csv(base / "metrics" / "results.csv", index=False)
    row = collect([base, *runs[1:]]).set_index("method").loc["omniview_tuning"]
    assert row.n_runs == 3 and row.score == pytest.approx(2 / 3)


def test_a_sweep_from_a_run_of_another_dataset_is_refused_before_any_work(tmp_path):
    from mvclip_utils.sweep import run_sweep

    other = tmp_path / "other"
    (other / "configs").mkdir(parents=True)
    write_variant_config(PARAMS / "smoke.yaml", {"seed": 5}, other / "configs" / "01_render.yaml", "other")
    with pytest.raises(ValueError, match="its dataset was made with other dataset/render settings or another seed"):
        run_sweep(PARAMS / "smoke.yaml", [parse_set("heads.lr=0.1")], tmp_path / "sweep", from_run=other)
    with pytest.raises(ValueError, match="has no configs/01_render.yaml; run its notebook 01_render first"):
        run_sweep(PARAMS / "smoke.yaml", [parse_set("heads.lr=0.1")], tmp_path / "sweep", from_run=tmp_path / "none")
    assert not list((tmp_path / "sweep").glob("*/"))  # no variant ran


@pytest.mark.slow
def test_a_sweep_runs_each_variant_into_its_own_directory_sharing_one_rendered_dataset(tmp_path):
    from mvclip_utils.evaluation.results import load_seed_table

    root = tmp_path / "sweep"
    result = run_module("mvclip_utils", "sweep", "--config", str(PARAMS / "smoke.yaml"),
                        "--set", "heads.lr=0.001,0.0003", "--root", str(root), "--only", "01-05", timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    first, second = root / "heads.lr-0.001", root / "heads.lr-0.0003"
    assert (second / "dataset").is_symlink() and (second / "dataset").resolve() == (first / "dataset").resolve()
    assert "dataset shared with heads.lr-0.001" in result.stdout
    # Same backbone and embedding settings: 02 and 03 reused the first variant's (linked) files, not made new ones.
    assert "backbone and frozen embeddings from heads.lr-0.001" in result.stdout
    slug = json.loads((first / "backbone" / "backbone.json").read_text())["slug"]
    for shared in (f"backbone/{slug}.pt", f"embeddings/{slug}.npz"):
        assert (second / shared).samefile(first / shared), shared
    for run, lr in ((first, "0.001"), (second, "0.0003")):
        assert f"Sweep variant: <b>heads.lr = {lr}</b>" in (run / "index.html").read_text()
        assert pd.read_csv(run / "metrics" / "results.csv").method.tolist() == ["baseline", "object_head"]
    object_head = [json.loads((run / "metrics" / "object_head.json").read_text()) for run in (first, second)]
    assert object_head[0]["config_digest"] != object_head[1]["config_digest"]  # trained with their own lr
    out = tmp_path / "collected.csv"
    collected = run_module("mvclip_utils", "collect", str(first), str(second), "--out", str(out))
    assert collected.returncode == 0, collected.stderr
    table = pd.read_csv(out)
    assert len(table) == 4 and set(table["heads.lr"].astype(str)) == {"0.001", "0.0003"} and (table.n_runs == 1).all()

    # The methods' seeds, zipped, on the first variant's dataset and backbone (as `make seeds` on the default run),
    # collected into that run for its summary.
    seeds_root = tmp_path / "seeds"
    result = run_module("mvclip_utils", "sweep", "--config", str(root / "heads.lr-0.001.yaml"),
                        "--set", "heads.seed,ovt.seed=1,2", "--from-run", str(first), "--root", str(seeds_root),
                        "--only", "01-05", timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    runs = [seeds_root / "seed-1", seeds_root / "seed-2"]
    assert f"(dataset shared with {first.name}) (backbone and frozen embeddings from {first.name})" in result.stdout
    assert (runs[1] / "backbone" / f"{slug}.pt").samefile(first / "backbone" / f"{slug}.pt")
    assert (runs[0] / "dataset").resolve() == (first / "dataset").resolve()
    collected = run_module("mvclip_utils", "collect", *map(str, runs), "--into", str(first))
    assert collected.returncode == 0, collected.stderr
    seeds = load_seed_table(RunLayout(first))
    heads = [json.loads((run / "metrics" / "object_head.json").read_text())["same_object_mean"] for run in runs]
    assert heads[0] != heads[1]  # the seed reached the head's training
    assert seeds.loc["object_head", "n_runs"] == 2 and seeds.loc["object_head", "same_object_mean"] == pytest.approx(
        np.mean(heads))
    assert seeds.loc["object_head", "same_object_mean_seed_stderr"] == pytest.approx(np.std(heads, ddof=1) / np.sqrt(2))
    assert seeds.loc["baseline", "same_object_mean_seed_stderr"] == 0.0  # the frozen backbone: the same in every run

    # Choosing the head's lr on val: two variants of 05 on the first run's dataset and backbone, the choice
    # and every variant's val numbers written into that run, the variants (and their test numbers) removed.
    result = run_module("mvclip_utils", "select", "--config", str(root / "heads.lr-0.001.yaml"), "--from-run",
                        str(first), "--method", "object_head", "--only", "05", "--set", "heads.lr=0.001,0.01",
                        timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    table = pd.read_csv(first / "selection" / "object_head.csv")
    assert table.variant.tolist() == ["heads.lr-0.001", "heads.lr-0.01"] and table.chosen.sum() == 1
    assert not any(c.startswith("zero_shot") for c in table.columns)  # val columns only, never test
    chosen = table[table.chosen].iloc[0]
    picked = load_config(first / "selection" / "object_head.yaml")
    header = (first / "selection" / "object_head.yaml").read_text().splitlines()[0]
    assert header.endswith("within the clean budget);") if chosen.eligible else "the one that lost least" in header
    assert picked.heads.lr == float(chosen["heads.lr"])
    assert picked.run_name == load_config(root / "heads.lr-0.001.yaml").run_name
    assert not (first / "selection" / "object_head-variants").exists()
    assert f"evaluate it on test once: mvclip run --config {first / 'selection' / 'object_head.yaml'}" in result.stdout


def test_sharing_a_backbone_links_its_files_and_relinks_when_the_source_changed(tmp_path):
    from mvclip_utils.sweep import share_backbone

    source, variant = RunLayout(tmp_path / "source"), RunLayout(tmp_path / "variant")

    def write_source(identity: str) -> None:
        source.backbone.mkdir(parents=True, exist_ok=True)
        source.embeddings.mkdir(parents=True, exist_ok=True)
        for path, text in ((source.backbone_record, json.dumps({"slug": "m", "identity": identity})),
                           (source.backbone_checkpoint("m"), identity), (source.embeddings_file("m"), identity)):
            tmp = path.with_suffix(".new")
            tmp.write_text(text)
            tmp.replace(path)  # as every writer of the project: a new file, never written in place

    write_source("A")
    linked = share_backbone(source.root, variant.root)
    assert sorted(p.name for p in linked) == ["backbone.json", "m.npz", "m.pt"]
    assert variant.backbone_checkpoint("m").samefile(source.backbone_checkpoint("m"))
    assert share_backbone(source.root, variant.root) == []  # the same backbone already: nothing to do
    kept = tmp_path / "kept.npz"
    kept.hardlink_to(variant.embeddings_file("m"))  # another name of the variant's old file
    write_source("B")  # the source run was made again
    assert len(share_backbone(source.root, variant.root)) == 3
    assert variant.embeddings_file("m").read_text() == "B" and kept.read_text() == "A"  # replaced, not written through
    assert not list(variant.root.rglob("*.tmp"))
