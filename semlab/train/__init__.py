"""Training of mask -> SEM translators: Pix2Pix (paired) and CycleGAN (unpaired).

`semlab.train.train(TrainConfig(...))` (or `semlab train ...`) trains, checkpoints
atomically every `checkpoint_every` steps and at each epoch end, and resumes exactly
from the last checkpoint when run again with the same output folder.

`train` is imported lazily: `semlab.train.config` (which the CLI reads to build its
flags) must not pull in torch, whose import costs seconds and changes the process's
threading for every command (`semlab bench simulate` ran 13% slower with it loaded).
"""

from semlab.train.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def __getattr__(name):
    if name == "train":
        from semlab.train.loop import train

        return train
    raise AttributeError(f"module 'semlab.train' has no attribute {name!r}")
