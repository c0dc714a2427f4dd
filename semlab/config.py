"""Profiles: how big a run is (design.md section 6).

`smoke` takes seconds (tests, CI); `cpu` is the default main job on a 2-core
machine; `full` is the seed's scale, meant for a GPU.
"""

from __future__ import annotations

from types import MappingProxyType

PROFILES = MappingProxyType({
    "smoke": MappingProxyType({"size": 64, "n_images": 24, "n_show": 4}),
    "cpu": MappingProxyType({"size": 128, "n_images": 400, "n_show": 8}),
    "full": MappingProxyType({"size": 256, "n_images": 3000, "n_show": 8}),
})


def profile_settings(profile: str) -> dict:
    """The settings of a profile as a fresh dict; KeyError lists the valid names."""
    try:
        return dict(PROFILES[profile])
    except KeyError:
        raise KeyError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}") from None
