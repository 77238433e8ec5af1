"""CIFAR-100, the seed write-up's own benchmark (`clip-feature-probes.txt`), for notebook 09.

The files are CIFAR-100's python pickles (`cifar-100-python/{train,test,meta}`), fetched
once by torchvision's `CIFAR100(download=True)` when missing and read here the way
torchvision reads them, so a test can write a small dataset in the same format and run
every step but the download.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.progress import progress_bar

FOLDER = "cifar-100-python"


@dataclass
class CifarSplit:
    images: np.ndarray  # [N, 32, 32, 3] uint8
    labels: np.ndarray  # [N] fine label
    class_names: list[str]


def load_cifar100(root: str | Path, train: bool, download: bool = True) -> CifarSplit:
    """One split of CIFAR-100 from `root` (torchvision's layout), downloading it when missing and allowed."""
    root = Path(root).expanduser()
    base = root / FOLDER
    name = "train" if train else "test"
    if not (base / name).is_file() or not (base / "meta").is_file():
        if not download:
            raise FileNotFoundError(f"{base / name} is missing and dataset.cifar100.download is false: put "
                                    f"CIFAR-100's python version under {root} or allow the download")
        import torchvision  # late: heavy: only this step needs it

        torchvision.datasets.CIFAR100(str(root), train=train, download=True)  # fetches and checks the archive
    with open(base / name, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    with open(base / "meta", "rb") as f:
        class_names = list(pickle.load(f, encoding="latin1")["fine_label_names"])
    images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return CifarSplit(np.ascontiguousarray(images), np.asarray(entry["fine_labels"], dtype=np.int64), class_names)


def write_cifar100(root: str | Path, train: CifarSplit, test: CifarSplit) -> Path:
    """Write a dataset in CIFAR-100's exact on-disk format (what the tests probe end to end)."""
    base = Path(root) / FOLDER
    base.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", train), ("test", test)):
        entry = {"filenames": [f"{name}_{i}.png" for i in range(len(split.labels))], "batch_label": name,
                 "fine_labels": split.labels.tolist(), "coarse_labels": [0] * len(split.labels),
                 "data": split.images.transpose(0, 3, 1, 2).reshape(len(split.labels), -1)}
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": train.class_names, "coarse_label_names": ["all"]}, f)
    return base


@torch.no_grad()
def embed_images(backbone, images: np.ndarray, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """[N, D] normalised embeddings of uint8 images [N, H, W, 3] (resized to the model's input)."""
    out = []
    for i in progress_bar(range(0, len(images), batch_size), desc=f"embedding {len(images)} CIFAR images",
                  disable=not progress):
        batch = torch.from_numpy(images[i:i + batch_size])
        out.append(backbone.encode_images(backbone.uint8_to_input(batch)).float().cpu())
    return torch.cat(out).numpy()


def held_out(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of a `fraction` of each class's items (seeded): the validation split taken from train."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        mask[rng.choice(members, size=max(1, int(round(fraction * len(members)))), replace=False)] = True
    return mask
