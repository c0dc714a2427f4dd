"""In-memory uint8 training data and a resumable, seeded batch order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semlab import io
from semlab.data.datasets import load_dataset


@dataclass
class ArrayData:
    """Images and masks of one split as uint8 arrays (N, H, W): a 3,000-image 256-px
    dataset is ~400 MB, read once; batches are converted to tensors on the fly."""

    images: np.ndarray
    masks: np.ndarray | None
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @classmethod
    def from_dataset(cls, path, split: str = "train") -> "ArrayData":
        ds = load_dataset(path)
        ids = ds.split(split)
        if not ids:
            raise ValueError(f"{path}: no usable images in split {split!r}")
        imgs = np.stack([io.to_uint8(ds.image(i)) for i in ids])
        masks = np.stack([ds.mask(i) for i in ids]) if ds.labeled else None
        if masks is not None and masks.shape != imgs.shape:
            raise ValueError(f"{path}: masks {masks.shape} and images {imgs.shape} differ")
        if imgs.shape[1] != imgs.shape[2] or imgs.shape[1] & (imgs.shape[1] - 1):
            raise ValueError(f"{path}: images are {imgs.shape[1]}x{imgs.shape[2]}; training needs square, "
                             "power-of-two sizes (tile or resize the dataset)")
        return cls(imgs, masks, ids)


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return math.ceil(math.ceil(n / world) / batch_size)


def epoch_order(n: int, seed: int, epoch: int, stream: int = 0, rank: int = 0, world: int = 1) -> np.ndarray:
    """The item order of an epoch: a permutation fixed by (seed, epoch, stream), so a
    resumed run continues with exactly the batches it would have seen. With `world`
    processes, rank r takes every world-th item of the (padded) permutation, as
    torch's DistributedSampler does."""
    perm = np.random.default_rng([int(seed), int(epoch), int(stream)]).permutation(n)
    if world > 1:
        total = math.ceil(n / world) * world
        perm = np.concatenate([perm, perm[: total - n]])[rank::world]
    return perm


def batch_indices(order: np.ndarray, batch_size: int, step_in_epoch: int) -> np.ndarray:
    return order[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
