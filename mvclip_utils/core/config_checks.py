"""Semantic checks of a typed run config: one function per config section.

`config.load_config` binds the YAML to the schema's types; these checks then refuse every
value that would only fail later (or silently do the wrong thing), with one line naming
the dotted key, the allowed range and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path

from .cameras import canonical_view_id, views_table
from .protocol import category_groups, check_poses
from .schema import (
    MAX_RESOLUTION,
    MIN_RESOLUTION,
    PROCEDURAL_CATEGORIES,
    TINY_MODEL,
    AdapterTuningConfig,
    ConfigError,
    DistillConfig,
    OVTConfig,
    RunConfig,
    min_objects_per_category,
    needed_splits,
    pretrains_here,
)

SAFE_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")


def fail(path: str, message: str) -> typing.NoReturn:
    raise ConfigError(f"{path or '<top level>'}: {message}")


def _check_range(key: str, value: float, low: float | None = None, high: float | None = None,
                 what: str = "") -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = (f"between {low:g} and {high:g}" if low is not None and high is not None
                   else f"of at least {low:g}" if low is not None else f"of at most {high:g}")
        fail(key, f"expected {what or 'a value'} {allowed}, got {value}")


def _check_integers(values: dict[str, int], low: int = 1) -> None:
    for key, value in values.items():
        _check_range(key, value, low, what="an integer")


def check_config(cfg: RunConfig) -> None:
    """Every section's checks, in the order a reader meets the sections in a params YAML."""
    for check in (_check_render, _check_dataset_counts, _check_backbone, _check_embed, _check_heads,
                  _check_tuning_sections, _check_pipeline, _check_decoding, _check_segmentation, _check_probes,
                  _check_splits, _check_clean_mix, _check_categories, _check_run_name, _check_protocol):
        check(cfg)


def _check_render(cfg: RunConfig) -> None:
    r = cfg.render
    _check_range("render.resolution", r.resolution, MIN_RESOLUTION, MAX_RESOLUTION, "a side in pixels")
    _check_integers({"render.azimuths": r.azimuths, "render.workers": r.workers,
                     "render.cycles_samples": r.cycles_samples, "render.max_attempts": r.max_attempts,
                     "render.objects_per_worker": r.objects_per_worker})
    if r.distance <= 0:
        fail("render.distance", f"expected a positive distance, got {r.distance}")
    if not 1.0 <= r.fov_deg < 179.0:
        fail("render.fov_deg", f"expected a field of view in degrees between 1 and 179, got {r.fov_deg}")
    if not r.elevations_deg:
        fail("render.elevations_deg", "expected at least one elevation")
    for i, el in enumerate(r.elevations_deg):
        if not -90.0 <= el <= 90.0:
            fail(f"render.elevations_deg[{i}]", f"expected degrees in [-90, 90], got {el}")
    if r.azimuths * len(r.elevations_deg) < 2:
        fail("render.azimuths", f"{r.azimuths} azimuth(s) x {len(r.elevations_deg)} elevation(s) give one grid "
                                "view per object; the study compares views of one object: expected at least 2")
    _check_range("render.light_jitter", r.light_jitter, 0.0, 1.0, "a strength")
    for i, v in enumerate(r.ood_views):
        if not -90.0 <= v.elevation_deg <= 90.0:
            fail(f"render.ood_views[{i}].elevation_deg", f"expected degrees in [-90, 90], got {v.elevation_deg}")
        if v.distance <= 0:
            fail(f"render.ood_views[{i}].distance", f"expected a positive distance, got {v.distance}")
    names = [v.name for v in r.ood_views]
    for i, name in enumerate(names):  # a view's name is a file name: ood_<name>.png under every object
        if not SAFE_NAME.fullmatch(name):
            fail(f"render.ood_views[{i}].name", f"expected a file name of letters, digits, '_', '-', '+' and '.' "
                                                f"(not starting with '.' or '-'), got {name!r}")
    if len(set(names)) != len(names):
        fail("render.ood_views", f"view names must be unique, got {names}")


def _check_positive(values: dict[str, float]) -> None:
    for key, value in values.items():
        if value <= 0:
            fail(key, f"expected a positive value, got {value}")


def _check_templates(key: str, templates: list[str]) -> None:
    if not templates or any("{}" not in t for t in templates):
        fail(key, f"expected templates that each contain '{{}}', got {templates}")


def _check_backbone(cfg: RunConfig) -> None:
    p = cfg.backbone.pretrain
    _check_positive({"backbone.pretrain.steps": p.steps, "backbone.pretrain.batch_size": p.batch_size,
                     "backbone.pretrain.lr": p.lr})
    for key, value in {"backbone.pretrain.warmup_steps": p.warmup_steps,
                       "backbone.pretrain.weight_decay": p.weight_decay,
                       "backbone.pretrain.logit_scale": p.logit_scale,
                       "backbone.pretrain.torch_threads": p.torch_threads}.items():
        _check_range(key, value, 0)
    _check_templates("backbone.pretrain.caption_templates", p.caption_templates)
    if not 0.0 <= p.category_caption_prob <= 1.0:
        fail("backbone.pretrain.category_caption_prob",
             f"expected a probability in [0, 1], got {p.category_caption_prob}")
    if not 0.0 < p.augment_scale <= 1.0:
        fail("backbone.pretrain.augment_scale", f"expected a fraction in (0, 1], got {p.augment_scale}")
    if p.canonical_view:
        view_ids = views_table(cfg.render).view_id.tolist()
        if p.canonical_view not in view_ids:
            fail("backbone.pretrain.canonical_view", f"{p.canonical_view!r} is not a view of render's grid and ood "
                                                     f"views; expected one of {', '.join(view_ids)}")
    pretrained = cfg.backbone.pretrained
    if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
        if not Path(pretrained).is_file():
            fail("backbone.pretrained", f"checkpoint file {pretrained!r} does not exist; give an existing file "
                                        "or an open_clip pretrained tag such as 'openai'")
    if cfg.backbone.model != TINY_MODEL and not pretrained and not cfg.backbone.model.startswith("hf-hub:"):
        fail("backbone.pretrained", f"model {cfg.backbone.model!r} needs pretrained weights: an open_clip tag "
                                    "(e.g. 'openai') or a checkpoint file")
    _check_open_clip_names(cfg.backbone.model, pretrained)


def _check_open_clip_names(model: str, pretrained: str) -> None:
    """An open_clip model name and pretrained tag that open_clip knows (its lists ship with the package, so
    this needs no network): refused before 01 renders, not at 02."""
    if model == TINY_MODEL or model.startswith("hf-hub:"):
        return
    import open_clip  # late: heavy (torch), and only a config naming an open_clip model needs it

    models = open_clip.list_models()
    if model not in models:
        close = difflib.get_close_matches(model, models, n=3)
        fail("backbone.model", f"{model!r} is not an open_clip model{f' (did you mean {close})' if close else ''}; "
                               f"expected one of open_clip.list_models(), 'hf-hub:<repo>' or {TINY_MODEL!r}")
    if pretrained and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(model)
        if pretrained.lower() not in tags:  # open_clip reads tags case-blind
            fail("backbone.pretrained", f"{pretrained!r} is not a pretrained tag open_clip knows for {model!r}; "
                                        f"expected one of {', '.join(tags) or '(none: give a checkpoint file)'} "
                                        "or an existing checkpoint file")


def _check_embed(cfg: RunConfig) -> None:
    _check_positive({"embed.batch_size": cfg.embed.batch_size})
    _check_range("embed.loader_workers", cfg.embed.loader_workers, 0)
    _check_templates("embed.prompt_templates", cfg.embed.prompt_templates)
    _check_templates("embed.unseen_prompt_templates", cfg.embed.unseen_prompt_templates)


def _check_heads(cfg: RunConfig) -> None:
    h = cfg.heads
    _check_positive({"heads.steps": h.steps, "heads.lr": h.lr, "heads.validate_every": h.validate_every,
                     "heads.temperature": h.temperature})
    for key, value in {"heads.patience": h.patience, "heads.hidden": h.hidden,
                       "heads.reconstruction_weight": h.reconstruction_weight,
                       "heads.similarity_weight": h.similarity_weight,
                       "heads.dissimilarity_weight": h.dissimilarity_weight}.items():
        _check_range(key, value, 0)
    if h.objects_per_batch == 1 or h.objects_per_batch < 0:
        fail("heads.objects_per_batch", f"expected 0 (every training object) or at least 2 (other objects are "
                                        f"the negatives), got {h.objects_per_batch}")
    for i, width in enumerate(h.code_widths):
        _check_range(f"heads.code_widths[{i}]", width, 1, what="a width")
    if h.views_per_object < 2:
        fail("heads.views_per_object", f"expected at least 2 (pairs of views), got {h.views_per_object}")


def _check_tuning_sections(cfg: RunConfig) -> None:
    """`ovt`, every ovt ablation, and `distill`."""
    for key, o in [("ovt", cfg.ovt)] + [(f"ovt_ablations[{i}]", x.ovt) for i, x in enumerate(cfg.ovt_ablations)]:
        _check_ovt(key, o)
    _check_distill(cfg.distill)


def _check_clean_mix(cfg: RunConfig) -> None:
    """Each tuning section's clean mix needs pretrain objects."""
    for key, o in ([("ovt", cfg.ovt), ("distill", cfg.distill)]
                   + [(f"ovt_ablations[{i}]", x.ovt) for i, x in enumerate(cfg.ovt_ablations)]):
        if o.clean_per_batch and cfg.dataset.splits.pretrain <= 0:
            fail(f"{key}.clean_per_batch", f"is {o.clean_per_batch} but dataset.splits.pretrain is 0: the clean "
                                           "views are the canonical views of pretrain objects; give that split a "
                                           f"fraction (e.g. 0.2) or set {key}.clean_per_batch: 0 (no clean mix)")


def _check_pipeline(cfg: RunConfig) -> None:
    _check_integers({"pipeline.notebook_timeout_s": cfg.pipeline.notebook_timeout_s})
    if cfg.pipeline.notebooks and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*",
                                                   cfg.pipeline.notebooks.replace(" ", "")):
        fail("pipeline.notebooks", f"expected numbers and ranges such as '09' or '01-04,08', got "
                                   f"{cfg.pipeline.notebooks!r}")
    if cfg.dataset.source == "cifar100" and cfg.pipeline.notebooks.strip() not in ("09", "9"):
        fail("pipeline.notebooks", f"dataset.source cifar100 has no renders: only notebook 09 runs on it; set "
                                   f"pipeline.notebooks: \"09\" (got {cfg.pipeline.notebooks!r})")


def _check_decoding(cfg: RunConfig) -> None:
    dc = cfg.decoding
    _check_integers({"decoding.codebook_size": dc.codebook_size, "decoding.code_width": dc.code_width,
                     "decoding.channels": dc.channels, "decoding.steps": dc.steps,
                     "decoding.batch_size": dc.batch_size, "decoding.validate_every": dc.validate_every})
    _check_integers({"decoding.test_objects_per_category": dc.test_objects_per_category}, low=0)
    _check_range("decoding.decay", dc.decay, 0.0, 0.9999, "an EMA decay")
    _check_range("decoding.restart_below", dc.restart_below, 0.0, 1e6, "an EMA count")
    _check_range("decoding.commitment", dc.commitment, 0.0, 100.0, "a weight")
    _check_range("decoding.lr", dc.lr, 1e-8, 1.0, "a learning rate")


def _check_segmentation(cfg: RunConfig) -> None:
    sc = cfg.segmentation
    _check_integers({"segmentation.steps": sc.steps, "segmentation.batch_size": sc.batch_size,
                     "segmentation.channels": sc.channels, "segmentation.unet_channels": sc.unet_channels,
                     "segmentation.unet_depth": sc.unet_depth, "segmentation.validate_every": sc.validate_every,
                     "segmentation.val_views": sc.val_views})
    _check_integers({"segmentation.test_objects_per_category": sc.test_objects_per_category}, low=0)
    _check_range("segmentation.lr", sc.lr, 1e-8, 1.0, "a learning rate")
    _check_range("segmentation.unet_lr", sc.unet_lr, 1e-8, 1.0, "a learning rate")
    _check_range("segmentation.cache_mb", sc.cache_mb, 0, what="a size in MiB")
    if cfg.render.resolution % 2 ** sc.unet_depth:
        fail("segmentation.unet_depth", f"the UNet halves the {cfg.render.resolution} px renders {sc.unet_depth} "
                                        f"times; choose a depth whose 2**depth divides render.resolution")


def _check_probes(cfg: RunConfig) -> None:
    pr = cfg.probes
    if not pr.shots or any(k < 1 for k in pr.shots):
        fail("probes.shots", f"expected a list of shot counts of at least 1, got {pr.shots}")
    _check_range("probes.seeds", pr.seeds, 2, what="a number of seeds (standard errors need two)")
    _check_range("probes.epochs", pr.epochs, 1, what="an integer")
    _check_range("probes.max_iter", pr.max_iter, 1, what="an integer")
    _check_range("probes.lr", pr.lr, 1e-8, 10.0, "a learning rate")
    if not pr.linear_probe_Cs or any(c <= 0 for c in pr.linear_probe_Cs):
        fail("probes.linear_probe_Cs", f"expected positive values of C, got {pr.linear_probe_Cs}")


def _check_dataset_counts(cfg: RunConfig) -> None:
    d = cfg.dataset
    _check_integers({"dataset.procedural.objects_per_category": d.procedural.objects_per_category,
                     "dataset.objaverse.lvis_min_objects": d.objaverse.lvis_min_objects,
                     "dataset.objaverse.download_processes": d.objaverse.download_processes})
    if d.objaverse.max_objects is not None:
        _check_range("dataset.objaverse.max_objects", d.objaverse.max_objects, 1,
                     what="null (every matching object) or a count")
    if d.source == "cifar100":
        _check_range("dataset.cifar100.val_fraction", d.cifar100.val_fraction, 0.001, 0.5, "a fraction")


def _check_protocol(cfg: RunConfig) -> None:
    """The protocol's fractions and poses; for procedural data (categories known before rendering) its
    groups too, so a protocol that leaves a group empty is refused before any work."""
    p = cfg.protocol
    for key in ("single_view_fraction", "unseen_fraction"):
        _check_range(f"protocol.{key}", getattr(p, key), 0.0, 1.0, "a fraction of the categories")
    if p.seen_azimuths_deg and len(p.seen_azimuths_deg) != 2:
        fail("protocol.seen_azimuths_deg", f"expected [from, to] in degrees (e.g. [-90, 90], the front half) or "
                                           f"[] (every azimuth), got {p.seen_azimuths_deg}")
    rings = sorted(set(cfg.render.elevations_deg))
    unknown = sorted(set(p.seen_elevations_deg) - set(rings))
    if unknown:
        fail("protocol.seen_elevations_deg", f"{', '.join(f'{e:g}' for e in unknown)} are not rings of "
                                             f"render.elevations_deg ({', '.join(f'{e:g}' for e in rings)})")
    if p.seen_elevations_deg or p.seen_azimuths_deg:
        views = views_table(cfg.render)
        check_poses(p, views, canonical_view_id(views, cfg.backbone.pretrain.canonical_view))
    if cfg.dataset.source == "procedural":
        category_groups(p, list(cfg.dataset.procedural.categories or PROCEDURAL_CATEGORIES), cfg.seed)


def _check_categories(cfg: RunConfig) -> None:
    d = cfg.dataset
    categories = d.procedural.categories
    for i, name in enumerate(categories):
        if name not in PROCEDURAL_CATEGORIES:
            fail(f"dataset.procedural.categories[{i}]",
                 f"unknown category {name!r}; expected one of {', '.join(PROCEDURAL_CATEGORIES)}")
    if d.source == "procedural" and len(set(categories)) == 1:
        fail("dataset.procedural.categories", f"expected at least 2 categories (zero-shot accuracy and the probes "
                                              f"classify them) or [] for all, got {categories}")
    if isinstance(d.objaverse.lvis_categories, list) and len(d.objaverse.lvis_categories) == 1:
        fail("dataset.objaverse.lvis_categories", "expected at least 2 LVIS categories, 'auto', or [] for the "
                                                  f"annotation categories; got {d.objaverse.lvis_categories}")


def _check_run_name(cfg: RunConfig) -> None:
    if not cfg.run_name or "/" in cfg.run_name or cfg.run_name.startswith("."):
        fail("run_name", f"expected a plain folder name, got {cfg.run_name!r}")
    if cfg.seed < 0:  # numpy's generators and Blender's noise seed take no negative seed
        fail("seed", f"expected a random seed of at least 0, got {cfg.seed}")


def _check_tuning(section: str, o: AdapterTuningConfig) -> None:
    """The ranges every adapter-tuning section shares (`ovt`, an ovt ablation, `distill`)."""
    for key, value in {f"{section}.steps": o.steps, f"{section}.objects_per_batch": o.objects_per_batch,
                       f"{section}.views_per_object": o.views_per_object,
                       f"{section}.viformer_heads": o.viformer_heads}.items():
        _check_range(key, value, 1, what="an integer")
    for key, value in {f"{section}.clean_per_batch": o.clean_per_batch, f"{section}.weight_decay": o.weight_decay,
                       f"{section}.lora_rank": o.lora_rank, f"{section}.viformer_layers": o.viformer_layers}.items():
        _check_range(key, value, 0)
    _check_range(f"{section}.lr", o.lr, 1e-8, 1.0, "a learning rate")
    _check_range(f"{section}.residual_ratio", o.residual_ratio, 0.0, 1.0, "a ratio")
    _check_range(f"{section}.category_caption_prob", o.category_caption_prob, 0.0, 1.0, "a probability")
    if o.category_caption_prob and o.text in ("category", "none"):
        fail(f"{section}.category_caption_prob", f"is {o.category_caption_prob} but {section}.text is {o.text!r}, "
                                                 "which has no captions to mix bare prompts into; set "
                                                 f"{section}.text: caption or per_view, or the probability to 0")
    if not o.lora_rank and not o.viformer_layers:
        fail(f"{section}.lora_rank", f"and {section}.viformer_layers are both 0: nothing to train; set one of them")


def _check_ovt(section: str, o: OVTConfig) -> None:
    """The ranges of an `ovt` section (the run's, or an ablation's)."""
    _check_tuning(section, o)
    for key, value in {f"{section}.outlier_views": o.outlier_views,
                       f"{section}.anchor_neighbours": o.anchor_neighbours}.items():
        _check_range(key, value, 1, what="an integer")
    _check_range(f"{section}.vc_weight", o.vc_weight, 0)
    _check_range(f"{section}.anchor_floor", o.anchor_floor, 0, 1, "a fraction of the mean neighbour distance")
    if o.margin_mode == "hinge":
        _check_range(f"{section}.margin", o.margin, 0, 2, "a cosine distance for the hinge")


def _check_distill(d: DistillConfig) -> None:
    _check_tuning("distill", d)
    for key in ("distill_weight", "keep_weight", "itc_weight"):
        _check_range(f"distill.{key}", getattr(d, key), 0)
    if not (d.distill_weight or d.keep_weight or d.itc_weight):
        fail("distill.distill_weight", "and keep_weight and itc_weight are all 0: no loss to train on")


def _check_splits(cfg: RunConfig) -> None:
    splits = cfg.dataset.splits
    fractions = dataclasses.asdict(splits)
    if any(v < 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        fail("dataset.splits", f"expected non-negative fractions summing to 1, got {fractions}")
    for name in ["test"] + (["pretrain"] if pretrains_here(cfg) else []):
        if fractions[name] <= 0:
            why = ("the tiny backbone is pretrained on it" if name == "pretrain"
                   else "every reported number is measured on it")
            fail(f"dataset.splits.{name}", f"expected a fraction in (0, 1) ({why}), got {fractions[name]}")
    needed = needed_splits(cfg)
    objaverse = cfg.dataset.objaverse
    if cfg.dataset.source == "objaverse" and objaverse.lvis_categories == "auto":
        least = min_objects_per_category(splits, needed)
        if objaverse.lvis_min_objects < least:  # else a small category fails the split check after rendering
            fail("dataset.objaverse.lvis_min_objects",
                  f"{objaverse.lvis_min_objects} objects per LVIS category leave a split empty with fractions "
                  f"{fractions}; expected at least {least}")
    if cfg.dataset.source == "procedural":
        per_category = cfg.dataset.procedural.objects_per_category
        sizes = splits.sizes(per_category)
        empty = [name for name in needed if sizes[name] == 0]
        if empty:
            fail("dataset.procedural.objects_per_category",
                  f"{per_category} objects per category leave split(s) {', '.join(empty)} empty with fractions "
                  f"{fractions}; expected at least {min_objects_per_category(splits, needed)}")
