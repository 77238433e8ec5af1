"""Batch reruns: one run directory per variant of a config (`mvclip sweep`), and one table over them
(`mvclip collect`) with mean and standard error over seeds.

    mvclip sweep --config params/default.yaml --set seed=0,1,2 --set heads.lr=1e-3,3e-4 [--only 01-07]
    mvclip collect outputs/default-sweep/*/  [--out sweep.csv]
    mvclip sweep --config params/default.yaml --set heads.seed,ovt.seed,distill.seed=0,1,2   # zipped keys

Each variant is a params file of its own (`extends:` the base config, its overrides over it) run by
the same pipeline into `<root>/<variant>/`; its index says which overrides made it. Variants whose
dataset is the same (the `dataset` and `render` sections and the seed, which draws the procedural
objects and the splits) share the first one's rendered dataset instead of rendering it again; those
whose backbone and embedding settings are the same too start from its pretrained backbone and frozen
embeddings (hard links: notebooks 02 and 03 reuse them when their own fingerprints match).

Keys joined by commas (`heads.seed,ovt.seed=0,1,2`) take their values together: one variant per
value, each key set to it (the methods' seeds on one dataset and backbone, `make seeds`).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .core.config import load_config
from .core.runs import (
    OUTPUTS_DIR,
    TEMP_SUFFIX,
    VARIANT_FILE,
    RunLayout,
    atomic_path,
    atomic_write_text,
    digest,
    read_variant,
)
from .core.schema import ConfigError
from .evaluation.results import PROVENANCE
from .pipeline import run_pipeline
from .studies.transfer import SELECTION_CLEAN, choose_on_val

_KEY = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"


def parse_set(text: str) -> tuple[str, list[Any]]:
    """'heads.lr=1e-3,3e-4' -> ('heads.lr', [0.001, 0.0003]); values are read as YAML. 'a.seed,b.seed=0,1'
    -> ('a.seed,b.seed', [0, 1]): keys joined by commas are zipped (each set to the same value)."""
    key, sep, values = text.partition("=")
    key = ",".join(k.strip() for k in key.split(","))
    if not sep or not re.fullmatch(f"{_KEY}(,{_KEY})*", key) or not values:
        raise ValueError(f"--set {text!r}: expected KEY=V1,V2,... with a dotted config key, e.g. heads.lr=1e-3,3e-4 "
                         "(or zipped keys: heads.seed,ovt.seed=0,1,2)")
    if len(set(key.split(","))) != len(key.split(",")):
        raise ValueError(f"--set {text!r}: a zipped key is named twice")
    return key, [_value(v) for v in values.split(",")]


def _value(text: str) -> Any:
    """A value as YAML reads it, except that 1e-3 is a number (YAML 1.1 wants 1.0e-3)."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def variants(sets: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the values (the first key varies slowest), as {dotted key: value}."""
    keys = [k for k, _ in sets]
    leaves = [leaf for k in keys for leaf in k.split(",")]
    if len(set(leaves)) != len(leaves):
        raise ValueError(f"--set: a key is given twice in {keys}; give all its values in one --set")
    return [dict(zip(keys, combination)) for combination in itertools.product(*(v for _, v in sets))]


def variant_name(overrides: dict[str, Any]) -> str:
    """A file-name-safe name, e.g. 'seed=1,heads.lr=0.0003' -> 'seed-1_heads.lr-0.0003'; zipped keys whose
    last parts agree go by that part ('heads.seed,ovt.seed=1' -> 'seed-1')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-",
                  "_".join(f"{override_label(k)}-{v}" for k, v in overrides.items())).strip("-")


def override_label(key: str) -> str:
    """A key as names and column suffixes show it: zipped keys with one last part by that part."""
    leaves = {k.rsplit(".", 1)[-1] for k in key.split(",")}
    return leaves.pop() if "," in key and len(leaves) == 1 else key.replace(",", "+")


def nested(overrides: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in ((k, v) for zipped, v in overrides.items() for k in zipped.split(",")):
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def write_variant_config(base: Path, overrides: dict[str, Any], path: Path, run_name: str) -> Path:
    """A params file that extends the base config with the overrides, validated now (a bad key fails
    before any variant runs)."""
    data = {"extends": str(base.resolve()), **nested(overrides), "run_name": run_name}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    load_config(path)
    return path


def dataset_key(config_path: Path) -> str:
    """What a rendered dataset depends on: the dataset and render sections and the seed."""
    cfg = load_config(config_path)
    return digest([asdict(cfg.dataset), asdict(cfg.render), cfg.seed])


def backbone_key(config_path: Path) -> str:
    """What a pretrained backbone and its frozen embeddings depend on, besides what notebooks 02 and 03 check."""
    cfg = load_config(config_path)
    return digest([asdict(cfg.dataset), asdict(cfg.render), cfg.seed, asdict(cfg.backbone), asdict(cfg.embed)])


def share_backbone(source: Path, run_dir: Path) -> list[Path]:
    """Hard-link (copy where links fail) the source run's backbone files and frozen embeddings into a
    variant's run directory, unless it holds the source's backbone already (the same identity): what a
    variant that differs only downstream would compute again. Returns what it linked."""
    source_layout, layout = RunLayout(source), RunLayout(run_dir)
    if not source_layout.backbone_record.exists():
        return []
    record = json.loads(source_layout.backbone_record.read_text())
    if layout.backbone_record.exists() and json.loads(layout.backbone_record.read_text()).get(
            "identity") == record.get("identity"):
        return []
    slug = record.get("slug", "")
    files = [p for p in source_layout.backbone.iterdir() if p.is_file() and not p.name.endswith(TEMP_SUFFIX)]
    files += [p for p in [source_layout.embeddings_file(slug)] if slug and p.exists()]
    linked = []
    for path in files:
        target = run_dir / path.relative_to(source)
        with atomic_path(target) as tmp:  # replaces what the variant had; never writes through an older link
            tmp.unlink()
            try:
                os.link(path, tmp)  # every writer replaces files atomically, so a link is never written through
            except OSError:
                shutil.copy2(path, tmp)
        linked.append(target)
    return linked


def _made_by(run: Path, stem: str, key, config: Path) -> str:
    """The key (`dataset_key`, `backbone_key`) of the config an existing run's notebook ran with."""
    saved = RunLayout(run).notebook_config(stem)
    if not saved.exists():
        raise ValueError(f"--from-run {run}: it has no {saved.relative_to(run)}; run its notebook {stem} first "
                         f"(e.g. make run for {config})")
    return key(saved)


def run_sweep(config: Path | str, sets: list[tuple[str, list[Any]]], root: Path | str | None = None,
              only: str | None = None, kernel: str | None = None,
              from_run: Path | str | None = None) -> list[tuple[str, Path, str]]:
    """Run every variant into `root/<variant>/` (default outputs/<run_name>-sweep); returns (variant, run
    directory, status) per variant. A failed variant is reported and the sweep goes on. With `from_run`
    (an existing run of the same dataset, e.g. outputs/default), variants share its rendered dataset, and
    its backbone and frozen embeddings where their settings match, instead of the first variant's."""
    config = Path(config)
    base = load_config(config)
    root = Path(root) if root else OUTPUTS_DIR / f"{base.run_name}-sweep"
    root.mkdir(parents=True, exist_ok=True)
    planned = []
    for overrides in variants(sets):
        name = variant_name(overrides)
        path = write_variant_config(config, overrides, root / f"{name}.yaml", f"{base.run_name}-{name}")
        planned.append((name, overrides, path, root / name))
    rendered: dict[str, Path] = {}
    pretrained: dict[str, Path] = {}
    if from_run is not None:
        from_run = Path(from_run).resolve()
        if _made_by(from_run, "01_render", dataset_key, config) != dataset_key(planned[0][2]):
            raise ValueError(f"--from-run {from_run}: its dataset was made with other dataset/render settings or "
                             f"another seed than {config}'s variants; drop --from-run or sweep that run's config")
        rendered[dataset_key(planned[0][2])] = RunLayout(from_run).dataset
        if (RunLayout(from_run).notebook_config("02_backbone").exists()
                and _made_by(from_run, "02_backbone", backbone_key, config) == backbone_key(planned[0][2])):
            pretrained[backbone_key(planned[0][2])] = from_run
    out = []
    for i, (name, overrides, path, run_dir) in enumerate(planned, start=1):
        run_dir.mkdir(parents=True, exist_ok=True)
        key = dataset_key(path)
        shared = rendered.get(key)
        if shared is not None and not (run_dir / "dataset").exists() and not (run_dir / "dataset").is_symlink():
            (run_dir / "dataset").symlink_to(shared.resolve(), target_is_directory=True)
        rendered.setdefault(key, run_dir / "dataset")
        backbone_from = pretrained.setdefault(backbone_key(path), run_dir)
        reused = share_backbone(backbone_from, run_dir) if backbone_from != run_dir else []
        (run_dir / VARIANT_FILE).write_text(json.dumps(
            {"base_config": str(config.resolve()), "overrides": overrides, "variant_config": str(path),
             "shares_dataset_with": str(shared.parent) if shared is not None else "",
             "backbone_from": str(backbone_from) if backbone_from != run_dir else ""}, indent=1))
        print(f"[mvclip sweep] variant {i}/{len(planned)}: {name}"
              + (f" (dataset shared with {shared.parent.name})" if shared is not None else "")
              + (f" (backbone and frozen embeddings from {backbone_from.name})" if reused else ""), flush=True)
        try:
            results = run_pipeline(path, run_dir, only, kernel)
            status = "ok" if results and all(r.status == "ok" for r in results) else "failed"
        except (ConfigError, ValueError, RuntimeError) as exc:
            print(f"[mvclip sweep] {name}: {exc}", file=sys.stderr, flush=True)
            status = "failed"
        out.append((name, run_dir, status))
    return out


def swept_keys(run_dirs: list[Path | str]) -> list[str]:
    """The override keys of the runs, in order of appearance."""
    return list(dict.fromkeys(k for f in run_dirs for k in read_variant(f)))


def collect(run_dirs: list[Path | str], over: str = "seed") -> pd.DataFrame:
    """The results tables of several runs in one: per method and per combination of the overrides other
    than `over` (a key, or zipped keys' label: `seed` for `heads.seed,ovt.seed`), the mean of every numeric
    column, its standard error over the runs (`<column>_<over>_stderr`, e.g. `zero_shot_accuracy_seed_stderr`:
    std / sqrt(n), NaN for one run; the rows' own `*_stderr` columns are over test objects within a run) and the
    number of runs `n_runs`."""
    frames = []
    for run_dir in run_dirs:
        table_path = RunLayout(Path(run_dir)).results_table
        if not table_path.exists():
            raise FileNotFoundError(f"{table_path} is missing: {run_dir} has no results (did its run fail?)")
        table = pd.read_csv(table_path, dtype={k: str for k in PROVENANCE})  # hex digests that may look numeric
        for key, value in read_variant(run_dir).items():
            table[key] = str(value)
        table["run_dir"] = str(run_dir)
        frames.append(table)
    rows = pd.concat(frames, ignore_index=True)
    swept = swept_keys(run_dirs)
    keys = ["method"] + [k for k in swept if over not in (k, override_label(k))]
    numeric = [c for c in rows.select_dtypes("number").columns if c not in keys]
    grouped = rows.groupby(keys, sort=False, dropna=False)
    mean = grouped[numeric].mean()
    stderr = grouped[numeric].std(ddof=1) / np.sqrt(grouped.size().to_numpy()[:, None])
    out = mean.join(stderr.add_suffix(f"_{re.sub(r'[.,+]', '_', override_label(over))}_stderr"))
    out.insert(0, "n_runs", grouped.size())
    return out.reset_index()


def run_selection(config: Path | str, sets: list[tuple[str, list[Any]]], method: str, from_run: Path | str,
                  only: str, kernel: str | None = None, keep: bool = False) -> tuple[pd.DataFrame, Path]:
    """Choose settings on val: run every variant of `sets` (`run_sweep`, sharing `from_run`'s dataset,
    backbone and embeddings) with notebooks `only`, read each one's `method` row, and choose by its `val_*`
    columns against the frozen backbone's val clean accuracy (`studies.transfer.choose_on_val`).

    Writes into `from_run`: selection/<method>.csv (every variant's val numbers, the choice) and
    selection/<method>.yaml, a params file of the base config with the chosen values; running it once
    (`mvclip run --config <that yaml> --run-dir <from_run> --only ...`) is the one test evaluation.
    The variant runs are deleted unless `keep`: their test numbers are never kept or read."""
    from_run = Path(from_run).resolve()
    layout = RunLayout(from_run)
    frozen = json.loads(layout.metrics_file("baseline").read_text()) if layout.metrics_file("baseline").exists() \
        else None
    if frozen is None or SELECTION_CLEAN not in frozen:
        raise ValueError(f"--from-run {from_run}: no frozen val numbers (metrics/baseline.json with val columns); "
                         f"run notebooks 01-04 of {config} there first (make run)")
    root = layout.root / "selection" / f"{method}-variants"
    done = run_sweep(config, sets, root, only, kernel, from_run)
    rows = []
    for name, run_dir, status in done:
        path = RunLayout(run_dir).metrics_file(method)
        if status != "ok" or not path.exists():
            raise RuntimeError(f"variant {name} did not write {path} ({status}): see {run_dir / 'index.html'}")
        record = json.loads(path.read_text())
        rows.append({"variant": name, **read_variant(run_dir),
                     **{k: v for k, v in record.items() if k.startswith("val_")}})
    table = choose_on_val(pd.DataFrame(rows), frozen[SELECTION_CLEAN])
    chosen = table[table.chosen].iloc[0]
    overrides = read_variant(root / chosen.variant)
    out = layout.root / "selection" / f"{method}.yaml"
    write_variant_config(Path(config).resolve(), overrides, out, load_config(config).run_name)
    why = (f"the variant of highest val transfer accuracy, {chosen.val_transfer:.3f}, within the clean budget"
           if chosen.eligible else
           f"no variant kept val clean accuracy within the budget of the frozen {frozen[SELECTION_CLEAN]:.3f}: the one "
           f"that lost least, {chosen[SELECTION_CLEAN]:.3f} (val transfer accuracy {chosen.val_transfer:.3f})")
    atomic_write_text(out, f"# Chosen on val by mvclip select ({method}: {why});\n# every variant's val "
                           f"numbers: {out.with_suffix('.csv').name}\n" + out.read_text())
    atomic_write_text(out.with_suffix(".csv"), table.to_csv(index=False))
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return table, out
