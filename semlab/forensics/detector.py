"""Real-vs-generated detectors: can a classifier tell generated SEM images from real ones?

The seed project trained such a classifier and found 0.96 (Pix2Pix) and 0.99 (CycleGAN)
accuracy although the similarity metrics looked good. This module answers the question
honestly for any pair of image sets:

* **Detectors** (registry `DETECTORS`, `build_detector(name)`): a small CNN that keeps
  full resolution in its first layer (so pixel-scale artifacts such as a checkerboard
  stay visible) and a torchvision ResNet-18 with a 1-channel first convolution (random
  init, or ImageNet-pretrained when `semlab.weights.resolve("resnet18")` finds the
  official file).
* **Input convention** (shared with `semlab.forensics.saliency`): a detector is a
  `torch.nn.Module` mapping a float32 batch ``(B, 1, H, W)`` with values in ``[0, 1]``
  to one logit per image, shape ``(B,)``; a positive logit means "generated". Any
  normalisation happens *inside* the module, so attribution methods see the image
  exactly as the user does.
* **Cross-validation grouped by source mask** (`grouped_folds`): a generated image and
  the real image whose mask it was generated from share a group id and always land in
  the same fold (sklearn `StratifiedGroupKFold`); otherwise a detector could score by
  recognising the *layout* it saw in training rather than the generator's fingerprint.
* **Out-of-fold predictions** for every image, and accuracy, balanced accuracy and ROC
  AUC each with a bootstrap confidence interval, plus the confusion matrix
  (`detection_metrics`, `DetectionResult`). The same machinery scores the spectrum-only
  detector of `semlab.forensics.spectrum`, so the two are directly comparable.

Training is deliberately small and fixed (Adam, a fixed number of epochs, no early
stopping on the test fold): a detector that needs tuning to find the fake is itself a
finding. Everything is seeded; on the CPU the same seed and thread count give the same
numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from semlab.arrays import as_gray_stack

__all__ = [
    "DETECTORS",
    "AUGMENTATIONS",
    "SmallCNN",
    "ResNet18Detector",
    "build_detector",
    "describe_detector",
    "grouped_folds",
    "train_detector",
    "predict_logits",
    "detection_metrics",
    "MetricCI",
    "DetectionResult",
    "assemble_result",
    "cross_validate_detector",
    "stack_sets",
]

REAL, GENERATED = 0, 1
CLASS_NAMES = ("real", "generated")
AUGMENTATIONS = (None, "flip", "flip_rot90")

# ImageNet mean/std averaged over RGB: the gray equivalent of torchvision's input
# normalisation, used by the ResNet whose first conv sums the RGB kernels.
_GRAY_MEAN, _GRAY_STD = 0.449, 0.226


# --------------------------------------------------------------------------- networks


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(min(8, c), c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


class SmallCNN(nn.Module):
    """A small, fast real-vs-generated CNN for 64-256 px gray images.

    Stage 1 is a stride-1 3x3 convolution without normalisation: generator artifacts
    live at the pixel scale (checkerboards at 0.5 cycles/px, upsampling traces at 0.25),
    and an early stride or pooling would alias them away before any filter can match
    them. Each of the ``depth - 1`` further stages is a stride-2 3x3 convolution with
    normalisation and ReLU, widening the receptive field for layout-scale cues (edge
    profiles, textures, noise structure).

    The decision is a linear function of the global average of *every* stage's
    features (with `pool_all`; otherwise of the last stage only). A faint artifact that
    covers the whole image is invisible in any patch yet clear in a whole-image
    average; pooling stage 1 directly lets the detector use it without the signal
    having to survive three strided layers, which made training several times faster
    on a planted checkerboard.

    Input: ``(B, 1, H, W)`` float in [0, 1]; output: ``(B,)`` logits, > 0 = generated.
    """

    def __init__(self, width: int = 16, depth: int = 4, max_width: int = 64, norm: str = "batch",
                 pool_all: bool = True):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"SmallCNN needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        stages: list[nn.Module] = [nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())]
        c, widths = width, [width]
        for _ in range(depth - 1):
            c_out = min(2 * c, max_width)
            stages.append(nn.Sequential(nn.Conv2d(c, c_out, 3, stride=2, padding=1, bias=False),
                                        _norm(norm, c_out), nn.ReLU()))
            c = c_out
            widths.append(c)
        self.stages = nn.ModuleList(stages)
        self.pool_all = pool_all
        self.head = nn.Linear(sum(widths) if pool_all else c, 1)
        # SEM images have a mean near 0.4 and a std near 0.15: this puts them near unit scale
        self.register_buffer("in_mean", torch.tensor(0.5))
        self.register_buffer("in_std", torch.tensor(0.25))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.in_mean) / self.in_std
        pooled = []
        for stage in self.stages:
            z = stage(z)
            if self.pool_all:
                pooled.append(z.mean(dim=(2, 3)))
        feats = torch.cat(pooled, dim=1) if self.pool_all else z.mean(dim=(2, 3))
        return self.head(feats).squeeze(1)


class ResNet18Detector(nn.Module):
    """torchvision's ResNet-18 with a 1-channel first convolution and one output logit.

    With `state_dict` (the official ImageNet weights) the RGB kernels of ``conv1`` are
    summed over the input channels: a gray image replicated to RGB gives the same
    response as the summed kernel on the gray image, so the pretrained filters keep
    their meaning; the input is normalised with the RGB-averaged ImageNet mean/std.
    Without it every layer is randomly initialised (torchvision's own init).

    Input: ``(B, 1, H, W)`` float in [0, 1]; output: ``(B,)`` logits, > 0 = generated.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if state_dict is not None:
            net.load_state_dict(state_dict)
        old = net.conv1
        conv1 = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        if state_dict is not None:
            with torch.no_grad():
                conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True))
        else:
            nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        net.conv1 = conv1
        net.fc = nn.Linear(net.fc.in_features, 1)
        self.net = net
        self.register_buffer("in_mean", torch.tensor(_GRAY_MEAN))
        self.register_buffer("in_std", torch.tensor(_GRAY_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.in_mean) / self.in_std).squeeze(1)


def _build_small_cnn(**kw) -> nn.Module:
    net = SmallCNN(**kw)
    net.semlab_info = {"name": "small_cnn", "pretrained": None, **kw}
    return net


def _load_torchvision_state(file: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """(state dict, verified) of torchvision's ResNet-18 file, read by
    `semlab.weights.load_checked` (sha256 against the official file, then
    ``weights_only=True``). Raises `semlab.weights.InvalidWeights` (a ValueError naming
    the file) for a non-official file (unless `$SEMLAB_ALLOW_UNVERIFIED_WEIGHTS=1`) or
    one that is not a ResNet-18 state dict."""
    from semlab.weights import load_checked

    loaded = load_checked("resnet18", file, download=False)
    return loaded.state_dict, loaded.verified is not False


def _build_resnet18(pretrained: bool | str = "auto", weights_path: str | Path | None = None) -> nn.Module:
    """`pretrained`: "auto" uses the ImageNet weights if `semlab.weights.resolve` finds
    them locally (never downloads) and random init otherwise; True requires them
    (raises `WeightsNotFound`, or downloads unless offline); False is random init. A
    file that is found but is not the official one, or not a valid checkpoint, raises
    `semlab.weights.InvalidWeights` in both modes."""
    from semlab.weights import WeightsNotFound, invalid, resolve

    if pretrained not in (True, False, "auto"):
        raise ValueError(f"pretrained must be True, False or 'auto', got {pretrained!r}")
    file: Path | None = None
    if pretrained is True:
        file = resolve("resnet18", weights_path)
    elif pretrained == "auto":
        try:
            file = resolve("resnet18", weights_path, download=False)
        except WeightsNotFound:
            file = None
    sd, verified = None, None
    if file is not None:
        sd, verified = _load_torchvision_state(file)
    try:
        net = ResNet18Detector(sd)
    except RuntimeError as exc:  # load_state_dict with missing / unexpected keys
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        raise invalid("resnet18", file, "; ".join(lines[:2])[:300] or "does not match torchvision's resnet18") from None
    net.semlab_info = {"name": "resnet18", "pretrained": str(file) if file else None, "verified": verified}
    return net


DETECTORS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": _build_small_cnn,
    "resnet18": _build_resnet18,
}


def build_detector(name: str, *, seed: int | None = None, **kwargs) -> nn.Module:
    """A fresh detector by name (see `DETECTORS`); `kwargs` go to its constructor
    (small_cnn: width, depth, max_width; resnet18: pretrained, weights_path). With
    `seed`, the random initialisation is drawn from that seed without touching torch's
    global RNG. The module carries ``semlab_info`` (name, pretrained weights file or
    None), so reports never call a randomly initialised ResNet "ImageNet"."""
    try:
        builder = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; valid names: {', '.join(DETECTORS)}") from None
    if seed is None:
        return builder(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return builder(**kwargs)


def describe_detector(net: nn.Module) -> str:
    """A label for tables: "small_cnn", "resnet18 (ImageNet)" or "resnet18 (random init)"."""
    info = getattr(net, "semlab_info", {}) or {}
    name = info.get("name", type(net).__name__)
    if name == "resnet18":
        return f"resnet18 ({'ImageNet' if info.get('pretrained') else 'random init'})"
    return name


# --------------------------------------------------------------------------- data


def stack_sets(real, fake, groups_real=None, groups_fake=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, H, W) float32, labels (N,) 0 real / 1 generated, groups (N,)) with the
    real images first. Group ids: given per set; if only `groups_real` is given and the
    sets have the same size, the generated image i shares group i's id (it was made
    from real image i's mask); if neither is given and the sizes match, image i of each
    set gets group i (pairs by index: a coarser grouping never leaks); with different
    sizes and no groups every image is its own group, with a warning."""
    xr = as_gray_stack(real, what="real images", single=False)
    xf = as_gray_stack(fake, what="generated images", single=False)
    if xr.shape[1:] != xf.shape[1:]:
        raise ValueError(f"real images are {xr.shape[1:]} but generated images are {xf.shape[1:]}")
    nr, nf = len(xr), len(xf)
    if groups_real is None and groups_fake is None:
        if nr == nf:
            gr = gf = np.arange(nr)
        else:
            warnings.warn(f"{nr} real vs {nf} generated images and no group ids: every image is its own "
                          "group, so a real image and the fake made from its mask may fall in different folds",
                          stacklevel=3)
            gr, gf = np.arange(nr), np.arange(nr, nr + nf)
    else:
        if groups_fake is None:
            if nr != nf:
                raise ValueError("groups_fake is required when the two sets differ in size")
            groups_fake = groups_real
        if groups_real is None:
            if nr != nf:
                raise ValueError("groups_real is required when the two sets differ in size")
            groups_real = groups_fake
        gr, gf = np.asarray(groups_real), np.asarray(groups_fake)
        if gr.shape != (nr,) or gf.shape != (nf,):
            raise ValueError(f"group ids: expected {nr} real and {nf} generated, got {gr.shape} and {gf.shape}")
    groups = np.concatenate([gr, gf])
    if groups.dtype.kind not in "iu":
        groups = groups.astype(str)
    images = np.concatenate([xr, xf])
    labels = np.concatenate([np.full(nr, REAL), np.full(nf, GENERATED)]).astype(np.int64)
    return images, labels, groups


def grouped_folds(labels: Sequence[int], groups: Sequence, n_splits: int = 5,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold split in which every group lies wholly in one test fold.

    sklearn's `StratifiedGroupKFold` (shuffled with `seed`); returns ``[(train_idx,
    test_idx), ...]``. Raises ValueError if there are fewer groups than folds or a
    training set lacks a class; the no-leak property is re-checked here, since a
    silent leak would inflate every number downstream.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels)
    g = np.asarray(groups)
    if y.shape != g.shape or y.ndim != 1:
        raise ValueError(f"labels and groups must be 1-D of one length, got {y.shape} and {g.shape}")
    n_groups = len(np.unique(g))
    if n_splits < 2 or n_splits > n_groups:
        raise ValueError(f"n_splits={n_splits}: need 2 <= n_splits <= number of groups ({n_groups})")
    with warnings.catch_warnings():  # "least populated class has only k members": we check below
        warnings.simplefilter("ignore", UserWarning)
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(seed))
        folds = [(np.sort(tr), np.sort(te)) for tr, te in cv.split(np.zeros(len(y)), y, g)]
    seen = np.zeros(len(y), dtype=np.int64)
    for k, (tr, te) in enumerate(folds):
        seen[te] += 1
        leaked = np.intersect1d(g[tr], g[te])
        if leaked.size:  # cannot happen with StratifiedGroupKFold; guards against API changes
            raise RuntimeError(f"fold {k}: groups {leaked[:5].tolist()} in both train and test")
        if len(np.unique(y[tr])) < 2:
            raise ValueError(f"fold {k}: the training set has only one class; use fewer folds or more images")
    if not np.all(seen == 1):
        raise RuntimeError("the folds do not cover every image exactly once")
    return folds


# --------------------------------------------------------------------------- training


def _augment(x: torch.Tensor, rng: np.random.Generator, mode: str | None) -> torch.Tensor:
    """Random flips (and rot90 for square images), one draw per image. Off by default:
    flips hide left/right scan asymmetry and rot90 the scan direction, both legitimate
    cues a generator may get wrong."""
    if mode is None:
        return x
    b = x.shape[0]
    fh = torch.from_numpy(rng.random(b) < 0.5)[:, None, None, None]
    fv = torch.from_numpy(rng.random(b) < 0.5)[:, None, None, None]
    x = torch.where(fh, x.flip(-1), x)
    x = torch.where(fv, x.flip(-2), x)
    if mode == "flip_rot90" and x.shape[-1] == x.shape[-2]:
        rot = torch.from_numpy(rng.random(b) < 0.5)[:, None, None, None]
        x = torch.where(rot, x.transpose(-1, -2), x)  # with the flips: all 8 symmetries of the square
    return x


def _random_crop(x: torch.Tensor, size: int | None, rng: np.random.Generator) -> torch.Tensor:
    """One random `size` x `size` window per image (no resizing, so pixel-scale
    artifacts keep their frequency); the batch unchanged without `size` or when the
    images are not larger than it."""
    if not size:
        return x
    h, w = x.shape[-2:]
    if size >= h and size >= w:
        return x
    c = int(size)
    ys = rng.integers(0, h - c + 1, size=x.shape[0])
    xs = rng.integers(0, w - c + 1, size=x.shape[0])
    return torch.stack([x[i, :, y:y + c, xx:xx + c] for i, (y, xx) in enumerate(zip(ys, xs))])


def _autocast(precision: str):
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def train_detector(images, labels, *, detector: str = "small_cnn", detector_kwargs: dict | None = None,
                   epochs: int = 10, batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0,
                   augment: str | None = None, precision: str = "fp32", seed: int = 0,
                   crop: int | None = None, progress: bool = False, _bar=None) -> tuple[nn.Module, list[float]]:
    """Train a fresh detector on `images` ((N, H, W) float32 in [0, 1]) and `labels`
    (0 real, 1 generated); returns ``(model in eval mode, mean training loss per epoch)``.

    Adam on the binary cross-entropy of the logit, weighted so both classes count
    equally whatever their sizes; a fixed number of epochs; optional bf16 autocast
    (weights stay fp32). Seeded: initialisation and batch order come from `seed` only.

    `crop` (px): train on one random `crop` x `crop` window of each image per step
    instead of the whole image (never resized). Both detectors pool globally, so the
    trained model still scores whole images; on a CPU this cuts the training cost by
    about (H / crop)**2 while pixel-scale artifacts stay visible. Layout-scale cues
    larger than the crop are seen only at evaluation, so keep crops several pattern
    pitches wide.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if crop is not None and (int(crop) != crop or crop < 8):
        raise ValueError(f"crop must be None or an integer >= 8 px, got {crop!r}")
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    n = len(y_all)
    n_pos = float(y_all.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError("train_detector needs both real and generated images")
    pos_weight = torch.tensor((n - n_pos) / n_pos)
    model = build_detector(detector, seed=seed, **(detector_kwargs or {}))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    bar = _bar
    own_bar = bar is None and progress
    if own_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"train {detector}")
    history: list[float] = []
    model.train()
    for _ in range(epochs):
        order = rng.permutation(n)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = torch.from_numpy(order[start:start + batch_size])
            if len(idx) < 2 and n >= 2:  # BatchNorm cannot train on a batch of one
                continue
            xb = _random_crop(_augment(x_all[idx], rng, augment), crop, rng)
            with _autocast(precision):
                logits = model(xb)
            loss = loss_fn(logits.float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / max(count, 1))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]:.3f}")
    if own_bar:
        bar.close()
    _recompute_batchnorm(model, x_all, batch_size, precision)
    model.eval()
    return model, history


@torch.no_grad()
def _recompute_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int, precision: str) -> None:
    """Replace BatchNorm running statistics by exact averages over the training images
    under the final weights. The default exponential averages lag behind the weights
    after the few hundred steps a detector trains for; evaluating with them shifted the
    logits and cost accuracy at an unchanged AUC."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for start in range(0, len(x), batch_size):
        with _autocast(precision):
            model(x[start:start + batch_size])
    for m, mom in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def predict_logits(model: nn.Module, images, *, batch_size: int = 64) -> np.ndarray:
    """Logits (N,) of a detector for (N, H, W) images in [0, 1] (fp32, eval mode)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).unsqueeze(1)
        out.append(model(xb).float().reshape(len(xb)))
    model.train(was_training)
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


# --------------------------------------------------------------------------- metrics


class MetricCI(NamedTuple):
    """A point estimate with its bootstrap confidence interval."""

    value: float
    lo: float
    hi: float


METRICS = ("accuracy", "balanced_accuracy", "roc_auc")


def _class_clusters(y: np.ndarray, groups) -> list[list[np.ndarray]] | None:
    """Per class (0, 1): the index arrays of its groups, or None when `groups` is None or
    every group holds at most one image of each class (then images are the units)."""
    if groups is None:
        return None
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have one label per image ({y.shape}), got {g.shape}")
    out = []
    for c in (0, 1):
        gc = g[y == c]
        idx = np.flatnonzero(y == c)
        _, inv, counts = np.unique(gc, return_inverse=True, return_counts=True)
        out.append([idx[inv == k] for k in range(len(counts))])
    return out if any(max(len(a) for a in cl) > 1 for cl in out) else None


def _auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC for each row of (B, n1) positive and (B, n0) negative scores: the
    Mann-Whitney statistic from average ranks (ties count one half), as sklearn's
    roc_auc_score but vectorised over bootstrap resamples."""
    from scipy.stats import rankdata

    n1, n0 = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def detection_metrics(labels, scores, *, threshold: float = 0.0, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0, groups=None) -> tuple[dict[str, MetricCI], np.ndarray]:
    """Accuracy, balanced accuracy and ROC AUC of `scores` (logits; predicted
    "generated" when score > `threshold`) against `labels` (0 real, 1 generated), each
    with a percentile-bootstrap CI, and the 2x2 confusion matrix (rows: true real,
    generated; columns: predicted real, generated).

    Point estimates are sklearn's. The bootstrap resamples images with replacement
    *within each class* (so every resample has both classes and the same balance, which
    AUC and balanced accuracy need); `semlab.metrics.pixel.bootstrap_ci` resamples a
    single vector of values and cannot do this. Images are treated as independent: a
    real/generated pair from one mask is not resampled as a unit. With `groups` (one
    label per image) in which some group holds more than one image of a class (sub-tiles
    of one image, tiles of one block of a frame), whole groups are resampled within each
    class instead (a cluster bootstrap), so correlated images do not narrow the CI.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of one length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (generated)")
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("detection_metrics needs both real and generated images")
    pred = (s > threshold).astype(np.int64)
    point = {"accuracy": accuracy_score(y, pred),
             "balanced_accuracy": balanced_accuracy_score(y, pred),
             "roc_auc": roc_auc_score(y, s)}
    cm = confusion_matrix(y, pred, labels=[0, 1])

    pos, neg = s[y == 1], s[y == 0]
    n1, n0 = len(pos), len(neg)
    rng = np.random.default_rng(seed)
    boot = {k: [] for k in METRICS}
    clusters = _class_clusters(y, groups)
    if clusters is not None:  # cluster bootstrap: whole groups within each class
        for _ in range(n_boot):
            pick = [np.concatenate([c[i] for i in rng.integers(0, len(c), len(c))]) for c in clusters]
            ns, ps = s[pick[0]], s[pick[1]]
            tpr, tnr = (ps > threshold).mean(), (ns <= threshold).mean()
            boot["accuracy"].append([(tpr * len(ps) + tnr * len(ns)) / (len(ps) + len(ns))])
            boot["balanced_accuracy"].append([(tpr + tnr) / 2])
            boot["roc_auc"].append(_auc_rows(ps[None, :], ns[None, :]))
    else:
        chunk = max(1, int(4e6 // (n1 + n0)))  # bound the (B, n) rank matrix
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            ps = pos[rng.integers(0, n1, size=(b, n1))]
            ns = neg[rng.integers(0, n0, size=(b, n0))]
            tpr = (ps > threshold).mean(axis=1)
            tnr = (ns <= threshold).mean(axis=1)
            boot["accuracy"].append((tpr * n1 + tnr * n0) / (n1 + n0))
            boot["balanced_accuracy"].append((tpr + tnr) / 2)
            boot["roc_auc"].append(_auc_rows(ps, ns))
    a = (1 - level) / 2
    out = {}
    for k in METRICS:
        v = np.concatenate(boot[k]) if boot[k] else np.array([point[k]])
        lo, hi = np.quantile(v, [a, 1 - a])
        out[k] = MetricCI(float(point[k]), float(lo), float(hi))
    return out, cm


# --------------------------------------------------------------------------- results


@dataclass
class DetectionResult:
    """Cross-validated real-vs-generated detection of one detector on one pair of sets.

    Arrays are per image, real images first: `labels` (0 real, 1 generated), `groups`,
    `index` (position within its own set), `fold` (the fold in which it was *tested*)
    and `scores` (its out-of-fold logit, > 0 = generated). `models[k]` is the detector
    trained without fold k (torch modules in eval mode for the CNNs, sklearn pipelines
    for the spectrum detector); `folds[k]` = (train_idx, test_idx).
    """

    detector: str
    labels: np.ndarray
    groups: np.ndarray
    index: np.ndarray
    fold: np.ndarray
    scores: np.ndarray
    metrics: dict[str, MetricCI]
    confusion: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    models: list[Any] = field(default_factory=list, repr=False)
    fold_metrics: list[dict[str, float]] = field(default_factory=list)
    history: list[list[float]] = field(default_factory=list, repr=False)
    config: dict[str, Any] = field(default_factory=dict)
    level: float = 0.95

    @property
    def probabilities(self) -> np.ndarray:
        """P(generated) per image: the sigmoid of the out-of-fold logit."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.scores, -500, 500)))

    @property
    def predictions(self) -> np.ndarray:
        return (self.scores > self.config.get("threshold", 0.0)).astype(np.int64)

    @property
    def n_real(self) -> int:
        return int((self.labels == REAL).sum())

    @property
    def n_generated(self) -> int:
        return int((self.labels == GENERATED).sum())

    def to_rows(self) -> list[dict[str, Any]]:
        """One tidy row per metric: detector, metric, value, ci_low, ci_high, level,
        n_real, n_generated, n_splits."""
        return [{"detector": self.detector, "metric": k, "value": m.value, "ci_low": m.lo, "ci_high": m.hi,
                 "level": self.level, "n_real": self.n_real, "n_generated": self.n_generated,
                 "n_splits": len(self.folds)} for k, m in self.metrics.items()]

    def prediction_rows(self) -> list[dict[str, Any]]:
        """One row per image: set, index, group, fold, logit, p_generated, predicted, correct."""
        p, pred = self.probabilities, self.predictions
        return [{"set": CLASS_NAMES[int(y)], "index": int(i), "group": g.item() if hasattr(g, "item") else g,
                 "fold": int(f), "logit": float(s), "p_generated": float(pp), "predicted": CLASS_NAMES[int(q)],
                 "correct": bool(q == y)}
                for y, i, g, f, s, pp, q in zip(self.labels, self.index, self.groups, self.fold, self.scores, p, pred)]

    def table(self) -> str:
        """A Markdown table of the metrics with their CIs (names escaped with `md_escape`)."""
        from semlab.textfmt import md_escape

        pct = round(100 * self.level)
        lines = [f"| detector | metric | value | {pct}% CI |", "|---|---|---|---|"]
        for r in self.to_rows():
            lines.append(f"| {md_escape(r['detector'])} | {md_escape(r['metric'])} | {r['value']:.3f} "
                         f"| [{r['ci_low']:.3f}, {r['ci_high']:.3f}] |")
        return "\n".join(lines)

    def summary(self) -> str:
        acc, auc = self.metrics["accuracy"], self.metrics["roc_auc"]
        return (f"{self.detector}: accuracy {acc.value:.3f} [{acc.lo:.3f}, {acc.hi:.3f}], "
                f"AUC {auc.value:.3f} [{auc.lo:.3f}, {auc.hi:.3f}] "
                f"({self.n_real} real, {self.n_generated} generated, {len(self.folds)}-fold grouped CV)")

    def write(self, folder, stem: str | None = None) -> dict[str, Path]:
        """Write `<stem>_metrics.json` (metrics, confusion, config, per-fold metrics) and
        `<stem>_predictions.csv` (per image) atomically; returns the paths."""
        from semlab.io import write_csv_atomic, write_json_atomic

        folder = Path(folder)
        stem = stem or self.detector.replace(" ", "_").replace("(", "").replace(")", "")
        js = write_json_atomic(folder / f"{stem}_metrics.json", {
            "detector": self.detector, "level": self.level,
            "metrics": {k: m._asdict() for k, m in self.metrics.items()},
            "confusion": {"rows_true": list(CLASS_NAMES), "cols_predicted": list(CLASS_NAMES),
                          "matrix": self.confusion.tolist()},
            "fold_metrics": self.fold_metrics, "config": self.config,
            "n_real": self.n_real, "n_generated": self.n_generated})
        rows = self.prediction_rows()
        fields = ["set", "index", "group", "fold", "logit", "p_generated", "predicted", "correct"]
        csv = write_csv_atomic(folder / f"{stem}_predictions.csv", rows, fields)
        return {"metrics": js, "predictions": csv}


def assemble_result(detector: str, labels, groups, scores, folds, *, models=(), history=(),
                    config: dict | None = None, threshold: float = 0.0, n_boot: int = 2000,
                    level: float = 0.95, seed: int = 0) -> DetectionResult:
    """Metrics, per-fold metrics and bookkeeping from out-of-fold scores (shared by the
    CNN and the spectrum-only detector, so both are scored identically)."""
    from sklearn.metrics import accuracy_score

    y = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    fold = np.full(len(y), -1, dtype=np.int64)
    fold_metrics = []
    for k, (_, te) in enumerate(folds):
        fold[te] = k
        row = {"fold": k, "n_test": int(len(te)),
               "accuracy": float(accuracy_score(y[te], scores[te] > threshold))}
        if len(np.unique(y[te])) == 2:
            from sklearn.metrics import roc_auc_score

            row["roc_auc"] = float(roc_auc_score(y[te], scores[te]))
        fold_metrics.append(row)
    metrics, cm = detection_metrics(y, scores, threshold=threshold, n_boot=n_boot, level=level, seed=seed,
                                    groups=groups)
    index = np.concatenate([np.arange((y == REAL).sum()), np.arange((y == GENERATED).sum())])
    cfg = dict(config or {})
    cfg.setdefault("threshold", threshold)
    return DetectionResult(detector=detector, labels=y, groups=np.asarray(groups), index=index, fold=fold,
                           scores=scores, metrics=metrics, confusion=cm, folds=list(folds), models=list(models),
                           fold_metrics=fold_metrics, history=[list(h) for h in history], config=cfg, level=level)


def cross_validate_detector(real, fake, groups_real=None, groups_fake=None, *, detector: str = "small_cnn",
                            detector_kwargs: dict | None = None, n_splits: int = 5, epochs: int = 10,
                            batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0,
                            augment: str | None = None, precision: str = "fp32", seed: int = 0,
                            n_boot: int = 2000, level: float = 0.95, keep_models: bool = True,
                            crop: int | None = None, progress: bool = True) -> DetectionResult:
    """Grouped, stratified k-fold cross-validation of a detector on real vs generated images.

    `real`, `fake`: lists or (N, H, W) arrays of float32 images in [0, 1] of one size;
    `groups_real` / `groups_fake`: source-mask ids (see `stack_sets` for the defaults:
    with equal-size sets and no ids, image i of each set forms a pair). For each fold a
    fresh detector (seeded by `seed` and the fold) is trained on the other folds and
    scores the held-out images, so every image gets exactly one out-of-fold logit.
    Returns a `DetectionResult`; with `keep_models` its `models[k]` are the per-fold
    detectors (for `semlab.forensics.saliency`: explain image i with
    ``models[result.fold[i]]``, which never saw it). `crop`: train on random windows
    of that size (see `train_detector`); held-out images are always scored whole.
    """
    images, labels, groups = stack_sets(real, fake, groups_real, groups_fake)
    folds = grouped_folds(labels, groups, n_splits=n_splits, seed=seed)
    scores = np.full(len(labels), np.nan)
    models, history = [], []
    name = detector
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_splits * epochs, desc=f"{detector} {n_splits}-fold CV")
    try:
        for k, (tr, te) in enumerate(folds):
            model, hist = train_detector(images[tr], labels[tr], detector=detector, detector_kwargs=detector_kwargs,
                                         epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                         augment=augment, precision=precision, seed=seed * 1000 + k, crop=crop,
                                         _bar=bar)
            scores[te] = predict_logits(model, images[te])
            if k == 0:
                name = describe_detector(model)  # e.g. "resnet18 (random init)": never mislabelled
            history.append(hist)
            if keep_models:
                models.append(model)
            else:
                del model
    finally:
        if bar is not None:
            bar.close()
    config = {"detector": detector, "detector_kwargs": detector_kwargs or {}, "n_splits": n_splits, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "augment": augment,
              "precision": precision, "seed": seed, "n_boot": n_boot, "crop": crop,
              "image_shape": list(images.shape[1:])}
    return assemble_result(name, labels, groups, scores, folds, models=models, history=history, config=config,
                           n_boot=n_boot, level=level, seed=seed)
