"""Figures of layout clips from GDSII (`semlab.data.gds`).

Every function returns a ``matplotlib.figure.Figure`` built without pyplot and never
shows it. Contours are (N, 2) (row, col) px arrays, pixel centres at integers.
"""

from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from semlab import labels
from semlab.viz.figures import axis_off, show_gray

__all__ = ["gds_render_figure"]

EDGE_STYLE = {"color": "#ff9f1c", "linewidth": 0.8}


def _edges(ax, contours: Sequence[np.ndarray], label: str | None = None) -> None:
    for k, c in enumerate(contours):
        a = np.asarray(c, np.float64)
        if len(a) >= 2:
            ax.plot(a[:, 1], a[:, 0], label=label if k == 0 else None, **EDGE_STYLE)


def gds_render_figure(mask: np.ndarray, contours: Sequence[np.ndarray], renders: Mapping[str, object], *,
                      pixel_nm: float | None = None, title: str | None = None) -> Figure:
    """The rasterised layout (label colours) and each rendering of it side by side, the
    layout's polygon edges (`contours`) drawn over every panel. `renders` maps a name to
    an image (H, W) in [0, 1], or to anything falsy whose text says why it is missing
    (e.g. `semlab.runs.Missing`): that panel shows the reason instead."""
    m = np.asarray(mask)
    names = list(renders)
    fig = Figure(figsize=(3.4 * (1 + len(names)), 3.8), layout="constrained")
    axes = fig.subplots(1, 1 + len(names), squeeze=False)[0]
    axes[0].imshow(labels.colorize(m), interpolation="nearest")
    axis_off(axes[0])
    scale = f", {pixel_nm:g} nm/px" if pixel_nm else ""
    axes[0].set_title(f"layout mask ({m.shape[1]}x{m.shape[0]} px{scale})", fontsize=9)
    _edges(axes[0], contours, "layout edges")
    for ax, name in zip(axes[1:], names):
        img = renders[name]
        if isinstance(img, np.ndarray):
            show_gray(ax, img, name)
            _edges(ax, contours)
            ax.set_xlim(-0.5, m.shape[1] - 0.5)
            ax.set_ylim(m.shape[0] - 0.5, -0.5)
        else:
            axis_off(ax)
            ax.set_title(f"{name}: not available", fontsize=9)
            ax.set_box_aspect(m.shape[0] / max(m.shape[1], 1))
            ax.text(0.5, 0.5, textwrap.fill(str(img), 38), ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
    if contours:
        axes[0].legend(loc="lower right", fontsize=7, framealpha=0.8)
    if title:
        fig.suptitle(title)
    return fig
