"""Training configuration: one dataclass, defaults as in the original papers' code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


# the values a field may take (checked in __post_init__; `semlab train` offers them as choices)
CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("pix2pix", "cyclegan"),
    "precision": ("fp32", "bf16"),
    "gan_mode": ("vanilla", "lsgan", "hinge"),
    "upsample": ("transposed", "resize"),
    "norm": ("batch", "instance", "none"),
}

# one line per field: `semlab train --help` shows it with the field's default
HELP: dict[str, str] = {
    "model": "pix2pix (paired) or cyclegan (unpaired)",
    "dataset": "a labelled semlab dataset (images/ + masks/)",
    "out": "run folder (checkpoints, log.csv, generator.pt)",
    "size": "crop/resize side in px (default: the dataset's size)",
    "netG": "generator: unet, resnet_6blocks, resnet_9blocks (default: unet for pix2pix, resnet_9blocks for cyclegan)",
    "netD": "discriminator (basic: 70x70 PatchGAN)",
    "norm": "normalisation (default: batch for pix2pix, instance for cyclegan)",
    "ngf": "generator filters in the first layer",
    "ndf": "discriminator filters in the first layer",
    "n_layers_D": "PatchGAN layers",
    "dropout": "dropout in the generator (default: on for pix2pix, off for cyclegan)",
    "upsample": "transposed convolutions, or resize (nearest x2) + convolution",
    "init": "weight initialisation",
    "init_gain": "scale of the initial weights",
    "noise_channel": "add a noise input channel to the generator",
    "gan_mode": "GAN loss (default: vanilla for pix2pix, lsgan for cyclegan)",
    "lambda_l1": "pix2pix: weight of the L1 loss",
    "lambda_cycle": "cyclegan: weight of the cycle loss",
    "lambda_identity": "cyclegan: weight of the identity loss, times lambda_cycle",
    "lambda_fm": "weight of discriminator feature matching",
    "pool_size": "cyclegan: image pool of generated samples",
    "diffaug": "DiffAugment on the discriminator inputs, e.g. translation,cutout,color",
    "batch_size": "batch size",
    "n_epochs": "epochs at the full learning rate",
    "n_epochs_decay": "epochs of linear learning-rate decay",
    "lr": "Adam learning rate",
    "beta1": "Adam beta1",
    "beta2": "Adam beta2",
    "precision": "fp32, or bf16 autocast",
    "channels_last": "channels-last memory format",
    "threads": "torch threads (default: torch's choice)",
    "seed": "random seed",
    "deterministic": "deterministic algorithms",
    "checkpoint_every": "steps between checkpoints (also at each epoch end)",
    "keep_checkpoints": "checkpoints kept (0: all)",
    "sample_every_epochs": "epochs between sample images",
    "n_samples": "sample images",
    "max_steps": "stop after this many steps",
    "extra": "free-form settings (--set extra={...})",
}


@dataclass
class TrainConfig:
    model: str = "pix2pix"  # "pix2pix" (paired) or "cyclegan" (unpaired)
    dataset: str = ""  # a semlab dataset folder with images/ and masks/
    out: str = ""  # run folder: checkpoints, log.csv, samples
    size: int | None = None  # crop/resize: None = the dataset's size
    # networks (None: the model's default: pix2pix unet + batch norm, cyclegan resnet_9blocks + instance)
    netG: str | None = None
    netD: str = "basic"
    norm: str | None = None
    ngf: int = 64
    ndf: int = 64
    n_layers_D: int = 3
    dropout: bool | None = None  # pix2pix: True (the original's default), cyclegan: False
    upsample: str = "transposed"  # or "resize" (nearest x2 + conv)
    init: str = "normal"
    init_gain: float = 0.02
    noise_channel: bool = False
    # losses
    gan_mode: str | None = None  # "vanilla" (pix2pix default), "lsgan" (cyclegan default), "hinge"
    lambda_l1: float = 100.0
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # x lambda_cycle, as in the original; the seed used less
    lambda_fm: float = 0.0  # feature matching (needs a D that returns features)
    pool_size: int = 50
    diffaug: str = ""  # e.g. "translation,cutout,color": DiffAugment on all D inputs
    # optimisation
    batch_size: int = 1
    n_epochs: int = 100
    n_epochs_decay: int = 100
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # speed and reproducibility
    precision: str = "fp32"  # or "bf16" (autocast)
    channels_last: bool = False
    threads: int | None = None
    seed: int = 0
    deterministic: bool = True
    # bookkeeping
    checkpoint_every: int = 200  # steps; also at each epoch end
    keep_checkpoints: int = 2
    sample_every_epochs: int = 1
    n_samples: int = 4
    max_steps: int | None = None  # stop after this many steps (tests, benchmarks)
    extra: dict = field(default_factory=dict)  # free-form; step_delay_s slows steps (tests)

    def __post_init__(self):
        if self.model not in CHOICES["model"]:
            raise ValueError(f"model {self.model!r}; valid: {', '.join(CHOICES['model'])}")
        if self.precision not in CHOICES["precision"]:
            raise ValueError(f"precision {self.precision!r}; valid: {', '.join(CHOICES['precision'])}")
        p2p = self.model == "pix2pix"
        if self.netG is None:
            self.netG = "unet" if p2p else "resnet_9blocks"
        if self.norm is None:
            self.norm = "batch" if p2p else "instance"
        if self.dropout is None:
            self.dropout = p2p
        if self.gan_mode is None:
            self.gan_mode = "vanilla" if p2p else "lsgan"
        if self.gan_mode not in CHOICES["gan_mode"]:
            raise ValueError(f"gan_mode {self.gan_mode!r}; valid: {', '.join(CHOICES['gan_mode'])}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise KeyError(f"unknown training option(s) {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)
