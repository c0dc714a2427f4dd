"""semlab.forensics.injection: noise injection, the validation-split choice of a noise
model, and the study's split handling (notebook 45)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from semlab.forensics.injection import choose_models, inject, split_sets
from semlab.forensics.study_types import FakeSets


class Gauss:
    """A white Gaussian noise model of known sigma (the study only calls `sample`)."""

    def __init__(self, sigma: float):
        self.sigma = sigma

    kind = "test-gauss"

    def check_use(self, **kw):
        return []

    def sample(self, clean, rng):
        return np.clip(clean + rng.normal(0.0, self.sigma, clean.shape), 0, 1).astype(np.float32)


def _clean(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = ndimage.gaussian_filter(rng.random((size, size)), 3)
        x = (x > np.median(x)).astype(np.float32) * 0.4 + 0.3
        out.append(ndimage.gaussian_filter(x, 1.0))
    return np.stack(out).astype(np.float32)


def _sets(n: int = 40, sigma: float = 0.05, seed: int = 0) -> tuple[FakeSets, np.ndarray]:
    clean = _clean(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    real = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 1).astype(np.float32)
    ids = [f"t{k:03d}" for k in range(n)]
    sets = FakeSets(dataset=Path("mem"), splits=("val",), ids=ids, real=real, masks=np.zeros_like(real, np.uint8),
                    fakes={"G": clean.copy()}, sources={"G": "noise-free"}, missing={})
    return sets, clean


def test_inject_is_deterministic_per_seed_and_add_differs_from_replace():
    sets, clean = _sets(8)
    noisy = sets.real  # clean + N(0, 0.05)
    m = Gauss(0.02)
    a1, a2 = inject(m, noisy, mode="add", seed=3), inject(m, noisy, mode="add", seed=3)
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, inject(m, noisy, mode="add", seed=4))
    # add: the image's own noise stays and the model's adds in quadrature
    assert np.std(a1 - clean) == pytest.approx(np.hypot(0.05, 0.02), rel=0.12)
    # replace: the own noise is removed first, so what is left is close to the model's level
    r = inject(m, noisy, mode="replace", seed=3)
    assert np.std(r - clean) < 0.7 * np.std(a1 - clean)
    with pytest.raises(ValueError, match="mode"):
        inject(m, noisy, mode="swap")


def test_choose_models_picks_the_model_that_matches_the_real_noise():
    val, _ = _sets(48, sigma=0.05)
    sel = choose_models(val, {"none": Gauss(0.0), "right": Gauss(0.05), "far": Gauss(0.2)}, seed=0, n_splits=4)
    assert sel["G"]["chosen"] == "right"
    s = sel["G"]["scores"]
    # noise-free images against noisy real tiles: trivially separable; the matched noise is not
    assert s["none"]["balanced_accuracy"] > 0.9 and s["far"]["balanced_accuracy"] > 0.9
    assert s["right"]["balanced_accuracy"] < 0.75
    assert s["right"]["ci_low"] <= s["right"]["balanced_accuracy"] <= s["right"]["ci_high"]


def test_split_sets_cuts_val_and_test_by_the_real_split():
    sets, _ = _sets(10)
    sets.fold_groups = [f"g{k // 2}" for k in range(10)]

    class Split:  # a RealSplit's tiles
        tiles = {"train": [], "val": sets.ids[:4], "test": sets.ids[4:]}

    parts = split_sets(sets, "mem", Split())
    assert parts["val"].ids == sets.ids[:4] and parts["test"].ids == sets.ids[4:]
    assert np.array_equal(parts["test"].fakes["G"], sets.fakes["G"][4:])
    assert parts["test"].fold_groups == sets.fold_groups[4:] and parts["test"].splits == ("test",)
