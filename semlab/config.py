"""Profiles: how big a run is (design.md section 6).

`smoke` takes seconds (tests, CI); `cpu` is the default main job on a 2-core
machine; `full` is the seed's scale, meant for a GPU.
"""

from __future__ import annotations

from types import MappingProxyType

# train_*: Pix2Pix/CycleGAN schedules (epochs at full lr + epochs of linear decay, batch);
# compare_epochs: length of the fp32-vs-bf16 comparison run in notebook 20 (0: skip);
# cyclegan_steps: a step budget for CycleGAN on the CPU (None: the whole schedule)
PROFILES = MappingProxyType({
    "smoke": MappingProxyType({"size": 64, "n_images": 24, "n_show": 4, "train_epochs": 1,
                               "train_epochs_decay": 1, "train_batch": 4, "compare_epochs": 1,
                               "cyclegan_epochs": 1, "cyclegan_epochs_decay": 0, "cyclegan_steps": 4}),
    "cpu": MappingProxyType({"size": 128, "n_images": 400, "n_show": 8, "train_epochs": 6,
                             "train_epochs_decay": 6, "train_batch": 8, "compare_epochs": 2,
                             "cyclegan_epochs": 2, "cyclegan_epochs_decay": 2, "cyclegan_steps": 300}),
    "full": MappingProxyType({"size": 256, "n_images": 3000, "n_show": 8, "train_epochs": 100,
                              "train_epochs_decay": 50, "train_batch": 1, "compare_epochs": 0,
                              "cyclegan_epochs": 100, "cyclegan_epochs_decay": 100, "cyclegan_steps": None}),
})


def profile_settings(profile: str) -> dict:
    """The settings of a profile as a fresh dict; KeyError lists the valid names."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}") from None
