"""Training of mask -> SEM translators: Pix2Pix (paired) and CycleGAN (unpaired).

`semlab.train.train(TrainConfig(...))` (or `semlab train ...`) trains, checkpoints
atomically every `checkpoint_every` steps and at each epoch end, and resumes exactly
from the last checkpoint when run again with the same output folder.
"""

from semlab.train.config import TrainConfig
from semlab.train.loop import train

__all__ = ["TrainConfig", "train"]
