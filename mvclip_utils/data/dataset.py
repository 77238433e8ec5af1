"""The multi-view dataset: manifest tables, splits, building (rendering) and loading.

`build_dataset` is what notebook 01 calls (and `mvclip render`): it
writes `views.parquet` and `objects.parquet`, renders what is not rendered yet, and
records each object's final status. Splits are by object, seeded, stratified by
category: `pretrain` (only for pretraining the tiny backbone), `train`, `val`, `test`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..core.cameras import views_table
from ..core.runs import RunLayout, atomic_write_json, atomic_write_parquet
from ..core.schema import SPLITS, ConfigError, RunConfig, SplitConfig, needed_splits
from ..core.shards import shard_items
from .objaverse_source import select_objects
from .objects import make_object, make_objects, view_caption, viewpoint_words
from .render_jobs import RETRIED, RenderSummary, render_jobs
from .render_scene import MAX_LABELS, RenderJob


def assign_splits(categories: pd.Series, fractions: SplitConfig, seed: int) -> np.ndarray:
    """Split label per object: within every category a seeded shuffle cut by the fractions.

    Counts per category use largest remainders (`SplitConfig.sizes`), so they sum to the
    category size and every split with a non-zero fraction gets its share of every category.
    """
    out = np.empty(len(categories), dtype=object)
    for k, (category, idx) in enumerate(sorted(categories.groupby(categories).indices.items())):
        counts = fractions.sizes(len(idx))
        rng = np.random.default_rng([seed, k, len(idx)])
        shuffled = np.asarray(idx)[rng.permutation(len(idx))]
        out[shuffled] = np.repeat(SPLITS, [counts[s] for s in SPLITS])
    return out


def _procedural_manifest(cfg: RunConfig) -> tuple[pd.DataFrame, list[RenderJob]]:
    specs = make_objects(cfg.dataset.procedural.categories, cfg.dataset.procedural.objects_per_category, cfg.seed)
    objects = pd.DataFrame({
        "object_id": [s.object_id for s in specs],
        "source": "procedural",
        "category": [s.category for s in specs],
        "caption": [s.caption for s in specs],
        "part_names": [list(s.part_names) for s in specs],
        "attributes": [json.dumps(s.attributes, sort_keys=True) for s in specs],
        "asset_path": "",
        "status": "pending",
        "reason": "",
    })
    jobs = [RenderJob(s.object_id, spec_json=s.to_json(), n_labels=len(s.part_names)) for s in specs]
    return objects, jobs


def _objaverse_manifest(cfg: RunConfig, shard: tuple[int, int] | None = None) -> tuple[pd.DataFrame, list[RenderJob]]:
    objects = select_objects(cfg.dataset.objaverse, cfg.seed, shard)
    objects["part_names"] = [["object"]] * len(objects)
    objects["attributes"] = "{}"
    jobs = [RenderJob(r.object_id, asset_path=r.asset_path, n_labels=1)
            for r in objects.itertuples() if r.status == "pending"]
    return objects, jobs


def source_manifest(cfg: RunConfig, shard: tuple[int, int] | None = None) -> tuple[pd.DataFrame, list[RenderJob]]:
    """Objects table (status 'pending' until rendered, no split yet) and the render jobs for it. With
    `shard` (I, N), Objaverse fetches only that shard's assets."""
    objects, jobs = (_procedural_manifest(cfg) if cfg.dataset.source == "procedural"
                     else _objaverse_manifest(cfg, shard))
    if objects.object_id.duplicated().any():
        raise ValueError(f"duplicate object ids: {objects.object_id[objects.object_id.duplicated()].tolist()[:5]}")
    too_many = [j.object_id for j in jobs if j.n_labels > MAX_LABELS]
    if too_many:
        raise ValueError(f"objects {too_many[:5]} have more than {MAX_LABELS} part labels")
    objects["split"] = ""  # assigned after rendering, among the objects that rendered
    return objects, jobs


def view_captions(objects: pd.DataFrame, views: pd.DataFrame, seed: int) -> list[list[str]]:
    """[N objects][V views] what each view shows, in words: a procedural object's `objects.view_caption`
    (rebuilt from its id and the run's seed: the viewpoint and where its view-dependent part appears),
    another object's caption with the viewpoint only."""
    poses = list(zip(views.azimuth_deg, views.elevation_deg))
    out = []
    for row in objects.itertuples():
        if row.source == "procedural":
            spec = make_object(row.category, int(row.object_id.rsplit("_", 1)[1]), seed)
            out.append([view_caption(spec, az, el) for az, el in poses])
        else:
            out.append([f"{row.caption}, seen {viewpoint_words(az, el)}" for az, el in poses])
    return out


def read_statuses(layout: RunLayout, object_ids: list[str]) -> pd.DataFrame:
    rows = []
    for oid in object_ids:
        path = layout.status_path(oid)
        rec = json.loads(path.read_text()) if path.exists() else {"status": "pending", "reason": ""}
        rows.append({"object_id": oid, "status": rec["status"], "reason": rec.get("reason", ""),
                     "render_seconds": rec.get("seconds", float("nan"))})
    return pd.DataFrame(rows)


def build_dataset(cfg: RunConfig, layout: RunLayout, progress: bool = True) -> tuple[pd.DataFrame, RenderSummary]:
    """Write the manifest, render every unfinished object, record final statuses, then split.

    Splits are drawn among the objects that rendered, so a failed asset never takes a
    split's place; a dataset too small for the splits fails naming the key to change.
    """
    views = views_table(cfg.render)
    atomic_write_parquet(views, layout.views_table)
    objects, jobs = source_manifest(cfg)
    atomic_write_parquet(objects, layout.objects_table)  # the manifest exists even if rendering is interrupted
    view_records = [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views.itertuples()]
    summary = render_jobs(jobs, layout, cfg.render, view_records, cfg.seed, progress=progress)
    rendered = objects.object_id[objects.status == "pending"].tolist()
    status = read_statuses(layout, rendered).set_index("object_id")
    objects = objects.set_index("object_id")
    objects.loc[status.index, ["status", "reason"]] = status[["status", "reason"]]
    objects["render_seconds"] = status.render_seconds.reindex(objects.index)
    objects = objects.reset_index()
    objects = split_rendered(objects, cfg.dataset.splits, cfg.seed)
    atomic_write_parquet(objects, layout.objects_table)
    check_split_sizes(cfg, objects)
    return objects, summary


def render_shard(cfg: RunConfig, layout: RunLayout, shard: int, n_shards: int,
                 progress: bool = True) -> RenderSummary:
    """Render one shard's objects into the run directory. Shards of one run may run at the same time
    (each object's files and status are written atomically, each shard sweeps only its own objects'
    staging); none writes the manifests, which `merge_render_shards` builds once every shard is done."""
    views = views_table(cfg.render)
    objects, jobs = source_manifest(cfg, (shard, n_shards))
    mine = set(shard_items(objects.object_id.tolist(), shard, n_shards))
    records = [{"view_id": r.view_id, "camera_to_world": r.camera_to_world} for r in views.itertuples()]
    summary = render_jobs([j for j in jobs if j.object_id in mine], layout, cfg.render, records, cfg.seed,
                          progress=progress)
    atomic_write_json(layout.render_shard_record(shard, n_shards),
                      {"shard": shard, "n_shards": n_shards, "object_ids": sorted(mine), **asdict(summary)})
    return summary


def merge_render_shards(cfg: RunConfig, layout: RunLayout, n_shards: int) -> tuple[pd.DataFrame, RenderSummary]:
    """The dataset's manifests from finished render shards; refuses while a shard is missing or
    covered other objects than this config's (a changed config between shards)."""
    missing = [i for i in range(n_shards) if not layout.render_shard_record(i, n_shards).exists()]
    if missing:
        raise RuntimeError(
            f"cannot merge: render shard(s) {', '.join(map(str, missing))} of {n_shards} have not finished "
            f"(no {layout.render_shard_record(missing[0], n_shards)}); run them with "
            f"mvclip render --config <config> --shard {missing[0]}/{n_shards}")
    covered = set()
    for i in range(n_shards):
        covered |= set(json.loads(layout.render_shard_record(i, n_shards).read_text())["object_ids"])
    objects, _ = source_manifest(cfg)
    if covered != set(objects.object_id):
        raise RuntimeError(f"cannot merge: the {n_shards} shards rendered {len(covered)} objects but the config "
                           f"lists {len(objects)}; the config changed between shards: rerun the shards")
    return build_dataset(cfg, layout, progress=False)  # every object is done: this only writes the manifests


def split_rendered(objects: pd.DataFrame, fractions: SplitConfig, seed: int) -> pd.DataFrame:
    """Splits drawn among the objects that rendered (status ok); the others get no split, so a
    broken asset never takes the place of a good one."""
    objects = objects.copy()
    ok = (objects.status == "ok").to_numpy()
    objects["split"] = ""
    objects.loc[ok, "split"] = assign_splits(objects.category[ok].reset_index(drop=True), fractions, seed)
    return objects


def check_split_sizes(cfg: RunConfig, objects: pd.DataFrame) -> None:
    """Every needed split holds at least one rendered object of every category (one whose objects all
    failed too), and there are at least two categories; otherwise a message naming the config key to
    change, why the category's objects failed, and what a rerun or a fetch would fix."""
    ok = objects[objects.status == "ok"]
    categories = sorted(ok.category.unique())
    key = ("dataset.objaverse.lvis_categories" if cfg.dataset.source == "objaverse"
           else "dataset.procedural.categories")
    if len(categories) < 2:
        raise ConfigError(f"{key}: {len(ok)} objects rendered in {len(categories)} categor"
                          f"{'y' if len(categories) == 1 else 'ies'} ({', '.join(categories)}); zero-shot and the "
                          f"probes need at least 2{_why_failed(objects)}")
    needed = needed_splits(cfg)
    counts = (pd.crosstab(ok.category, ok.split)
              .reindex(index=sorted(objects.category.unique()), columns=needed, fill_value=0))
    short = counts[(counts == 0).any(axis=1)]
    if len(short):
        per_category = ok.category.value_counts().reindex(short.index, fill_value=0)
        raise ConfigError(
            f"dataset.splits: categories {', '.join(short.index[:5])} have too few rendered objects "
            f"({', '.join(f'{c}: {per_category[c]}' for c in short.index[:5])}) for splits {', '.join(needed)}; "
            f"render more objects per category, lower the splits' number, or drop those categories"
            f"{_why_failed(objects[objects.category.isin(short.index)])}")


def _why_failed(objects: pd.DataFrame) -> str:
    """What the message adds about these objects' failures: how many, an example reason, whether a
    rerun retries them, and for Objaverse GLBs missing from the cache, which ones and how to fetch them."""
    failed = objects[objects.status == "failed"]
    if failed.empty:
        return ""
    first = failed.iloc[0]
    text = f". {len(failed)} of their objects failed to render (e.g. {first.object_id}: {first.reason})"
    missing = failed[(failed.source == "objaverse") & (failed.asset_path == "")].object_id.tolist()
    if missing:
        text += (f"; {len(missing)} GLB(s) are missing from the local Objaverse cache ({', '.join(missing[:8])}"
                 f"{', ...' if len(missing) > 8 else ''}): fetch them on a machine with network access with "
                 f"python -c \"import objaverse; objaverse.load_objects({missing!r})\" and rerun")
    elif failed.reason.str.contains(RETRIED, regex=False).any():
        text += "; the I/O failures are retried when you rerun, once their cause (e.g. a full disk) is fixed"
    return text


def describe_build(cfg: RunConfig, objects: pd.DataFrame, views: pd.DataFrame, summary: RenderSummary) -> str:
    """A markdown paragraph: what the dataset is and what this build did."""
    n_grid, n_ood = int((views.kind == "grid").sum()), int((views.kind == "ood").sum())
    statuses = objects.status.value_counts()
    work = (f"this run rendered {summary.rendered} objects ({summary.images} views) in {summary.seconds:.0f} s, "
            f"{summary.images_per_second:.0f} images/s with {cfg.render.workers} workers, and skipped "
            f"{summary.skipped} already finished" if summary.rendered + summary.failed
            else f"nothing to render: all {summary.skipped} objects were already finished")
    return (f"**Source:** `{cfg.dataset.source}` · **engine:** `{cfg.render.engine}` at {cfg.render.resolution} px · "
            f"**views per object:** {len(views)} ({n_grid} grid + {n_ood} ood)\n\n"
            f"**Objects:** {len(objects)} ({statuses.get('ok', 0)} rendered, {statuses.get('failed', 0)} failed) · "
            f"{work}.")


def load_objects(layout: RunLayout) -> pd.DataFrame:
    if not layout.objects_table.exists():
        raise FileNotFoundError(f"{layout.objects_table} is missing: run notebook 01_render first "
                                f"(mvclip run --config ... --only 01)")
    return _read_table(layout.objects_table)


def load_views(layout: RunLayout) -> pd.DataFrame:
    if not layout.views_table.exists():
        raise FileNotFoundError(f"{layout.views_table} is missing: run notebook 01_render first")
    return _read_table(layout.views_table)


_TABLES: dict[str, tuple[tuple[int, int] | None, pd.DataFrame]] = {}


def _read_table(path) -> pd.DataFrame:
    """A manifest read once per version of its file in a process (studies ask for it many times); a copy,
    so that no caller's change reaches another."""
    key = _stat_key(path)
    cached = _TABLES.get(str(path))
    if cached is None or cached[0] != key:
        cached = _TABLES[str(path)] = (key, pd.read_parquet(path))
    return cached[1].copy()


def load_image(layout: RunLayout, object_id: str, view_id: str) -> np.ndarray:
    """RGB uint8 [H, W, 3]."""
    return np.array(Image.open(layout.image_path(object_id, view_id)).convert("RGB"))


def load_mask(layout: RunLayout, object_id: str, view_id: str) -> np.ndarray:
    """Part labels uint8 [H, W]: 0 background, k = part_names[k-1]."""
    return np.asarray(Image.open(layout.mask_path(object_id, view_id)))


def load_images(layout: RunLayout, object_ids: list[str], view_ids: list[str]) -> np.ndarray:
    """uint8 [N, V, H, W, 3]: every listed view of every listed object."""
    first = load_image(layout, object_ids[0], view_ids[0])
    out = np.empty((len(object_ids), len(view_ids), *first.shape), dtype=np.uint8)
    for i, oid in enumerate(object_ids):
        for j, vid in enumerate(view_ids):
            out[i, j] = load_image(layout, oid, vid)
    return out


def dataset_fingerprint(layout: RunLayout, objects: pd.DataFrame | None = None,
                        views: pd.DataFrame | None = None) -> str:
    """Changes whenever the rendered dataset does: objects, captions, categories, splits, and
    the fingerprint of every current view of every rendered object (its pixels' settings).

    It parses every object's status file, so it is computed once per state of the dataset in a process:
    the result is kept while the tables and every status file keep their size and modification time
    (a stat each, not a parse). `objects` and `views`: the tables when the caller has read them already."""
    key = (str(layout.root), _stat_key(layout.objects_table), _stat_key(layout.views_table),
           _status_key(layout.render_status))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS.clear()  # one dataset state per process is all a notebook needs
        _FINGERPRINTS[key] = _fingerprint(layout, load_objects(layout) if objects is None else objects,
                                          load_views(layout) if views is None else views)
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple, str] = {}


def _stat_key(path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return _stat_pair(stat)


def _stat_pair(stat) -> tuple[int, int]:
    return stat.st_mtime_ns, stat.st_size


def _status_key(folder) -> int:
    try:
        with os.scandir(folder) as entries:
            return hash(frozenset((e.name, *_stat_pair(e.stat())) for e in entries))
    except FileNotFoundError:
        return 0


def _fingerprint(layout: RunLayout, objects: pd.DataFrame, views: pd.DataFrame) -> str:
    ok = objects[objects.status == "ok"]
    view_ids = views.view_id.tolist()
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(ok[["object_id", "caption", "category", "split"]],
                                        index=False).values.tobytes())
    for oid in ok.object_id:
        rendered = json.loads(layout.status_path(oid).read_text()).get("views", {})
        h.update(json.dumps([rendered.get(v, "") for v in view_ids]).encode())
    h.update(",".join(view_ids).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- image-level data
# For methods that train on images rather than frozen embeddings (08 OVT; 09-11 reuse it):
# renders streamed from disk, the backbone's preprocessing, and a per-view perturbation on the fly
# (the 2D-OOD corruptions of `evaluation.corruptions`).


@dataclass(frozen=True)
class ViewItem:
    image: "torch.Tensor"  # [3, S, S] the backbone's input
    caption: str
    object_index: int  # into ViewImages.objects
    view_index: int  # into ViewImages.view_ids
    category: int  # into ViewImages.category_names
    mask: "torch.Tensor | None" = None  # uint8 [S, S] part labels (0 = background), with ViewImages(masks=True)


def first_objects_per_category(objects: pd.DataFrame, split: str, per_category: int) -> list[str] | None:
    """The first `per_category` rendered objects of `split` in each category, in table order: the
    evaluation subset of a notebook whose evaluation costs more than its training (`object_ids` of
    `ViewImages`; None = every object, for `per_category` 0)."""
    if per_category <= 0:
        return None
    chosen = objects[(objects.status == "ok") & (objects.split == split)]
    return chosen.groupby("category", sort=False).head(per_category).object_id.tolist()


class ViewImages:
    """A torch Dataset over a run's renders: item i is view i % V of object i // V, for the
    rendered objects of `splits` and the given views, decoded from disk when asked for (Objaverse
    at 224 px does not fit in memory) and passed through `transform` (e.g.
    `backbone.InputTransform.for_model(model)`). With `perturb`, every uint8 image is replaced by
    `perturb(image, object_index, view_index)` before the transform (e.g. a seeded 2D corruption,
    `evaluation.corruptions.Corruption`, the same each epoch).
    `object_ids` keeps only those objects (in table order). With `masks`, items carry the view's
    part-label mask too (notebook 11).
    """

    def __init__(self, layout: RunLayout, splits: list[str] | tuple[str, ...], view_ids: list[str] | None = None,
                 transform=None, perturb: Callable[[np.ndarray, int, int], np.ndarray] | None = None,
                 object_ids: list[str] | None = None, masks: bool = False):
        objects = load_objects(layout)
        ok = objects[objects.status == "ok"]
        keep = ok.split.isin(splits) & (ok.object_id.isin(object_ids) if object_ids is not None else True)
        self.objects = ok[keep].reset_index(drop=True)
        if not len(self.objects):
            raise ValueError(f"no rendered objects in split(s) {list(splits)}: check dataset.splits or run 01_render")
        views = load_views(layout)
        self.view_ids = list(view_ids) if view_ids is not None else views.view_id.tolist()
        unknown = sorted(set(self.view_ids) - set(views.view_id))
        if unknown:
            raise ValueError(f"views {unknown[:5]} are not views of this dataset; expected ids of "
                             f"{layout.views_table} such as {', '.join(views.view_id[:3])}")
        self.category_names = sorted(ok.category.unique())
        self.categories = np.searchsorted(self.category_names, self.objects.category.to_numpy())
        self.layout, self.transform, self.perturb = layout, transform, perturb
        self.masks = masks

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    @property
    def n_views(self) -> int:
        return len(self.view_ids)

    def __len__(self) -> int:
        return self.n_objects * self.n_views

    def index(self, object_index: int, view_index: int) -> int:
        return object_index * self.n_views + view_index

    def __getitem__(self, i: int) -> ViewItem:
        o, v = divmod(int(i), self.n_views)
        image = load_image(self.layout, self.objects.object_id[o], self.view_ids[v])
        if self.perturb is not None:
            image = self.perturb(image, o, v)
        tensor = torch.from_numpy(np.require(image, requirements=["C", "W"]))  # a copy only when read-only
        mask = (torch.from_numpy(np.require(load_mask(self.layout, self.objects.object_id[o], self.view_ids[v]),
                                            requirements=["C", "W"])) if self.masks else None)
        return ViewItem(self.transform(tensor) if self.transform else tensor, self.objects.caption[o], o, v,
                        int(self.categories[o]), mask)


def collate_views(items: list[ViewItem]) -> ViewItem:
    """A batch of ViewItems as one ViewItem of stacked tensors (for DataLoader(collate_fn=...))."""
    return ViewItem(torch.stack([it.image for it in items]), [it.caption for it in items],
                    torch.tensor([it.object_index for it in items]), torch.tensor([it.view_index for it in items]),
                    torch.tensor([it.category for it in items]),
                    torch.stack([it.mask for it in items]) if items[0].mask is not None else None)


class ObjectViewBatches:
    """Batch sampler: P distinct objects x K distinct views per batch (indices into a ViewImages).

    An epoch shows every view of every object once (V // K rounds; each round visits the
    objects in a new seeded order with the next K of their shuffled views), as a pass over
    all training images does; `set_epoch` reshuffles, as DistributedSampler's does.
    """

    def __init__(self, n_objects: int, n_views: int, objects_per_batch: int, views_per_object: int, seed: int = 0):
        if views_per_object > n_views:
            raise ValueError(f"{views_per_object} views per object asked, the dataset has {n_views}")
        self.n_objects, self.n_views = n_objects, n_views
        self.p, self.k = min(objects_per_batch, n_objects), views_per_object
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.n_views // self.k) * (self.n_objects // self.p)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        views = rng.random((self.n_objects, self.n_views)).argsort(1)  # each object's views, shuffled
        for r in range(self.n_views // self.k):
            order = rng.permutation(self.n_objects)
            chunk = views[:, r * self.k: (r + 1) * self.k]
            for start in range(0, (self.n_objects // self.p) * self.p, self.p):
                objects = order[start: start + self.p]
                yield (objects[:, None] * self.n_views + chunk[objects]).ravel().tolist()


# ----------------------------------------------------------------------------- segmentation classes


@dataclass
class PartClasses:
    """One global class map for segmentation (notebook 11): class 0 is the background, then every
    (category, part) pair, categories in sorted order, parts in mask order (mask value k = part k)."""

    table: pd.DataFrame  # class_id, category, part (1-based mask value), part_name
    offsets: np.ndarray  # [C categories] class id of each category's part 1, minus 1
    category_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.table) + 1

    @classmethod
    def from_objects(cls, objects: pd.DataFrame) -> "PartClasses":
        rows, offsets = [], []
        categories = sorted(objects.category.unique())
        for category in categories:
            names = max((list(p) for p in objects[objects.category == category].part_names), key=len, default=[])
            offsets.append(len(rows))
            rows += [{"category": category, "part": i + 1, "part_name": name} for i, name in enumerate(names)]
        for class_id, row in enumerate(rows, start=1):
            row["class_id"] = class_id
        return cls(pd.DataFrame(rows, columns=["class_id", "category", "part", "part_name"]), np.array(offsets),
                   categories)

    def to_global(self, masks: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Per-category part masks [N, H, W] (0 = background) of objects of category index [N] ->
        global class ids [N, H, W]."""
        masks = np.asarray(masks).astype(np.int64)
        shift = self.offsets[np.asarray(categories)].reshape(-1, *([1] * (masks.ndim - 1)))
        return np.where(masks > 0, masks + shift, 0)

    def to_part(self, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global class ids -> (category index, part); background gives (-1, 0)."""
        class_ids = np.asarray(class_ids)
        lookup_category = np.concatenate([[-1], np.searchsorted(self.category_names, self.table.category)])
        lookup_part = np.concatenate([[0], self.table.part.to_numpy()])
        return lookup_category[class_ids], lookup_part[class_ids]
