"""Run the numbered notebooks of a run config with papermill, then write HTML reports and an index.

    mvclip run --config params/default.yaml [--run-dir DIR] [--only 01,04-07]
    mvclip run --config params/smoke.yaml

Notebooks are jupytext percent scripts (`notebooks/NN_slug.py`, the source of truth);
each gets `config_path` and `run_dir` as papermill parameters and talks to the others
only through files in the run directory. A failing notebook stops the run with a
non-zero exit that names it; its executed copy, with the traceback, is kept and linked.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .core.config import dump_config, dump_config_text, load_config
from .core.lineage import describe_stale, stale_inputs
from .core.progress import ENVIRONMENT as PROGRESS_ENVIRONMENT
from .core.progress import OFF, TERMINAL
from .core.runs import (
    NOTEBOOKS_DIR,
    RunLayout,
    atomic_write_text,
    digest,
    read_variant,
    sweep_temp_files,
)
from .core.schema import ConfigError, RunConfig
from .reports.figures import (
    NOTEBOOK_ENVIRONMENT,
    PendingFigures,
    figure_index,
    figure_index_html,
    report_with_anchors,
)

NOTEBOOK_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.py$")
DEFAULT_KERNEL = "mvclip"


@dataclass
class NotebookResult:
    number: int
    stem: str
    status: str  # ok | failed | not run
    seconds: float
    error: str = ""
    finished_at: str = ""
    config_digest: str = ""  # of the validated config this notebook ran with (configs/<stem>.yaml)


def discover_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[int, Path]:
    """{number: path} of the `NN_slug.py` notebooks, in order."""
    found: dict[int, Path] = {}
    for path in sorted(Path(notebooks_dir).glob("*.py")):
        m = NOTEBOOK_NAME.match(path.name)
        if m:
            number = int(m.group(1))
            if number in found:
                raise ValueError(f"two notebooks numbered {number:02d}: {found[number].name} and {path.name}")
            found[number] = path
    return dict(sorted(found.items()))


def parse_only(spec: str | None, available: dict[int, Path]) -> list[int]:
    """'01,04-07' -> [1, 4, 5, 6, 7] restricted to existing notebooks; None -> all of them."""
    if not spec:
        return list(available)
    wanted: set[int] = set()
    for token in spec.split(","):
        token = token.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not m:
            raise ValueError(f"--only: cannot read {token!r}; expected numbers and ranges like 01,04-07")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        wanted.update(range(lo, hi + 1))
    selected = [n for n in available if n in wanted]
    if not selected:
        names = ", ".join(p.stem for p in available.values())
        raise ValueError(f"--only {spec!r} selects no notebook; available: {names}")
    return selected


def resolve_kernel(preferred: str = DEFAULT_KERNEL) -> str:
    """The project's registered kernel if present (make registers it), else this interpreter's python3."""
    from jupyter_client.kernelspec import KernelSpecManager  # late: only needed to find a kernel

    specs = KernelSpecManager().find_kernel_specs()
    if preferred in specs:
        return preferred
    if "python3" in specs:
        return "python3"
    raise RuntimeError(f"no Jupyter kernel named {preferred!r} or 'python3'; run `make install` "
                       f"(python -m ipykernel install --sys-prefix --name {preferred})")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables for the kernels started inside the block (they inherit the runner's)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_report(executed: Path, report: Path) -> None:
    """HTML with inputs hidden: what a researcher pastes into a write-up (figures are inlined)."""
    import nbformat  # late: heavy: only needed while notebooks run
    from nbconvert import HTMLExporter  # late: heavy: only needed while reports are written


    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(report_with_anchors(nbformat.read(executed, as_version=4)))
    report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report, body)


def write_combined_report(layout: RunLayout, cfg: RunConfig, stems: list[str]) -> Path | None:
    """`report.html`: every executed notebook's report in order, after a table of contents and the run's
    config, as one page for the write-up. None when no notebook has run."""
    import nbformat  # late: heavy: only needed while notebooks run
    from nbconvert import HTMLExporter  # late: heavy: only needed while reports are written


    executed = [(stem, layout.executed_notebook(stem)) for stem in stems if layout.executed_notebook(stem).exists()]
    if not executed:
        return None
    backbone = (json.loads(layout.backbone_record.read_text())["name"] if layout.backbone_record.exists() else "")
    contents = "\n".join(f"{i + 1}. [{stem}](#{stem})" for i, (stem, _) in enumerate(executed))
    cells = [nbformat.v4.new_markdown_cell(
        f"# mvclip run `{cfg.run_name}`\n\nBackbone: **{backbone}** · written {time.strftime('%Y-%m-%d %H:%M')} from "
        f"`{cfg.source_path}`\n\n## Contents\n\n{contents}\n\n## Config\n\n```yaml\n{dump_config_text(cfg)}\n```")]
    for stem, path in executed:
        notebook = report_with_anchors(nbformat.read(path, as_version=4))
        cells.append(nbformat.v4.new_markdown_cell(f'<a id="{stem}"></a>\n\n---'))
        cells += [c for c in notebook.cells if "parameters" not in c.get("metadata", {}).get("tags", [])
                  and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    combined = nbformat.v4.new_notebook(cells=cells, metadata=nbformat.read(executed[0][1], as_version=4).metadata)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(combined)
    atomic_write_text(layout.combined_report, body)
    return layout.combined_report


def _error_summary(exc: BaseException) -> str:
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip()


def _quiet_kernel_manager() -> type:
    """jupyter_client's kernel manager, except that shutting a finished kernel down does not first
    interrupt it: that SIGINT lands in the kernel's message handler, which logs "KeyboardInterrupt
    caught in kernel." at ERROR level on every successful run. The shutdown request alone ends it;
    an interrupt asked for at any other time (a timeout) is sent as before."""
    from jupyter_client.manager import AsyncKernelManager  # late: heavy: only needed while notebooks run

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def run_notebook(path: Path, cfg_path: Path, layout: RunLayout, kernel: str, timeout_s: int,
                 cfg: RunConfig | None = None) -> NotebookResult:
    import jupytext  # late: heavy: only needed while notebooks run
    import papermill  # late: heavy: only needed while notebooks run

    stem, number = path.stem, int(path.stem[:2])
    cfg = cfg or load_config(cfg_path)
    dump_config(cfg, layout.notebook_config(stem))  # what this notebook ran with, beside its outputs
    executed = layout.executed_notebook(stem)
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status, error = "ok", ""
    try:
        with _environment({NOTEBOOK_ENVIRONMENT: stem}):  # the kernel names its figure files after it
            papermill.execute_notebook(
                jupytext.read(path), str(executed),
                parameters={"config_path": str(cfg_path), "run_dir": str(layout.root)},
                kernel_name=kernel, language="python", cwd=str(path.parent),
                execution_timeout=timeout_s, progress_bar=False, log_output=False,
                coalesce_streams=True,  # one stream per cell, with progress-bar carriage returns resolved
                # what reaches the kernel's file descriptors (progress bars on sys.__stderr__, output of
                # native code) goes to the terminal, not into the report
                extra_arguments=["--IPKernelApp.capture_fd_output=False", "--IPKernelApp.log_level=ERROR"],
                kernel_manager_class=_quiet_kernel_manager(),
            )
    except Exception as exc:  # PapermillExecutionError, a dead kernel, a timeout
        status, error = "failed", _error_summary(exc)
    seconds = time.perf_counter() - start
    if executed.exists():
        write_report(executed, layout.report(stem))
    return NotebookResult(number, stem, status, seconds, error, time.strftime("%Y-%m-%d %H:%M:%S"),
                          digest(cfg.to_dict()))


def write_index(layout: RunLayout, cfg: RunConfig, results: list[NotebookResult]) -> None:
    """index.html: the config used and one line per notebook (status, wall time, links)."""
    rows = []
    digests = {r.config_digest for r in results if r.config_digest}
    for r in results:
        report, executed, config = (layout.report(r.stem), layout.executed_notebook(r.stem),
                                    layout.notebook_config(r.stem))
        links = " · ".join(
            f'<a href="{p.relative_to(layout.root)}">{label}</a>'
            for p, label in ((report, "report"), (executed, "notebook"), (config, f"config {r.config_digest[:8]}"))
            if p.exists()
        )
        colour = {"ok": "#2e7d32", "failed": "#c62828"}.get(r.status, "#757575")
        rows.append(
            f"<tr><td>{r.stem}</td><td style='color:{colour};font-weight:bold'>{r.status}</td>"
            f"<td>{r.seconds:.1f} s</td><td>{r.finished_at}</td><td>{links}</td>"
            f"<td><code>{html.escape(r.error)}</code></td></tr>"
        )
    config_text = dump_config_text(cfg)
    mixed = (f"<p style='color:#c62828'><b>The notebooks ran with {len(digests)} different configs</b> (see each "
             f"notebook's config link); artifacts made from another config are refused by the notebooks that "
             f"read them, and rerunning the whole pipeline makes them agree.</p>" if len(digests) > 1 else "")
    backbone = (f"<p>Backbone: <b>{html.escape(json.loads(layout.backbone_record.read_text())['name'])}</b></p>"
                if layout.backbone_record.exists() else "")

    overrides = read_variant(layout.root)
    if overrides:
        backbone += ("<p>Sweep variant: <b>" + html.escape(", ".join(f"{k} = {v}" for k, v in overrides.items()))
                     + "</b> over the base config</p>")

    index = figure_index(layout)
    figures = (f"<h2>Figures</h2><p>{len(index)} figures, each as PDF, SVG and 300-dpi PNG in "
               f"<code>figures/</code>; the title links to the figure in its report.</p>{figure_index_html(index)}"
               if len(index) else "")
    combined = (f"<p><a href='{layout.combined_report.relative_to(layout.root)}'><b>The combined report</b></a>: "
                f"every notebook's report in one page, with contents and the config, for the write-up.</p>"
                if layout.combined_report.exists() else "")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mvclip run {html.escape(cfg.run_name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}td,th{{padding:4px 12px;text-align:left}}
pre{{background:#f5f5f5;padding:1em}}</style></head><body>
<h1>mvclip run <code>{html.escape(cfg.run_name)}</code></h1>
{combined}
<p>Updated {time.strftime('%Y-%m-%d %H:%M:%S')} from <code>{html.escape(str(cfg.source_path))}</code>.</p>
{backbone}
<table><tr><th>notebook</th><th>status</th><th>wall time</th><th>finished</th><th>links</th><th>error</th></tr>
{''.join(rows)}</table>
{mixed}
{figures}
<h2>Config of this pipeline call</h2><pre>{html.escape(config_text)}</pre></body></html>"""
    atomic_write_text(layout.index_html, page)
    atomic_write_text(layout.pipeline_log, json.dumps([asdict(r) for r in results], indent=1))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def time_left(remaining: list[str], earlier: dict[str, NotebookResult]) -> str:
    """The expected time of the notebooks still to run, from the run's previous timings (the index's)."""
    known = [earlier[s].seconds for s in remaining if s in earlier and earlier[s].status == "ok"]
    unknown = len(remaining) - len(known)
    if not remaining:
        return ""
    text = f"about {_duration(sum(known))} left" if known else ""
    if unknown:
        text += f"{' + ' if text else ''}{unknown} notebook(s) not timed before"
    return text


def run_pipeline(config_path: Path | str, run_dir: Path | str | None = None, only: str | None = None,
                 kernel: str | None = None, notebooks_dir: Path = NOTEBOOKS_DIR,
                 quiet: bool = False) -> list[NotebookResult]:
    """Run the selected notebooks in order; stops at the first failure (its result is last).

    The terminal gets a line per notebook with the time the previous run took and what is left,
    and, between them, the running notebook's own progress bars (`progress`); `quiet` keeps the
    lines and drops the bars."""
    cfg_path = Path(config_path).resolve()
    cfg = load_config(cfg_path)  # validated before any work
    available = discover_notebooks(notebooks_dir)
    try:
        run_has = parse_only(cfg.pipeline.notebooks or None, available)  # the config's notebooks (all by default)
    except ValueError as exc:
        raise ConfigError(f"pipeline.notebooks: {exc}".replace("--only ", "", 1)) from None
    selected = [n for n in parse_only(only, available) if n in run_has]
    if not selected:
        raise ValueError(f"--only {only} selects none of this config's notebooks (pipeline.notebooks: "
                         f"{cfg.pipeline.notebooks!r})")
    available = {n: p for n, p in available.items() if n in run_has}
    layout = RunLayout.for_run(cfg.run_name, run_dir)
    # Inputs this run does not remake must have been made with this config's settings (else old numbers
    # would be reported under the new config): refused now, naming the setting and the notebook to rerun.
    stale = stale_inputs(cfg, layout, {n: p.stem for n, p in available.items()}, selected)
    if stale:
        raise ConfigError(describe_stale(stale, str(config_path), selected[-1]))
    layout.root.mkdir(parents=True, exist_ok=True)
    swept = sweep_temp_files(layout.root)  # what interrupted atomic writes left behind

    shutil.rmtree(layout.figures / ".pending", ignore_errors=True)  # figures an interrupted run never wrote
    if swept:
        print(f"[mvclip] removed {len(swept)} temp file(s) of an interrupted earlier run", flush=True)
    kernel = kernel or resolve_kernel()
    # The index covers every notebook: those not selected this time keep their earlier result.
    earlier = _earlier_results(layout)
    table = {n: earlier.get(available[n].stem, NotebookResult(n, available[n].stem, "not run", 0.0))
             for n in available}
    for n in selected:
        table[n] = NotebookResult(n, available[n].stem, "not run", 0.0)
    write_index(layout, cfg, list(table.values()))
    results = []
    stems = [available[n].stem for n in selected]
    print(f"[mvclip] {len(selected)} notebook(s) into {layout.root}"
          + (f"; {time_left(stems, earlier)} by the last run's timings" if earlier else ""), flush=True)
    figure_files = PendingFigures(layout)  # written from the kernels' pickles while the next notebook runs
    with _environment({PROGRESS_ENVIRONMENT: OFF if quiet else TERMINAL}):
        for i, number in enumerate(selected):
            stem = available[number].stem
            before = earlier.get(stem)
            print(f"[mvclip] ({i + 1}/{len(selected)}) running {stem}"
                  + (f" (last time {_duration(before.seconds)})" if before and before.status == "ok" else "")
                  + " ...", flush=True)
            result = run_notebook(available[number], cfg_path, layout, kernel, cfg.pipeline.notebook_timeout_s,
                                  cfg)
            results.append(result)
            table[number] = result
            figure_files.submit()
            write_index(layout, cfg, list(table.values()))
            left = time_left(stems[i + 1:], earlier)
            print(f"[mvclip] {result.stem}: {result.status} in {result.seconds:.1f} s" + (f"; {left}" if left else ""),
                  flush=True)
            if result.status != "ok":
                break
    for failure in figure_files.finish():
        print(f"[mvclip] a figure file could not be written: {failure}", file=sys.stderr, flush=True)
    if write_combined_report(layout, cfg, [p.stem for p in available.values()]):
        write_index(layout, cfg, list(table.values()))  # now with the combined report's link
    return results


def _earlier_results(layout: RunLayout) -> dict[str, NotebookResult]:
    try:
        return {r["stem"]: NotebookResult(**r) for r in json.loads(layout.pipeline_log.read_text())}
    except (OSError, ValueError, TypeError):
        return {}
