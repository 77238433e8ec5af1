"""The run's summary: one results table across methods, the seed's published table, a figure index.

Any method that writes `metrics/<method>.json` (through `results.write_result`) appears
here with no change to this module.
"""

from __future__ import annotations

import html
import re

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd

from .results import HEADLINE_COLUMNS
from .runs import RunLayout

# The seed write-up's table: ViT-B/32 on Objaverse food-drink, mean +/- std across objects.
# Its "inter-object" is our same-object similarity and its "intra-object" our cross-object one.
SEED_TABLE = pd.DataFrame(
    [("baseline", "0.893 ± 0.067", "0.710 ± 0.069", "0.266 ± 0.041", ""),
     ("object_head", "0.997 ± 0.003", "0.978 ± 0.015", "0.822 ± 0.087", ""),
     ("contrastive_head", "0.895 ± 0.266", "0.021 ± 0.676", "0.137 ± 0.139", ""),
     ("autoencoder", "0.965 ± 0.043", "0.827 ± 0.094", "0.323 ± 0.039", "0.17 (element-wise MSE)")],
    columns=["method", "same-object (seed: inter-object)", "cross-object (seed: intra-object)", "text-image",
             "reconstruction"]).set_index("method")


def _mean_std(results: pd.DataFrame, metric: str) -> pd.Series:
    return results.apply(lambda r: f"{r[f'{metric}_mean']:.3f} ± {r[f'{metric}_pooled_std']:.3f} "
                                   f"({r[f'{metric}_object_std']:.3f})", axis=1)


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method: the seed's three metrics as mean ± pooled std (std across objects) and view
    retrieval over the grid views; zero-shot accuracy by kind of view; the ood views' similarity to
    their object's grid views; reconstruction where there is one."""
    results = results.set_index("method")
    if "same_object_mean" in results:  # rows of embedding methods (not 10's image decoders)
        results = results[results.same_object_mean.notna()]
    table = pd.DataFrame(index=results.index)
    for metric in ("same_object", "cross_object", "text_image"):
        table[HEADLINE_COLUMNS[f"{metric}_mean"]] = _mean_std(results, metric)
    for column in ("view_retrieval_mAP", "zero_shot_accuracy_canonical", "zero_shot_accuracy_other_grid",
                   "zero_shot_accuracy_ood"):
        if column in results:
            table[HEADLINE_COLUMNS[column]] = results[column].map("{:.3f}".format)
    if "zero_shot_accuracy_2d_ood" in results:  # methods that tune the backbone (08)
        table["zero-shot 2D-OOD"] = results.zero_shot_accuracy_2d_ood.map(lambda v: f"{v:.3f}" if pd.notna(v) else "")
    if "zero_shot_accuracy_canonical_unseen_prompts" in results:
        table["zero-shot canonical, unseen prompts"] = results.zero_shot_accuracy_canonical_unseen_prompts.map(
            "{:.3f}".format)
    if "ood_to_grid_similarity" in results:
        table["ood → grid similarity"] = results.ood_to_grid_similarity.map("{:.3f}".format)
    if "reconstruction_mse" in results:
        table["reconstruction MSE / L2"] = [
            f"{m:.4f} / {l2:.3f}" if pd.notna(m) else "" for m, l2 in zip(results.reconstruction_mse,
                                                                         results.reconstruction_l2)]
    return table


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
    return rows.rename(columns=SPATIAL_COLUMNS).round(4)


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
    lines = [geometry_finding(b)]
    if "object_head" in r.index:
        o = r.loc["object_head"]
        collapsed = is_collapsed(b, o)
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
        cross_lower = c.cross_object_mean < b.cross_object_mean
        text_lower = c.text_image_mean < b.text_image_mean
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
        same_up = a.same_object_mean > b.same_object_mean
        near = (abs(a.cross_object_mean - b.cross_object_mean) < 0.15
                and abs(a.text_image_mean - b.text_image_mean) < 0.15)
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


def plot_method_comparison(results: pd.DataFrame, title: str) -> plt.Figure:
    """Grouped bars of the headline metrics, one group per metric and one bar per method."""
    columns = {c: name.replace("zero-shot ", "zero-shot\n") for c, name in HEADLINE_COLUMNS.items()}
    data = results.set_index("method")[[c for c in columns if c in results]]
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.8 / len(data)
    x = np.arange(data.shape[1])
    for i, (method, row) in enumerate(data.iterrows()):
        ax.bar(x + i * width - 0.4 + width / 2, row.to_numpy(), width, label=method)
    ax.set_xticks(x, [columns[c] for c in data.columns], fontsize=8)
    ax.axhline(0, color="black", lw=0.5)
    ax.set(title=title, ylabel="value on test objects")
    ax.legend(fontsize=8, ncol=len(data), loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return fig


def figure_index(layout: RunLayout) -> pd.DataFrame:
    """Every figure of the run's executed notebooks: notebook, number, the section it is in, report link."""
    rows = []
    for path in layout.executed_notebooks():
        notebook = nbformat.read(path, as_version=4)
        section, count = "", 0
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                headings = re.findall(r"^#+\s+(.*)$", cell.source, flags=re.M)
                section = headings[-1] if headings else section
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    count += 1
                    rows.append({"notebook": path.stem, "figure": count, "section": section,
                                 "report": str(layout.report(path.stem).relative_to(layout.root))})
    return pd.DataFrame(rows, columns=["notebook", "figure", "section", "report"])


def figure_index_html(index: pd.DataFrame) -> str:
    """The index as an HTML table whose report links work from reports/ (where the summary report lives)."""
    lines = ["<table><tr><th>notebook</th><th>figure</th><th>section</th></tr>"]
    for r in index.itertuples():
        href = html.escape(r.report.removeprefix("reports/"))
        lines.append(f"<tr><td><a href='{href}'>{html.escape(r.notebook)}</a></td><td>{r.figure}</td>"
                     f"<td>{html.escape(r.section)}</td></tr>")
    return "\n".join(lines + ["</table>"])
