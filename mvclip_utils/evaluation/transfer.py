"""Scores under the transfer protocol (`core.protocol`): one row per test object and pose group.

Every method's test embeddings become the same table (`per_object_scores`), so any two methods
can be compared object by object (`evaluation.stats.paired_table`) in every cell of category
group x pose group, and the cells' means are the protocol's headline (`transfer_table`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.protocol import (
    CATEGORY_GROUPS,
    OTHER_GRID,
    POSE_GROUPS,
    SEEN_POSES,
    UNSEEN_POSES,
    angle_bins,
    category_groups,
    pose_groups,
)
from ..core.schema import RunConfig
from ..models.embed import Embeddings

SCORES = ("zero_shot", "zero_shot_in_group", "same_object_similarity")
CELLS = ["category_group", "poses"]


def per_object_scores(image, category_text, labels, category_names, groups: dict[str, str],
                      view_poses: np.ndarray, object_ids, view_sets: dict[str, np.ndarray] | None = None
                      ) -> pd.DataFrame:
    """One row per (object, pose group) that has views (and one for `other_grid`, seen and unseen poses
    together): the object's zero-shot accuracy over those
    views among every category's prompts (`zero_shot`) and among its own group's (`zero_shot_in_group`),
    and the mean cosine similarity of its distinct view pairs there (`same_object_similarity`; NaN
    for a group of one view, such as clean).

    image [N, V, D] L2-normalised, category_text [C, D], labels [N] into `category_names` [C],
    groups {category: group}, view_poses [V] (`core.protocol.pose_groups`), object_ids [N]; `view_sets`
    ({name: [V] mask}, e.g. `core.protocol.angle_bins`) adds a row per object for each further set of views.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    names = np.asarray(category_names)
    category_group = np.array([groups[c] for c in names])
    logits = np.einsum("nvd,cd->nvc", image, np.asarray(category_text))
    correct = logits.argmax(-1) == labels[:, None]  # [N, V]
    own = category_group[labels]  # [N] each object's group
    in_group = np.where(category_group[None, None, :] == own[:, None, None], logits, -np.inf)
    correct_in_group = in_group.argmax(-1) == labels[:, None]
    gram = np.einsum("nvd,nwd->nvw", image, image)
    rows = []
    view_poses = np.asarray(view_poses)
    sets = {poses: view_poses == poses for poses in POSE_GROUPS}
    sets[OTHER_GRID] = np.isin(view_poses, [SEEN_POSES, UNSEEN_POSES])
    sets.update(view_sets or {})
    for poses, keep in sets.items():
        k = int(keep.sum())
        if not k:
            continue
        block = gram[:, keep][:, :, keep]
        same = ((block.sum((1, 2)) - np.trace(block, axis1=1, axis2=2)) / (k * (k - 1))
                if k > 1 else np.full(len(image), np.nan))
        rows.append({"object_id": np.asarray(object_ids), "category": names[labels], "category_group": own,
                     "poses": np.full(len(image), poses), "zero_shot": correct[:, keep].mean(1),
                     "zero_shot_in_group": correct_in_group[:, keep].mean(1),
                     "same_object_similarity": same.astype(np.float64), "n_views": np.full(len(image), k)})
    # one frame from the stacked columns (concatenating frames warns on an all-NaN column such as clean's)
    return pd.DataFrame({column: np.concatenate([r[column] for r in rows]) for column in rows[0]})


def split_scores(image, part: Embeddings, views: pd.DataFrame, canonical: str, cfg: RunConfig,
                 category_text: np.ndarray | None = None) -> pd.DataFrame:
    """`per_object_scores` of a method's embeddings `image` [N, V, D] of one split's objects (the frozen
    text side and labels from `part`, that split of notebook 03's embeddings, unless `category_text`
    [C, D] replaces the class side, as a trained classifier's weights do), under the run's protocol."""
    groups = category_groups(cfg.protocol, list(part.category_names), cfg.seed)
    class_side = part.category_text if category_text is None else category_text
    return per_object_scores(image, class_side, part.labels, part.category_names, groups,
                             pose_groups(cfg.protocol, views, canonical), part.object_ids,
                             angle_bins(views, canonical))


def val_columns(image, val: Embeddings, views: pd.DataFrame, canonical: str, cfg: RunConfig,
                category_text: np.ndarray | None = None) -> dict[str, float]:
    """The cell means on the `val` objects as `val_*` results columns: what settings are chosen on
    (`mvclip select`), never test."""
    if not len(val.object_ids):
        return {}
    scores = split_scores(image, val, views, canonical, cfg, category_text)
    return {f"val_{k}": v for k, v in transfer_columns(scores).items()}


def chance_levels(groups: dict[str, str]) -> dict[tuple[str, str], float]:
    """{(score, category group): accuracy at chance}: 1 / every category for `zero_shot`, 1 / the
    group's categories for `zero_shot_in_group`."""
    sizes = pd.Series(groups).value_counts()
    out = {}
    for group in CATEGORY_GROUPS:
        out[("zero_shot", group)] = 1 / len(groups)
        out[("zero_shot_in_group", group)] = 1 / sizes[group] if group in sizes else float("nan")
    return out


def transfer_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean score and object count per method x category group x pose group (methods in the order they
    come, cells in protocol order; the `all` group first),
    from stacked `per_object_scores` with a `method` column."""
    table = (scores.groupby(["method", *CELLS], sort=False)
             .agg(**{s: (s, "mean") for s in SCORES}, n_objects=("object_id", "nunique")).reset_index())
    order = {g: i for i, g in enumerate(CATEGORY_GROUPS + POSE_GROUPS + (OTHER_GRID,))}
    order.update({b: len(order) + i for i, b in enumerate(sorted(set(scores.poses) - set(order)))})  # angle bins
    order.update({m: i for i, m in enumerate(dict.fromkeys(scores.method))})  # methods as they come
    return table.sort_values(["method", "category_group", "poses"], key=lambda c: c.map(order).fillna(-1),
                             kind="stable", ignore_index=True)


def transfer_columns(scores: pd.DataFrame) -> dict[str, float]:
    """The cell means as flat results columns, e.g. `zero_shot_unseen_unseen_poses` (category group,
    then pose group; `all` for every object), for results.csv and the seed sweeps."""
    means = scores.groupby(CELLS, sort=False)[list(SCORES)].mean()
    columns = {f"{score}_{group}_{poses}": float(means.loc[(group, poses), score])
               for group, poses in means.index for score in SCORES}
    every = scores.groupby("poses", sort=False)[list(SCORES)].mean()  # every object, whatever its group
    columns.update({f"{score}_all_{poses}": float(every.loc[poses, score])
                    for poses in every.index for score in SCORES})
    return columns
