"""Trained generator + canonical masks -> SEM images (`semlab generate`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from semlab import io, labels
from semlab.train.config import TrainConfig


class Generator:
    """A trained mask -> SEM generator loaded from `generator.pt` or a training checkpoint."""

    def __init__(self, path, device: str = "cpu"):
        from semlab.train.checkpoint import load_checkpoint
        from semlab.train import nets

        st = load_checkpoint(path)
        if "model" in st and st.get("format") == "semlab-generator-1":
            cfg, sd, size = TrainConfig.from_dict(st["config"]), st["model"], int(st["size"])
        elif "trainer" in st:
            cfg, sd = TrainConfig.from_dict(st["config"]), st["trainer"]["G"] if "G" in st["trainer"] else st["trainer"]["G_A"]
            size = int(st.get("size") or 256)
        else:
            raise ValueError(f"{path}: neither a semlab generator nor a training checkpoint")
        self.cfg, self.size, self.path = cfg, size, Path(path)
        self.device = torch.device(device)
        self.net = nets.generator(cfg, nets.mask_channels(cfg), 1, size).to(self.device)
        self.net.load_state_dict(sd)

    @torch.inference_mode()
    def __call__(self, masks: np.ndarray, seed: int = 0, batch_size: int = 8, train_mode: bool | None = None,
                 precision: str | None = None) -> np.ndarray:
        """Label maps (N, H, W) or (H, W) -> float32 images in [0, 1].

        Pix2Pix is run as the original's test script does (batch statistics and dropout
        on: `train_mode=True`), CycleGAN in eval mode; either way the output is fixed
        by `seed`. `precision` ("fp32" or "bf16" autocast; None: the precision the
        generator was trained in): bf16 took 0.6x (Pix2Pix) and 0.3x (CycleGAN) of the
        fp32 CPU time on a CPU with AMX, with a mean |difference| of 0.0004-0.0024."""
        precision = precision or self.cfg.precision
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        from semlab.train import nets
        from semlab.train.loop import trainer_class

        model = trainer_class(self.cfg.model)
        m = np.asarray(masks)
        single = m.ndim == 2
        m = m[None] if single else m
        if m.size and (m.min() < 0 or m.max() >= labels.NUM_CLASSES):
            raise ValueError(f"masks hold ids outside 0..{labels.NUM_CLASSES - 1}")
        h, w = m.shape[1:]
        if h != w or h & (h - 1):
            raise ValueError(f"masks are {h}x{w}; the generator needs square power-of-two sizes")
        train_mode = model.generate_train_mode if train_mode is None else train_mode
        if train_mode:  # batch statistics: one image per batch, so no image depends on another
            batch_size = 1
        self.net.train(train_mode)
        out = []
        # one autocast region for all batches: the bf16 copies of the weights are made once
        with torch.random.fork_rng(devices=[]), \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for i in range(0, len(m), batch_size):
                torch.manual_seed(seed)  # each batch (image) gets the same noise: order-independent
                x = model.encode_mask(m[i:i + batch_size], device=self.device)
                y = self.net(nets.with_noise(x, self.cfg)).float()
                out.append(((y.clamp(-1, 1) + 1) / 2)[:, 0].cpu().numpy())
        self.net.train(False)
        res = np.concatenate(out).astype(np.float32)
        return res[0] if single else res


@dataclass
class GenerateResult:
    """What `generate_folder` did: the folder, images generated and kept, outputs removed
    (their mask is gone), and the files renamed because their names clashed."""

    out: Path
    generated: int
    kept: int
    removed: int = 0
    renamed: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.generated} generated, {self.kept} kept" + (f", {self.removed} removed" if self.removed else "")
                + f" in {self.out}")


STATE = "generate.json"
_FORMAT = "semlab-generate-1"


def _read_state(out_dir: Path) -> dict | None:
    import json

    p = out_dir / STATE
    if not p.is_file():
        return None
    try:
        st = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{p}: unreadable ({e}); remove it or pass --overwrite") from None
    if not isinstance(st, dict) or st.get("format") != _FORMAT or not isinstance(st.get("items"), dict):
        raise ValueError(f"{p}: not a semlab generate record; remove it or pass --overwrite")
    return st


def generate_folder(checkpoint, masks_dir, out_dir, *, seed: int = 0, batch_size: int = 8,
                    progress: bool = True, overwrite: bool = False) -> GenerateResult:
    """Every mask in `masks_dir` (any format `semlab.io.read_mask` takes, searched
    recursively) -> `out_dir/<id>.png`, ids from the relative paths (`unique_ids`:
    names that would clash get 8 hex digits of their path, with a warning).

    `out_dir/generate.json` records the checkpoint's sha256, the seed, and per image its
    mask's and its own sha256. A re-run keeps an image only if all of these still match
    (resumable) and regenerates the others, so another checkpoint never leaves stale
    images; outputs whose mask is gone are removed. A folder with files that generate
    did not write (no generate.json, or a target it does not list) is refused unless
    `overwrite`, which also regenerates everything."""
    import warnings

    from semlab.data.datasets import clash_warning, unique_ids
    from semlab.data.sources import list_images

    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    files = list_images(masks_dir)
    if not files:
        raise ValueError(f"{masks_dir}: no mask images found")
    ids, clashes = unique_ids(files, masks_dir)
    if clashes:
        warnings.warn(clash_warning(clashes, ids, masks_dir), io.SemlabWarning, stacklevel=2)
    rel = {f: (f.relative_to(masks_dir) if masks_dir.is_dir() else Path(f.name)).as_posix() for f in files}
    identity = {"checkpoint_sha256": io.sha256_file(checkpoint), "seed": int(seed)}
    st = None if overwrite else _read_state(out_dir)
    if st is None and not overwrite and out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir())
        if foreign:
            raise ValueError(f"{out_dir} holds files that semlab generate did not write ({', '.join(foreign[:3])}"
                             f"{' ...' if len(foreign) > 3 else ''}; no {STATE}); refusing to write into it: "
                             "choose another --out, or pass --overwrite")
    old = st["items"] if st is not None and st.get("identity") == identity else {}
    if st is not None and not overwrite:  # a target that exists but is not listed: the user's file
        listed = set(st["items"])
        foreign = [f"{i}.png" for i in ids.values() if i not in listed and (out_dir / f"{i}.png").exists()]
        if foreign:
            raise ValueError(f"{out_dir}: {', '.join(foreign[:3])} exist(s) but semlab generate did not write "
                             f"them (not in {STATE}); choose another --out, or pass --overwrite")
    mask_sha = {f: io.sha256_file(f) for f in files}
    keep, todo = {}, []
    for f in files:
        i, rec = ids[f], old.get(ids[f])
        dst = out_dir / f"{i}.png"
        if (rec and rec.get("sha256") and rec.get("mask_sha256") == mask_sha[f] and dst.is_file()
                and io.sha256_file(dst) == rec["sha256"]):
            keep[i] = rec
        else:
            todo.append(f)
    # outputs listed by an earlier run whose mask is gone: removed if unchanged since
    removed, current = 0, set(ids.values())
    for i, rec in (st or {}).get("items", {}).items():
        if i not in current:
            dst = io.inside(out_dir, f"{io.validate_id(i, str(out_dir / STATE))}.png")
            if dst.is_file() and rec.get("sha256") and io.sha256_file(dst) == rec["sha256"]:
                dst.unlink()
                removed += 1
    items = dict(keep)
    for f in todo:  # listed before being written: a killed run's outputs are known to be ours
        items[ids[f]] = {"source": rel[f], "mask_sha256": mask_sha[f], "sha256": None}

    def save() -> None:
        io.write_json_atomic(out_dir / STATE, {"format": _FORMAT, "identity": identity,
                                               "checkpoint": str(checkpoint), "masks": str(masks_dir),
                                               "items": items})

    gen = Generator(checkpoint) if todo else None
    out_dir.mkdir(parents=True, exist_ok=True)
    save()
    try:
        for k, f in enumerate(tqdm(todo, desc="generate", disable=not progress, unit="img")):
            m = io.read_mask(f)
            if gen is not None and (m.shape[0] != m.shape[1] or m.shape[0] & (m.shape[0] - 1)):
                raise ValueError(f"{f}: the mask is {m.shape[1]}x{m.shape[0]} px; the generator (trained at "
                                 f"{gen.size}x{gen.size} px) needs square power-of-two sizes")
            dst = io.write_image(out_dir / f"{ids[f]}.png", gen(m, seed=seed))
            items[ids[f]]["sha256"] = io.sha256_file(dst)
            if (k + 1) % 50 == 0:
                save()
    finally:
        save()
    clashing = {r for rels in clashes.values() for r in rels}
    return GenerateResult(out_dir, len(todo), len(keep), removed, {ids[f]: rel[f] for f in files if rel[f] in clashing})
