"""The transfer protocol: what a method that trains may see, and so what evaluation holds out.

`protocol:` in the config (`schema.ProtocolConfig`) names three category groups and the seen
poses. Everything that trains asks `tuning_scope` which objects and views it may use; every
evaluation labels each test object with its category group and each view with its pose group
(`pose_groups`), so the reports can say whether a gain *transfers*: to unseen poses, to
categories tuning saw only from one view, and to categories it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .cameras import angle_from_view, canonical_view_id
from .schema import ConfigError, ProtocolConfig, RunConfig

MULTI_VIEW, SINGLE_VIEW, UNSEEN = "multi_view", "single_view", "unseen"
CATEGORY_GROUPS = (MULTI_VIEW, SINGLE_VIEW, UNSEEN)
# Pose groups of a view: the canonical view (clean), the other seen grid views, the held-out grid
# views, and the out-of-distribution views no tuning ever sees.
CLEAN, SEEN_POSES, UNSEEN_POSES, OOD = "clean", "seen_poses", "unseen_poses", "ood"
POSE_GROUPS = (CLEAN, SEEN_POSES, UNSEEN_POSES, OOD)
# Every grid view but the canonical one (seen and unseen poses together): the OVT write-up's
# viewpoint-OOD, and what a category tuning saw from one view only meets as new poses.
OTHER_GRID = "other_grid"


def _drawn(free: list[str], fraction: float, n_categories: int, rng: np.random.Generator) -> list[str]:
    """round(fraction x every category) of the `free` ones (halves round up)."""
    n = int(fraction * n_categories + 0.5)
    return sorted(rng.permutation(free)[:n].tolist()) if n else []


def category_groups(protocol: ProtocolConfig, categories: list[str], seed: int) -> dict[str, str]:
    """{category: group} for every category of the dataset. Named groups are taken as given; a
    group given as a fraction is drawn (with `seed`) among the categories no list names, single-view
    first. Refuses a group that names an unknown category, a category in two groups, a group given
    a fraction that rounds to no category, and an empty multi-view group, naming the key."""
    categories = sorted(set(categories))
    for key in ("single_view_categories", "unseen_categories"):
        unknown = sorted(set(getattr(protocol, key)) - set(categories))
        if unknown:
            raise ConfigError(f"protocol.{key}: {', '.join(unknown)} not among the dataset's categories "
                              f"({', '.join(categories)})")
    both = sorted(set(protocol.single_view_categories) & set(protocol.unseen_categories))
    if both:
        raise ConfigError(f"protocol.unseen_categories: {', '.join(both)} also in protocol.single_view_categories")
    rng = np.random.default_rng([seed, 23])  # its own stream: the groups do not move when splits change
    free = [c for c in categories if c not in protocol.single_view_categories + protocol.unseen_categories]
    single = list(protocol.single_view_categories) or _drawn(free, protocol.single_view_fraction, len(categories), rng)
    free = [c for c in free if c not in single]
    unseen = list(protocol.unseen_categories) or _drawn(free, protocol.unseen_fraction, len(categories), rng)
    for key, fraction, group in (("single_view_fraction", protocol.single_view_fraction, single),
                                 ("unseen_fraction", protocol.unseen_fraction, unseen)):
        if fraction > 0 and not group:
            raise ConfigError(f"protocol.{key}: {fraction} of {len(categories)} categories is no category; "
                              f"raise it to at least {0.5 / len(categories):.2g} or set it to 0")
    groups = {c: SINGLE_VIEW if c in single else UNSEEN if c in unseen else MULTI_VIEW for c in categories}
    if MULTI_VIEW not in groups.values():
        raise ConfigError("protocol: every category is single-view or unseen, so no method has multi-view data "
                          "to tune on; lower protocol.single_view_fraction / unseen_fraction or list fewer")
    return groups


def seen_pose_mask(protocol: ProtocolConfig, views: pd.DataFrame) -> np.ndarray:
    """[V] True for the grid views of the seen poses (`views_table` order)."""
    grid = (views.kind == "grid").to_numpy()
    ring = (np.isin(views.elevation_deg.to_numpy(), protocol.seen_elevations_deg)
            if protocol.seen_elevations_deg else np.ones(len(views), bool))
    if protocol.seen_azimuths_deg:
        start, stop = protocol.seen_azimuths_deg
        offset = (views.azimuth_deg.to_numpy() - start) % 360
        arc = offset < (stop - start) % 360 if (stop - start) % 360 else np.ones(len(views), bool)
    else:
        arc = np.ones(len(views), bool)
    return grid & ring & arc


def pose_groups(protocol: ProtocolConfig, views: pd.DataFrame, canonical: str) -> np.ndarray:
    """[V] the pose group of every view: clean (the canonical view), seen_poses, unseen_poses or ood."""
    seen = seen_pose_mask(protocol, views)
    return np.where(views.view_id.to_numpy() == canonical, CLEAN,
                    np.where(views.kind.to_numpy() != "grid", OOD, np.where(seen, SEEN_POSES, UNSEEN_POSES)))


ANGLE_BIN_DEG = 30


def angle_bins(views: pd.DataFrame, canonical: str, width: int = ANGLE_BIN_DEG) -> dict[str, np.ndarray]:
    """{"angle_000_030": [V] mask, ...}: the grid views by their angle from the canonical view, in bins
    of `width` degrees (as dense-probing benchmarks bin by viewpoint change); empty bins are left out."""
    angle = angle_from_view(views, canonical)
    grid = (views.kind == "grid").to_numpy()
    bins = {}
    for low in range(0, 180, width):
        keep = grid & (angle >= low) & ((angle < low + width) | ((low + width >= 180) & (angle <= 180)))
        if keep.any():
            bins[f"angle_{low:03d}_{low + width:03d}"] = keep
    return bins


def check_poses(protocol: ProtocolConfig, views: pd.DataFrame, canonical: str) -> None:
    """Refuse seen poses that select no grid view, that hold none out while a selection was asked
    for, or that leave the canonical (clean) view unseen, naming the key."""
    seen = seen_pose_mask(protocol, views)
    grid = (views.kind == "grid").to_numpy()
    keys = "protocol.seen_elevations_deg / seen_azimuths_deg"
    if not seen.any():
        raise ConfigError(f"{keys}: select none of the {grid.sum()} grid views (elevations "
                          f"{sorted(set(views.elevation_deg[grid]))}); tuning would have no view to see")
    if (protocol.seen_elevations_deg or protocol.seen_azimuths_deg) and seen.sum() == grid.sum():
        raise ConfigError(f"{keys}: select every grid view, so no pose is held out; name fewer rings or a "
                          "narrower azimuth range, or leave both empty for no pose split")
    if not seen[views.view_id.to_numpy() == canonical].any():
        raise ConfigError(f"{keys}: the canonical view {canonical} (the clean view) is not a seen pose; "
                          "include its ring and azimuth, or set backbone.pretrain.canonical_view")


@dataclass(frozen=True)
class TuningScope:
    """What a method that trains may use, in table order (as `data.ViewImages` keeps them)."""

    groups: dict[str, str]  # category -> group
    multi_view_objects: list[str]  # train objects of the multi-view categories: many views each
    seen_views: list[str]  # the grid views of the seen poses
    clean_objects: list[str]  # objects whose canonical view is clean data (pretrain objects and the
    #                           single-view categories' train objects; never an unseen category's)
    canonical: str  # the clean view

    def categories(self, group: str) -> list[str]:
        return sorted(c for c, g in self.groups.items() if g == group)

    def describe(self) -> str:
        """One sentence for the reports."""
        return (f"tuning sees {len(self.multi_view_objects)} train objects of {len(self.categories(MULTI_VIEW))} "
                f"multi-view categories from {len(self.seen_views)} seen grid poses, the clean canonical views "
                f"of {len(self.clean_objects)} objects (single-view categories: "
                f"{', '.join(self.categories(SINGLE_VIEW)) or 'none'}), and nothing of the unseen categories "
                f"({', '.join(self.categories(UNSEEN)) or 'none'})")


def tuning_scope(protocol: ProtocolConfig, objects: pd.DataFrame, views: pd.DataFrame, seed: int,
                 canonical: str) -> TuningScope:
    """The scope of every tuning of this run, from the rendered objects and the views tables."""
    check_poses(protocol, views, canonical)
    ok = objects[objects.status == "ok"]
    groups = category_groups(protocol, ok.category.unique().tolist(), seed)
    group = ok.category.map(groups)
    multi = ok.object_id[(ok.split == "train") & (group == MULTI_VIEW)].tolist()
    clean = ok.object_id[((ok.split == "pretrain") & (group != UNSEEN))
                         | ((ok.split == "train") & (group == SINGLE_VIEW))].tolist()
    return TuningScope(groups, multi, views.view_id[seen_pose_mask(protocol, views)].tolist(), clean, canonical)


def run_tuning_scope(cfg: RunConfig, objects: pd.DataFrame, views: pd.DataFrame) -> TuningScope:
    """`tuning_scope` of a run's config and tables: the one place the protocol's settings, the random
    seed and the canonical view are read for it."""
    return tuning_scope(cfg.protocol, objects, views, cfg.seed,
                        canonical_view_id(views, cfg.backbone.pretrain.canonical_view))
