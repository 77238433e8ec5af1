"""JupyterLab in the project's venv: the `.py` notebooks open as notebooks, on the project's kernel.

    mvclip lab --configure-only         # what `make install` runs; `mvclip lab` (`make lab`) then starts JupyterLab

JupyterLab opens a `.py` file in its text editor unless told otherwise, and jupytext's
notebook view is one "Open With" away. This writes the venv's own lab settings
(`<venv>/share/jupyter/lab/settings/overrides.json`, read by every `jupyter lab` started from
the venv, and no one else's) so that double-clicking `notebooks/04_baseline.py` opens the
Jupytext Notebook. The kernel is the notebooks' own "Python 3 (mvclip)" (their header names
it). Saving leaves the `.py` as it was: each header's `notebook_metadata_filter` keeps
jupytext's version lines out (a new notebook copies its header from an existing one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
JUPYTEXT_VIEWER = "Jupytext Notebook"


def overrides_path(prefix: Path | str = sys.prefix) -> Path:
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def configure_lab(prefix: Path | str = sys.prefix) -> Path:
    """Make the Jupytext Notebook the default viewer for Python files in the environment at `prefix`,
    keeping any other overrides already there."""
    path = overrides_path(prefix)
    settings = json.loads(path.read_text()) if path.exists() else {}
    settings.setdefault(DOCMANAGER, {}).setdefault("defaultViewers", {})["python"] = JUPYTEXT_VIEWER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path
