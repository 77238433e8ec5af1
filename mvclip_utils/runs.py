"""The run directory layout: the only module that knows where a run's files live.

    outputs/<run>/config.yaml
    outputs/<run>/dataset/{objects,views}.parquet, images/<oid>/<vid>.png, masks/<oid>/<vid>.png
    outputs/<run>/backbone/, embeddings/, metrics/, models/<method>/
    outputs/<run>/notebooks/NN_slug.ipynb, reports/NN_slug.html, index.html
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUTS_DIR = REPO_ROOT / "outputs"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def for_run(cls, run_name: str, run_dir: Path | str | None = None) -> "RunLayout":
        """`run_dir` if given, else outputs/<run_name>."""
        return cls(Path(run_dir).resolve() if run_dir else OUTPUTS_DIR / run_name)

    # --- top level
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def index_html(self) -> Path:
        return self.root / "index.html"

    @property
    def pipeline_log(self) -> Path:
        return self.root / "pipeline.json"

    # --- dataset
    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def objects_table(self) -> Path:
        return self.dataset / "objects.parquet"

    @property
    def views_table(self) -> Path:
        return self.dataset / "views.parquet"

    @property
    def images(self) -> Path:
        return self.dataset / "images"

    @property
    def masks(self) -> Path:
        return self.dataset / "masks"

    @property
    def render_status(self) -> Path:
        """One JSON per finished (rendered or failed) object: its presence marks the object done."""
        return self.dataset / "status"

    @property
    def staging(self) -> Path:
        """Per-object scratch space; a whole object is moved out of it only once complete."""
        return self.dataset / ".staging"

    @property
    def render_logs(self) -> Path:
        """What Blender writes to stderr in each render worker."""
        return self.dataset / "render_logs"

    @property
    def assets(self) -> Path:
        """Exported/downloaded 3D files (e.g. GLBs) the renderer reads."""
        return self.dataset / "assets"

    def image_dir(self, object_id: str) -> Path:
        return self.images / object_id

    def mask_dir(self, object_id: str) -> Path:
        return self.masks / object_id

    def image_path(self, object_id: str, view_id: str) -> Path:
        return self.images / object_id / f"{view_id}.png"

    def mask_path(self, object_id: str, view_id: str) -> Path:
        return self.masks / object_id / f"{view_id}.png"

    def status_path(self, object_id: str) -> Path:
        return self.render_status / f"{object_id}.json"

    # --- later stages
    @property
    def backbone(self) -> Path:
        return self.root / "backbone"

    @property
    def backbone_record(self) -> Path:
        """Which backbone the run uses (name, identity): what reports and the index print."""
        return self.backbone / "backbone.json"

    def backbone_checkpoint(self, model: str) -> Path:
        """A backbone pretrained in this run (open_clip state dict) ..."""
        return self.backbone / f"{model}.pt"

    def backbone_vocabulary(self, model: str) -> Path:
        """... and the word vocabulary its text tower was trained with."""
        return self.backbone / f"{model}-vocab.json"

    @property
    def pretrain_record(self) -> Path:
        return self.backbone / "pretrain.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def embeddings_file(self, backbone_slug: str) -> Path:
        return self.embeddings / f"{backbone_slug}.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def results_table(self) -> Path:
        return self.metrics / "results.csv"

    def model_dir(self, method: str) -> Path:
        return self.root / "models" / method

    # --- notebooks and reports
    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def executed_notebook(self, stem: str) -> Path:
        return self.notebooks / f"{stem}.ipynb"

    def report(self, stem: str) -> Path:
        return self.reports / f"{stem}.html"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_parquet(df, path: Path) -> None:
    """`DataFrame.to_parquet` through a temp file + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
