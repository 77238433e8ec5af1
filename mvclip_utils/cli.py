"""The one front door: `mvclip <command>` (also `python -m mvclip_utils <command>`).

    mvclip run --config params/default.yaml              # every notebook, reports, index.html
    mvclip run --config params/smoke.yaml --only 04-07   # some notebooks of an existing run
    mvclip sweep --config params/default.yaml --set seed=0,1,2
    mvclip select --config params/default.yaml --from-run outputs/default --method omniview_tuning --only 08 \\
        --set ovt.lr=5e-4,2e-3        # choose on val, then evaluate test once with the chosen yaml
    mvclip collect outputs/default-sweep/*/ --out sweep.csv
    mvclip render --config params/objaverse_vitb32.yaml --shard 0/8   # then --merge 8
    mvclip embed --config params/objaverse_vitb32.yaml --shard 0/8    # then --merge 8
    torchrun --nproc_per_node 4 -m mvclip_utils tune --config params/objaverse_vitb32.yaml
    mvclip lab                                            # JupyterLab on the notebooks

Every command validates the config first; a bad value ends in one line naming the key and the
fix (exit 2); a failed notebook exits 1 and names its executed copy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from . import lab
from .core.config import dump_config, load_config
from .core.runs import NOTEBOOKS_DIR, REPO_ROOT, RunLayout, atomic_write_text, describe_os_error
from .core.schema import ConfigError
from .core.shards import parse_shard
from .data.dataset import build_dataset, merge_render_shards, render_shard
from .evaluation.results import write_dataset_seed_table, write_seed_table
from .models.backbone import load_backbone
from .models.embed import embed_shard, merge_embedding_shards
from .pipeline import DEFAULT_KERNEL, run_pipeline
from .studies.ovt import ITC_ONLY, METHOD, train_data_parallel
from .sweep import collect, override_label, parse_set, run_selection, run_sweep, swept_keys

COMMANDS = ("run", "sweep", "select", "collect", "render", "embed", "tune", "lab")
_FORMAT = argparse.RawDescriptionHelpFormatter


def _command(commands, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=summary, epilog="examples:\n" + examples,
                               formatter_class=_FORMAT)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a run config, e.g. params/default.yaml")
    parser.add_argument("--run-dir", help="where the run lives (default outputs/<run_name>)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mvclip", description=__doc__.split("\n\n")[0], epilog=__doc__.split(
        "\n\n", 1)[1].split("\n\n")[0], formatter_class=_FORMAT)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    run = _command(commands, "run", "run the numbered notebooks of a config with papermill, then the HTML reports",
                   "  mvclip run --config params/default.yaml\n"
                   "  mvclip run --config params/smoke.yaml --run-dir /tmp/smoke --only 01,04-07 --quiet")
    _config_arguments(run)
    run.add_argument("--only", help="notebooks to run, e.g. 01,04-07 (default: all, or pipeline.notebooks)")
    run.add_argument("--kernel", help=f"Jupyter kernel (default {DEFAULT_KERNEL!r} if registered, else python3)")
    run.add_argument("--quiet", action="store_true", help="no live progress bars, only a line per notebook")
    run.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)

    sweep = _command(commands, "sweep", "run every variant of a config into its own run directory",
                     "  mvclip sweep --config params/default.yaml --set seed=0,1,2 --set heads.lr=1e-3,3e-4\n"
                     "  mvclip sweep --config params/default.yaml --set heads.seed,ovt.seed,distill.seed=0,1,2 \\\n"
                     "      --from-run outputs/default --only 01-08,12-13   # zipped keys: 3 variants")
    sweep.add_argument("--config", required=True, help="the base config every variant extends")
    sweep.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2",
                       help="a config key and its values (repeat for a grid), e.g. seed=0,1,2")
    sweep.add_argument("--root", help="where the variants go (default outputs/<run_name>-sweep)")
    sweep.add_argument("--only", help="notebooks to run in each variant, e.g. 01-07")
    sweep.add_argument("--kernel")
    sweep.add_argument("--from-run", help="an existing run of the same dataset (e.g. outputs/default) whose dataset, "
                       "backbone and frozen embeddings the variants share")

    choose = _command(commands, "select", "choose a method's settings on val objects: run a grid of variants, keep "
                      "the one of best val transfer accuracy within the clean budget",
                      "  mvclip select --config params/default.yaml --from-run outputs/default --method "
                      "omniview_tuning \\\n      --only 08 --set ovt.lr=5e-4,2e-3 --set ovt.clean_per_batch=64,128\n"
                      "  mvclip run --config outputs/default/selection/omniview_tuning.yaml --run-dir "
                      "outputs/default --only 08   # test, once")
    choose.add_argument("--config", required=True, help="the base config every variant extends")
    choose.add_argument("--from-run", required=True, help="the finished run (01-04 at least) whose dataset, "
                        "backbone and frozen val numbers the variants share; the choice is written into it")
    choose.add_argument("--method", required=True, help="the results row chosen on, e.g. omniview_tuning")
    choose.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2",
                        help="a config key and its candidate values (repeat for a grid)")
    choose.add_argument("--only", required=True, help="the notebooks that train and evaluate the method, e.g. 08")
    choose.add_argument("--kernel")
    choose.add_argument("--keep", action="store_true", help="keep the variants' run directories")

    gather = _command(commands, "collect", "one results table over runs: mean and standard error over seeds",
                      "  mvclip collect outputs/default-sweep/*/ --out sweep.csv\n"
                      "  mvclip collect outputs/default-seeds/seed-* --into outputs/default")
    gather.add_argument("run_dirs", nargs="+")
    gather.add_argument("--over", default="seed", help="the override averaged over (default seed)")
    gather.add_argument("--out", help="also write the table as CSV here")
    gather.add_argument("--into", help="a run made from the same dataset and backbone (e.g. outputs/default) whose "
                        "summary then shows the table (metrics/seeds.csv)")
    gather.add_argument("--dataset-seeds", action="store_true", help="the runs differ in their dataset/split seed "
                        "(whole runs, each its own dataset): --into one of them writes metrics/dataset_seeds.csv")

    render = _command(commands, "render", "build (render) the multi-view dataset of a config, whole or in shards",
                      "  mvclip render --config params/default.yaml\n"
                      "  mvclip render --config params/objaverse_vitb32.yaml --shard 3/8 --quiet   # SLURM task 3\n"
                      "  mvclip render --config params/objaverse_vitb32.yaml --merge 8")
    _config_arguments(render)
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    render.add_argument("--shard", metavar="I/N", help="render only shard I of N (from 0; shards may run at once)")
    render.add_argument("--merge", type=int, metavar="N", help="build the manifests from N finished render shards")

    embed = _command(commands, "embed", "embed a rendered run's images in shards (one per GPU or task), then merge",
                     "  mvclip embed --config params/objaverse_vitb32.yaml --shard 0/4\n"
                     "  mvclip embed --config params/objaverse_vitb32.yaml --merge 4")
    _config_arguments(embed)
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    group = embed.add_mutually_exclusive_group(required=True)
    group.add_argument("--shard", metavar="I/N", help="embed only shard I of N of the rendered objects (from 0)")
    group.add_argument("--merge", type=int, metavar="N", help="write the embeddings file from N finished shards")

    tune = _command(commands, "tune", "train notebook 08's adapters data-parallel (under torchrun), before 08 "
                    "evaluates them", "  torchrun --nproc_per_node 4 -m mvclip_utils tune "
                    "--config params/objaverse_vitb32.yaml\n  mvclip tune --config params/smoke.yaml --methods "
                    f"{METHOD}   # one process")
    _config_arguments(tune)
    tune.add_argument("--methods", default=",".join([ITC_ONLY, METHOD]),
                      help=f"comma-separated, of {ITC_ONLY}, {METHOD} (default both)")
    tune.add_argument("--quiet", action="store_true", help="no progress bars")

    jupyter = _command(commands, "lab", "JupyterLab on the notebooks: the .py notebooks open as notebooks",
                       "  mvclip lab\n  mvclip lab --configure-only   # what `make install` runs")
    jupyter.add_argument("--configure-only", action="store_true",
                         help="only make .py files open as notebooks in this environment's JupyterLab")
    return parser


def _run(args: argparse.Namespace) -> int:
    results = run_pipeline(args.config, args.run_dir, args.only, args.kernel, Path(args.notebooks_dir), args.quiet)
    failed = [r for r in results if r.status == "failed"]
    layout = RunLayout.for_run(load_config(args.config).run_name, args.run_dir)
    if failed:
        r = failed[0]
        print(f"mvclip: notebook {r.stem} failed: {r.error}\n"
              f"  executed copy with the traceback: {layout.executed_notebook(r.stem)}\n"
              f"  report: {layout.report(r.stem)}", file=sys.stderr)
        return 1
    print(f"[mvclip] done: {layout.index_html}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    done = run_sweep(args.config, [parse_set(s) for s in args.set], args.root, args.only, args.kernel, args.from_run)
    for name, run_dir, status in done:
        print(f"[mvclip sweep] {status:>6}  {name}  {run_dir}")
    return 0 if all(status == "ok" for *_, status in done) else 1


def _select(args: argparse.Namespace) -> int:
    table, chosen = run_selection(args.config, [parse_set(s) for s in args.set], args.method, args.from_run,
                                  args.only, args.kernel, args.keep)
    shown = [c for c in table.columns if c == "variant" or c.startswith(("val_transfer", "eligible", "chosen"))
             or c in ("val_zero_shot_all_clean",)]
    print(table[shown].to_string(index=False))
    print(f"[mvclip select] chosen on val: {chosen}\n  evaluate it on test once: mvclip run --config {chosen} "
          f"--run-dir {args.from_run} --only {args.only}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    table = collect(args.run_dirs, args.over)
    swept = swept_keys(args.run_dirs)
    if swept and not any(args.over in (k, override_label(k)) for k in swept):
        print(f"[mvclip collect] note: no run was swept over {args.over} (they were over {', '.join(swept)}): "
              f"each row is its own setting, with no standard error over runs", file=sys.stderr)
    if args.out:
        atomic_write_text(Path(args.out), table.to_csv(index=False))
    if args.into:
        into = RunLayout(Path(args.into).resolve())
        written = (write_dataset_seed_table(into, table, args.run_dirs) if args.dataset_seeds
                   else write_seed_table(into, table, args.run_dirs))
        print(f"[mvclip collect] {written}")
    print(table.to_string(index=False, max_cols=12))
    return 0


def _render(args: argparse.Namespace) -> int:
    if args.shard and args.merge:
        raise ValueError("--shard and --merge: give one (render a shard, or merge finished shards)")
    cfg = load_config(args.config)
    layout = RunLayout.for_run(cfg.run_name, args.run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    if args.shard:
        summary = render_shard(cfg, layout, *parse_shard(args.shard), progress=not args.quiet)
        print(json.dumps({**asdict(summary), "shard": args.shard}))
        return 0
    dump_config(cfg, layout.notebook_config("01_render"))
    objects, summary = (merge_render_shards(cfg, layout, args.merge) if args.merge
                        else build_dataset(cfg, layout, progress=not args.quiet))
    rate = summary.images_per_second  # nothing rendered (a merge): no rate, and JSON has no NaN
    print(json.dumps({**asdict(summary), "images_per_second": rate if math.isfinite(rate) else None,
                      "objects": len(objects), "ok": int((objects.status == "ok").sum()),
                      "failed": int((objects.status == "failed").sum())}))
    return 0


def _embed(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    layout = RunLayout.for_run(cfg.run_name, args.run_dir)
    backbone = load_backbone(cfg.backbone, layout)
    if args.shard:
        print(embed_shard(cfg, layout, backbone, *parse_shard(args.shard), progress=not args.quiet))
    else:
        merge_embedding_shards(cfg, layout, backbone, args.merge)
        print(layout.embeddings_file(backbone.slug))
    return 0


def _tune(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    train_data_parallel(cfg, RunLayout.for_run(cfg.run_name, args.run_dir), methods, progress=not args.quiet)
    return 0


def _lab(args: argparse.Namespace) -> int:
    print(f"JupyterLab: .py notebooks open as notebooks ({lab.configure_lab()})")
    if args.configure_only:
        return 0
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={REPO_ROOT}", "notebooks/"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    return subprocess.call(command, cwd=REPO_ROOT)


HANDLERS = {"run": _run, "sweep": _sweep, "select": _select, "collect": _collect, "render": _render,
            "embed": _embed, "tune": _tune, "lab": _lab}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--config"):  # `mvclip --config X` as before the commands: a run
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except OSError as exc:
        print(f"mvclip: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"mvclip: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
