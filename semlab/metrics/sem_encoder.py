"""A feature space for SEM images that needs no ImageNet weights: FD_sem and KD_sem.

FID compares images in the features of an Inception network trained on ImageNet photos:
colour objects, not gray micrographs of metal lines, and a file we may not have. semlab
therefore also trains its own **SEM encoder on real images only** and reports the
Frechet and kernel distances in its feature space as ``fd_sem`` and ``kd_sem``. They are
*not* FID and KID: their values depend on this encoder, so they are only comparable
between models scored with the same encoder file, whose sha256, architecture and
training data are recorded next to every number.

The encoder (``sem_resnet_small``): a full-resolution 3x3 stem (so single-pixel noise
is seen) and four residual stages of stride 2 (16, 32, 64, 128 channels), batch norm,
about 0.5 M parameters: cheap enough to train in a minute on a CPU.

Features are the global averages of every level's activations (stem and four stages,
16 + 16 + 32 + 64 + 128 = 256 values), not just the last stage's. Instance
discrimination alone does not need to see pixel noise (two views of one image share
their layout, not their noise), so a last-stage-only feature is nearly blind to a
generator that gets the noise grain wrong; the early levels' mean responses measure local
contrast and texture directly, as LPIPS's multi-layer features do. Training is self-supervised contrastive learning (SimCLR, Chen et al.
2020): two random views of the same real image must map to nearby points and views of
different images apart (NT-Xent loss through a 2-layer projection head, dropped after
training). The views differ by crop position, flips, 90-degree rotations and a mild
gain/offset only. Noise, blur and texture are deliberately **not** augmented: an encoder
made invariant to them could not see the most common generator failures (wrong noise
grain, over-smoothed texture, missing edge rims).

Features are computed on the whole image (global average pooling makes them size-free),
input scaled from [0, 1] to [-1, 1]; batches do not interact (eval mode).

Prefer KD_sem with small sets: like FID, FD_sem is biased upward by roughly dim / n (256
dimensions), which at a few dozen images can be as large as the signal; KD_sem is
unbiased. ``semlab.metrics.fid.fid_infinity`` works on these features too.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FORMAT = "semlab-sem-encoder-v1"
ARCHS = ("sem_resnet_small",)


@dataclass(frozen=True)
class EncoderConfig:
    """How the encoder is trained (all recorded in the file)."""
    arch: str = "sem_resnet_small"
    width: int = 16          # channels of the first stage; doubled per stage
    steps: int = 200
    batch_size: int = 64     # images per step (2 views each)
    crop: int = 64           # view size in px (clipped to the image size)
    temperature: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    gain: float = 0.1        # views' intensity gain in [1 - gain, 1 + gain]
    offset: float = 0.05     # and offset in [-offset, offset]
    precision: str = "bf16"
    seed: int = 0


def _net(arch: str, width: int):
    import torch
    import torch.nn as nn

    if arch not in ARCHS:
        raise KeyError(f"unknown SEM encoder architecture {arch!r}; valid: {list(ARCHS)}")

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.act(self.body(x) + self.skip(x))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
            chans = [w, 2 * w, 4 * w, 8 * w]
            layers, cin = [], w
            for i, c in enumerate(chans):
                layers.append(Block(cin, c, 2))
                cin = c
            self.stages = nn.Sequential(*layers)
            self.dim = w + sum(chans)
            self.head = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(inplace=True), nn.Linear(cin, 128))

        def forward(self, x):  # x in [0, 1]; the last stage, pooled: what SimCLR trains
            return self.stages(self.stem(x * 2 - 1)).mean(dim=(2, 3))

        def embed(self, x):  # every level, pooled: the features FD_sem / KD_sem use
            h = self.stem(x * 2 - 1)
            out = [h.mean(dim=(2, 3))]
            for st in self.stages:
                h = st(h)
                out.append(h.mean(dim=(2, 3)))
            return torch.cat(out, dim=1)

    return Encoder()


class SemEncoder:
    """A trained SEM encoder: ``encoder.features(images)`` -> float64 (N, dim)."""

    def __init__(self, net, meta: dict, path: str | None = None, sha256: str | None = None):
        import torch

        # channels_last: oneDNN's fast CPU layout (1,000 images of 256 px: 16 s -> 9 s here)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.meta = meta
        self.path = path
        self.sha256 = sha256

    @property
    def dim(self) -> int:
        return int(self.net.dim)

    def weights_key(self) -> str:
        """sha256 identifying these weights: the file's hash when saved, else a hash of the
        parameters and buffers (the feature cache's key)."""
        if self.sha256:
            return self.sha256
        h = hashlib.sha256(b"unsaved-sem-encoder")
        for k, v in self.net.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> str:
        t = self.meta["training"]
        h = (self.sha256 or "unsaved")[:12]
        return (f"semlab SEM encoder {self.meta['config']['arch']} (sha256 {h}), trained on "
                f"{t['n_images']} real images (data sha256 {t['images_sha256'][:12]}), {t['steps']} SimCLR steps")

    def features(self, images, batch_size: int = 64) -> np.ndarray:
        """float64 (N, dim) features of gray images (float [0, 1] or uint8); consecutive
        images of equal size are batched; batch size does not change the result."""
        import torch

        from semlab.arrays import as_gray_stack

        imgs = as_gray_stack(images, same_shape=False)
        out = np.empty((len(imgs), self.dim), np.float64)
        i = 0
        with torch.inference_mode():
            while i < len(imgs):
                j = i + 1
                while j < len(imgs) and j - i < batch_size and imgs[j].shape == imgs[i].shape:
                    j += 1
                x = torch.from_numpy(np.stack(imgs[i:j]))[:, None]
                out[i:j] = self.net.embed(x).double().numpy()
                i = j
        return out


def _views(batch, crop: int, gain: float, offset: float, g):
    """Two augmented views of each image of a (B, 1, H, W) tensor."""
    import torch

    b, _, h, w = batch.shape
    out = []
    for _ in range(2):
        ys = torch.randint(0, h - crop + 1, (b,), generator=g)
        xs = torch.randint(0, w - crop + 1, (b,), generator=g)
        v = torch.stack([batch[k, :, ys[k]:ys[k] + crop, xs[k]:xs[k] + crop] for k in range(b)])
        flip = torch.rand(b, generator=g) < 0.5
        v[flip] = v[flip].flip(-1)
        rot = torch.randint(0, 4, (b,), generator=g)
        v = torch.stack([torch.rot90(v[k], int(rot[k]), (1, 2)) for k in range(b)])
        a = 1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * gain
        c = (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * offset
        out.append(((v - 0.5) * a + 0.5 + c).clamp(0, 1))
    return out


def nt_xent(z1, z2, temperature: float):
    """SimCLR's normalised-temperature cross-entropy over the 2B views of a batch."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_sem_encoder(images, config: EncoderConfig = EncoderConfig(), *, out=None, source: str = "",
                      progress: bool = True) -> SemEncoder:
    """Train the SEM encoder on `images` (real images only: the point is a feature space
    that knows what real SEM looks like). Deterministic for a given seed and thread count.
    With `out`, the encoder is saved there atomically (never over an existing file)."""
    import torch
    from tqdm.auto import tqdm

    from semlab.arrays import as_gray_stack
    from semlab.metrics.fid import images_sha256

    imgs = as_gray_stack(images, same_shape=False)
    if len(imgs) < 2:
        raise ValueError("the SEM encoder needs at least 2 training images")
    shapes = {im.shape for im in imgs}
    hmin, wmin = min(s[0] for s in shapes), min(s[1] for s in shapes)
    crop = min(config.crop, hmin, wmin)
    if crop < 16:
        raise ValueError(f"training images are {hmin}x{wmin} px; the SEM encoder needs at least 16x16")
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {config.precision!r}")
    # crops of equal size from images of any size: a centre crop of the smallest shape
    data = torch.from_numpy(np.stack([im[(im.shape[0] - hmin) // 2:(im.shape[0] - hmin) // 2 + hmin,
                                         (im.shape[1] - wmin) // 2:(im.shape[1] - wmin) // 2 + wmin]
                                      for im in imgs]))[:, None]
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = _net(config.arch, config.width)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    bs = min(config.batch_size, len(imgs))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if config.precision == "bf16" \
        else contextlib.nullcontext
    losses = []
    # channels_last: oneDNN's fast layout; a SimCLR step took 0.22 s instead of 0.33 s of CPU (bf16)
    net.train().to(memory_format=torch.channels_last)
    for _ in tqdm(range(config.steps), desc="SEM encoder", disable=not progress, leave=False):
        idx = torch.randperm(len(imgs), generator=g)[:bs]
        v1, v2 = (v.contiguous(memory_format=torch.channels_last)
                  for v in _views(data[idx], crop, config.gain, config.offset, g))
        with ctx():
            z1, z2 = net.head(net(v1)), net.head(net(v2))
            loss = nt_xent(z1, z2, config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    if not np.isfinite(losses).all():
        raise FloatingPointError("SEM encoder training diverged (non-finite loss); lower the learning rate")
    meta = {"format": FORMAT, "config": asdict(config),
            "training": {"n_images": len(imgs), "images_sha256": images_sha256(imgs), "source": str(source),
                         "steps": config.steps, "crop": crop, "loss_first": losses[0],
                         "loss_last10": float(np.mean(losses[-10:])), "loss_curve": losses}}
    enc = SemEncoder(net, meta)
    if out is not None:
        save_sem_encoder(enc, out)
    return enc


def save_sem_encoder(enc: SemEncoder, path) -> Path:
    """Write {"format", "meta", "state_dict"} atomically; refuses to replace a file."""
    from semlab.io import sha256_file
    from semlab.train.checkpoint import atomic_torch_save

    p = Path(path)
    if p.exists():
        raise FileExistsError(f"{p} exists; SEM encoders are never overwritten (their hash is their identity)")
    atomic_torch_save({"format": FORMAT, "meta": enc.meta,
                       "state_dict": {k: v.detach().clone() for k, v in enc.net.state_dict().items()}}, p)
    enc.path, enc.sha256 = str(p), sha256_file(p)
    return p


def load_sem_encoder(path) -> SemEncoder:
    """Load an encoder written by :func:`save_sem_encoder` (``torch.load(weights_only=True)``)."""
    import torch

    from semlab.io import sha256_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: SEM encoder file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file
        raise ValueError(f"{p}: not a readable SEM encoder file ({e.__class__.__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{p}: not a semlab SEM encoder (expected format {FORMAT!r})")
    cfg = obj["meta"]["config"]
    net = _net(cfg["arch"], cfg["width"])
    net.load_state_dict(obj["state_dict"])
    return SemEncoder(net, obj["meta"], str(p), sha256_file(p))


def cached_sem_encoder(images, cache_dir, config: EncoderConfig = EncoderConfig(), *, source: str = "",
                       progress: bool = True) -> SemEncoder:
    """The encoder for these training images and this config: loaded from `cache_dir` if
    one was trained before (keyed by the images' sha256 and the config), else trained and
    saved there. The notebooks call this so that re-runs score with the same encoder."""
    from semlab.metrics.fid import images_sha256

    key = hashlib.sha256(f"{FORMAT};{images_sha256(images)};{sorted(asdict(config).items())}".encode()).hexdigest()
    path = Path(cache_dir) / f"sem-encoder-{key[:16]}.pt"
    if path.is_file():
        try:
            return load_sem_encoder(path)
        except ValueError:
            path = path.with_name(path.stem + f"-{np.random.default_rng().integers(1 << 30)}.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    return train_sem_encoder(images, config, out=path, source=source, progress=progress)


def compute_fd_sem(real, fake, encoder: SemEncoder, *, kid_subset_size: int = 1000, kid_subsets: int = 100,
                   seed: int = 0, real_features=None) -> dict:
    """FD_sem and KD_sem of `fake` against `real` in the encoder's features (the FID/KID
    formulas on a different feature space; never call them FID/KID)."""
    from semlab.metrics.fid import fid_from_features, kid_from_features

    fr = encoder.features(real) if real_features is None else np.asarray(real_features)
    ff = encoder.features(fake)
    kd, kd_std = kid_from_features(fr, ff, subset_size=kid_subset_size, n_subsets=kid_subsets, seed=seed)
    return {"fd_sem": fid_from_features(fr, ff), "kd_sem": kd, "kd_sem_std": kd_std,
            "n_real": len(fr), "n_fake": len(ff), "encoder": encoder.describe(), "encoder_sha256": encoder.sha256}
