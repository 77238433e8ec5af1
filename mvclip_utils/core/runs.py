"""The run directory layout: the only module that knows where a run's files live.

    outputs/<run>/configs/NN_slug.yaml (the config each notebook last ran with)
    outputs/<run>/dataset/{objects,views}.parquet, images/<oid>/<vid>.png, masks/<oid>/<vid>.png
    outputs/<run>/backbone/, embeddings/, metrics/, models/<method>/
    outputs/<run>/notebooks/NN_slug.ipynb, reports/NN_slug.html, index.html
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    def index_html(self) -> Path:
        return self.root / "index.html"

    @property
    def pipeline_log(self) -> Path:
        return self.root / "pipeline.json"

    @property
    def configs(self) -> Path:
        """The validated config each notebook last ran with, one YAML per notebook."""
        return self.root / "configs"

    def notebook_config(self, stem: str) -> Path:
        return self.configs / f"{stem}.yaml"

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

    def render_shard_record(self, shard: int, n_shards: int) -> Path:
        """Written by a render shard once all its objects are done; the merge needs every one."""
        return self.dataset / "shards" / f"render-{shard}-of-{n_shards}.json"

    # --- later stages
    @property
    def backbone(self) -> Path:
        return self.root / "backbone"

    @property
    def backbone_record(self) -> Path:
        """Which backbone the run uses (name, identity): what reports and the index print."""
        return self.backbone / "backbone.json"

    def backbone_checkpoint(self, slug: str) -> Path:
        """A backbone pretrained in this run (open_clip state dict), one file per backbone slug ..."""
        return self.backbone / f"{slug}.pt"

    def backbone_vocabulary(self, slug: str) -> Path:
        """... the word vocabulary its text tower was trained with ..."""
        return self.backbone / f"{slug}-vocab.json"

    def pretrain_record(self, slug: str) -> Path:
        """... and what it was trained from (fingerprints, checkpoint hash, loss curve)."""
        return self.backbone / f"{slug}-pretrain.json"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def embeddings_file(self, backbone_slug: str) -> Path:
        return self.embeddings / f"{backbone_slug}.npz"

    def embedding_shard(self, backbone_slug: str, shard: int, n_shards: int) -> Path:
        """One shard's image embeddings; `embed --merge N` joins all N into `embeddings_file`."""
        return self.embeddings / "shards" / f"{backbone_slug}-{shard}-of-{n_shards}.npz"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def results_table(self) -> Path:
        return self.metrics / "results.csv"

    @property
    def stale_results_table(self) -> Path:
        """Rows left out of results.csv: made from another backbone or dataset."""
        return self.metrics / "stale_results.csv"

    @property
    def seed_table(self) -> Path:
        """Each method's mean and standard error over a seeds sweep of this run (`mvclip collect --into`)."""
        return self.metrics / "seeds.csv"

    @property
    def dataset_seed_table(self) -> Path:
        """Each method's mean and standard error over runs with other dataset/split seeds (`make seeds`):
        the variance of which objects, categories and groups are drawn, beside `seed_table`'s of training."""
        return self.metrics / "dataset_seeds.csv"

    def metrics_file(self, method: str) -> Path:
        """One JSON per method: its metrics row and the fingerprints of what it was made from."""
        return self.metrics / f"{method}.json"

    def per_object_scores(self, method: str) -> Path:
        """A method's scores per test object and pose group under the protocol (`evaluation.transfer`),
        written with its metrics JSON: what the paired comparisons resample."""
        return self.metrics / "per_object" / f"{method}.parquet"

    def metrics_files(self) -> list[Path]:
        """The per-method JSONs (results rows), not the probes' file."""
        return sorted(p for p in self.metrics.glob("*.json") if p != self.probes_file) if self.metrics.exists() else []

    @property
    def probes_file(self) -> Path:
        """Notebook 09's results per backbone variant: zero-shot, linear probe, few-shot summaries."""
        return self.metrics / "probes.json"

    @property
    def probes_table(self) -> Path:
        """Every few-shot fit: backbone, k, init, seed, shots drawn from, evaluated on, accuracy."""
        return self.metrics / "probes.csv"

    def ablation_file(self, study: str, variant: str) -> Path:
        """One JSON per ablation variant (e.g. of omniview_tuning): kept out of results.csv."""
        return self.metrics / "ablations" / study / f"{variant}.json"

    def ablation_table(self, study: str) -> Path:
        return self.metrics / f"{study}_ablations.csv"

    def model_dir(self, method: str) -> Path:
        return self.root / "models" / method

    def model_weights(self, method: str) -> Path:
        return self.model_dir(method) / "model.pt"

    def adapters(self, method: str) -> Path:
        """The trainable weights of a method that tunes the backbone (LoRA, VIFormer)."""
        return self.model_dir(method) / "adapters.pt"

    def training_curves(self, method: str) -> Path:
        return self.model_dir(method) / "curves.json"

    # --- notebooks and reports
    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def executed_notebooks(self) -> list[Path]:
        return sorted(self.notebooks.glob("*.ipynb")) if self.notebooks.exists() else []

    def executed_notebook(self, stem: str) -> Path:
        return self.notebooks / f"{stem}.ipynb"

    def report(self, stem: str) -> Path:
        return self.reports / f"{stem}.html"

    @property
    def combined_report(self) -> Path:
        """Every notebook's report in one page, for the write-up."""
        return self.root / "report.html"

    @property
    def figures(self) -> Path:
        """Every figure of the reports as files: `NN_slug-what.pdf`, `.svg` and a 300-dpi `.png`."""
        return self.root / "figures"

    def figure_file(self, name: str, extension: str) -> Path:
        return self.figures / f"{name}.{extension}"

    @property
    def tables(self) -> Path:
        """The summary's tables for a paper: CSV and LaTeX (booktabs)."""
        return self.root / "tables"


TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path` to write to; it replaces `path` only if the block succeeds.

    Readers never see a partial file, and an interrupted writer leaves only a
    `.<name>.<random>.tmp` file that `sweep_temp_files` removes on the next run.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a write() that failed names no file; the message must
            raise _naming(exc, path) from exc
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """`exc` naming `path` (the file being written), of the same errno and so the same subclass."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path)) if exc.errno else exc


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed write: the path, what went wrong, and the fix. Every file of a run is
    written atomically, so what was finished is kept and nothing half-written is read by a rerun."""
    where = exc.filename or "the run directory"
    if exc.errno in _NO_SPACE:
        return (f"no space left on the disk that holds {where}: free space there (or pass --run-dir on a disk "
                f"with room) and rerun; finished work is kept, nothing half-written is used")
    if exc.errno in _NOT_WRITABLE:
        return (f"cannot write {where} ({exc.strerror}): make its folder writable (or pass --run-dir a "
                f"writable folder) and rerun; finished work is kept, nothing half-written is used")
    return f"{exc.strerror or exc}: {where}" if exc.filename else str(exc)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def atomic_write_parquet(df, path: Path) -> None:
    """`DataFrame.to_parquet` through a temp file + rename."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch  # late: render workers import this module, and torch costs them 1.5 s and memory each
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_savez(path: Path, **arrays: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to a name
            np.savez(fh, **arrays)


def sweep_temp_files(root: Path) -> list[Path]:
    """Remove the temp files interrupted atomic writes left under `root` (run at the start of a run)."""
    swept = [p for p in Path(root).rglob(f".*{TEMP_SUFFIX}") if p.is_file()] if Path(root).exists() else []
    for p in swept:
        p.unlink(missing_ok=True)
    return swept


def digest(value: Any) -> str:
    """A short, stable hash of any JSON-able value (config sections, lists of fingerprints)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A short hash of a file's bytes (checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class StaleArtifactError(RuntimeError):
    """An artifact made from other inputs than the run's current ones; says which notebook to rerun."""

    def __init__(self, artifact: Path | str, why: str, rerun: str):
        super().__init__(f"{artifact} is stale: {why}. Rerun notebook {rerun} "
                         f"(mvclip run --config ... --only {rerun[:2]}-12)")
        self.artifact, self.rerun = str(artifact), rerun


VARIANT_FILE = "sweep_variant.json"  # in each variant's run directory: what made it


def read_variant(run_dir: Path | str) -> dict[str, Any]:
    """The overrides that made a run ({} for a run that is not a sweep variant)."""
    path = Path(run_dir) / VARIANT_FILE
    return json.loads(path.read_text())["overrides"] if path.exists() else {}
