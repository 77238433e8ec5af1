"""A run as a notebook sees it: opened and checked once at the notebook's start, then passed down.

`open_run` loads the config, finds the run directory, reads the dataset tables and fingerprints
them, and reads (and checks) the backbone record, once; the studies take the `OpenedRun` instead of
re-reading and re-fingerprinting the same files in every module they call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.config import load_config
from ..core.protocol import TuningScope, run_tuning_scope
from ..core.runs import RunLayout
from ..core.schema import RunConfig
from ..data.dataset import dataset_fingerprint, load_objects, load_views
from .backbone import read_backbone_record
from .embed import Embeddings, load_embeddings


@dataclass(frozen=True)
class OpenedRun:
    cfg: RunConfig
    layout: RunLayout
    objects: pd.DataFrame  # dataset/objects.parquet
    views: pd.DataFrame  # dataset/views.parquet
    dataset_fingerprint: str
    backbone_record: dict | None  # None when opened without the backbone (before notebook 02 has run)

    @classmethod
    def open(cls, cfg: RunConfig, layout: RunLayout, backbone: bool = True) -> OpenedRun:
        """Read the tables once, fingerprint them once, and refuse a backbone made from another dataset.
        A CIFAR-100 run has no renders: its tables are empty and it has no backbone record."""
        if cfg.dataset.source == "cifar100":
            return cls(cfg, layout, pd.DataFrame(), pd.DataFrame(), "", None)
        objects, views = load_objects(layout), load_views(layout)
        fingerprint = dataset_fingerprint(layout, objects, views)
        record = read_backbone_record(layout, dataset=fingerprint) if backbone else None
        return cls(cfg, layout, objects, views, fingerprint, record)

    @property
    def backbone_name(self) -> str:
        if self.backbone_record is None:
            raise ValueError("this run was opened without its backbone (open_run(..., backbone=True))")
        return self.backbone_record["name"]

    @functools.cached_property
    def scope(self) -> TuningScope:
        """What every method that trains may see under the config's protocol (`core.protocol`)."""
        return run_tuning_scope(self.cfg, self.objects, self.views)

    @functools.cached_property
    def embeddings(self) -> Embeddings:
        """The frozen backbone's embeddings (notebook 03), checked against this dataset and backbone once."""
        return load_embeddings(self.layout, self.cfg, self.dataset_fingerprint, self.backbone_record)


def open_run(config_path: Path | str, run_dir: Path | str | None = None, backbone: bool = True) -> OpenedRun:
    """The notebook's one opened run: its config (validated), layout, dataset tables and their
    fingerprint, and (with `backbone`) the checked backbone record."""
    cfg = load_config(config_path)
    return OpenedRun.open(cfg, RunLayout.for_run(cfg.run_name, run_dir), backbone)
