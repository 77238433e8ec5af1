"""Every figure of a report, also as files for a paper: `figures/NN_slug-what.{pdf,svg,png}`.

`capture(layout)` in a notebook's setup cell hooks IPython's display of matplotlib
figures. Each figure shown (by the inline backend at the end of a cell, or by
`display(fig)`) is written as PDF, SVG and a 300-dpi PNG under a stable name: the
notebook's stem, then a slug of the figure's title. Its output in the notebook carries
that name in its metadata. The HTML report turns it into an anchor
(`report_with_anchors`), and the figure index turns it into links (`figure_index`).
Fonts are set so that text is at least 8 pt at the saved size.
"""

from __future__ import annotations

import copy
import html
import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import pandas as pd

from ..core.progress import under_pipeline
from ..core.runs import RunLayout, atomic_path

FORMATS = ("pdf", "svg", "png")
PNG_DPI = 300
MIN_FONT_PT = 8.0
METADATA_KEY = "mvclip_figure"
NOTEBOOK_ENVIRONMENT = "MVCLIP_NOTEBOOK"  # set by the pipeline for each notebook's kernel
# Print-size text: a figure saved at its own size is readable when pasted at 100 %.
PRINT_RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
            "legend.fontsize": 8, "legend.title_fontsize": 8, "figure.titlesize": 11}


def slug(text: str, words: int = 8) -> str:
    """'Zero-shot accuracy per view (mvclip-tiny)' -> 'zero-shot-accuracy-per-view': parenthesised parts
    and whatever follows a comma or colon (backbone names, counts) left out, so the name stays stable."""
    text = re.sub(r"\([^)]*\)", " ", text.lower())
    text = re.split(r"[,:;]", text)[0] if re.split(r"[,:;]", text)[0].strip() else text  # the title's head
    return "-".join(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text)[:words])[:60].strip("-")


def figure_title(fig: matplotlib.figure.Figure) -> str:
    """The figure's suptitle, else its first axes title."""
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        return suptitle.get_text().strip()
    return next((ax.get_title().strip() for ax in fig.axes if ax.get_title().strip()), "")


def smallest_font(fig: matplotlib.figure.Figure) -> float:
    """The smallest font size (pt) of the figure's visible text at its saved size."""
    from matplotlib.text import Text  # late: the pipeline imports this module and draws nothing

    fig.draw_without_rendering()  # tick labels get their text at draw time
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else float("inf")


class FigureFiles:
    """Writes one notebook's figures, each once, under unique stable names."""

    def __init__(self, layout: RunLayout, notebook: str):
        self.layout, self.notebook, self.used = layout, notebook, set()

    def save(self, fig: matplotlib.figure.Figure) -> dict:
        saved = getattr(fig, "_mvclip_figure", None)
        if saved is not None:
            return saved
        title = figure_title(fig)
        # a plot whose title names data (an object, a count) sets `fig.mvclip_name` for a stable file name
        base = f"{self.notebook}-{getattr(fig, 'mvclip_name', None) or slug(title) or 'figure'}"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}-{n}"
        self.used.add(name)
        saved = {"name": name, "title": title, "min_font_pt": smallest_font(fig)}
        if not (under_pipeline() and _defer(fig, pending_file(self.layout, name))):
            write_figure_files(fig, self.layout, name)
        fig._mvclip_figure = saved
        return saved


def write_figure_files(fig: matplotlib.figure.Figure, layout: RunLayout, name: str) -> None:
    """The figure as PDF, SVG and a 300-dpi PNG (about 2.5 s for a large one on these cores)."""
    for extension in FORMATS:
        with atomic_path(layout.figure_file(name, extension)) as tmp:
            fig.savefig(tmp, format=extension, dpi=PNG_DPI, bbox_inches="tight")


# Under the pipeline the kernel only pickles each figure (a tenth of the cost); the pipeline's own process
# writes the files while the next notebook runs (`PendingFigures`), using time the kernels leave idle.


def pending_file(layout: RunLayout, name: str) -> Path:
    return layout.figures / ".pending" / f"{name}.pickle"


def _defer(fig: matplotlib.figure.Figure, path: Path) -> bool:
    """Pickle the figure for the pipeline to write; False (write it now) if it cannot be pickled."""
    try:
        data = pickle.dumps(fig)
    except Exception:  # an artist that does not pickle: the files are written here instead
        return False
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


class PendingFigures:
    """The pipeline's writer of the figures the notebooks' kernels pickled: one background thread, so the
    files are written while the next notebook runs; `finish` waits for all and names any that failed."""

    def __init__(self, layout: RunLayout):
        self.layout, self.pool, self.jobs = layout, ThreadPoolExecutor(max_workers=1), []

    def submit(self) -> None:
        """Queue every figure pickled so far (call after each notebook)."""
        folder = self.layout.figures / ".pending"
        for path in sorted(folder.glob("*.pickle")) if folder.exists() else []:
            claimed = path.with_suffix(".writing")
            path.rename(claimed)
            self.jobs.append((path.stem, self.pool.submit(self._write, claimed)))

    def _write(self, path: Path) -> None:
        import matplotlib.pyplot as plt  # late: the pipeline imports this module and draws nothing

        fig = pickle.loads(path.read_bytes())
        try:
            write_figure_files(fig, self.layout, path.stem)
        finally:
            plt.close(fig)
            path.unlink(missing_ok=True)

    def finish(self) -> list[str]:
        """Wait for every queued figure; the names of those that could not be written, with why."""
        failed = []
        for name, job in self.jobs:
            try:
                job.result()
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        self.jobs = []
        self.pool.shutdown()
        return failed


def notebook_name() -> str:
    """The running notebook's stem: the pipeline names it; JupyterLab's session name otherwise."""
    name = os.environ.get(NOTEBOOK_ENVIRONMENT) or Path(os.environ.get("JPY_SESSION_NAME", "notebook")).stem
    return name or "notebook"


def capture(layout: RunLayout, notebook: str | None = None) -> FigureFiles | None:
    """Save every figure the notebook displays from now on (see the module docstring); the notebook's
    figures of an earlier run are removed first. None outside IPython (nothing is displayed there)."""
    from IPython import get_ipython  # late: only inside a notebook kernel
    from matplotlib.figure import Figure  # late: the pipeline imports this module and draws nothing

    shell = get_ipython()
    if shell is None:
        return None
    import matplotlib.pyplot as plt  # late: the pipeline imports this module and draws nothing

    shell.run_line_magic("matplotlib", "inline")
    plt.rcParams.update(PRINT_RC)
    files = FigureFiles(layout, notebook or notebook_name())
    if layout.figures.exists():
        for old in layout.figures.glob(f"{files.notebook}-*"):
            old.unlink()
    formatter = shell.display_formatter.formatters["image/png"]
    inline = formatter.lookup_by_type(Figure)
    inline = getattr(inline, "_inline", inline)  # capture called again: wrap the inline backend's, once

    def png_with_name(fig):
        data = inline(fig)
        data, metadata = data if isinstance(data, tuple) else (data, {})
        if not fig.axes or getattr(fig, "mvclip_skip", False):  # empty, or an interactive redraw
            return data, metadata
        return data, {**metadata, METADATA_KEY: files.save(fig)}

    png_with_name._inline = inline
    formatter.for_type(Figure, png_with_name)
    return files


# ----------------------------------------------------------------------------- reports and the index


def figure_outputs(notebook) -> list[tuple[str, dict]]:
    """(section heading, figure record) of every named figure of an executed notebook, in order."""
    found, section = [], ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#+\s+(.*)$", cell.source, flags=re.M)
            section = headings[-1] if headings else section
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("image/png", {}).get(METADATA_KEY)
            if record:
                found.append((section, dict(record)))
    return found


def report_with_anchors(notebook):
    """A copy of an executed notebook whose named figures are preceded by an HTML anchor (the figure's
    name), so the figure index can link to the figure inside the report."""
    import nbformat  # late: heavy: only needed while notebooks run

    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("image/png", {}).get(METADATA_KEY)
            if record:
                outputs.append(nbformat.v4.new_output(
                    "display_data", {"text/html": f'<a id="{html.escape(record["name"])}"></a>'}))
            outputs.append(output)
        if "outputs" in cell:
            cell.outputs = outputs
    return notebook


def figure_index(layout: RunLayout) -> pd.DataFrame:
    """Every saved figure of the run's executed notebooks: notebook, section, title, name, its report
    anchor and files (paths relative to the run directory), the smallest font size."""
    import nbformat  # late: heavy: only needed while notebooks run

    rows = []
    for path in layout.executed_notebooks():
        for section, record in figure_outputs(nbformat.read(path, as_version=4)):
            rows.append({"notebook": path.stem, "section": section, "title": record["title"], "name": record["name"],
                         "report": f"{layout.report(path.stem).relative_to(layout.root)}#{record['name']}",
                         **{extension: str(layout.figure_file(record["name"], extension).relative_to(layout.root))
                            for extension in FORMATS},
                         "min_font_pt": record.get("min_font_pt")})
    return pd.DataFrame(rows, columns=["notebook", "section", "title", "name", "report", *FORMATS, "min_font_pt"])


def figure_index_html(index: pd.DataFrame, base: str = "") -> str:
    """The index as an HTML table; `base` is the way from the page to the run directory ('../' from reports/)."""
    lines = ["<table><tr><th>notebook</th><th>section</th><th>figure</th><th>files</th></tr>"]
    for r in index.itertuples():
        files = " · ".join(f"<a href='{html.escape(base + getattr(r, e))}'>{e.upper()}</a>" for e in FORMATS)
        lines.append(f"<tr><td>{html.escape(r.notebook)}</td><td>{html.escape(r.section)}</td>"
                     f"<td><a href='{html.escape(base + r.report)}'>{html.escape(r.title or r.name)}</a></td>"
                     f"<td>{files}</td></tr>")
    return "\n".join(lines + ["</table>"])
