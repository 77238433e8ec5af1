"""The run's summary: one results table across methods, the seed's published table, a figure index.

Any method that writes `metrics/<method>.json` (through `results.write_result`) appears
here with no change to this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation.results import (
    HEADLINE_COLUMNS,
    format_number,
    method_label,
    seed_count,
    seeded_rows,
    write_table,
)

# The seed write-up's table: ViT-B/32 on Objaverse food-drink, mean ± the std over all pairs (pooled:
# e.g. the contrastive head's cross-object 0.021 ± 0.676 is a spread of pair cosines, not of object
# means). Its "inter-object" is our same-object similarity and its "intra-object" our cross-object one.
SEED_NUMBERS = {
    "baseline": {"same_object": (0.893, 0.067), "cross_object": (0.710, 0.069), "text_image": (0.266, 0.041)},
    "object_head": {"same_object": (0.997, 0.003), "cross_object": (0.978, 0.015), "text_image": (0.822, 0.087)},
    "contrastive_head": {"same_object": (0.895, 0.266), "cross_object": (0.021, 0.676),
                         "text_image": (0.137, 0.139)},
    "autoencoder": {"same_object": (0.965, 0.043), "cross_object": (0.827, 0.094), "text_image": (0.323, 0.039)},
}
SEED_METRICS = {"same_object": "same-object", "cross_object": "cross-object", "text_image": "text-image"}
SEED_RECONSTRUCTION = "0.17 (element-wise MSE)"  # the autoencoder's, as the seed reports it


def _mean_pooled(mean: float, pooled_std: float) -> str:
    return f"{format_number(mean)} ± {format_number(pooled_std)}"


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method (display names): the seed's three metrics as mean ± pooled std over pairs (the
    seed's spread), view retrieval over the grid views; zero-shot accuracy by kind of view; the ood
    views' similarity to their object's grid views; reconstruction where there is one."""
    results = results.set_index("method")
    if "same_object_mean" in results:  # rows of embedding methods (not 10's image decoders)
        results = results[results.same_object_mean.notna()]
    table = pd.DataFrame(index=results.index)
    for metric in SEED_METRICS:
        table[HEADLINE_COLUMNS[f"{metric}_mean"]] = [
            _mean_pooled(m, s) for m, s in zip(results[f"{metric}_mean"], results[f"{metric}_pooled_std"])]
    for column in ("view_retrieval_mAP", "zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid",
                   "zero_shot_accuracy_ood"):
        if column in results:
            table[HEADLINE_COLUMNS[column]] = results[column].map(format_number)
    if "zero_shot_accuracy_2d_ood" in results:  # methods that tune the backbone (08)
        table["zero-shot 2D-OOD"] = results.zero_shot_accuracy_2d_ood.map(format_number)
    if "zero_shot_accuracy_canonical_unseen_prompts" in results:
        table["zero-shot canonical, unseen prompts"] = results.zero_shot_accuracy_canonical_unseen_prompts.map(
            format_number)
    if "ood_to_grid_similarity" in results:
        table["ood → grid similarity"] = results.ood_to_grid_similarity.map(format_number)
    if "reconstruction_mse" in results:
        table["reconstruction MSE / L2"] = [
            f"{format_number(m)} / {format_number(l2)}" if pd.notna(m) else "" for m, l2 in
            zip(results.reconstruction_mse, results.reconstruction_l2)]
    return table.rename(index=method_label).rename_axis("method")


def seed_finding_checks(results: pd.DataFrame) -> dict[str, dict[str, bool]]:
    """Each seed method's findings (the seed: yes to all) checked on this run's numbers."""
    r = results.set_index("method")
    if "baseline" not in r.index:
        return {}
    b, checks = r.loc["baseline"], {}
    if "object_head" in r.index:
        checks["object_head"] = {"collapses": is_collapsed(b, r.loc["object_head"])}
    if "contrastive_head" in r.index:
        c = r.loc["contrastive_head"]
        checks["contrastive_head"] = {"cross-object falls": c.cross_object_mean < b.cross_object_mean,
                                      "text-image falls": c.text_image_mean < b.text_image_mean}
    if "autoencoder" in r.index:
        a = r.loc["autoencoder"]
        checks["autoencoder"] = {
            "same-object rises": a.same_object_mean > b.same_object_mean,
            "cross-object and text-image stay within 0.15": bool(
                abs(a.cross_object_mean - b.cross_object_mean) < 0.15
                and abs(a.text_image_mean - b.text_image_mean) < 0.15)}
    return checks


def reproduced(checks: dict[str, bool]) -> str:
    """'yes', 'no', or 'partly: <what held>'."""
    held = [claim for claim, ok in checks.items() if ok]
    return "yes" if len(held) == len(checks) else "no" if not held else "partly: " + ", ".join(held)


def seed_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """This run beside the seed's published table, with one definition of spread on both sides (mean ±
    the std over all pairs), and whether the seed's finding for the method is reproduced."""
    r = results.set_index("method")
    checks = seed_finding_checks(results)
    rows = {}
    for method, seed in SEED_NUMBERS.items():
        if method not in r.index:
            continue
        row = {}
        for metric, label in SEED_METRICS.items():
            row[(label, "this run")] = _mean_pooled(r.loc[method, f"{metric}_mean"],
                                                    r.loc[method, f"{metric}_pooled_std"])
            row[(label, "seed")] = _mean_pooled(*seed[metric])
        row[("reproduced?", "")] = reproduced(checks[method]) if method in checks else "(the reference)"
        rows[method_label(method)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("method")


SPATIAL_COLUMNS = {"pixel_mse": "reconstruction MSE", "pixel_psnr": "PSNR dB", "seg_miou": "part mIoU",
                   "seg_pixel_accuracy": "pixel accuracy", "seg_foreground_iou": "foreground IoU",
                   "seg_miou_canonical": "mIoU canonical", "seg_miou_other_grid": "mIoU other grid"}


def spatial_table(results: pd.DataFrame) -> pd.DataFrame:
    """The rows that probe the frozen spatial features (10's decoders, 11's segmenters and baselines) on
    the test objects' grid views; empty when neither notebook ran."""
    columns = [c for c in SPATIAL_COLUMNS if c in results]
    if not columns:
        return pd.DataFrame()
    rows = results.set_index("method")[columns]
    rows = rows[rows.notna().any(axis=1)]
    return rows.rename(columns=SPATIAL_COLUMNS).rename(index=method_label).rename_axis("method").map(format_number)


def write_paper_tables(layout, results: pd.DataFrame, backbone: str, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary's tables as CSV and LaTeX (booktabs) under `tables/`: which table, its files."""
    n = int(results.n_objects.iloc[0]) if "n_objects" in results else 0
    tables = {
        "results": (summary_table(results), f"Every method on {n} test objects ({backbone}): mean ± std over all "
                                             f"pairs for the similarities, grid views unless named."),
        "seed_comparison": (seed_comparison(results), f"This run ({backbone}) beside the seed's ViT-B/32 on Objaverse "
                                                      f"food-drink: mean ± std over all pairs on both sides."),
        "spatial": (spatial_table(results), f"Decoding and segmentation from frozen spatial features ({backbone})."),
        "methods": (methods_table(results, seeds), f"Zero-shot accuracy ± standard error over {n} test objects"
                    + (", and over seeds where named" if len(seeded_rows(seeds)) else "")
                    + f", consistency, trainable parameters and training time of every method ({backbone})."),
    }
    written = [{"table": name, **write_table(layout, name, table, caption)}
               for name, (table, caption) in tables.items() if len(table)]
    return pd.DataFrame(written, columns=["table", "csv", "tex"])


# Real CLIP's geometry on one domain (ViT-B/32, Objaverse food-drink; DESIGN.md, the seed's table).
REAL_CLIP_CROSS_OBJECT, REAL_CLIP_TEXT_IMAGE = 0.7, 0.27


def geometry_table(row: dict) -> pd.DataFrame:
    """This backbone's embedding geometry beside real CLIP's (ViT-B/32 on one domain; the modality
    gap is Liang et al.'s 0.82 on MSCOCO)."""
    real = {"same_object_mean": 0.9, "cross_object_mean": REAL_CLIP_CROSS_OBJECT,
            "text_image_mean": REAL_CLIP_TEXT_IMAGE, "modality_gap": 0.82, "effective_rank": float("nan")}
    names = {"same_object_mean": "same-object similarity", "cross_object_mean": "cross-object similarity",
             "text_image_mean": "text-image similarity", "modality_gap": "modality gap",
             "effective_rank": "effective rank (image embeddings)"}
    return pd.DataFrame({"this backbone": {names[k]: row[k] for k in names},
                         "real CLIP ViT-B/32 (about)": {names[k]: real[k] for k in names}})


def headroom_closed(before: float, after: float) -> float:
    """The share of the gap between a similarity and 1 that a method closed (1 = everything at one point)."""
    return (after - before) / max(1.0 - before, 1e-9)


def accuracy_kept(before: float, after: float, chance: float) -> float:
    """The share of the above-chance zero-shot accuracy that a method kept (0 = fell to chance)."""
    return (after - chance) / max(before - chance, 1e-9)


def is_collapsed(baseline: pd.Series, method: pd.Series) -> bool:
    """Collapse judged relative to the backbone's own geometry, so it fires on real CLIP (cross-object
    0.71 -> 0.98 in the seed) as on the tiny model (0.11 -> 0.73): at least half of the headroom to
    cross-object similarity 1 closed, and at most half of the above-chance zero-shot accuracy kept."""
    chance = 1.0 / baseline.n_categories
    return (headroom_closed(baseline.cross_object_mean, method.cross_object_mean) >= 0.5
            and accuracy_kept(baseline.zero_shot_accuracy, method.zero_shot_accuracy, chance) <= 0.5)


def _change(b: pd.Series, m: pd.Series, column: str) -> str:
    return f"{b[column]:.3f} → {m[column]:.3f}"


def geometry_finding(b: pd.Series) -> str:
    """Where this backbone's embedding geometry sits relative to real CLIP's, and what that means
    for comparing findings with the seed (which used real CLIP)."""
    gap = abs(b.cross_object_mean - REAL_CLIP_CROSS_OBJECT)
    close = gap < 0.15
    return (f"- **Embedding geometry of this backbone** — cross-object similarity {b.cross_object_mean:.3f} "
            f"(real CLIP ViT-B/32 on one domain: ~{REAL_CLIP_CROSS_OBJECT}), text-image {b.text_image_mean:.3f} "
            f"(~{REAL_CLIP_TEXT_IMAGE}), modality gap {b.modality_gap:.3f}, effective rank "
            f"{b.effective_rank:.1f}. "
            + ("This is close to real CLIP's geometry, so the seed's findings can be compared directly."
               if close else
               f"This is {gap:.2f} away from real CLIP's cross-object similarity: the seed's findings depend on "
               f"the geometry (how far a head can pull objects together before they collapse, what a contrastive "
               f"head does to text-image similarity), so a finding below that differs from the seed may be a "
               f"property of this backbone rather than of the method."))


def findings(results: pd.DataFrame) -> str:
    """The seed's qualitative findings, checked against this run's numbers (markdown); every
    sentence that states a finding is computed from the numbers."""
    r = results.set_index("method")
    if "baseline" not in r.index:
        return "No baseline row yet: run notebook 04."
    b = r.loc["baseline"]
    chance = 1.0 / b.n_categories
    checks = seed_finding_checks(results)
    lines = [geometry_finding(b)]
    if "object_head" in r.index:
        o = r.loc["object_head"]
        collapsed = checks["object_head"]["collapses"]
        map_fell = o.view_retrieval_mAP < b.view_retrieval_mAP
        lines.append(
            f"- **Object head collapses** (seed: yes) — {'reproduced' if collapsed else 'not reproduced'}: "
            f"cross-object similarity {_change(b, o, 'cross_object_mean')} "
            f"({headroom_closed(b.cross_object_mean, o.cross_object_mean):.0%} of the headroom to 1 closed), "
            f"zero-shot accuracy over grid views {_change(b, o, 'zero_shot_accuracy')} "
            f"({accuracy_kept(b.zero_shot_accuracy, o.zero_shot_accuracy, chance):.0%} of the above-chance "
            f"accuracy kept; chance {chance:.3f}), same-object {_change(b, o, 'same_object_mean')}. View retrieval "
            f"mAP {_change(b, o, 'view_retrieval_mAP')}, recall@1 {_change(b, o, 'view_retrieval_recall_at_1')}"
            + (": retrieval falls with the collapse." if map_fell else
               ": mAP did not fall, so each object keeps some identity in the ranking even "
               + ("though categories are erased; mAP alone does not flag this collapse." if collapsed
                  else "here.")))
    if "contrastive_head" in r.index:
        c = r.loc["contrastive_head"]
        cross_lower, text_lower = checks["contrastive_head"].values()
        zero_shot_fell = c.zero_shot_accuracy < b.zero_shot_accuracy
        lines.append(
            f"- **Contrastive head lowers cross-object similarity** (seed: yes) — "
            f"{'reproduced' if cross_lower else 'not reproduced'}: {_change(b, c, 'cross_object_mean')}. "
            f"**Text-image similarity falls** (seed: yes) — {'reproduced' if text_lower else 'not reproduced'}: "
            f"{_change(b, c, 'text_image_mean')}"
            + ("." if text_lower else
               "; in this loss each caption is a member of its object's group, so the head pulls views toward "
               "their own caption while pushing other objects away.")
            + f" Zero-shot accuracy over grid views {_change(b, c, 'zero_shot_accuracy')}"
            + (": it falls, as category prompts never enter the loss." if zero_shot_fell else ": it does not fall."))
    if "autoencoder" in r.index:
        a = r.loc["autoencoder"]
        same_up, near = checks["autoencoder"].values()
        line = (f"- **Autoencoder raises same-object similarity** (seed: yes) — "
                f"{'reproduced' if same_up else 'not reproduced'}: {_change(b, a, 'same_object_mean')}. "
                f"**Cross-object and text-image stay near the baseline** (seed: yes; here: within 0.15) — "
                f"{'reproduced' if near else 'not reproduced'}: {_change(b, a, 'cross_object_mean')} and "
                f"{_change(b, a, 'text_image_mean')}.")
        if "vi_code_cross_object_mean" in a and pd.notna(a.vi_code_cross_object_mean):
            codes_apart = a.vi_code_cross_object_mean < a.cross_object_mean - 0.15
            line += (f" Its view-independent codes: same-object {a.vi_code_same_object_mean:.3f}, cross-object "
                     f"{a.vi_code_cross_object_mean:.3f}"
                     + ("; the codes are kept apart but their decoding is not: the reconstruction only "
                        "constrains VI + VD, so the VI decoding is free to move objects together."
                        if codes_apart and not near else "."))
        lines.append(line + f" Reconstruction: element-wise MSE {a.reconstruction_mse:.4f}, mean L2 distance "
                            f"{a.reconstruction_l2:.3f}.")
    return "\n".join(lines)


# The panels of the method comparison: one quantity each, with its standard-error column.
PANELS = {"same_object_mean": ("same-object similarity", "same_object_stderr"),
          "cross_object_mean": ("cross-object similarity", "cross_object_stderr"),
          "text_image_mean": ("text-image similarity", "text_image_stderr"),
          "view_retrieval_mAP": ("view-retrieval mAP", "view_retrieval_mAP_stderr"),
          "zero_shot_accuracy_canonical": ("zero-shot accuracy, canonical view", "zero_shot_accuracy_canonical_stderr"),
          "zero_shot_accuracy_other_grid": ("zero-shot accuracy, other grid views",
                                            "zero_shot_accuracy_other_grid_stderr"),
          "zero_shot_accuracy_ood": ("zero-shot accuracy, ood views", "zero_shot_accuracy_ood_stderr")}


def embedding_rows(results: pd.DataFrame) -> pd.DataFrame:
    rows = results.set_index("method")
    return rows[rows.same_object_mean.notna()] if "same_object_mean" in rows else rows


# the trade-off figure's axes: clean (canonical-view) and viewpoint-OOD (other grid views) zero-shot accuracy
CLEAN_ACCURACY, VIEWPOINT_OOD_ACCURACY = "zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid"


METHOD_TABLE_COLUMNS = {"zero_shot_accuracy_canonical": "clean", "zero_shot_accuracy_other_grid": "viewpoint-OOD",
                        "zero_shot_accuracy_ood": "ood views", "zero_shot_accuracy_2d_ood": "2D-OOD",
                        "same_object_mean": "same-object", "cross_object_mean": "cross-object",
                        "trainable_parameters": "trainable parameters", "train_seconds": "training s"}


def methods_table(results: pd.DataFrame, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every embedding method: zero-shot accuracy by kind of view (± standard error over test objects),
    consistency, trainable parameters and training time (formatted for display); with a seeds sweep, clean and
    viewpoint-OOD accuracy as the mean over the seeds ± its standard error too."""
    rows, seeded = embedding_rows(results), seeded_rows(seeds)
    table = pd.DataFrame(index=rows.index)
    for column, label in METHOD_TABLE_COLUMNS.items():
        if column not in rows:
            continue
        stderr = rows.get(f"{column}_stderr")
        table[label] = [format_number(v) + (f" ± {format_number(e)}" if stderr is not None and pd.notna(e) else "")
                        if pd.notna(v) else "" for v, e in zip(rows[column], stderr if stderr is not None
                                                             else [np.nan] * len(rows))]
    for column in ("zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid") if len(seeded) else ():
        label = f"{METHOD_TABLE_COLUMNS[column]}, {seed_count(seeded)} seeds"
        table[label] = [f"{format_number(seeded.loc[m, column])} ± "
                        f"{format_number(seeded.loc[m, f'{column}_seed_stderr'])}"
                        if m in seeded.index else "" for m in table.index]
    if "trainable parameters" in table and "baseline" in table.index:  # the frozen backbone trains nothing
        table.loc["baseline", "trainable parameters"] = "0"
    return table.rename(index=method_label).rename_axis("method")
