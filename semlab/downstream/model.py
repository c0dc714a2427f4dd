"""The downstream segmenter: a small U-Net that predicts the canonical classes of an SEM image.

Architecture (Ronneberger et al. 2015, slimmed): `depth` stride-2 max-pool levels, each
level two 3x3 convolutions + BatchNorm + ReLU; the decoder upsamples (nearest x2),
concatenates the skip and applies the same double convolution; a 1x1 convolution gives
one logit per canonical class (`semlab.labels`, 4 classes). Channels double per level
from `width`. Sizes: width 16, depth 3: 0.49 M parameters; width 16, depth 4: 1.9 M.

`space_to_depth` (default 2) folds each 2x2 block of pixels into 4 input channels
(`pixel_unshuffle`) and the head predicts the classes of every pixel of the block
(`pixel_shuffle` back to full resolution), so the U-Net runs on a grid 4x smaller:
on a 2-core CPU, training at full resolution is bound by memory traffic of the
full-size activations (width 8 is no faster than width 16 there), and this fold makes
it about 3-4x faster while every output pixel keeps its own prediction.

Like the GANs (`semlab.train`), it trains under bf16 autocast on CPUs that support it
and in channels-last memory format. Input: gray images in [0, 1] (uint8 is scaled),
seen by the network in [-1, 1] (`semlab.models.to_model`).

A trained segmenter is a folder (`save_segmenter` / `load_segmenter`):

    model.pt     {"format": "semlab-segmenter-1", "config": {...}, "state_dict": {...}},
                 read with torch.load(weights_only=True)
    model.json   the same config plus what it was trained on, for people

`predict(model, images)` pads each image to a multiple of `model.multiple` (reflection), runs
the network in eval mode and returns the label maps (N, H, W) uint8.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semlab import io
from semlab.labels import NUM_CLASSES

__all__ = ["SegmenterConfig", "Segmenter", "build_segmenter", "predict", "predict_logits", "save_segmenter",
           "load_segmenter", "autocast", "FORMAT", "MODEL_FILE", "CONFIG_FILE"]

FORMAT = "semlab-segmenter-1"
MODEL_FILE = "model.pt"
CONFIG_FILE = "model.json"


@dataclass(frozen=True)
class SegmenterConfig:
    """The network: base `width` (channels of the first level), `depth` (downsamplings),
    `num_classes`, `precision` ("bf16" autocast or "fp32") and `channels_last`."""

    width: int = 16
    depth: int = 3
    space_to_depth: int = 2
    num_classes: int = NUM_CLASSES
    precision: str = "bf16"
    channels_last: bool = True

    def __post_init__(self):
        if int(self.width) < 1 or int(self.depth) < 1 or int(self.depth) > 7:
            raise ValueError(f"segmenter width must be >= 1 and depth in 1..7, got width={self.width}, "
                             f"depth={self.depth}")
        if self.space_to_depth not in (1, 2, 4):
            raise ValueError(f"space_to_depth must be 1, 2 or 4, got {self.space_to_depth}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")


def _double(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Segmenter(nn.Module):
    """The U-Net of the module docstring; `forward(x)` takes (B, 1, H, W) in [-1, 1] with
    H and W multiples of `multiple` (space_to_depth * 2**depth) and returns logits
    (B, num_classes, H, W)."""

    def __init__(self, cfg: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        self.cfg = cfg
        ch = [cfg.width * 2 ** i for i in range(cfg.depth + 1)]
        f2 = cfg.space_to_depth ** 2
        self.down = nn.ModuleList([_double(f2, ch[0])] + [_double(ch[i - 1], ch[i]) for i in range(1, cfg.depth + 1)])
        self.up = nn.ModuleList([_double(ch[i + 1] + ch[i], ch[i]) for i in reversed(range(cfg.depth))])
        self.head = nn.Conv2d(ch[0], cfg.num_classes * f2, 1)
        self.pool = nn.MaxPool2d(2)

    @property
    def multiple(self) -> int:
        return 2 ** self.cfg.depth * self.cfg.space_to_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cfg.space_to_depth
        if f > 1:
            x = nn.functional.pixel_unshuffle(x, f)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            s = skips.pop()
            x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, s.to(x.dtype)], dim=1))
        x = self.head(x)
        return nn.functional.pixel_shuffle(x, f) if f > 1 else x


def build_segmenter(cfg: SegmenterConfig | None = None, *, seed: int | None = None, **kw) -> Segmenter:
    """A new segmenter (`cfg`, or SegmenterConfig(**kw)); `seed` fixes its initial weights
    (torch's default initialisation, drawn under a forked RNG), in channels-last format
    when the config says so."""
    cfg = cfg or SegmenterConfig(**kw)
    ctx = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with ctx:
        if seed is not None:
            torch.manual_seed(int(seed))
        net = Segmenter(cfg)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def autocast(cfg: SegmenterConfig):
    """bf16 autocast on the CPU for precision "bf16", else a no-op context."""
    if cfg.precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(images: np.ndarray | torch.Tensor, cfg: SegmenterConfig) -> torch.Tensor:
    """(B, H, W) uint8 or float in [0, 1] -> (B, 1, H, W) float32 in [-1, 1] (channels-last)."""
    from semlab.models import to_model

    x = to_model(images)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _as_batch(images) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"images must be (H, W) or (N, H, W), got shape {a.shape}")
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {a.dtype}")
    return a


@torch.no_grad()
def predict_logits(model: Segmenter, images, *, batch_size: int = 16) -> np.ndarray:
    """Class scores (N, C, H, W) float32 of images (N, H, W) (or one (H, W)); each batch is
    padded by reflection to a multiple of `model.multiple` and cropped back."""
    a = _as_batch(images)
    h, w = a.shape[1:]
    m = model.multiple
    ph, pw = (-h) % m, (-w) % m
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(a), batch_size):
            x = to_input(a[i:i + batch_size], model.cfg)
            if ph or pw:
                mode = "reflect" if ph < h and pw < w else "replicate"
                x = nn.functional.pad(x, (0, pw, 0, ph), mode=mode)
            with autocast(model.cfg):
                y = model(x)
            out.append(y[..., :h, :w].float().numpy())
    finally:
        model.train(was)
    return np.concatenate(out)


def predict(model: Segmenter, images, *, batch_size: int = 16) -> np.ndarray:
    """Label maps (N, H, W) uint8 (canonical class ids) of images (N, H, W) or (H, W)
    ((H, W) in, (1, H, W) out)."""
    return predict_logits(model, images, batch_size=batch_size).argmax(1).astype(np.uint8)


def save_segmenter(model: Segmenter, folder, meta: dict[str, Any] | None = None) -> Path:
    """Write `folder/model.pt` (config + state dict) and `folder/model.json` (config +
    `meta`) atomically; refuses a folder holding other files than these two."""
    from semlab.train.checkpoint import atomic_torch_save

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder; choose another --out")
    if folder.is_dir():
        other = sorted(p.name for p in folder.iterdir() if p.name not in (MODEL_FILE, CONFIG_FILE))
        if other:
            raise ValueError(f"{folder}: holds files that are not a semlab segmenter ({', '.join(other[:5])}); "
                             "refusing to write into it: choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = asdict(model.cfg)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "config": cfg, "state_dict": sd}, folder / MODEL_FILE)
    sha = io.sha256_file(folder / MODEL_FILE)
    n_params = sum(p.numel() for p in model.parameters())
    io.write_json_atomic(folder / CONFIG_FILE, {"format": FORMAT, "config": cfg, "params": n_params,
                                                 "model_sha256": sha, **(meta or {})})
    return folder


def load_segmenter(folder) -> tuple[Segmenter, dict[str, Any]]:
    """(model in eval mode, model.json) of a folder written by `save_segmenter`; the
    weights are read with torch.load(weights_only=True). ValueError naming the file when
    it is missing, not a segmenter, or does not fit its config."""
    from semlab.train.checkpoint import load_checkpoint

    folder = Path(folder)
    path = folder / MODEL_FILE if folder.is_dir() else folder
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no semlab segmenter here (expected {MODEL_FILE} written by "
                                "`semlab downstream train`)")
    st = load_checkpoint(path)
    if not isinstance(st, dict) or st.get("format") != FORMAT:
        raise ValueError(f"{path}: not a semlab segmenter (format {st.get('format') if isinstance(st, dict) else '?'}"
                         f", expected {FORMAT})")
    try:
        cfg = SegmenterConfig(**st["config"])
        model = build_segmenter(cfg)
        model.load_state_dict(st["state_dict"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise ValueError(f"{path}: the weights do not fit the recorded config ({type(e).__name__}: "
                         f"{str(e).splitlines()[0]})") from None
    meta_path = path.parent / CONFIG_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"config": st["config"]}
    model.eval()
    return model, meta
