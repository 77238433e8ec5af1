"""Shared test helpers: tiny configs, running the CLI, a rendered run with its pretrained backbone.

Imported as `from helpers import ...` (pytest puts tests/ on the path); fixtures live in conftest.py.
"""
import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mvclip_utils.core.config import config_from_dict

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# A tiny render setup: 32 px, 4 azimuths x 2 elevations + 2 ood views.
TINY = {
    "run_name": "tiny",
    "seed": 0,
    "dataset": {"source": "procedural",
                "procedural": {"categories": ["mug", "bottle", "car"], "objects_per_category": 2},
                "splits": {"pretrain": 0.5, "train": 0.0, "val": 0.0, "test": 0.5}},
    "render": {"engine": "workbench", "resolution": 32, "azimuths": 4, "elevations_deg": [30, 10],
               "ood_views": [{"name": "top_down", "azimuth_deg": 0, "elevation_deg": 90, "distance": 1.5},
                             {"name": "below", "azimuth_deg": 0, "elevation_deg": -60, "distance": 1.5}],
               "workers": 2},
}


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(overrides: dict | None = None):
    return config_from_dict(deep_update(TINY, overrides or {}))


def write_config(path: Path, overrides: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump(deep_update(TINY, overrides or {})))
    return path


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def rendered_run_with_backbone(root: Path, overrides: dict | None = None):
    """A rendered tiny run with its mvclip-tiny pretrained and recorded as notebook 02 does:
    (config, layout, backbone). For tests of the notebooks that come after 02."""
    from mvclip_utils.core.runs import RunLayout
    from mvclip_utils.data.dataset import build_dataset
    from mvclip_utils.models.backbone import load_backbone, write_backbone_record
    from mvclip_utils.studies.pretrain import pretrain_tiny_clip

    layout = RunLayout(root)
    cfg = make_config(overrides)
    build_dataset(cfg, layout, progress=False)
    record = pretrain_tiny_clip(cfg, layout, progress=False)
    backbone = load_backbone(cfg.backbone, layout)
    write_backbone_record(layout, backbone, record.dataset_fingerprint)
    return cfg, layout, backbone
