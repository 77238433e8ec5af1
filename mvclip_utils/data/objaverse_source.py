"""Objaverse as an object source: select by annotation / LVIS category, caption from `name`.

This goes through the real `objaverse` package, which reads its local cache
(`~/.objaverse/hf-objaverse-v1`) before downloading anything. `write_local_cache`
lays out that cache from local GLBs, which is how the tests (and offline users) run
the real code path without a network.

The category of an object is what zero-shot and the probes classify, so a selection
must span at least two: the seed's food-drink annotation category alone is one class
(zero-shot trivially 1.0), hence LVIS categories by default (`lvis_categories: auto`).
"""

from __future__ import annotations

import difflib
import gzip
import json
import shutil
import types
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ..core.schema import ConfigError, ObjaverseConfig
from ..core.shards import shard_items

COLUMNS = ["object_id", "source", "category", "caption", "asset_path", "status", "reason"]
KEY = "dataset.objaverse"


def _category_names(annotation: dict) -> list[str]:
    names = []
    for c in annotation.get("categories") or []:
        names.append(c.get("name", "") if isinstance(c, dict) else str(c))
    return names


def _import_objaverse() -> types.ModuleType:
    try:
        import objaverse  # late: optional: only the Objaverse source needs it (and it reads its cache on import)
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ImportError("dataset.source is 'objaverse' but the objaverse package is missing: "
                          "pip install objaverse") from exc
    return objaverse


def _cache_error(objaverse: types.ModuleType, what: str, exc: BaseException) -> RuntimeError:
    return RuntimeError(
        f"could not read Objaverse {what} from {objaverse._VERSIONED_PATH} nor download them ({exc}). "
        "Run once with network access to fill the cache, or set dataset.source: procedural."
    )


def _counts(counts: dict[str, int], limit: int = 8) -> str:
    """'mug: 12, bottle: 3' by decreasing count, ties by name, at most `limit` shown."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{name}: {n}" for name, n in ranked[:limit])
    return text + (f", ... {len(ranked) - limit} more" if len(ranked) > limit else "") if ranked else "none"


def _plural(n: int) -> str:
    return f"{n} categor{'y' if n == 1 else 'ies'}"


def assign_lvis_categories(selected: list[str], lvis: dict[str, list[str]], wanted: Optional[list[str]],
                           min_objects: int) -> dict[str, str]:
    """uid -> LVIS category for the `selected` uids in a kept category; the others are dropped.

    `wanted` None is auto: keep every category with at least `min_objects` selected objects.
    An object in several kept categories goes to the one with most selected objects (ties
    by name), so the labels are the same on every run. In auto mode that choice can leave
    a category below `min_objects`; it is then dropped and its objects go to their next
    choice, until every kept category holds at least `min_objects`.
    """
    chosen = set(selected)
    members = {cat: sorted(chosen.intersection(uids)) for cat, uids in lvis.items()
               if wanted is None or cat in wanted}
    total = {cat: len(uids) for cat, uids in members.items() if uids}
    kept = {cat for cat, n in total.items() if wanted is not None or n >= min_objects}
    rank = {cat: (-n, cat) for cat, n in total.items()}
    while True:
        categories_of: dict[str, list[str]] = {}
        for cat in kept:
            for uid in members[cat]:
                categories_of.setdefault(uid, []).append(cat)
        assigned = {uid: min(cats, key=rank.__getitem__) for uid, cats in categories_of.items()}
        if wanted is not None:
            return assigned
        sizes = pd.Series(assigned, dtype=object).value_counts()
        short = {cat for cat in kept if sizes.get(cat, 0) < min_objects}
        if not short:
            return assigned
        kept -= short


def _categorise(objaverse: types.ModuleType, cfg: ObjaverseConfig, chosen: dict[str, str]) -> dict[str, str]:
    """uid -> category (LVIS, or the annotation category with lvis_categories: []); at least 2 categories."""
    lvis_cfg = cfg.lvis_categories
    if lvis_cfg == []:
        found = pd.Series(chosen, dtype=object).value_counts().to_dict()
        if len(found) < 2:
            raise ConfigError(
                f"{KEY}.lvis_categories: [] (no LVIS filter) labels the {len(chosen)} selected objects with their "
                f"annotation category, which gives {_plural(len(found))} ({_counts(found)}); zero-shot needs at least "
                f"2: set {KEY}.lvis_categories: auto, list LVIS categories, or select more "
                f"{KEY}.annotation_categories")
        return chosen
    try:
        lvis = objaverse.load_lvis_annotations()
    except OSError as exc:  # urllib errors are OSErrors
        raise _cache_error(objaverse, "LVIS annotations", exc) from exc
    auto = lvis_cfg == "auto"
    wanted = None if auto else list(lvis_cfg)
    if wanted is not None:
        unknown = [c for c in wanted if c not in lvis]
        if unknown:
            hints = {c: difflib.get_close_matches(c, list(lvis), n=3) for c in unknown}
            raise ConfigError(
                f"{KEY}.lvis_categories: {', '.join(repr(c) for c in unknown)} not among Objaverse's "
                f"{len(lvis)} LVIS categories" + "".join(f" ({c!r}: did you mean {', '.join(h)}?)"
                                                         for c, h in hints.items() if h))
    assigned = assign_lvis_categories(sorted(chosen), lvis, wanted, cfg.lvis_min_objects)
    found = pd.Series(assigned, dtype=object).value_counts().to_dict()
    if len(found) >= 2:
        return assigned
    selected = set(chosen)
    among = f"among the {len(chosen)} selected objects"
    if auto:
        below = {cat: n for cat, uids in lvis.items() if cat not in found
                 and 0 < (n := len(selected.intersection(uids)))}
        raise ConfigError(
            f"{KEY}.lvis_min_objects: lvis_categories: auto kept {_plural(len(found))} with >= "
            f"{cfg.lvis_min_objects} objects {among} ({_counts(found)}; others: {_counts(below, 5)}); zero-shot "
            f"needs at least 2: lower {KEY}.lvis_min_objects or list categories in {KEY}.lvis_categories")
    raise ConfigError(
        f"{KEY}.lvis_categories: {wanted} kept {_plural(len(found))} {among} ({_counts(found)}); zero-shot needs "
        f"at least 2: list more LVIS categories or set {KEY}.lvis_categories: auto")


def _local_glbs(objaverse: types.ModuleType, uids: list[str],
                download_processes: int) -> tuple[dict[str, str], dict[str, str]]:
    """(uid -> local GLB, uid -> why not) for `uids`: cached GLBs as they are, the rest downloaded.

    `objaverse.load_objects` takes a GLB from the cache when `_VERSIONED_PATH`/<its path in
    the object-paths index> exists and downloads it otherwise; unguarded, one failed
    download (no network) aborts the whole run. Here only the missing ones go to it, and a
    failure marks them failed with their path, so a partly filled cache still renders.
    """
    cache = Path(objaverse._VERSIONED_PATH)
    try:
        index = objaverse._load_object_paths()
    except OSError as exc:
        raise _cache_error(objaverse, "object-paths index", exc) from exc
    paths: dict[str, str] = {}
    reasons: dict[str, str] = {}
    missing: list[str] = []
    for uid in uids:
        if uid not in index:
            reasons[uid] = f"uid {uid} missing from Objaverse's object-paths index {cache / 'object-paths.json.gz'}"
        elif (cache / index[uid]).exists():
            paths[uid] = str(cache / index[uid])
        else:
            missing.append(uid)
    if not missing:
        return paths, reasons
    error: Optional[BaseException] = None
    try:
        objaverse.load_objects(missing, download_processes=max(1, min(download_processes, len(missing))))
    except Exception as exc:  # URLError/HTTPError/OSError, or one re-raised from the download pool
        error = exc
    for uid in missing:
        local = cache / index[uid]
        if local.exists():  # downloaded (possibly before another one failed)
            paths[uid] = str(local)
        else:
            why = f"{type(error).__name__}: {error}" if error else "objaverse.load_objects returned no file"
            reasons[uid] = (f"{local} (uid {uid}) is not in the local Objaverse cache and the download failed "
                            f"({why}); rerun with network access or copy the GLB there")
    if not paths and error is not None:
        raise RuntimeError(
            f"none of the {len(uids)} selected Objaverse objects has its GLB in the local cache {cache}, and "
            f"downloading them failed ({type(error).__name__}: {error}). Run once with network access to fill "
            f"the cache, or copy each GLB to {cache}/<its path in object-paths.json.gz> "
            f"(e.g. {cache / index[missing[0]]}), or set dataset.source: procedural."
        ) from error
    return paths, reasons


def select_objects(cfg: ObjaverseConfig, seed: int, shard: tuple[int, int] | None = None) -> pd.DataFrame:
    """The objects to render, labelled by category, with local GLB paths.

    GLBs missing from the cache are downloaded with `objaverse.load_objects`; one that
    cannot be is recorded as failed with its reason and the run goes on with the others.
    With `shard` = (I, N), only shard I's GLBs are fetched (`dataset.shard_items` of the sorted
    uids); the other objects are listed without a path.
    """
    objaverse = _import_objaverse()
    try:
        if cfg.uids_file:
            uids = [u.strip() for u in Path(cfg.uids_file).read_text().splitlines() if u.strip()]
            unknown = sorted(set(uids) - set(objaverse._load_object_paths()))
            if unknown:
                raise ConfigError(f"{KEY}.uids_file: {len(unknown)} uid(s) not in Objaverse's object-paths index "
                                  f"(e.g. {', '.join(unknown[:3])}) in {cfg.uids_file}")
            annotations = objaverse.load_annotations(uids)
        else:
            annotations = objaverse.load_annotations()
    except OSError as exc:  # urllib errors are OSErrors
        raise _cache_error(objaverse, "annotations", exc) from exc
    wanted = set(cfg.annotation_categories)
    chosen: dict[str, str] = {}
    for uid, ann in annotations.items():
        names = _category_names(ann)
        hits = [n for n in names if n in wanted]
        if cfg.uids_file or not wanted or hits:
            chosen[uid] = hits[0] if hits else (names[0] if names else "object")
    if not chosen:
        raise RuntimeError(
            f"no Objaverse object matches annotation categories {sorted(wanted)} in {objaverse._VERSIONED_PATH}; "
            f"check {KEY}.annotation_categories in the config"
        )
    chosen = _categorise(objaverse, cfg, chosen)
    uids = sorted(chosen)
    if cfg.max_objects is not None and len(uids) > cfg.max_objects:
        rng = np.random.default_rng(seed)
        uids = sorted(rng.choice(uids, size=cfg.max_objects, replace=False).tolist())
        found = pd.Series([chosen[u] for u in uids], dtype=object).value_counts().to_dict()
        if len(found) < 2:
            raise ConfigError(
                f"{KEY}.max_objects: the {cfg.max_objects} objects drawn fall in {_plural(len(found))} "
                f"({_counts(found)}); zero-shot needs at least 2: raise it or set it to null")
    if shard is not None:
        fetched = set(shard_items(uids, *shard))
    else:
        fetched = set(uids)
    paths, reasons = _local_glbs(objaverse, [u for u in uids if u in fetched], cfg.download_processes)
    rows = []
    for uid in uids:
        name = " ".join(str(annotations[uid].get("name") or "").split())
        path = paths.get(uid)
        rows.append({
            "object_id": uid, "source": "objaverse", "category": chosen[uid],
            "caption": name or f"a {chosen[uid]}", "asset_path": path or "",
            "status": "pending" if path or uid not in fetched else "failed",
            "reason": "" if path or uid not in fetched else reasons[uid],
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def write_local_cache(home: Path | str, objects: dict[str, tuple[Optional[Path | str], dict]],
                      lvis: dict[str, list[str]] | None = None) -> Path:
    """Lay out Objaverse's cache under `home`/.objaverse/hf-objaverse-v1 from local GLBs.

    `objects` maps uid -> (glb path, annotation dict with at least `name` and `categories`);
    a glb of None lists the uid in the object-paths index without its file, as in a partly
    downloaded cache. Every one of the 160 metadata shards exists (objaverse reads them all
    when asked for every annotation); objects go to shard 000-000.
    """
    root = Path(home) / ".objaverse" / "hf-objaverse-v1"
    shard = "000-000"
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    (root / "glbs" / shard).mkdir(parents=True, exist_ok=True)
    paths, metadata = {}, {}
    for uid, (glb, annotation) in objects.items():
        rel = f"glbs/{shard}/{uid}.glb"
        if glb is not None:
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
