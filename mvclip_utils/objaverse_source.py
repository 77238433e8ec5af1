"""Objaverse as an object source: select by annotation / LVIS category, caption from `name`.

This goes through the real `objaverse` package, which reads its local cache
(`~/.objaverse/hf-objaverse-v1`) before downloading anything. `write_local_cache`
lays out that cache from local GLBs, which is how the tests (and offline users) run
the real code path without a network.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ObjaverseConfig

COLUMNS = ["object_id", "source", "category", "caption", "asset_path", "status", "reason"]


def _category_names(annotation: dict) -> list[str]:
    names = []
    for c in annotation.get("categories") or []:
        names.append(c.get("name", "") if isinstance(c, dict) else str(c))
    return names


def select_objects(cfg: ObjaverseConfig, seed: int) -> pd.DataFrame:
    """The objects to render, with local GLB paths (downloaded with `objaverse.load_objects` if missing)."""
    try:
        import objaverse
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ImportError("dataset.source is 'objaverse' but the objaverse package is missing: pip install objaverse") from exc

    try:
        if cfg.uids_file:
            uids = [u.strip() for u in Path(cfg.uids_file).read_text().splitlines() if u.strip()]
            annotations = objaverse.load_annotations(uids)
        else:
            annotations = objaverse.load_annotations()
    except OSError as exc:  # urllib errors are OSErrors
        raise RuntimeError(
            f"could not read Objaverse annotations from {objaverse._VERSIONED_PATH} nor download them ({exc}). "
            "Run once with network access to fill the cache, or set dataset.source: procedural."
        ) from exc
    wanted = set(cfg.annotation_categories)
    chosen: dict[str, str] = {}
    for uid, ann in annotations.items():
        names = _category_names(ann)
        hits = [n for n in names if n in wanted]
        if cfg.uids_file or not wanted or hits:
            chosen[uid] = hits[0] if hits else (names[0] if names else "object")
    if cfg.lvis_categories:
        lvis = objaverse.load_lvis_annotations()
        lvis_of = {uid: cat for cat in cfg.lvis_categories for uid in lvis.get(cat, [])}
        chosen = {uid: lvis_of[uid] for uid in chosen if uid in lvis_of}
    uids = sorted(chosen)
    if cfg.max_objects is not None and len(uids) > cfg.max_objects:
        rng = np.random.default_rng(seed)
        uids = sorted(rng.choice(uids, size=cfg.max_objects, replace=False).tolist())
    if not uids:
        raise RuntimeError(
            f"no Objaverse object matches annotation categories {sorted(wanted)} and LVIS categories "
            f"{cfg.lvis_categories} in {objaverse._VERSIONED_PATH}; check dataset.objaverse in the config"
        )
    paths = objaverse.load_objects(uids, download_processes=cfg.download_processes)
    rows = []
    for uid in uids:
        name = " ".join(str(annotations[uid].get("name") or "").split())
        path = paths.get(uid)
        rows.append({
            "object_id": uid, "source": "objaverse", "category": chosen[uid],
            "caption": name or f"a {chosen[uid]}", "asset_path": path or "",
            "status": "pending" if path else "failed",
            "reason": "" if path else "uid missing from Objaverse's object-paths index",
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_local_cache(home: Path | str, objects: dict[str, tuple[Path | str, dict]],
                      lvis: dict[str, list[str]] | None = None) -> Path:
    """Lay out Objaverse's cache under `home`/.objaverse/hf-objaverse-v1 from local GLBs.

    `objects` maps uid -> (glb path, annotation dict with at least `name` and `categories`).
    Every one of the 160 metadata shards exists (objaverse reads them all when asked for
    every annotation); objects go to shard 000-000.
    """
    root = Path(home) / ".objaverse" / "hf-objaverse-v1"
    shard = "000-000"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "glbs" / shard).mkdir(parents=True, exist_ok=True)
    paths, metadata = {}, {}
    for uid, (glb, annotation) in objects.items():
        rel = f"glbs/{shard}/{uid}.glb"
        shutil.copyfile(glb, root / rel)
        paths[uid] = rel
        metadata[uid] = {"uid": uid, **annotation}

    def dump(path: Path, data) -> None:
        with gzip.open(path, "wt") as fh:
            json.dump(data, fh)

    dump(root / "object-paths.json.gz", paths)
    for i in range(160):
        name = f"{i // 1000:03d}-{i % 1000:03d}"
        dump(root / "metadata" / f"{name}.json.gz", metadata if name == shard else {})
    dump(root / "lvis-annotations.json.gz", lvis or {})
    return root
