"""A partial rerun with a changed config is refused before any work, naming the setting and the notebook to rerun."""

import pytest
import yaml

from mvclip_utils.cli import main
from mvclip_utils.core.config import dump_config, load_config
from mvclip_utils.core.lineage import MADE_FROM, READS, describe_stale, stale_inputs
from mvclip_utils.core.runs import PARAMS_DIR, RunLayout
from mvclip_utils.core.schema import ConfigError
from mvclip_utils.pipeline import discover_notebooks, run_pipeline

SMOKE = PARAMS_DIR / "smoke.yaml"


def finished_run(tmp_path, upto: int = 13) -> RunLayout:
    """The configs a finished smoke run records (configs/NN_slug.yaml, as the runner writes them)."""
    layout = RunLayout(tmp_path / "run")
    cfg = load_config(SMOKE)
    for number, path in discover_notebooks().items():
        if number <= upto:
            dump_config(cfg, layout.notebook_config(path.stem))
    return layout


def changed(tmp_path, overrides: dict):
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump({"extends": str(SMOKE), **overrides}))
    return path


# (what changes, the setting named, the notebook that made the input it changes)
CHANGES = [
    ({"backbone": {"model": "ViT-B-32", "pretrained": "openai"}}, "backbone.model", "02_backbone"),
    ({"backbone": {"pretrain": {"steps": 31}}}, "backbone.pretrain.steps", "02_backbone"),
    ({"backbone": {"pretrain": {"canonical_view": "el+40_az270"}}}, "backbone.pretrain.canonical_view",
     "02_backbone"),
    ({"dataset": {"procedural": {"objects_per_category": 8}}}, "dataset.procedural.objects_per_category",
     "01_render"),
    ({"render": {"resolution": 48}}, "render.resolution", "01_render"),
    ({"render": {"azimuths": 6}}, "render.azimuths", "01_render"),
    ({"seed": 1}, "seed", "01_render"),
    ({"dataset": {"procedural": {"categories": ["mug", "car", "boat", "lamp"]}}}, "dataset.procedural.categories",
     "01_render"),
    ({"dataset": {"splits": {"pretrain": 0.4, "train": 0.2, "val": 0.2, "test": 0.2}}}, "dataset.splits",
     "01_render"),
    ({"embed": {"prompt_templates": ["a render of a {}."]}}, "embed.prompt_templates", "03_embed"),
]


@pytest.mark.parametrize("overrides, setting, made_by", CHANGES, ids=[c[1] for c in CHANGES])
def test_a_changed_setting_refuses_a_partial_rerun_of_04_before_any_work(tmp_path, overrides, setting, made_by):
    layout = finished_run(tmp_path)
    config = changed(tmp_path, overrides)
    with pytest.raises(ConfigError) as refused:
        run_pipeline(config, layout.root, only="04", kernel="no-such-kernel")  # refused before a kernel starts
    message = str(refused.value)
    assert message.startswith(setting) and f"but {made_by} made its outputs with" in message
    assert f"rerun from {made_by} (mvclip run --config {config} --only {made_by[:2]}-04)" in message
    assert not layout.executed_notebook("04_baseline").exists() and not layout.report("04_baseline").exists()


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path, capsys):
    layout = finished_run(tmp_path)
    config = changed(tmp_path, {"render": {"resolution": 48}, "seed": 3})
    assert main(["run", "--config", str(config), "--run-dir", str(layout.root), "--only", "05-07"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("mvclip: ") and "render.resolution is 48" in err and "(and 1 more: seed)" in err


def test_rerunning_the_notebook_that_made_the_input_is_allowed(tmp_path):
    layout = finished_run(tmp_path)
    cfg = load_config(changed(tmp_path, {"render": {"resolution": 48}}))
    stems = {n: p.stem for n, p in discover_notebooks().items()}
    assert stale_inputs(cfg, layout, stems, [1, 2, 3, 4]) == []  # 01 remakes the dataset first
    assert [s.made_by for s in stale_inputs(cfg, layout, stems, [2, 3, 4])] == ["01_render"]


def test_settings_that_change_how_not_what_and_later_sections_are_not_stale(tmp_path):
    layout = finished_run(tmp_path)
    stems = {n: p.stem for n, p in discover_notebooks().items()}
    same_outputs = load_config(changed(tmp_path, {"render": {"workers": 1}, "embed": {"batch_size": 7},
                                                  "heads": {"lr": 0.01}, "pipeline": {"notebook_timeout_s": 99}}))
    assert stale_inputs(same_outputs, layout, stems, [4, 5, 8, 13]) == []
    # 05's own section changed: 05 reruns with it; 13 reads results rows, which carry their own provenance.
    assert stale_inputs(load_config(changed(tmp_path, {"heads": {"steps": 5}})), layout, stems, [5, 13]) == []


def test_a_notebook_that_never_ran_is_not_compared_and_every_notebook_has_its_lineage(tmp_path):
    layout = finished_run(tmp_path, upto=1)  # only 01 ran
    stems = {n: p.stem for n, p in discover_notebooks().items()}
    cfg = load_config(changed(tmp_path, {"backbone": {"pretrain": {"steps": 31}}}))
    assert stale_inputs(cfg, layout, stems, [4]) == []
    assert set(READS) | {1} == set(stems) and set(MADE_FROM) <= set(stems)
    assert all(earlier < number for number, reads in READS.items() for earlier in reads)


def test_the_message_names_the_first_notebook_and_counts_the_rest(tmp_path):
    layout = finished_run(tmp_path)
    stems = {n: p.stem for n, p in discover_notebooks().items()}
    cfg = load_config(changed(tmp_path, {"backbone": {"pretrain": {"steps": 31}}, "render": {"azimuths": 6}}))
    stale = stale_inputs(cfg, layout, stems, [9])
    assert [(s.made_by, s.setting) for s in stale] == [("01_render", "render.azimuths"),
                                                      ("02_backbone", "backbone.pretrain.steps")]
    assert describe_stale(stale, "c.yaml", 9) == (
        "render.azimuths is 6 in c.yaml but 01_render made its outputs with 4 (and 1 more: "
        "backbone.pretrain.steps): rerun from 01_render (mvclip run --config c.yaml --only 01-09) or set it back")
