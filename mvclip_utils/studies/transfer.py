"""Every method re-judged under the transfer protocol (notebook 13): paired, with intervals.

Each method notebook writes its per-object scores (`evaluation.transfer`); here they are stacked,
averaged per cell (category group x pose group) and compared pairwise on the same test objects
with one shared bootstrap resample per cell (`evaluation.stats.paired_table`). Every verdict
below is read off an interval; none is a fixed sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..core.protocol import CLEAN, MULTI_VIEW, OOD, OTHER_GRID, SEEN_POSES, SINGLE_VIEW, UNSEEN, UNSEEN_POSES
from ..core.runs import RunLayout
from ..evaluation.results import load_per_object_scores, method_label
from ..evaluation.stats import BETTER, WORSE, paired_table
from ..evaluation.transfer import CELLS, SCORES, chance_levels, transfer_table

FROZEN = "baseline"  # notebook 04's row: the frozen backbone
CONTROL = "supervised_control"  # notebook 09's: the zero-shot classifier trained on the multi-view labels
ALL = "all"  # every test object, whatever its category group
# The regimes a reader asks about: (category group, pose group).
REGIMES = {
    "clean": (ALL, CLEAN),
    "seen poses": (MULTI_VIEW, SEEN_POSES),
    "unseen poses": (MULTI_VIEW, UNSEEN_POSES),
    "ood views": (MULTI_VIEW, OOD),
    "single-view categories": (SINGLE_VIEW, OTHER_GRID),
    "unseen categories": (UNSEEN, OTHER_GRID),
}
CLEAN_BUDGET = 0.01  # "without losing clean accuracy": the whole interval above -1 point


@dataclass
class TransferResults:
    scores: pd.DataFrame  # stacked per-object scores, with the `all` group added for clean and other_grid
    means: pd.DataFrame  # evaluation.transfer.transfer_table
    paired: pd.DataFrame  # evaluation.stats.paired_table of `comparison_pairs`
    n_resamples: int


def comparison_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """Every method against the frozen backbone, then ours and the ITC-only tune against OVT, then every
    tuned method against the supervised control (what ITC on the labels alone reaches)."""
    pairs = [(m, FROZEN) for m in methods if m != FROZEN]
    tuned = ("centroid_distillation", "omniview_tuning", "itc_finetune")
    for a, b in (("centroid_distillation", "omniview_tuning"), ("itc_finetune", "omniview_tuning"),
                 *((m, CONTROL) for m in tuned)):
        if a in methods and b in methods:
            pairs.append((a, b))
    return pairs


def _with_all_group(scores: pd.DataFrame) -> pd.DataFrame:
    whole = scores[scores.poses.isin([CLEAN, OTHER_GRID, OOD]) | is_angle_bin(scores.poses)].assign(category_group=ALL)
    return pd.concat([scores, whole], ignore_index=True)


def is_angle_bin(poses: pd.Series) -> pd.Series:
    return poses.str.startswith("angle_")


def transfer_results(layout: RunLayout, methods: list[str], n_resamples: int = 2000,
                     seed: int = 0) -> TransferResults | None:
    """The protocol's tables for these methods (those that wrote per-object scores); None if none did."""
    scores = load_per_object_scores(layout, methods)
    if scores.empty or FROZEN not in set(scores.method):
        return None
    scores = _with_all_group(scores)
    present = [m for m in methods if m in set(scores.method)]
    paired = paired_table(scores, comparison_pairs(present), list(SCORES), CELLS, n_resamples, seed)
    return TransferResults(scores, transfer_table(scores), paired, n_resamples)


def paired_cell(paired: pd.DataFrame, a: str, b: str, regime: str, metric: str = "zero_shot") -> pd.Series | None:
    group, poses = REGIMES[regime]
    hit = paired[(paired.a == a) & (paired.b == b) & (paired.category_group == group) & (paired.poses == poses)
                 & (paired.metric == metric)]
    return hit.iloc[0] if len(hit) else None


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _interval(row: pd.Series) -> str:
    return f"{_points(row.difference)} [{_points(row.low)}, {_points(row.high)}]"


def headline_table(results: TransferResults, metric: str = "zero_shot") -> pd.DataFrame:
    """One row per method, one column per regime: the mean score, and for every method but the frozen
    backbone its paired difference from it in points with the 95 % interval."""
    means = results.means.set_index(["method", *CELLS])[metric]
    rows = {}
    for method in results.means.method.unique():
        row = {}
        for regime, (group, poses) in REGIMES.items():
            if (method, group, poses) not in means.index:
                continue
            text = f"{means[(method, group, poses)]:.3f}"
            diff = paired_cell(results.paired, method, FROZEN, regime, metric)
            row[regime] = text + (f" ({_interval(diff)})" if diff is not None else "")
        rows[method_label(method)] = row
    if metric in ("zero_shot", "zero_shot_in_group"):  # chance per regime: 1 / the categories competing
        own = results.scores[results.scores.category_group != ALL]
        levels = chance_levels(dict(zip(own.category, own.category_group)))
        every = 1 / own.category.nunique()
        rows["chance"] = {regime: f"{every if group == ALL else levels[(metric, group)]:.3f}"
                          for regime, (group, _) in REGIMES.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def findings(results: TransferResults, metric: str = "zero_shot") -> str:
    """Markdown: for each tuned method, whether it improves each transfer regime over the frozen backbone
    and whether it keeps clean accuracy within the budget, then ours and ITC-only against OVT; each
    verdict from its paired interval."""
    paired = results.paired
    lines = []
    for a, b in sorted({(r.a, r.b) for r in paired.itertuples()}, key=lambda p: (p[1] != FROZEN, p)):
        parts = []
        for regime in REGIMES:
            row = paired_cell(paired, a, b, regime, metric)
            if row is None:
                continue
            verdict = {BETTER: "**better**", WORSE: "**worse**"}.get(row.verdict, "not resolved")
            parts.append(f"{regime} {_interval(row)} ({verdict})")
        clean = paired_cell(paired, a, b, "clean", metric)
        against = "the frozen backbone's" if b == FROZEN else f"{method_label(b)}'s"
        kept = ("" if clean is None else
                f" Clean accuracy within {100 * CLEAN_BUDGET:.0f} point of {against} or above"
                + (": yes." if clean.low > -CLEAN_BUDGET else
                   f": not shown (the interval reaches {_points(clean.low)})."))
        lines.append(f"- **{method_label(a)} - {method_label(b)}**, points: " + "; ".join(parts) + "." + kept)
    n = int(results.scores[results.scores.category_group == ALL].object_id.nunique())
    return (f"Paired differences in zero-shot accuracy on the same {n} test objects, 95 % bootstrap intervals "
            f"({results.n_resamples} resamples shared by every method); a verdict holds only when its interval "
            "excludes zero.\n\n" + "\n".join(lines))


def resolution(results: TransferResults, metric: str = "zero_shot") -> pd.DataFrame:
    """Per regime: the test objects in it and the smallest difference its paired comparisons resolve
    (1.96 x the median paired standard error over the comparisons that differ at all), in points."""
    rows = []
    for regime, (group, poses) in REGIMES.items():
        cell = results.paired[(results.paired.category_group == group) & (results.paired.poses == poses)
                              & (results.paired.metric == metric)]
        moved = cell.paired_stderr[cell.paired_stderr > 0]  # identical scores (stderr 0) say nothing of it
        if len(cell):
            rows.append({"regime": regime, "test objects": int(cell.n_objects.iloc[0]),
                         "resolves (points)": round(100 * 1.96 * float(moved.median()), 1) if len(moved)
                         else float("nan")})
    return pd.DataFrame(rows)


def by_angle(results: TransferResults, metric: str = "zero_shot") -> pd.DataFrame:
    """Per method and angle bin (every test object, the grid views by their angle from the canonical
    view): the mean, its standard error over objects, and the bin's centre in degrees."""
    cells = results.scores[(results.scores.category_group == ALL) & is_angle_bin(results.scores.poses)]
    table = cells.groupby(["method", "poses"], sort=False)[metric].agg(["mean", "sem"]).reset_index()
    low_high = table.poses.str.extract(r"angle_(\d+)_(\d+)").astype(float)
    return table.assign(centre_deg=low_high.mean(axis=1)).sort_values(["method", "centre_deg"], kind="stable")


def pose_table(results: pd.DataFrame) -> pd.DataFrame:
    """How well each method's test embeddings give away the pose (`metrics.pose_decodability`): a
    view-invariant embedding should lose it, the autoencoder's view-dependent path keeps it."""
    columns = ["pose_azimuth_accuracy", "pose_elevation_accuracy"]
    if not set(columns) <= set(results):
        return pd.DataFrame()
    rows = results[results[columns[0]].notna()].set_index("method")
    table = rows[columns].rename(columns={columns[0]: "azimuth", columns[1]: "elevation ring"})
    table.index = [method_label(m) for m in table.index]
    chance = rows[["pose_azimuth_chance", "pose_elevation_chance"]].iloc[0]
    table.loc["chance"] = [chance.pose_azimuth_chance, chance.pose_elevation_chance]
    return table


# What settings are chosen for: zero-shot that transfers (the held-out poses of the multi-view
# categories, and the single-view and unseen categories at every non-canonical pose), on val.
SELECTION_TARGETS = ("val_zero_shot_multi_view_unseen_poses", "val_zero_shot_single_view_other_grid",
                     "val_zero_shot_unseen_other_grid")
SELECTION_CLEAN = "val_zero_shot_all_clean"


def choose_on_val(rows: pd.DataFrame, frozen_clean: float, budget: float = CLEAN_BUDGET) -> pd.DataFrame:
    """`rows` (one per variant: its `val_*` results columns) with `val_transfer` (the mean of the selection
    targets it has), `eligible` (its val clean accuracy at most `budget` below the frozen backbone's) and
    `chosen` (the eligible variant of highest `val_transfer`; the first on a tie; when none is eligible, the
    one that loses least clean accuracy). Test columns are never read."""
    targets = [c for c in SELECTION_TARGETS if c in rows]
    if not targets or SELECTION_CLEAN not in rows:
        raise ValueError(f"the variants have no val columns ({', '.join(SELECTION_TARGETS)}): rerun them with a "
                         "dataset.splits.val above 0 (val holds objects of every category group)")
    table = rows.assign(val_transfer=rows[targets].mean(axis=1),
                        eligible=rows[SELECTION_CLEAN] >= frozen_clean - budget).reset_index(drop=True)
    pick = (table.val_transfer.where(table.eligible).idxmax() if table.eligible.any()
            else table[SELECTION_CLEAN].idxmax())
    return table.assign(chosen=table.index == pick)


VARIANCE_COLUMNS = {"clean": "zero_shot_all_clean", "unseen poses": "zero_shot_multi_view_unseen_poses",
                    "single-view categories": "zero_shot_single_view_other_grid",
                    "unseen categories": "zero_shot_unseen_other_grid"}


def variance_table(method_seeds: pd.DataFrame | None, dataset_seeds: pd.DataFrame | None) -> pd.DataFrame:
    """Per method and regime, the standard error over training seeds (same dataset) beside the one over
    dataset/split seeds (other objects, splits and category groups): which source of variance a
    difference must beat. Either table may be missing (`make seeds` writes both)."""
    rows = []
    for source, table in (("training seeds", method_seeds), ("dataset seeds", dataset_seeds)):
        if table is None:
            continue
        for method, row in table.iterrows():
            for regime, column in VARIANCE_COLUMNS.items():
                if f"{column}_seed_stderr" in row and pd.notna(row[column]):  # methods without zero-shot: none
                    rows.append({"method": method_label(method), "regime": regime, "source": source,
                                 "runs": int(row.n_runs), "mean": row[column],
                                 "stderr": row[f"{column}_seed_stderr"]})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    return table.pivot_table(index=["method", "regime"], columns="source", values=["mean", "stderr", "runs"],
                             sort=False)
