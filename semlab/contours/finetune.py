"""Fine-tuning SAM2 on a few (image, mask, prompts) examples (SegSEM).

SegSEM adapts SAM2 to SEM contours with only ~60 production images by training the
**encoders** and keeping the mask decoder frozen: the decoder already knows how to turn
a prompt and features into a mask; what differs in SEM is the image statistics (edge
bright rims, shot noise, charging), which live in the image encoder. Four modes:

| mode      | trainable                                                    |
|-----------|--------------------------------------------------------------|
| `encoder` | image encoder (Hiera trunk + FPN neck); with `train_prompt_encoder` also the prompt encoder. Mask decoder frozen (SegSEM). |
| `decoder` | mask decoder only (incl. its high-res projections conv_s0/conv_s1) |
| `full`    | image encoder + prompt encoder + mask decoder                |
| `lora`    | only low-rank adapters added to every Hiera attention `qkv` and `proj` linear layer (`W x + (alpha/r) B A x`, B = 0 at start) |

The video-only modules (memory attention / encoder, object pointers, `no_mem_embed`)
are never trained: the image path does not use them except `no_mem_embed`, which SAM2
adds as a constant.

**Forward pass** (through sam2's own modules, with gradients; the predictor's methods
are `no_grad` and are not used): the image goes through sam2's own transforms (gray
replicated to RGB, resize to the model size, ImageNet normalisation) -> `image_encoder`
(under `no_grad` when no encoder weight trains) -> the decoder's `conv_s0`/`conv_s1` on
the two high-resolution levels (what `SAM2Base.forward_image` does) -> flattened backbone
features + `no_mem_embed` (what `SAM2ImagePredictor.set_image` does) -> `sam_prompt_encoder`
(box corners with labels 2/3, points padded with -1) -> `sam_mask_decoder` with one
single-mask output per structure -> bilinear upsampling of the logits to the image's
resolution (what the predictor returns). Feature sizes come from the features, so
512-px models train as well as 1024-px ones.

**Loss** per structure, averaged: BCE with logits + Dice (on sigmoid probabilities,
smoothed by 1 px) against the structure's true mask, plus optionally
`iou_loss_weight` x MSE between the IoU head's prediction and the true IoU of the
thresholded mask (keeps the predicted IoU, one half of our confidence, honest after
fine-tuning; 0 by default as SegSEM trains on the mask loss).

**Augmentation** for few images: one of the 8 flips/90-degree rotations (image, target
instances and prompts move together, see `semlab.contours.prompts.transform_prompt`),
intensity gain and offset, Gaussian noise. Every step draws from its own generator
seeded by (seed, step) and every epoch's order from (seed, epoch), so a resumed run
repeats an uninterrupted one exactly.

**Checkpoints** (design.md section 3) under `out/checkpoints/ckpt-<step>.pt`: model and
optimizer state, step, epoch, RNG state, early-stopping state, history and the config;
written atomically, read with `torch.load(weights_only=True)`. Early stopping watches
the validation loss once per epoch (`patience` epochs without improvement); the best
model is exported, merged (LoRA folded into the weights), in SAM2's official
`{"model": state_dict}` format as `out/<model>.pt`, so `Sam2Predictor(model,
checkpoint=that_file)` loads it like any SAM2 checkpoint.

Learning-rate defaults per mode are starting points, not tuned values: pretrained
weights are not available on the development machine.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from semlab.contours.prompts import (GEOMETRIC_OPS, Prompt, label_structures, prompt_arrays,
                                     prompts_from_structures, transform_array, transform_prompts)

__all__ = ["FinetuneConfig", "Example", "FinetuneResult", "Sam2Finetuner", "LoRALinear", "MODES",
           "make_examples", "augment_example", "add_lora", "merged_state_dict", "set_trainable",
           "finetune", "seg_loss", "load_finetune_checkpoint"]

MODES = ("encoder", "decoder", "full", "lora")
DEFAULT_LR = {"encoder": 3e-5, "decoder": 1e-4, "full": 1e-5, "lora": 3e-4}
CHECKPOINT_FORMAT = "semlab-sam2-finetune/1"


@dataclass
class FinetuneConfig:
    """Everything that defines a fine-tuning run (stored in every checkpoint)."""

    model: str = "sam2.1_hiera_tiny"
    checkpoint: str | None = None  # base weights: explicit file/folder, else semlab.weights.resolve
    image_size: int = 512  # 512 (CPU) or 1024
    mode: str = "encoder"
    train_prompt_encoder: bool = False  # encoder mode: also train the prompt encoder
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lr: float | None = None  # None: DEFAULT_LR[mode]
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    epochs: int = 30
    max_steps: int | None = None  # stop after this many optimizer steps in total (resumable)
    batch_size: int = 1  # images per step
    max_prompts: int = 16  # structures per image per step (a random subset if more)
    use_points: bool = True  # also feed each prompt's points (else boxes only)
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    iou_loss_weight: float = 0.0
    augment: bool = True
    gain: float = 0.2  # intensity gain drawn from [1 - gain, 1 + gain]
    offset: float = 0.1  # intensity offset drawn from [-offset, offset]
    noise_sigma: float = 0.03  # Gaussian noise sigma drawn from [0, noise_sigma]
    patience: int = 5  # epochs without a better validation loss before stopping
    min_delta: float = 0.0
    restore_best: bool = True  # the returned / exported model is the best validation epoch
    bf16: bool = False  # torch.autocast("cpu", bfloat16) around the forward pass
    seed: int = 0
    keep_checkpoints: int = 1

    def __post_init__(self):
        from semlab.segment.sam2_model import sam2_config_and_weights, sam2_overrides

        if self.mode not in MODES:
            raise KeyError(f"unknown fine-tuning mode {self.mode!r}; valid: {', '.join(MODES)}")
        sam2_config_and_weights(self.model)
        sam2_overrides(self.image_size)
        if self.batch_size < 1 or self.max_prompts < 1 or self.epochs < 0 or self.lora_rank < 1:
            raise ValueError("batch_size, max_prompts and lora_rank must be >= 1 and epochs >= 0")
        self.betas = tuple(float(b) for b in self.betas)

    @property
    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.mode]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "betas" else v) for k, v in d.items() if k in names})


@dataclass
class Example:
    """One training image: gray float32 (H, W) in [0, 1], an instance map (0: nothing,
    k: structure k, the target of the prompt with `structure_id` k) and its prompts.
    Prompts may come from a different source than the instances (e.g. a classical
    pre-segmentation) as long as the structure ids match."""

    image: np.ndarray
    instances: np.ndarray
    prompts: list[Prompt]
    name: str = ""

    def __post_init__(self):
        if self.image.ndim != 2 or self.image.shape != self.instances.shape:
            raise ValueError(f"example {self.name!r}: image {self.image.shape} and instances "
                             f"{self.instances.shape} must be 2-D of the same shape")
        ids = set(int(v) for v in np.unique(self.instances) if v > 0)
        missing = [p.structure_id for p in self.prompts if p.structure_id not in ids]
        if missing:
            raise ValueError(f"example {self.name!r}: prompts for structures {missing} absent from the instance map")


def make_examples(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], classes: Sequence[int] | None = None,
                  *, names: Sequence[str] | None = None, min_area: int = 16, connectivity: int = 1,
                  **prompt_kwargs) -> list[Example]:
    """Examples from images and label masks: every connected component of `classes`
    (default: all non-zero) is a structure, prompted from its own true mask (keyword
    arguments go to `prompts_from_structures`). Images without structures are skipped."""
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    out = []
    for i, (img, m) in enumerate(zip(images, masks)):
        inst, class_of = label_structures(np.asarray(m), classes, min_area=min_area, connectivity=connectivity)
        prompts = prompts_from_structures(inst, class_of, **prompt_kwargs)
        if prompts:
            out.append(Example(np.asarray(img, np.float32), inst, prompts, names[i] if names else str(i)))
    return out


def augment_example(ex: Example, rng: np.random.Generator, cfg: FinetuneConfig) -> Example:
    """A random flip/rotation (image, instances and prompts together), then intensity
    gain/offset and Gaussian noise on the image only; clipped to [0, 1]."""
    op = GEOMETRIC_OPS[int(rng.integers(len(GEOMETRIC_OPS)))]
    img = np.ascontiguousarray(transform_array(ex.image, op), dtype=np.float32)
    inst = np.ascontiguousarray(transform_array(ex.instances, op))
    gain = rng.uniform(1.0 - cfg.gain, 1.0 + cfg.gain)
    off = rng.uniform(-cfg.offset, cfg.offset)
    sigma = rng.uniform(0.0, cfg.noise_sigma)
    img = img * np.float32(gain) + np.float32(off)
    if sigma > 0:
        img = img + rng.standard_normal(img.shape).astype(np.float32) * np.float32(sigma)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return Example(img, inst, transform_prompts(ex.prompts, op), ex.name)


# --------------------------------------------------------------------------- LoRA


class LoRALinear(nn.Module):
    """`base(x) + (alpha / rank) * (x A^T) B^T` with `base` frozen. A is initialised like
    an nn.Linear weight (uniform, bound 1/sqrt(fan_in)), B with zeros, so the adapted
    layer starts exactly equal to the base layer and only B moves on the first step."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = int(rank)
        self.scale = float(alpha) / float(rank)
        a = torch.empty(rank, base.in_features)
        bound = 1.0 / math.sqrt(base.in_features)
        a.uniform_(-bound, bound, generator=generator)
        self.lora_a = nn.Parameter(a)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype) * self.scale

    def merged_weight(self) -> torch.Tensor:
        """The plain linear weight equivalent to this layer: W + (alpha / rank) B A."""
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)


def _is_lora(m) -> bool:
    return isinstance(m, LoRALinear)


def add_lora(sam_model, rank: int = 4, alpha: float = 8.0, targets: Sequence[str] = ("qkv", "proj"),
             seed: int = 0) -> list[str]:
    """Wrap every `targets` linear layer of the Hiera trunk's attention blocks in a
    `LoRALinear`; returns the wrapped module names. Idempotent."""
    g = torch.Generator().manual_seed(int(seed))
    names = []
    for name, mod in list(sam_model.image_encoder.trunk.named_modules()):
        if type(mod).__name__ != "MultiScaleAttention":
            continue
        for t in targets:
            lin = getattr(mod, t, None)
            if isinstance(lin, torch.nn.Linear):
                setattr(mod, t, LoRALinear(lin, rank, alpha, generator=g))
                names.append(f"image_encoder.trunk.{name}.{t}")
    return names


def merged_state_dict(sam_model) -> dict:
    """The model's state dict in SAM2's own key layout: LoRA adapters are folded into
    their base weights (W + alpha/r B A), adapter keys dropped. Tensors are detached
    copies on the CPU."""
    lora_prefixes = {name: m for name, m in sam_model.named_modules() if _is_lora(m)}
    out = {}
    for k, v in sam_model.state_dict().items():
        parent, _, leaf = k.rpartition(".")
        if parent in lora_prefixes and leaf in ("lora_a", "lora_b"):
            continue
        grand, _, mid = parent.rpartition(".")
        if mid == "base" and grand in lora_prefixes:
            if leaf == "weight":
                with torch.no_grad():
                    v = lora_prefixes[grand].merged_weight()
            out[f"{grand}.{leaf}"] = v.detach().cpu().clone()
        else:
            out[k] = v.detach().cpu().clone()
    return out


def set_trainable(sam_model, mode: str, train_prompt_encoder: bool = False) -> list[str]:
    """Freeze everything, then unfreeze what `mode` trains; returns the trainable names."""
    if mode not in MODES:
        raise KeyError(f"unknown fine-tuning mode {mode!r}; valid: {', '.join(MODES)}")
    for p in sam_model.parameters():
        p.requires_grad_(False)
    prefixes: tuple[str, ...]
    if mode == "encoder":
        prefixes = ("image_encoder.",) + (("sam_prompt_encoder.",) if train_prompt_encoder else ())
    elif mode == "decoder":
        prefixes = ("sam_mask_decoder.",)
    elif mode == "full":
        prefixes = ("image_encoder.", "sam_prompt_encoder.", "sam_mask_decoder.")
    else:
        prefixes = ()
    names = []
    for n, p in sam_model.named_parameters():
        train = n.startswith(prefixes) if prefixes else (n.endswith(".lora_a") or n.endswith(".lora_b"))
        if train:
            p.requires_grad_(True)
            names.append(n)
    return names


# --------------------------------------------------------------------------- loss


def seg_loss(logits, target, iou_pred=None, *, bce_weight: float = 1.0, dice_weight: float = 1.0,
             iou_weight: float = 0.0) -> dict:
    """BCE + Dice (+ IoU-head MSE) for logits and float targets of shape (K, H, W);
    returns the total and its parts (tensors), each a mean over the K structures."""
    F = torch.nn.functional
    logits = logits.float()
    target = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1.0 - (2.0 * (prob * t).sum(1) + 1.0) / (prob.sum(1) + t.sum(1) + 1.0)
    total = bce_weight * bce.mean() + dice_weight * dice.mean()
    parts = {"bce": bce.mean(), "dice": dice.mean()}
    with torch.no_grad():
        pred = (logits > 0).flatten(1)
        inter = (pred & (t > 0.5)).sum(1).float()
        union = (pred | (t > 0.5)).sum(1).float()
        true_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    parts["iou"] = true_iou.mean()
    if iou_pred is not None and iou_weight > 0:
        mse = F.mse_loss(iou_pred.float().reshape(-1), true_iou)
        total = total + iou_weight * mse
        parts["iou_mse"] = mse
    parts["loss"] = total
    return parts


# --------------------------------------------------------------------------- trainer


class Sam2Finetuner:
    """A SAM2 model, its trainable parameters and an AdamW optimizer; `train_step` runs
    one optimizer step on a list of examples, `evaluate` the same loss without
    gradients. `finetune` adds epochs, validation, early stopping and checkpoints."""

    def __init__(self, config: FinetuneConfig | None = None, sam_model=None):
        from sam2.utils.transforms import SAM2Transforms

        from semlab.contours.predictor import load_sam2_model
        from semlab.segment.sam2_model import quiet_jit

        self.config = cfg = config or FinetuneConfig()
        if sam_model is None:
            sam_model, self.base_checkpoint = load_sam2_model(cfg.model, cfg.checkpoint, cfg.image_size)
        else:
            self.base_checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else None
            if int(sam_model.image_size) != cfg.image_size:
                raise ValueError(f"the model given has image_size {sam_model.image_size}, the config {cfg.image_size}")
        self.model = sam_model
        self.lora_modules = add_lora(sam_model, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed) if cfg.mode == "lora" else []
        self.trainable = set_trainable(sam_model, cfg.mode, cfg.train_prompt_encoder)
        params = [p for p in sam_model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self._encoder_trains = any(n.startswith("image_encoder.") for n in self.trainable)
        with quiet_jit():
            self._transforms = SAM2Transforms(resolution=cfg.image_size, mask_threshold=0.0)
        self.step = 0

    # -- forward ------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.config.bf16 else contextlib.nullcontext()

    def _input(self, images: Sequence[np.ndarray]):
        from semlab.contours.predictor import to_sam2_rgb

        return torch.stack([self._transforms(to_sam2_rgb(im)) for im in images])

    def encode(self, images: Sequence[np.ndarray]):
        """Image embeddings (B, C, S/16, S/16) and high-res features [(B, C0, S/4, S/4),
        (B, C1, S/8, S/8)] as `SAM2ImagePredictor.set_image` computes them, with gradients
        when the encoder trains."""
        m = self.model
        x = self._input(images)
        grad_ctx = contextlib.nullcontext() if self._encoder_trains else torch.no_grad()
        with grad_ctx:
            backbone_out = m.image_encoder(x)
        if m.use_high_res_features_in_sam:  # SAM2Base.forward_image's decoder projections
            fpn = list(backbone_out["backbone_fpn"])
            fpn[0] = m.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = m.sam_mask_decoder.conv_s1(fpn[1])
            backbone_out = {**backbone_out, "backbone_fpn": fpn}
        _, vision_feats, _, feat_sizes = m._prepare_backbone_features(backbone_out)
        if m.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + m.no_mem_embed
        b = x.shape[0]
        feats = [f.permute(1, 2, 0).reshape(b, -1, h, w) for f, (h, w) in zip(vision_feats, feat_sizes)]
        return feats[-1], feats[:-1]

    def decode(self, image_embed, high_res, prompts: Sequence[Prompt], shape: tuple[int, int]):
        """Logits (K, H, W) at the image's resolution and predicted IoU (K,) for the
        prompts of one image, from its embedding (1, C, h, w) and high-res features."""
        F = torch.nn.functional
        m = self.model
        s = float(self.config.image_size)
        h, w = shape
        scale = torch.tensor([s / w, s / h])
        boxes, coords, labels = prompt_arrays(prompts, use_points=self.config.use_points)
        k = len(prompts)
        pts = torch.from_numpy(boxes).reshape(k, 2, 2) * scale
        lab = torch.tensor([[2, 3]], dtype=torch.int).repeat(k, 1)
        if coords is not None:
            pts = torch.cat([pts, torch.from_numpy(coords) * scale], dim=1)
            lab = torch.cat([lab, torch.from_numpy(labels).int()], dim=1)
        sparse, dense = m.sam_prompt_encoder(points=(pts, lab), boxes=None, masks=None)
        low_res, iou_pred, _, _ = m.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False, repeat_image=k > 1, high_res_features=high_res)
        logits = F.interpolate(low_res.float(), (h, w), mode="bilinear", align_corners=False)
        return logits[:, 0], iou_pred[:, 0]

    def _choose(self, ex: Example, rng: np.random.Generator | None) -> list[Prompt]:
        if len(ex.prompts) <= self.config.max_prompts:
            return list(ex.prompts)
        if rng is None:  # evaluation: the first max_prompts, deterministic
            return list(ex.prompts[: self.config.max_prompts])
        idx = np.sort(rng.choice(len(ex.prompts), self.config.max_prompts, replace=False))
        return [ex.prompts[i] for i in idx]

    def _batch_loss(self, examples: Sequence[Example], rng: np.random.Generator | None) -> dict:
        cfg = self.config
        parts_all = []
        with self._autocast():
            embed, high = self.encode([ex.image for ex in examples])
            for i, ex in enumerate(examples):
                prompts = self._choose(ex, rng)
                logits, iou_pred = self.decode(embed[i:i + 1], [f[i:i + 1] for f in high], prompts, ex.image.shape)
                target = torch.from_numpy(np.stack([ex.instances == p.structure_id for p in prompts]))
                parts_all.append(seg_loss(logits, target, iou_pred, bce_weight=cfg.bce_weight,
                                          dice_weight=cfg.dice_weight, iou_weight=cfg.iou_loss_weight))
        return {k: sum(p[k] for p in parts_all) / len(parts_all) for k in parts_all[0]}

    # -- steps ----------------------------------------------------------------------------

    def train_step(self, examples: Sequence[Example], rng: np.random.Generator | None = None) -> dict:
        """One AdamW step on `examples` (already augmented); returns the loss parts."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        parts = self._batch_loss(examples, rng)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning loss became {float(loss)} at step {self.step}")
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                           self.config.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.model.eval()
        return {k: float(v.detach()) for k, v in parts.items()}

    def evaluate(self, examples: Sequence[Example], progress: bool = False) -> dict:
        """Mean loss parts and mean IoU over `examples` (eval mode, no gradients,
        the first `max_prompts` structures of each image)."""
        from tqdm.auto import tqdm

        self.model.eval()
        acc: dict[str, float] = {}
        with torch.no_grad():
            for ex in tqdm(examples, desc="validate", disable=not progress, leave=False):
                parts = self._batch_loss([ex], None)
                for k, v in parts.items():
                    acc[k] = acc.get(k, 0.0) + float(v)
        return {k: v / max(len(examples), 1) for k, v in acc.items()}

    # -- state ------------------------------------------------------------------------------

    def export_state_dict(self) -> dict:
        """The official SAM2 state dict (LoRA merged)."""
        return merged_state_dict(self.model)

    def save_model(self, path) -> Path:
        """Write `{"model": state_dict}` atomically: loadable by sam2's `build_sam2` and
        by `Sam2Predictor(model, checkpoint=path)`."""
        from semlab.train.checkpoint import atomic_torch_save

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_torch_save({"model": self.export_state_dict()}, path)

    def state(self) -> dict:
        return {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scheduler": None, "step": self.step,
                "rng": {"torch": torch.get_rng_state(), "numpy_seed": int(self.config.seed)},
                "config": self.config.to_dict()}

    def load_state(self, ck: dict) -> None:
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.step = int(ck["step"])
        if "rng" in ck and "torch" in ck["rng"]:
            torch.set_rng_state(ck["rng"]["torch"])


@dataclass
class FinetuneResult:
    model: object = field(repr=False)  # the SAM2 model (best validation epoch if restore_best)
    history: list[dict]
    steps: int
    epochs: int
    best_epoch: int | None
    best_val_loss: float | None
    stopped_early: bool
    exported: Path | None = None  # official {"model": ...} file
    checkpoint: Path | None = None
    resumed_from: Path | None = None
    config: FinetuneConfig | None = None


def load_finetune_checkpoint(path) -> dict:
    """Read a fine-tuning checkpoint (weights_only); ValueError naming the file if it is
    not one."""
    from semlab.train.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a SAM2 fine-tuning checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return ck


def finetune(train: Sequence[Example], val: Sequence[Example] | None = None, config: FinetuneConfig | None = None,
             out: str | Path | None = None, *, resume: bool = True, progress: bool = True,
             sam_model=None) -> FinetuneResult:
    """Fine-tune SAM2 on `train`, early-stopping on `val` (see the module docstring).

    With `out`, checkpoints go to `out/checkpoints/` at the end of every epoch and when
    `max_steps` stops a run, and a run with `resume=True` continues from the latest one
    (the config must be the same except `epochs`/`max_steps`/`patience`); the final model
    is exported to `out/<model>.pt`, the history to `out/history.json`. `sam_model`
    gives the base model in memory instead of loading `config.checkpoint`."""
    from tqdm.auto import tqdm

    from semlab import io
    from semlab.train.checkpoint import latest_checkpoint, save_checkpoint

    cfg = config or FinetuneConfig()
    train = list(train)
    val = list(val) if val else []
    if not train:
        raise ValueError("finetune needs at least one training example")
    n = len(train)
    spe = math.ceil(n / cfg.batch_size)
    out = Path(out) if out is not None else None
    ckpt_dir = out / "checkpoints" if out else None
    st = {"epoch": 0, "best_val": None, "best_epoch": None, "bad_epochs": 0, "history": [], "stopped": False,
          "epoch_losses": []}  # everything the loop needs to continue exactly
    resumed_from, ck = None, None
    if ckpt_dir is not None and resume:
        resumed_from = latest_checkpoint(ckpt_dir)
        if resumed_from is not None:  # check before building the model: a mismatch fails fast
            ck = load_finetune_checkpoint(resumed_from)
            _check_same_run(ck, cfg, n, resumed_from)
    tuner = Sam2Finetuner(cfg, sam_model)
    if ck is not None:
        tuner.load_state(ck)
        st.update({k: ck["loop"].get(k, st[k]) for k in st})
        del ck
    best_path = out / f"{cfg.model}.pt" if out else None
    best_mem: dict | None = None  # best weights in memory when there is no `out`

    def save(tag_step: int) -> Path | None:
        if ckpt_dir is None:
            return None
        state = tuner.state()
        state.update({"format": CHECKPOINT_FORMAT, "epoch": st["epoch"], "loop": copy.deepcopy(st), "n_train": n})
        return save_checkpoint(state, ckpt_dir, tag_step, keep=cfg.keep_checkpoints)

    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
    bar = tqdm(total=total, initial=min(tuner.step, total), desc=f"sam2 {cfg.mode}", disable=not progress)
    last_ckpt = None
    t_epoch = time.perf_counter()
    while st["epoch"] < cfg.epochs and not st["stopped"]:
        if cfg.max_steps is not None and tuner.step >= cfg.max_steps:
            break
        epoch = st["epoch"]
        order = np.random.default_rng([cfg.seed, 0, epoch]).permutation(n)
        for b in range(tuner.step - epoch * spe, spe):
            if cfg.max_steps is not None and tuner.step >= cfg.max_steps:
                break
            rng = np.random.default_rng([cfg.seed, 1, tuner.step])
            batch = [train[i] for i in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
            if cfg.augment:
                batch = [augment_example(ex, rng, cfg) for ex in batch]
            parts = tuner.train_step(batch, rng)
            st["epoch_losses"].append(parts["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
        if tuner.step < (epoch + 1) * spe:  # max_steps reached inside the epoch
            last_ckpt = save(tuner.step) or last_ckpt
            break
        rec = {"epoch": epoch, "step": tuner.step,
               "train_loss": float(np.mean(st["epoch_losses"])) if st["epoch_losses"] else None,
               "seconds": round(time.perf_counter() - t_epoch, 3)}  # of this process's part of the epoch
        st["epoch_losses"] = []
        if val:
            v = tuner.evaluate(val)
            rec.update({"val_loss": v["loss"], "val_iou": v["iou"]})
            if st["best_val"] is None or v["loss"] < st["best_val"] - cfg.min_delta:
                st.update(best_val=v["loss"], best_epoch=epoch, bad_epochs=0)
                if best_path is not None:
                    tuner.save_model(best_path)
                else:
                    best_mem = copy.deepcopy(tuner.model.state_dict())
            else:
                st["bad_epochs"] += 1
                if st["bad_epochs"] >= cfg.patience:
                    st["stopped"] = True
        st["history"].append(rec)
        st["epoch"] = epoch + 1
        t_epoch = time.perf_counter()
        last_ckpt = save(tuner.step) or last_ckpt
    bar.close()

    model = tuner.model
    if val and cfg.restore_best and st["best_epoch"] is not None:
        if best_path is not None and best_path.is_file():
            from semlab.segment.sam2_model import read_sam2_checkpoint

            sd = read_sam2_checkpoint(best_path)
            _load_merged(model, sd)
        elif best_mem is not None:
            model.load_state_dict(best_mem)
    if best_path is not None and not (val and st["best_epoch"] is not None):
        tuner.save_model(best_path)  # no validation: the final weights are the result
    if out is not None:
        io.write_json_atomic(out / "history.json", {"config": cfg.to_dict(), "history": st["history"],
                                                    "best_epoch": st["best_epoch"], "best_val_loss": st["best_val"],
                                                    "steps": tuner.step, "stopped_early": st["stopped"]})
    return FinetuneResult(model=model, history=st["history"], steps=tuner.step, epochs=st["epoch"],
                          best_epoch=st["best_epoch"], best_val_loss=st["best_val"], stopped_early=st["stopped"],
                          exported=best_path if best_path is not None and best_path.is_file() else None,
                          checkpoint=last_ckpt or (latest_checkpoint(ckpt_dir) if ckpt_dir else None),
                          resumed_from=resumed_from, config=cfg)


_RESUME_FREE = ("epochs", "max_steps", "patience", "min_delta", "restore_best", "keep_checkpoints")


def _check_same_run(ck: dict, cfg: FinetuneConfig, n: int, path) -> None:
    old = FinetuneConfig.from_dict(ck["config"]).to_dict()
    new = cfg.to_dict()
    diff = sorted(k for k in new if k not in _RESUME_FREE and old.get(k) != new[k])
    if diff:
        raise ValueError(f"{path}: cannot resume, the config differs in {', '.join(diff)} "
                         f"(use another output folder or resume=False)")
    if int(ck.get("n_train", n)) != n:
        raise ValueError(f"{path}: cannot resume, it was trained on {ck['n_train']} examples, not {n}")


def _load_merged(model, sd: dict) -> None:
    """Load an official (merged) state dict into a model that may carry LoRA adapters:
    the merged weights go into the base layers and the adapters are zeroed (B = 0)."""
    lora = {name: m for name, m in model.named_modules() if _is_lora(m)}
    if not lora:
        model.load_state_dict(sd)
        return
    remapped = {}
    for k, v in sd.items():
        parent, _, leaf = k.rpartition(".")
        remapped[f"{parent}.base.{leaf}" if parent in lora else k] = v
    missing, unexpected = model.load_state_dict(remapped, strict=False)
    bad = [k for k in missing if not k.endswith((".lora_a", ".lora_b"))]
    if bad or unexpected:
        raise RuntimeError(f"state dict does not fit the model: missing {bad[:5]}, unexpected {list(unexpected)[:5]}")
    with torch.no_grad():
        for m in lora.values():
            m.lora_b.zero_()
