"""Progress on long work: live in the terminal when the pipeline runs the notebooks, never in the reports.

Under `mvclip` (papermill), whatever a notebook writes to stderr becomes part of its
report: a pink box with a bar frozen where it was last drawn. So the pipeline sets
`MVCLIP_PROGRESS=terminal`, and bars and progress notes go to the kernel process's own
stderr (`sys.__stderr__`), which is the terminal the pipeline was started from. In
JupyterLab (the variable unset) they stay in the notebook, where a person watches them.
`MVCLIP_PROGRESS=off` (the pipeline's `--quiet`, for batch jobs) silences them.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TextIO

from tqdm import tqdm

ENVIRONMENT = "MVCLIP_PROGRESS"
TERMINAL, OFF = "terminal", "off"


def _mode() -> str:
    return os.environ.get(ENVIRONMENT, "")


def under_pipeline() -> bool:
    """Whether the code runs in a notebook the pipeline executes (its output becomes a static HTML report)."""
    return _mode() in (TERMINAL, OFF)


def _stream() -> TextIO | None:
    return sys.__stderr__ if _mode() == TERMINAL else None  # None: tqdm's default, the notebook's stderr


def progress_bar(iterable: Iterable | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
                 disable: bool = False, **kwargs) -> tqdm:
    """A tqdm bar where progress belongs (see the module docstring); redrawn at most once a second."""
    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable or _mode() == OFF, file=_stream(),
                **kwargs)


def note(message: str) -> None:
    """A one-line progress message ('ablation 2/5: ...'): the terminal under the pipeline, else printed."""
    if _mode() == OFF:
        return
    print(message, file=_stream() or sys.stdout, flush=True)
