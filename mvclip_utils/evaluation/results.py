"""The results table: one JSON per method, merged into `metrics/results.csv`, never mixing runs.

Every `metrics/<method>.json` records what it was computed from: the dataset's
fingerprint, the backbone's identity and the embed settings (`Embeddings.provenance`),
plus a digest of the config section that trained it. `results.csv` merges only the rows
made from the run's *current* dataset and backbone; rows of another backbone (the
all-views control, a swapped-in ViT-B-32) or of an older dataset are listed in
`metrics/stale_results.csv` with the reason, never mixed in. (CLIP_benchmark's pattern:
one JSON per result, merged into a CSV.)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from ..core.runs import RunLayout, atomic_write_json, atomic_write_parquet, atomic_write_text, digest
from ..data.dataset import dataset_fingerprint
from ..models.backbone import read_backbone_record
from .transfer import transfer_columns

# Display order of results rows: the seed's order, then any other method alphabetically.
METHOD_ORDER = ("baseline", "object_head", "contrastive_head", "autoencoder", "itc_finetune", "omniview_tuning",
                "centroid_distillation", "supervised_control",
                "vqvae_clip_features", "vqvae_own_encoder", "segmentation_clip_decoder", "segmentation_linear_probe",
                "segmentation_unet", "segmentation_location_prior", "segmentation_foreground_only",
                "segmentation_category_silhouette")

# What reports call each method (code names stay in files and the results table's `method` column).
METHOD_LABELS = {
    "baseline": "baseline (frozen)", "frozen": "frozen backbone", "object_head": "object head",
    "contrastive_head": "contrastive head", "autoencoder": "view autoencoder", "itc_finetune": "ITC-only fine-tune",
    "omniview_tuning": "Omniview-Tuning", "centroid_distillation": "centroid distillation (ours)",
    "vqvae_clip_features": "VQ-VAE on CLIP features",
    "vqvae_own_encoder": "VQ-VAE, own encoder", "segmentation_clip_decoder": "decoder on CLIP features",
    "segmentation_linear_probe": "linear probe on patch tokens", "segmentation_unet": "UNet from scratch (pixels)",
    "segmentation_location_prior": "location prior", "segmentation_foreground_only": "foreground only",
    "segmentation_category_silhouette": "true silhouette + category",
    "supervised_control": "supervised control (frozen features)",
}


def method_label(method: str) -> str:
    """'object_head' -> 'object head': the display name of a method (any unknown one de-underscored)."""
    return METHOD_LABELS.get(method, method.replace("_", " "))


def format_number(value) -> str:
    """Sensible precision for tables: 3 decimals, small values in short scientific notation (5.9e-4, not
    0.0006), integers with thousands separators, blanks for missing values."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        return f"{int(value):,}"
    value = float(value)
    if math.isnan(value):
        return ""
    if value == 0 or 0.01 <= abs(value) < 1000:
        return f"{value:.3f}" if value else "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", f"{value:.1e}")


# Headline columns and their display names (the summary, the method notebooks and the figures share them).
HEADLINE_COLUMNS = {
    "same_object_mean": "same-object", "cross_object_mean": "cross-object", "text_image_mean": "text-image",
    "view_retrieval_recall_at_1": "view recall@1", "view_retrieval_mAP": "view mAP",
    "zero_shot_accuracy_canonical": "zero-shot canonical", "zero_shot_accuracy_other_grid": "zero-shot other grid",
    "zero_shot_accuracy_ood": "zero-shot ood",
}
PROVENANCE = ("dataset_fingerprint", "backbone_identity", "embed_settings")


def write_result(layout: RunLayout, method: str, row: dict, backbone: str, provenance: dict[str, str],
                 config_section: dict | None = None, extra: dict | None = None,
                 scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write metrics/<method>.json (the row, what it was made from) and rebuild results.csv. `scores`
    (`evaluation.transfer.per_object_scores`) go beside it, and their cell means into the row; a
    method written without them loses any earlier ones, so no stale scores outlive their row."""

    missing = [k for k in PROVENANCE if k not in provenance]
    if missing:
        raise ValueError(f"write_result({method!r}): provenance lacks {missing}; pass Embeddings.provenance")
    if scores is not None:
        atomic_write_parquet(scores, layout.per_object_scores(method))
        row = {**row, **transfer_columns(scores)}
    else:
        layout.per_object_scores(method).unlink(missing_ok=True)
    record = {"method": method, "backbone": backbone, **row, **(extra or {}),
              **{k: provenance[k] for k in PROVENANCE},
              "config_digest": digest(config_section) if config_section is not None else ""}
    atomic_write_json(layout.metrics_file(method), record)
    return rebuild_results_table(layout)


def load_per_object_scores(layout: RunLayout, methods: list[str]) -> pd.DataFrame:
    """The per-object scores of these methods (those that have them), stacked with a `method` column."""
    frames = [pd.read_parquet(layout.per_object_scores(m)).assign(method=m) for m in methods
              if layout.per_object_scores(m).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["method", "object_id"])


def current_provenance(layout: RunLayout) -> dict[str, str]:
    """The dataset and backbone the run has now (what a current row must have been made from)."""
    return {"dataset_fingerprint": dataset_fingerprint(layout),
            "backbone_identity": read_backbone_record(layout, check=False)["identity"]}


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    if not len(table):
        return table
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    table = table.sort_values("method", key=lambda s: s.map(lambda m: (order.get(m, len(order)), m)))
    return table.reset_index(drop=True)


def _stale_reason(record: dict, current: dict[str, str]) -> str:
    if record.get("backbone_identity") != current["backbone_identity"]:
        return f"made by backbone {record.get('backbone', '?')} ({record.get('backbone_identity', 'unrecorded')})"
    if record.get("dataset_fingerprint") != current["dataset_fingerprint"]:
        return "made from another version of the dataset"
    return ""


def rebuild_results_table(layout: RunLayout) -> pd.DataFrame:
    """Merge the metrics JSONs of the current dataset and backbone into results.csv; list the others
    in stale_results.csv. Returns the current rows."""
    current = current_provenance(layout)
    rows, stale = [], []
    for path in layout.metrics_files():
        record = json.loads(path.read_text())
        reason = _stale_reason(record, current)
        if reason:
            stale.append({"method": record.get("method", path.stem), "backbone": record.get("backbone", ""),
                          "file": str(path.relative_to(layout.root)), "reason": reason})
        else:
            rows.append(record)
    table = _ordered(pd.DataFrame(rows))
    atomic_write_text(layout.results_table, table.to_csv(index=False))
    atomic_write_text(layout.stale_results_table,
                      pd.DataFrame(stale, columns=["method", "backbone", "file", "reason"]).to_csv(index=False))
    return table


def load_results(layout: RunLayout) -> pd.DataFrame:
    """The current results table (rebuilt, so a backbone or dataset changed since is never mixed in)."""
    if not layout.metrics_files():
        raise FileNotFoundError(f"{layout.results_table} is missing: run notebook 04_baseline (and any method "
                                f"notebooks) first, e.g. mvclip run --config ... --only 04-07")
    return rebuild_results_table(layout)


def write_seed_table(layout: RunLayout, table: pd.DataFrame, runs: list[Path]) -> Path:
    """A seeds sweep's table (`sweep.collect`) into this run, refused unless every run's rows were made from
    this run's dataset and backbone (so the summary can set them beside its own rows)."""
    if not table.method.is_unique or not any(c.endswith("_seed_stderr") for c in table.columns):
        raise ValueError("a seed table has one row per method, with `<metric>_seed_stderr` columns: collect runs "
                         "that differ only in their seeds, with --over seed (the default)")
    current = current_provenance(layout)
    for run in runs:
        rows = pd.read_csv(RunLayout(Path(run)).results_table, dtype={k: str for k in PROVENANCE})
        for key, value in current.items():
            if key in rows and (rows[key] != value).any():
                raise ValueError(f"{run} was not made from the {key.split('_')[0]} of {layout.root}: run the sweep "
                                 f"with --from-run {layout.root} so that its variants share it")
    atomic_write_text(layout.seed_table, table.assign(**current).to_csv(index=False))
    return layout.seed_table


def write_dataset_seed_table(layout: RunLayout, table: pd.DataFrame, runs: list[Path]) -> Path:
    """A table over runs that differ in their dataset/split seed (each its own dataset and backbone, so no
    provenance is shared) into this run, which must be one of them; the runs are listed beside it."""
    if not table.method.is_unique or not any(c.endswith("_seed_stderr") for c in table.columns):
        raise ValueError("a dataset-seed table has one row per method, with `<metric>_seed_stderr` columns: "
                         "collect whole runs that differ only in `seed`, with --over seed")
    if layout.root.resolve() not in {Path(r).resolve() for r in runs}:
        raise ValueError(f"{layout.root} is not among the collected runs: collect it with the other seeds' runs")
    atomic_write_text(layout.dataset_seed_table, table.assign(runs=" ".join(map(str, runs))).to_csv(index=False))
    return layout.dataset_seed_table


def load_dataset_seed_table(layout: RunLayout) -> pd.DataFrame | None:
    """The run's table over dataset/split seeds, indexed by method (None without one)."""
    if not layout.dataset_seed_table.exists():
        return None
    return pd.read_csv(layout.dataset_seed_table).set_index("method")


def load_seed_table(layout: RunLayout) -> pd.DataFrame | None:
    """The run's seeds sweep table, indexed by method (None when there is none, or it was made from another
    dataset or backbone than the run has now)."""
    if not layout.seed_table.exists():
        return None
    table = pd.read_csv(layout.seed_table, dtype={k: str for k in PROVENANCE})
    current = current_provenance(layout)
    if any(key not in table or (table[key] != value).any() for key, value in current.items()):
        return None
    return table.set_index("method")


def seeded_rows(seeds: pd.DataFrame | None) -> pd.DataFrame:
    """A seed table's rows that have a standard error over seeds (two runs or more); empty without a table."""
    return seeds[seeds.n_runs >= 2] if seeds is not None else pd.DataFrame(columns=["n_runs"])


def seed_count(table: pd.DataFrame) -> str:
    """How many seeds a seed table's rows average ('3', or '2-3' when methods differ)."""
    low, high = int(table.n_runs.min()), int(table.n_runs.max())
    return str(low) if low == high else f"{low}-{high}"


def stale_results(layout: RunLayout) -> pd.DataFrame:
    """Rows left out of results.csv, with why (read after `load_results` / `rebuild_results_table`)."""
    if not layout.stale_results_table.exists():
        return pd.DataFrame(columns=["method", "backbone", "file", "reason"])
    return pd.read_csv(layout.stale_results_table)


def comparison_table(results: pd.DataFrame, methods: list[str] | None = None) -> pd.DataFrame:
    """The headline metrics of some methods (rows, by display name) from the results table."""
    table = results.set_index("method")
    if methods:
        table = table.loc[[m for m in methods if m in table.index]]
    table = table[[c for c in HEADLINE_COLUMNS if c in table.columns]].rename(columns=HEADLINE_COLUMNS)
    return table.rename(index=method_label).rename_axis("method")


# ----------------------------------------------------------------------------- tables for a paper


def _latex_escape(text: str) -> str:
    text = re.sub(r"([&%$#_{}])", r"\\\1", str(text))
    for plain, latex in (("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"), ("±", r"$\pm$"), ("→", r"$\to$"),
                         ("≤", r"$\le$"), ("≥", r"$\ge$"), ("°", r"$^\circ$")):
        text = text.replace(plain, latex)
    return text


def latex_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs `table` of already formatted cells: the index is the first column; two-level
    columns get a grouped header row with a cmidrule under each group."""
    columns = list(table.columns)
    grouped = isinstance(table.columns, pd.MultiIndex)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{l{'r' * len(columns)}}}", r"\toprule"]
    if grouped:
        groups, rules, position = [], [], 2
        for name in dict.fromkeys(c[0] for c in columns):
            span = sum(c[0] == name for c in columns)
            groups.append(rf"\multicolumn{{{span}}}{{c}}{{{_latex_escape(name)}}}" if span > 1 else _latex_escape(name))
            if span > 1:
                rules.append(rf"\cmidrule(lr){{{position}-{position + span - 1}}}")
            position += span
        lines.append(" & ".join([""] + groups) + r" \\")
        lines += [" ".join(rules)] if rules else []
        header = [c[1] for c in columns]
    else:
        header = columns
    lines.append(" & ".join([_latex_escape(table.index.name or "")] + [_latex_escape(c) for c in header]) + r" \\")
    lines.append(r"\midrule")
    for index, row in table.iterrows():
        lines.append(" & ".join([_latex_escape(index)] + [_latex_escape(v) for v in row]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(layout: RunLayout, name: str, table: pd.DataFrame, caption: str) -> dict[str, str]:
    """`tables/<name>.csv` and `tables/<name>.tex` (booktabs) of a table of formatted cells; the paths
    written, relative to the run directory."""
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [f"{a}: {b}" if b else a for a, b in flat.columns]
    csv, tex = layout.tables / f"{name}.csv", layout.tables / f"{name}.tex"
    atomic_write_text(csv, flat.to_csv())
    atomic_write_text(tex, latex_table(table, caption, f"tab:{name.replace('_', '-')}"))
    return {"csv": str(csv.relative_to(layout.root)), "tex": str(tex.relative_to(layout.root))}


# ----------------------------------------------------------------------------- ablations
# One JSON per variant (metrics/ablations/<study>/<variant>.json), merged into
# metrics/<study>_ablations.csv; a variant whose settings, dataset and backbone are unchanged
# is read back rather than trained again, so an interrupted ablation run resumes.


def made_from(provenance: dict[str, str], config_section: dict) -> dict[str, str]:
    """What a stored artifact records to be reused: the dataset, backbone and embed settings it was
    made from and a digest of the settings that trained it."""
    return {**{k: provenance[k] for k in PROVENANCE}, "config_digest": digest(config_section)}


def read_if_made_from(path: Path, provenance: dict[str, str], config_section: dict) -> dict | None:
    """The JSON record at `path` when it was made (`made_from`) with these settings from this dataset
    and backbone, else None."""
    if not Path(path).exists():
        return None
    record = json.loads(Path(path).read_text())
    expected = made_from(provenance, config_section)
    return record if all(record.get(k) == v for k, v in expected.items()) else None


def write_ablation(layout: RunLayout, study: str, variant: str, row: dict, provenance: dict[str, str],
                   config_section: dict) -> None:
    atomic_write_json(layout.ablation_file(study, variant),
                      {"variant": variant, **row, **made_from(provenance, config_section)})


def read_ablation(layout: RunLayout, study: str, variant: str, provenance: dict[str, str],
                  config_section: dict) -> dict | None:
    """The stored row of a variant made with these settings from this dataset and backbone, else None."""
    return read_if_made_from(layout.ablation_file(study, variant), provenance, config_section)


def write_ablation_table(layout: RunLayout, study: str, rows: list[dict]) -> pd.DataFrame:
    """The variants' rows (in the given order) as metrics/<study>_ablations.csv."""
    table = pd.DataFrame(rows)
    atomic_write_text(layout.ablation_table(study), table.to_csv(index=False))
    return table


# ----------------------------------------------------------------------------- probes (notebook 09)


def write_probes(layout: RunLayout, per_backbone: dict[str, dict], fits: pd.DataFrame) -> None:
    """metrics/probes.json (per results row: backbone, zero-shot, linear probe, headline numbers) and
    metrics/probes.csv (every few-shot fit)."""
    atomic_write_json(layout.probes_file, per_backbone)
    atomic_write_text(layout.probes_table, fits.to_csv(index=False))


def add_columns(layout: RunLayout, method: str, columns: dict, provenance: dict[str, str]) -> bool:
    """Put extra columns (e.g. 09's probe numbers) into an existing results row made from the same
    dataset and prompts, by the same backbone or (a tuning method's row) by one tuned from the row's
    backbone (identity `<row's>|<method>:<adapters>`); False (nothing written) when there is no such row."""
    path = layout.metrics_file(method)
    if not path.exists():
        return False
    record = json.loads(path.read_text())
    identity = str(record.get("backbone_identity"))
    same_backbone = provenance["backbone_identity"] == identity or \
        provenance["backbone_identity"].startswith(f"{identity}|{method}:")
    if not same_backbone or any(record.get(k) != provenance[k] for k in ("dataset_fingerprint", "embed_settings")):
        return False
    atomic_write_json(path, {**record, **columns})
    rebuild_results_table(layout)
    return True
