"""argparse types shared by `semlab.cli` and the sub-CLIs: numbers checked at parse time,
so `--n -5`, `--size 0` or `--size 100000` fail with one line before anything runs."""

from __future__ import annotations

import argparse

MAX_SIZE_PX = 8192  # 8192^2 float32 is 256 MiB per image; larger is a typo, not a job for this tool


def int_range(lo: int, hi: int | None = None):
    """An argparse type: an int in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range: it must be {lo} or more"
                                             + (f" and at most {hi}" if hi is not None else ""))
        return v

    parse.__name__ = "integer"
    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
size_px = int_range(16, MAX_SIZE_PX)


def pixel_size_nm(text: str) -> float:
    """An argparse type: a pixel size, a positive finite number of nm."""
    import math

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of nm") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a pixel size must be a positive number of nm")
    return v
