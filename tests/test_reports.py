"""Paper-ready reports: figure files and their index, tables for a paper, display names and precision,
the training sentences, the terminal's time left, the view explorer's numbers."""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_pipeline import well_formed_tabular  # noqa: E402

from mvclip_utils.core.runs import RunLayout  # noqa: E402
from mvclip_utils.core.train import TrainResult, describe_training  # noqa: E402
from mvclip_utils.evaluation import metrics, results
from mvclip_utils.reports import (
    figures,  # noqa: E402
    summary_plots,
)
from mvclip_utils.studies import summary


def test_figure_names_are_stable_slugs_of_the_title():
    assert figures.slug("Zero-shot accuracy per view (mvclip-tiny)") == "zero-shot-accuracy-per-view"
    assert figures.slug("Same-object cosine similarity, ViT-B-32 / openai") == "same-object-cosine-similarity"
    assert figures.slug("Truth and reconstructions: canonical view") == "truth-and-reconstructions"
    assert figures.slug("") == ""


def test_each_figure_is_saved_once_in_three_formats_under_a_unique_name(tmp_path):
    layout = RunLayout(tmp_path)
    files = figures.FigureFiles(layout, "04_baseline")
    made = []
    for _ in range(2):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, 1])
        ax.set_title("Zero-shot accuracy (tiny)")
        ax.tick_params(labelsize=6)
        made.append(files.save(fig))
    assert [m["name"] for m in made] == ["04_baseline-zero-shot-accuracy", "04_baseline-zero-shot-accuracy-2"]
    assert files.save(fig) is made[1]  # shown twice, saved once
    assert made[0]["min_font_pt"] == 6  # what the index checks against 8 pt
    for extension in figures.FORMATS:
        assert layout.figure_file(made[0]["name"], extension).stat().st_size > 0
    named, _ = plt.subplots()
    named.axes[0].set_title("mug_0001: a red mug")
    named.mvclip_name = "view-grid"
    assert files.save(named)["name"] == "04_baseline-view-grid"
    plt.close("all")


def test_reports_get_an_anchor_before_each_named_figure_and_the_index_links_to_it(tmp_path):
    layout = RunLayout(tmp_path)
    record = {"name": "04_baseline-by-elevation", "title": "By elevation", "min_font_pt": 8.0}
    figure = nbformat.v4.new_output("display_data", {"image/png": "iVBORw0KGgo="},
                                    metadata={"image/png": {figures.METADATA_KEY: record}})
    plain = nbformat.v4.new_output("display_data", {"image/png": "iVBORw0KGgo="})
    cell = nbformat.v4.new_code_cell("plot()", outputs=[plain, figure])
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## Zero-shot by view"), cell])
    layout.notebooks.mkdir(parents=True)
    nbformat.write(notebook, layout.executed_notebook("04_baseline"))

    anchored = figures.report_with_anchors(notebook)
    outputs = anchored.cells[1].outputs
    assert len(outputs) == 3 and outputs[1]["data"]["text/html"] == '<a id="04_baseline-by-elevation"></a>'
    assert len(notebook.cells[1].outputs) == 2  # the executed notebook itself is untouched
    index = figures.figure_index(layout)
    assert index.to_dict("records") == [{
        "notebook": "04_baseline", "section": "Zero-shot by view", "title": "By elevation",
        "name": "04_baseline-by-elevation", "report": "reports/04_baseline.html#04_baseline-by-elevation",
        "pdf": "figures/04_baseline-by-elevation.pdf", "svg": "figures/04_baseline-by-elevation.svg",
        "png": "figures/04_baseline-by-elevation.png", "min_font_pt": 8.0}]
    html = figures.figure_index_html(index, base="../")
    assert "href='../reports/04_baseline.html#04_baseline-by-elevation'" in html
    assert "href='../figures/04_baseline-by-elevation.pdf'" in html


def test_numbers_get_sensible_precision_and_methods_display_names():
    assert [results.format_number(v)
            for v in (0.00059, 0.5, 0.0, 12345.6, np.int64(7_000_000), float("nan"), -0.0031)] \
        == ["5.9e-4", "0.500", "0", "12,346", "7,000,000", "", "-3.1e-3"]
    assert results.method_label("object_head") == "object head"
    assert results.method_label("my_new_method") == "my new method"
    assert results.HEADLINE_COLUMNS["view_retrieval_recall_at_1"] == "view recall@1"


def test_latex_tables_are_well_formed_and_escaped():
    table = pd.DataFrame({("same-object", "this run"): ["0.95 ± 0.05"], ("same-object", "seed"): ["0.893 ± 0.067"],
                          ("reproduced?", ""): ["partly: 50% & more_than_half"]},
                         index=pd.Index(["object head"], name="method"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    tex = results.latex_table(table, "Spread: mean ± std over pairs", "tab:seed")
    well_formed_tabular(tex)
    assert r"\multicolumn{2}{c}{same-object}" in tex and r"\cmidrule(lr){2-3}" in tex
    assert r"0.893 $\pm$ 0.067" in tex and r"50\% \& more\_than\_half" in tex
    with pytest.raises(AssertionError):
        well_formed_tabular(tex.replace(r"object head &", "object head & extra &"))


def _row(same, cross, text, zero_shot, pooled=0.1):
    return {"same_object_mean": same, "cross_object_mean": cross, "text_image_mean": text,
            "same_object_pooled_std": pooled, "cross_object_pooled_std": pooled, "text_image_pooled_std": pooled,
            "zero_shot_accuracy": zero_shot, "n_categories": 10}


def test_the_seed_comparison_uses_the_pooled_spread_on_both_sides_and_says_what_was_reproduced():
    rows = {"baseline": _row(0.9, 0.1, 0.3, 0.8), "object_head": _row(0.99, 0.95, 0.9, 0.12),
            "contrastive_head": _row(0.8, 0.05, 0.4, 0.6), "autoencoder": _row(0.95, 0.12, 0.31, 0.8)}
    table = summary.seed_comparison(pd.DataFrame([{"method": m, **r} for m, r in rows.items()]))
    assert list(table.index) == ["baseline (frozen)", "object head", "contrastive head", "view autoencoder"]
    assert table.loc["object head", ("cross-object", "this run")] == "0.950 ± 0.100"
    assert table.loc["contrastive head", ("cross-object", "seed")] == "0.021 ± 0.676"  # the seed's pooled std
    assert table.loc["object head", ("reproduced?", "")] == "yes"  # collapsed: cross-object up, zero-shot ~ chance
    assert table.loc["contrastive head", ("reproduced?", "")] == "partly: cross-object falls"
    assert table.loc["view autoencoder", ("reproduced?", "")] == "yes"
    assert table.loc["baseline (frozen)", ("reproduced?", "")] == "(the reference)"


def test_standard_errors_over_objects_on_constructed_embeddings():
    # object 0: its two views identical (retrieval perfect); object 1: its views point away from each other
    image = np.zeros((3, 2, 4), np.float32)
    image[0, :, 0] = 1
    image[1, 0, 1], image[1, 1, 2] = 1, 1
    image[2, 0, 3], image[2, 1, 1] = 1, 1
    retrieval = metrics.view_retrieval(image)
    per_object_recall = np.array([1.0, 0.0, 0.0])  # object 1's nearest others are object 2's view (a tie lost)
    assert retrieval["recall_at_1"] == pytest.approx(per_object_recall.mean())
    assert retrieval["recall_at_1_stderr"] == pytest.approx(per_object_recall.std(ddof=1) / np.sqrt(3))
    views = pd.DataFrame({"view_id": ["a", "b"], "azimuth_deg": [0, 90], "elevation_deg": [10, 10],
                          "distance": [1.5, 1.5], "kind": ["grid", "grid"]})
    category_text = np.eye(4, dtype=np.float32)[:2]  # prompts along dimensions 0 and 1
    labels = np.array([0, 1, 1])
    row = metrics.zero_shot_columns(image, category_text, labels, views, "a")
    correct = np.array([[1, 1], [1, 0], [0, 1]])  # argmax of each view over the two prompts, against labels
    assert row["zero_shot_accuracy"] == pytest.approx(correct.mean())
    assert row["zero_shot_accuracy_stderr"] == pytest.approx(correct.mean(1).std(ddof=1) / np.sqrt(3))
    assert row["zero_shot_accuracy_canonical_stderr"] == pytest.approx(correct[:, 0].std(ddof=1) / np.sqrt(3))


def test_training_is_described_in_a_sentence_with_its_early_stop():
    first = TrainResult(losses=[1.0] * 60, seconds=1.5, val_steps=[9, 19, 29], val_losses=[0.2, 0.3, 0.4],
                        best_step=9, stopped_early=True)
    text = describe_training(first, 1000, patience=2)
    assert "60 of 1000 steps" in text and "step 9" in text and "the first check" in text
    assert "stopped early at step 60, after 2 checks" in text and "not a crash" in text
    later = TrainResult(losses=[1.0] * 30, seconds=1.0, val_steps=[9, 19, 29], val_losses=[0.4, 0.2, 0.3],
                        best_step=19)
    text = describe_training(later, 30)
    assert "check 2 of 3" in text and "stopped early" not in text and "Every later check" not in text


def test_the_terminal_says_how_long_is_left_from_the_last_runs_timings():
    from mvclip_utils.pipeline import NotebookResult, time_left

    earlier = {"01_render": NotebookResult(1, "01_render", "ok", 240.0),
               "02_backbone": NotebookResult(2, "02_backbone", "ok", 120.0),
               "03_embed": NotebookResult(3, "03_embed", "failed", 5.0)}
    assert time_left(["01_render", "02_backbone"], earlier) == "about 6 min left"
    assert time_left(["02_backbone", "03_embed", "13_new"], earlier) == \
        "about 2 min left + 2 notebook(s) not timed before"
    assert time_left([], earlier) == ""


def test_the_view_explorer_ranks_neighbours_without_the_view_itself():
    from types import SimpleNamespace

    from mvclip_utils.reports.explore import view_scores

    image = np.zeros((2, 3, 3), np.float32)
    image[0, :, 0] = 1  # object 0: three identical views
    image[1, :, 1] = 1
    test = SimpleNamespace(image=image, category_text=np.eye(3, dtype=np.float32)[:2], logit_scale=100.0)
    scores = view_scores(test, 0, 1, neighbours=2)
    assert scores["own_views"].tolist() == [1.0, 1.0, 1.0]
    assert scores["nearest"][["object", "view"]].values.tolist() == [[0, 0], [0, 2]]  # its object's other views
    assert scores["zero_shot"].sum() == pytest.approx(1.0) and scores["zero_shot"].argmax() == 0


def _tradeoff_rows() -> pd.DataFrame:
    """Constructed rows of every embedding method: (clean, viewpoint-OOD, its stderr over objects)."""
    numbers = {"baseline": (0.955, 0.307, 0.02), "object_head": (0.318, 0.30, 0.03),
               "itc_finetune": (0.955, 0.564, 0.02),
               "omniview_tuning": (0.939, 0.564, 0.023), "centroid_distillation": (0.939, 0.553, 0.022)}
    return pd.DataFrame([{"method": m, "zero_shot_accuracy_canonical": c, "zero_shot_accuracy_other_grid": v,
                          "zero_shot_accuracy_other_grid_stderr": e, "zero_shot_accuracy_canonical_stderr": 0.018,
                          "same_object_mean": 0.9, "n_categories": 12, "n_objects": 132}
                         for m, (c, v, e) in numbers.items()])


def _seeds(numbers: dict[str, tuple[float, float, float]], n_runs: int = 3) -> pd.DataFrame:
    """A seeds table as `sweep.collect` gives it: (clean mean, viewpoint-OOD mean, its stderr over seeds)."""
    return pd.DataFrame([{"method": m, "n_runs": n_runs, "zero_shot_accuracy_canonical": c,
                          "zero_shot_accuracy_other_grid": v, "zero_shot_accuracy_canonical_seed_stderr": 0.004,
                          "zero_shot_accuracy_other_grid_seed_stderr": e}
                         for m, (c, v, e) in numbers.items()]).set_index("method")


def test_the_methods_table_and_tradeoff_add_the_mean_over_seeds_where_a_sweep_exists():
    rows = _tradeoff_rows()
    seeds = _seeds({"baseline": (0.955, 0.307, 0.0), "omniview_tuning": (0.941, 0.57, 0.012)})
    table = summary.methods_table(rows, seeds)
    assert table.loc["Omniview-Tuning", "viewpoint-OOD, 3 seeds"] == "0.570 ± 0.012"
    assert table.loc["Omniview-Tuning", "viewpoint-OOD"] == "0.564 ± 0.023"  # this run's, over test objects
    assert table.loc["object head", "clean, 3 seeds"] == ""  # no seeds for it
    assert "seeds" not in " ".join(summary.methods_table(rows).columns)
    assert "seeds" not in " ".join(summary.methods_table(rows, _seeds({"baseline": (0.9, 0.3, 0.0)}, 1)).columns)
    fig = summary_plots.plot_tradeoff(rows, "t", seeds)
    full, zoom = fig.axes

    def points(ax, marker):
        return sorted(float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == marker
                      and len(line.get_xdata()))

    assert points(full, "s") == [0.307, 0.57] and points(full, "o") == [0.30, 0.307, 0.553, 0.564, 0.564]
    # The zoom holds the methods within 5 points of the frozen clean accuracy (not the frozen one, nor the
    # collapsed head), its limits fit them, and the target's clean budget is drawn 1 point below the frozen.
    assert points(zoom, "o") == [0.553, 0.564, 0.564] and points(zoom, "s") == [0.57]
    assert zoom.get_ylim()[0] > 0.5 and zoom.get_xlim()[0] > 0.9
    assert any(line.get_linestyle() == "-." and line.get_xdata()[0] == pytest.approx(0.945) for line in zoom.lines)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "mean of 3 seeds" in legend and "clean budget" in legend and legend.count("Omniview-Tuning") == 1
    plt.close("all")
    without = summary_plots.plot_tradeoff(rows, "t")
    assert not [line for ax in without.axes for line in ax.lines if line.get_marker() == "s"]
    one_panel = summary_plots.plot_tradeoff(rows[rows.method.isin(["baseline", "object_head"])], "t")
    assert len(one_panel.axes) == 1  # nothing near the frozen clean accuracy: no zoom
    plt.close("all")


def test_the_seed_table_belongs_to_the_dataset_and_backbone_it_was_made_from(tmp_path, monkeypatch):
    layout = RunLayout(tmp_path / "run")
    current = {"dataset_fingerprint": "d1", "backbone_identity": "b1"}
    monkeypatch.setattr(results, "current_provenance", lambda _layout: dict(current))
    runs = []
    for name, dataset in (("seed-0", "d1"), ("seed-1", "d1"), ("other", "d2")):
        RunLayout(tmp_path / name).metrics.mkdir(parents=True)
        pd.DataFrame([{"method": "baseline", "dataset_fingerprint": dataset, "backbone_identity": "b1"}]).to_csv(
            RunLayout(tmp_path / name).results_table, index=False)
        runs.append(tmp_path / name)
    layout.metrics.mkdir(parents=True)
    table = pd.DataFrame([{"method": "baseline", "n_runs": 2, "zero_shot_accuracy_other_grid": 0.3,
                           "zero_shot_accuracy_other_grid_seed_stderr": 0.0}])
    for bad in (pd.concat([table, table]), table.drop(columns="zero_shot_accuracy_other_grid_seed_stderr")):
        with pytest.raises(ValueError, match="one row per method, with `<metric>_seed_stderr` columns"):
            results.write_seed_table(layout, bad, runs[:2])  # e.g. collected over another key than the seeds
    with pytest.raises(ValueError, match="other was not made from the dataset of .*--from-run"):
        results.write_seed_table(layout, table, runs)
    assert results.load_seed_table(layout) is None  # nothing written
    results.write_seed_table(layout, table, runs[:2])
    assert results.load_seed_table(layout).loc["baseline", "n_runs"] == 2
    current["backbone_identity"] = "b2"  # the run's backbone changed since: the sweep no longer describes it
    assert results.load_seed_table(layout) is None
    # Fingerprints are hex digests, which pandas would read as numbers when all digits: read as text.
    current.update(dataset_fingerprint="0123456789012345", backbone_identity="1e5")
    for run in runs[:2]:
        pd.DataFrame([{"method": "baseline", "dataset_fingerprint": "0123456789012345", "backbone_identity": "1e5"}]
                     ).to_csv(RunLayout(run).results_table, index=False)
    results.write_seed_table(layout, table, runs[:2])
    assert results.load_seed_table(layout).loc["baseline", "n_runs"] == 2


def test_seaborn_statistical_plots_draw_the_means_and_intervals_of_the_raw_values():
    from mvclip_utils.reports import plots

    curves = {"random": np.array([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]]), "zero_shot": np.array([[0.5, 0.5, 0.6],
                                                                                               [0.7, 0.7, 0.6]])}
    ax = plots.plot_few_shot_curve(curves, "t").axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.2, 0.3, 0.4])  # the mean over seeds, per epoch
    band = ax.collections[0].get_paths()[0].vertices[:, 1]  # mean ± standard error over the 2 seeds (ddof 1)
    np.testing.assert_allclose([band.min(), band.max()], [0.1, 0.5], atol=1e-9)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random init", "zero-shot init"]
    by_view = pd.DataFrame({"kind": ["grid"] * 4 + ["ood"], "elevation_deg": [40, 40, 10, 10, -50],
                            "accuracy": [0.2, 0.4, 0.6, 1.0, 0.1]})
    ax = plots.plot_zero_shot_by_elevation(by_view, "t").axes[0]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.3, 0.8])  # grid views only
    whisker = ax.lines[0].get_ydata()
    np.testing.assert_allclose([np.nanmin(whisker), np.nanmax(whisker)], [0.3 - np.sqrt(0.02), 0.3 + np.sqrt(0.02)])
    assert len(plots.category_colours(30)) == 30 and len(set(plots.category_colours(30))) == 30
