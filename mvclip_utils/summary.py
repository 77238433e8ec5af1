"""The run's summary: one results table across methods, the seed's published table, a figure index.

Any method that writes `metrics/<method>.json` (through `metrics.write_result`) appears
here with no change to this module.
"""

from __future__ import annotations

import html
import re

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd

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
    """One row per method: the seed's three metrics as mean ± pooled std (std across objects),
    view retrieval, zero-shot accuracy by kind of view, and reconstruction where there is one."""
    results = results.set_index("method")
    table = pd.DataFrame(index=results.index)
    table["same-object"] = _mean_std(results, "same_object")
    table["cross-object"] = _mean_std(results, "cross_object")
    table["text-image"] = _mean_std(results, "text_image")
    table["view mAP"] = results.view_retrieval_mAP.map("{:.3f}".format)
    for kind in ("canonical", "other_grid", "ood"):
        column = f"zero_shot_accuracy_{kind}"
        if column in results:
            table[f"zero-shot {kind.replace('_', ' ')}"] = results[column].map("{:.3f}".format)
    if "reconstruction_mse" in results:
        table["reconstruction MSE / L2"] = [
            f"{m:.4f} / {l2:.3f}" if pd.notna(m) else "" for m, l2 in zip(results.reconstruction_mse,
                                                                         results.reconstruction_l2)]
    return table


def findings(results: pd.DataFrame) -> str:
    """The seed's qualitative findings, checked against this run's numbers (markdown)."""
    r = results.set_index("method")
    if "baseline" not in r.index:
        return "No baseline row yet: run notebook 04."
    b = r.loc["baseline"]
    lines = []

    def has(m: str) -> bool:
        return m in r.index

    if has("object_head"):
        o = r.loc["object_head"]
        collapsed = o.cross_object_mean > b.cross_object_mean + 0.3
        lines.append(
            f"- **Object head collapses** (seed: yes) — {'reproduced' if collapsed else 'not reproduced'}: "
            f"cross-object similarity {b.cross_object_mean:.3f} → {o.cross_object_mean:.3f}, same-object "
            f"{b.same_object_mean:.3f} → {o.same_object_mean:.3f}, zero-shot on the canonical view "
            f"{b.zero_shot_accuracy_canonical:.3f} → {o.zero_shot_accuracy_canonical:.3f}. View retrieval mAP "
            f"{b.view_retrieval_mAP:.3f} → {o.view_retrieval_mAP:.3f} and recall@1 "
            f"{b.view_retrieval_recall_at_1:.3f} → {o.view_retrieval_recall_at_1:.3f}: the collapse squeezes "
            f"all objects together and erases their categories, but keeps a little of each object's identity "
            f"in the ranking, so mAP alone does not flag it here.")
    if has("contrastive_head"):
        c = r.loc["contrastive_head"]
        lines.append(
            f"- **Contrastive head lowers cross-object similarity** (seed: yes) — cross-object "
            f"{b.cross_object_mean:.3f} → {c.cross_object_mean:.3f}. **Text-image similarity** (seed: lower) "
            f"{b.text_image_mean:.3f} → {c.text_image_mean:.3f}: "
            + ("lower, as the seed found." if c.text_image_mean < b.text_image_mean else
               "higher here, not reproduced: in this loss the caption is a member of its object's group, so the "
               "head pulls each view toward its own caption while pushing other objects away; the seed code "
               "weighed its terms with miscounted pair numbers, which this loss does not copy.")
            + f" Zero-shot accuracy still drops ({b.zero_shot_accuracy_canonical:.3f} → "
            f"{c.zero_shot_accuracy_canonical:.3f} on the canonical view): category prompts never enter the loss.")
    if has("autoencoder"):
        a = r.loc["autoencoder"]
        codes = (f" Its view-independent codes are consistent and kept apart (same-object "
                 f"{a.vi_code_same_object_mean:.3f}, cross-object {a.vi_code_cross_object_mean:.3f}), but the VI "
                 f"decoding is free to collapse because the reconstruction only constrains VI + VD: most likely "
                 f"the view-dependent path carries what tells objects apart in CLIP space."
                 if "vi_code_cross_object_mean" in r and pd.notna(a.get("vi_code_cross_object_mean")) else "")
        lines.append(
            f"- **Autoencoder raises same-object similarity** (seed: yes) — {b.same_object_mean:.3f} → "
            f"{a.same_object_mean:.3f}; **cross-object and text-image near the baseline** (seed: yes): "
            f"{b.cross_object_mean:.3f} → {a.cross_object_mean:.3f} and {b.text_image_mean:.3f} → "
            f"{a.text_image_mean:.3f}, "
            + ("reproduced." if abs(a.cross_object_mean - b.cross_object_mean) < 0.15 else "not reproduced.") + codes
            + f" Reconstruction: element-wise MSE {a.reconstruction_mse:.4f}, mean L2 distance "
            f"{a.reconstruction_l2:.3f}.")
    return "\n".join(lines)


def plot_method_comparison(results: pd.DataFrame, title: str) -> plt.Figure:
    """Grouped bars of the headline metrics, one group per metric and one bar per method."""
    columns = {"same_object_mean": "same-object", "cross_object_mean": "cross-object", "text_image_mean": "text-image",
               "view_retrieval_mAP": "view mAP", "zero_shot_accuracy_canonical": "zero-shot\ncanonical",
               "zero_shot_accuracy_other_grid": "zero-shot\nother grid", "zero_shot_accuracy_ood": "zero-shot\nood"}
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
    for path in sorted(layout.notebooks.glob("*.ipynb")):
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
                                 "report": f"reports/{path.stem}.html"})
    return pd.DataFrame(rows, columns=["notebook", "figure", "section", "report"])


def figure_index_html(index: pd.DataFrame) -> str:
    """The index as an HTML table whose report links work from reports/ (where the summary report lives)."""
    lines = ["<table><tr><th>notebook</th><th>figure</th><th>section</th></tr>"]
    for r in index.itertuples():
        href = html.escape(r.report.removeprefix("reports/"))
        lines.append(f"<tr><td><a href='{href}'>{html.escape(r.notebook)}</a></td><td>{r.figure}</td>"
                     f"<td>{html.escape(r.section)}</td></tr>")
    return "\n".join(lines + ["</table>"])
