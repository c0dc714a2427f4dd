"""Plotting functions; each returns a matplotlib Figure and never calls show()."""

from semlab.viz.figures import (
    effect_ladder_figure,
    label_legend_figure,
    real_vs_sim_figure,
    sample_grid,
)

__all__ = [
    "effect_ladder_figure",
    "label_legend_figure",
    "real_vs_sim_figure",
    "sample_grid",
]
