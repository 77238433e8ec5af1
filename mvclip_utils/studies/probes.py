"""Probes of frozen CLIP features (notebook 09; the seed write-up `clip-feature-probes.txt`).

- **Zero-shot**: the category prompts' embeddings (averaged over templates, as 03 makes
  them) as a linear classifier, W = normalised prompt embeddings x the backbone's logit
  scale, b = 0.
- **Linear probe** (the CLIP paper's protocol): scikit-learn's L-BFGS logistic regression
  on normalised features, C swept on a validation split, then refitted on train + val.
- **Few-shot** linear classifiers trained with Adam on k shots per class, from a random
  initialisation or from the zero-shot classifier (the seed's method), for several seeds
  at once: one batched tensor program over seeds, no Python loop over them.

Everything here is math on features and labels; where the features come from (a run's
multi-view embeddings, CIFAR-100) is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..core.cameras import canonical_view_id
from ..data.cifar import embed_images, held_out, load_cifar100
from ..evaluation.results import add_columns, method_label, write_probes
from ..models.backbone import load_backbone
from ..models.embed import (
    backbone_logit_scale,
    backbone_variants,
    embed_settings,
    encode_category_prompts,
)
from ..models.opened_run import OpenedRun

INITS = ("random", "zero_shot")


@dataclass
class LinearClassifier:
    """logits = normalise(x) @ weight.T + bias; weight [C, D] or, for a batch of seeds, [S, C, D]."""

    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=-1)
        if self.weight.ndim == 3:  # [S, C, D] seeds: features [N, D] shared, or [S, N, D] per seed
            eq = "snd,scd->snc" if x.ndim == 3 else "nd,scd->snc"
            return torch.einsum(eq, x, self.weight) + self.bias[:, None]
        return x @ self.weight.T + self.bias

    def accuracy(self, features, labels) -> torch.Tensor:
        """Accuracy (a scalar, or [S] for a batch of seeds)."""
        labels = torch.as_tensor(np.asarray(labels))
        return (self.logits(features).argmax(-1) == labels).double().mean(-1)


def zero_shot_classifier(class_text: np.ndarray | torch.Tensor, logit_scale: float) -> LinearClassifier:
    """The zero-shot classifier as a linear layer: W = normalised class-prompt embeddings x logit scale, b = 0.
    Its predictions are zero-shot's exactly (the scale does not change an argmax)."""
    text = F.normalize(torch.as_tensor(class_text, dtype=torch.float32), dim=-1)
    return LinearClassifier(text * float(logit_scale), torch.zeros(len(text)))


def sample_shots(labels: np.ndarray, k: int, seeds: list[int], n_classes: int | None = None) -> np.ndarray:
    """[S, C * k] indices into `labels`: k distinct items of every class, drawn per seed (the same
    seed gives the same shots). A class with fewer than k items is an error naming it."""
    labels = np.asarray(labels)
    n_classes = n_classes or int(labels.max()) + 1
    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    short = [c for c, m in enumerate(members) if len(m) < k]
    if short:
        raise ValueError(f"{k} shots per class asked, but class(es) {short} have only "
                         f"{min(len(members[c]) for c in short)} candidate(s); lower probes.shots")
    out = np.empty((len(seeds), n_classes * k), dtype=np.int64)
    for s, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        out[s] = np.concatenate([rng.choice(m, size=k, replace=False) for m in members])
    return out


@dataclass
class FewShotFit:
    classifier: LinearClassifier  # [S, C, D] weights: one classifier per seed
    curve: torch.Tensor  # [S, epochs + 1] accuracy on the monitored set after each epoch (0 = the init)


def fit_few_shot(features: torch.Tensor, labels: torch.Tensor, init: str, class_text: torch.Tensor,
                 logit_scale: float, epochs: int, lr: float, monitor: tuple | None = None,
                 seed: int = 0) -> FewShotFit:
    """Train S linear classifiers at once, one per seed, full batch with Adam for `epochs` steps.

    features [S, n, D], labels [S, n]: each seed's shots. `init` is "random" (as nn.Linear) or
    "zero_shot" (the seed's: W = class prompts x logit scale, b = 0). `monitor` = (features [M, D],
    labels [M]) gives the accuracy curve per epoch (the seed's overfitting figure).
    """
    if init not in INITS:
        raise ValueError(f"init {init!r}: expected one of {INITS}")
    s, _, d = features.shape
    c = len(class_text)
    if init == "zero_shot":
        zs = zero_shot_classifier(class_text, logit_scale)
        weight, bias = zs.weight.expand(s, c, d).clone(), torch.zeros(s, c)
    else:
        g = torch.Generator().manual_seed(seed)
        bound = 1 / np.sqrt(d)
        weight = (torch.rand(s, c, d, generator=g) * 2 - 1) * bound
        bias = (torch.rand(s, c, generator=g) * 2 - 1) * bound
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    classifier = LinearClassifier(weight, bias)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    x = F.normalize(features.float(), dim=-1)
    curve = []
    with torch.no_grad():
        if monitor is not None:
            curve.append(classifier.accuracy(*monitor))
    for _ in range(epochs):
        logits = classifier.logits(x)  # [S, n, C]
        # per-seed mean cross-entropy, summed over seeds: each seed's gradient is its own
        loss = F.cross_entropy(logits.reshape(-1, c), labels.reshape(-1), reduction="sum") / labels.shape[1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if monitor is not None:
            with torch.no_grad():
                curve.append(classifier.accuracy(*monitor))
    weight.requires_grad_(False)
    bias.requires_grad_(False)
    return FewShotFit(classifier, torch.stack(curve, 1) if curve else torch.empty(s, 0))


@dataclass
class LinearProbe:
    C: float  # the inverse regularisation picked on the validation split
    val_accuracy: dict[float, float]  # per C swept
    scaler: object  # sklearn StandardScaler fitted on the train features
    model: object  # the fitted sklearn LogisticRegression (on train + val, standardised by `scaler`)

    def accuracy(self, features, labels) -> float:
        return float(self.model.score(self.scaler.transform(_normalised(features)), np.asarray(labels)))


def _normalised(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def linear_probe(train_x, train_y, val_x, val_y, Cs: list[float], max_iter: int = 1000) -> LinearProbe:
    """The CLIP paper's linear probe: L-BFGS logistic regression, C picked by validation accuracy,
    then refitted on train + val with that C. The normalised features are standardised first (a
    linear map fitted on train, so still a linear probe): on raw unit vectors the best C lay beyond
    1000 and L-BFGS ran out of iterations. The sweep goes up in C, each fit starting from the previous
    solution, and the refit starts from the chosen C's (the objective is convex: a warm start changes
    the iterations, not the optimum)."""
    # late: scikit-learn is heavy and only the linear probe needs it
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, val_x = _normalised(train_x), _normalised(val_x)
    scaler = StandardScaler().fit(train_x)
    train_s, val_s = scaler.transform(train_x), scaler.transform(val_x)
    sweep = LogisticRegression(max_iter=max_iter, warm_start=True)
    scores, solutions = {}, {}
    for C in sorted(float(c) for c in Cs):
        scores[C] = float(sweep.set_params(C=C).fit(train_s, train_y).score(val_s, val_y))
        solutions[C] = (sweep.coef_.copy(), sweep.intercept_.copy())
    best = max(scores, key=lambda C: (scores[C], -abs(np.log10(C))))  # ties: the less extreme C
    model = LogisticRegression(C=best, max_iter=max_iter, warm_start=True)
    if set(np.unique(val_y)) <= set(sweep.classes_):  # a class only val has changes the coefficients' shape
        model.coef_, model.intercept_ = solutions[best]
    model.fit(np.concatenate([train_s, val_s]), np.concatenate([train_y, val_y]))
    return LinearProbe(best, scores, scaler, model)


def stderr(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Standard error of the mean over `axis` (0 with a single value)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    return values.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(values.mean(axis=axis))


# ----------------------------------------------------------------------------- data and protocol


@dataclass
class FeatureSet:
    features: np.ndarray  # [N, D]
    labels: np.ndarray  # [N] class index


@dataclass
class ProbeData:
    """What the probes need of one backbone on one dataset, whatever the dataset is."""

    backbone: str
    class_names: list[str]
    class_text: np.ndarray  # [C, D] prompt embeddings (averaged over templates)
    logit_scale: float
    train: FeatureSet  # the linear probe's training set
    val: FeatureSet  # C is picked on it; the 1-shot overfitting curve is measured on it
    shot_pools: dict[str, FeatureSet]  # where few-shot shots are drawn from (e.g. canonical view, random views)
    eval_sets: dict[str, FeatureSet]  # where accuracy is measured (e.g. canonical, other grid, ood views)
    headline_pool: str  # the seed's figure: shots from this pool ...
    headline_eval: str  # ... evaluated on this set


def _flat(image: np.ndarray, labels: np.ndarray) -> FeatureSet:
    """[N, V, D] views of N objects -> every view as an item with its object's label."""
    n, v, d = image.shape
    return FeatureSet(image.reshape(n * v, d), np.repeat(labels, v))


def probe_data_from_embeddings(emb, views, canonical: str) -> ProbeData:
    """A run's multi-view embeddings (`embed.Embeddings`): the linear probe on every grid view of the
    `train` objects, C picked on the `val` objects' grid views; shots drawn from the train objects'
    canonical view or from random grid views; accuracy on the `test` objects' canonical view, other
    grid views, all grid views and ood views."""
    view_ids = list(emb.view_ids)
    grid = np.asarray(views.set_index("view_id").loc[view_ids, "kind"] == "grid")
    c = view_ids.index(canonical)
    other = grid.copy()
    other[c] = False
    train, val, test = emb.split("train"), emb.split("val"), emb.split("test")
    for name, split in (("train", train), ("val", val), ("test", test)):
        if not len(split.object_ids):
            raise ValueError(f"the probes need objects in the {name!r} split; give dataset.splits.{name} a fraction")
    eval_sets = {"canonical view": FeatureSet(test.image[:, c], test.labels),
                 "other grid views": _flat(test.image[:, other], test.labels),
                 "all grid views": _flat(test.image[:, grid], test.labels)}
    if (~grid).any():
        eval_sets["ood views"] = _flat(test.image[:, ~grid], test.labels)
    return ProbeData(
        backbone=emb.backbone, class_names=list(emb.category_names), class_text=emb.category_text,
        logit_scale=float(emb.logit_scale), train=_flat(train.image[:, grid], train.labels),
        val=_flat(val.image[:, grid], val.labels),
        shot_pools={"canonical view": FeatureSet(train.image[:, c], train.labels),
                    "random grid views": _flat(train.image[:, grid], train.labels)},
        eval_sets=eval_sets, headline_pool="random grid views", headline_eval="all grid views")


def probe_data_from_cifar(cfg, progress: bool = True) -> tuple[ProbeData, dict]:
    """CIFAR-100 (`dataset.cifar100`) embedded by the configured backbone: the linear probe on the
    training images less a held-out `val_fraction` per class (C is picked on it), shots drawn from
    those training images, accuracy on the test images."""
    c = cfg.dataset.cifar100
    train, test = load_cifar100(c.root, True, c.download), load_cifar100(c.root, False, c.download)
    backbone = load_backbone(cfg.backbone)
    features = embed_images(backbone, train.images, cfg.embed.batch_size, progress)
    test_features = embed_images(backbone, test.images, cfg.embed.batch_size, progress)
    val = held_out(train.labels, c.val_fraction, cfg.seed)
    class_text = encode_category_prompts(backbone, train.class_names, cfg.embed.prompt_templates).cpu().numpy()
    fit = FeatureSet(features[~val], train.labels[~val])
    data = ProbeData(backbone.name, train.class_names, class_text, backbone_logit_scale(backbone.model), fit,
                     FeatureSet(features[val], train.labels[val]), {"training images": fit},
                     {"test images": FeatureSet(test_features, test.labels)}, "training images", "test images")
    provenance = {"dataset_fingerprint": f"cifar100:{len(train.labels)}+{len(test.labels)}",
                  "backbone_identity": backbone.identity, "embed_settings": embed_settings(cfg)}
    return data, provenance


# The seed's CIFAR-100 numbers (ViT-B/32, OpenAI weights, the test set): what 09 puts beside its own.
SEED_CIFAR100 = {"zero-shot": 0.6168, "linear probe": 0.7992}


@dataclass
class ProbeResults:
    backbone: str
    zero_shot: dict[str, float]  # per eval set
    linear_probe: dict[str, float]  # per eval set
    linear_probe_C: float
    linear_probe_val: dict[float, float]  # validation accuracy per C
    few_shot: "pd.DataFrame"  # backbone, k, init, seed, shots_from, eval_on, accuracy
    curve: dict[str, np.ndarray]  # init -> [seeds, epochs + 1] 1-shot validation accuracy
    skipped: list[str]  # (pool, k) combinations with too few candidates

    def summary(self, data: ProbeData) -> dict:
        """The headline numbers: zero-shot, linear probe and 1-shot with each init on the headline set."""
        fs = self.few_shot
        one = fs[(fs.k == fs.k.min()) & (fs.shots_from == data.headline_pool) & (fs.eval_on == data.headline_eval)]
        return {"probe_zero_shot": self.zero_shot[data.headline_eval],
                "probe_linear": self.linear_probe[data.headline_eval],
                **{f"probe_{int(fs.k.min())}shot_{init}": float(one[one.init == init].accuracy.mean())
                   for init in INITS}}


def run_probes(data: ProbeData, cfg) -> ProbeResults:
    """Zero-shot, the linear probe and every few-shot fit (`cfg`: config.ProbesConfig), batched over seeds."""
    zero_shot = zero_shot_classifier(data.class_text, data.logit_scale)
    zs = {name: float(zero_shot.accuracy(s.features, s.labels)) for name, s in data.eval_sets.items()}
    probe = linear_probe(data.train.features, data.train.labels, data.val.features, data.val.labels,
                         cfg.linear_probe_Cs, cfg.max_iter)
    lp = {name: probe.accuracy(s.features, s.labels) for name, s in data.eval_sets.items()}
    text = torch.as_tensor(data.class_text, dtype=torch.float32)
    seeds = list(range(cfg.seeds))
    eval_tensors = {name: (torch.as_tensor(s.features), torch.as_tensor(s.labels))
                    for name, s in data.eval_sets.items()}
    rows, skipped, curve = [], [], {}
    n_classes = len(data.class_names)
    for pool_name, pool in data.shot_pools.items():
        for k in cfg.shots:
            try:
                shots = sample_shots(pool.labels, k, seeds, n_classes)
            except ValueError as exc:
                skipped.append(f"{pool_name}, k={k}: {exc}")
                continue
            x, y = torch.as_tensor(pool.features[shots]), torch.as_tensor(pool.labels[shots])
            for init in INITS:
                watch = pool_name == data.headline_pool and k == min(cfg.shots)
                fit = fit_few_shot(x, y, init, text, data.logit_scale, cfg.epochs, cfg.lr,
                                   (torch.as_tensor(data.val.features), torch.as_tensor(data.val.labels)) if watch
                                   else None, seed=k)
                if watch:
                    curve[init] = fit.curve.numpy()
                for eval_name, (fx, fy) in eval_tensors.items():
                    accuracy = fit.classifier.accuracy(fx, fy).numpy()
                    rows += [{"backbone": data.backbone, "k": k, "init": init, "seed": s, "shots_from": pool_name,
                              "eval_on": eval_name, "accuracy": float(a)} for s, a in zip(seeds, accuracy)]
    return ProbeResults(data.backbone, zs, lp, probe.C, probe.val_accuracy, pd.DataFrame(rows), curve, skipped)


def few_shot_summary(results: ProbeResults) -> "pd.DataFrame":
    """Mean and standard error over seeds per (shots_from, eval_on, init, k)."""
    grouped = results.few_shot.groupby(["shots_from", "eval_on", "init", "k"]).accuracy
    return grouped.agg(mean="mean", stderr=lambda a: float(stderr(a.to_numpy()))).reset_index()


# ----------------------------------------------------------------------------- notebook 09


@dataclass
class ProbeStudy:
    data: dict[str, ProbeData]  # per results row (baseline, itc_finetune, omniview_tuning, ...)
    results: dict[str, ProbeResults]


def run_probe_study(opened: OpenedRun) -> ProbeStudy:
    """The probes on every backbone variant of a run (its backbone, and those 08 tuned from it), read from
    their embeddings files; writes metrics/probes.json and probes.csv and puts the headline numbers into
    each variant's results row."""
    cfg, layout = opened.cfg, opened.layout

    study = ProbeStudy({}, {})
    per_backbone = {}

    def record(method: str, data: ProbeData, provenance: dict) -> None:
        result = run_probes(data, cfg.probes)
        study.data[method], study.results[method] = data, result
        summary = result.summary(data)
        per_backbone[method] = {"backbone": data.backbone, "zero_shot": result.zero_shot,
                                "linear_probe": result.linear_probe, "linear_probe_C": result.linear_probe_C,
                                "linear_probe_val": {str(c): a for c, a in result.linear_probe_val.items()},
                                "skipped": result.skipped, **summary, **provenance}
        add_columns(layout, method, summary, provenance)

    if cfg.dataset.source == "cifar100":
        data, provenance = probe_data_from_cifar(cfg)
        record("cifar100", data, provenance)
    else:
        views = opened.views
        canonical = canonical_view_id(views, cfg.backbone.pretrain.canonical_view)
        for method, emb in backbone_variants(layout, cfg).items():
            record(method, probe_data_from_embeddings(emb, views, canonical), emb.provenance)
    fits = pd.concat([r.few_shot.assign(method=m) for m, r in study.results.items()], ignore_index=True)
    write_probes(layout, per_backbone, fits)
    return study


def variants_table(study: ProbeStudy) -> "pd.DataFrame":
    """Per backbone variant and evaluation set: zero-shot, linear probe, and the smallest k's few-shot
    accuracy for each init (shots from the headline pool)."""
    rows = []
    for method, result in study.results.items():
        data = study.data[method]
        fs = result.few_shot
        k = fs.k.min()
        for eval_name in data.eval_sets:
            one = fs[(fs.k == k) & (fs.shots_from == data.headline_pool) & (fs.eval_on == eval_name)]
            rows.append({"variant": method_label(method), "evaluated on": eval_name,
                         "zero-shot": result.zero_shot[eval_name],
                         "linear probe": result.linear_probe[eval_name],
                         **{f"{k}-shot, {init.replace('_', '-')} init": one[one.init == init].accuracy.mean()
                            for init in INITS}})
    return pd.DataFrame(rows).set_index(["variant", "evaluated on"])


def _mean_se(fs, **where) -> tuple[float, float]:
    rows = fs
    for column, value in where.items():
        rows = rows[rows[column] == value]
    values = rows.accuracy.to_numpy()
    return float(values.mean()), float(stderr(values)) if len(values) > 1 else 0.0


def describe_findings(result: ProbeResults, data: ProbeData) -> str:
    """The issue's four findings for one backbone (markdown), every sentence from the numbers."""
    fs = result.few_shot
    k = int(fs.k.min())
    pool, target = data.headline_pool, data.headline_eval
    zs = result.zero_shot[target]
    rnd, rnd_se = _mean_se(fs, k=k, init="random", shots_from=pool, eval_on=target)
    zsi, zsi_se = _mean_se(fs, k=k, init="zero_shot", shots_from=pool, eval_on=target)
    lines = [f"- **{k}-shot vs zero-shot** ({target}, shots from {pool}, {len(fs.seed.unique())} seeds): "
             f"zero-shot {zs:.3f}; random init {rnd:.3f} ± {rnd_se:.3f} — "
             + ("below zero-shot, as the CLIP paper found" if rnd < zs else "**not** below zero-shot")
             + f"; zero-shot init {zsi:.3f} ± {zsi_se:.3f} — "
             + ("at least zero-shot, as the seed found." if zsi >= zs else "**below** zero-shot: the seed's claim "
                "does not hold here.")]
    if "random" in result.curve:
        for init in INITS:
            curve = result.curve[init].mean(0)
            peak = int(curve.argmax())
            lines.append(f"- **{k}-shot validation accuracy over {len(curve) - 1} epochs, {init.replace('_', '-')} "
                         f"init:** {curve[0]:.3f} at the start, best {curve[peak]:.3f} at epoch {peak}, "
                         f"{curve[-1]:.3f} at the end — "
                         + ("it falls after its first few epochs (the seed's overfitting)." if
                            peak <= max(1, len(curve) // 10) and curve[-1] < curve[peak] - 0.005
                            else "it does not fall after a few epochs."))
    lp = result.linear_probe[target]
    lines.append(f"- **Linear probe on all training data** (C = {result.linear_probe_C:g} picked on val): {lp:.3f} "
                 f"against zero-shot {zs:.3f} — " + ("it beats zero-shot." if lp > zs else "it does **not** beat "
                                                                                           "zero-shot."))
    if "canonical view" in data.shot_pools and "other grid views" in data.eval_sets:
        ks = sorted(set(fs[fs.shots_from == "canonical view"].k))
        if ks:
            kk = max(ks)
            def at(init, pool, target):
                return _mean_se(fs, k=kk, init=init, shots_from=pool, eval_on=target)[0]
            zs_c, zs_o = result.zero_shot["canonical view"], result.zero_shot["other grid views"]
            canon = {i: (at(i, "canonical view", "canonical view"), at(i, "canonical view", "other grid views"))
                     for i in INITS}
            spread = {i: at(i, "random grid views", "other grid views") for i in INITS}
            inherits = all(c - o > 0.5 * (zs_c - zs_o) for c, o in canon.values())
            best = max(spread.values())
            lines.append(
                f"- **By view ({kk} shots per class):** zero-shot gives {zs_c:.3f} on the canonical view and "
                f"{zs_o:.3f} on the other grid views. Shots from the canonical view give "
                + " and ".join(f"{c:.3f} / {o:.3f} ({i.replace('_', '-')} init)" for i, (c, o) in canon.items())
                + " — " + ("they inherit the backbone's view dependence." if inherits
                           else "they narrow the backbone's view gap.")
                + " Shots from random grid views give "
                + " and ".join(f"{v:.3f} ({i.replace('_', '-')} init)" for i, v in spread.items())
                + " on the other grid views, "
                + (f"{(best - zs_o) * 100:+.1f} points over zero-shot there: a few random-view shots fix part of "
                   "the view dependence that zero-shot init alone does not." if best > zs_o + 0.01 else
                   f"{(best - zs_o) * 100:+.1f} points against zero-shot there: a few random-view shots do not fix "
                   "more of the view dependence than zero-shot init alone."))
    return "\n".join(lines)


def seed_comparison(result: ProbeResults, data: ProbeData) -> "pd.DataFrame":
    """Our zero-shot and linear-probe accuracy beside the seed's on CIFAR-100's test set."""
    ours = {"zero-shot": result.zero_shot[data.headline_eval], "linear probe": result.linear_probe[data.headline_eval]}
    return pd.DataFrame({f"this run ({data.backbone})": ours, "the seed (ViT-B/32, openai)": SEED_CIFAR100})
