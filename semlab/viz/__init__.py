"""Plotting functions; each returns a matplotlib Figure and never calls show()."""

from semlab.viz.figures import (
    effect_ladder_figure,
    label_legend_figure,
    real_vs_sim_figure,
    sample_grid,
)
from semlab.viz.segmentation import (
    calibration_figure,
    class_balance_figure,
    segmentation_grid,
    worst_cases_figure,
)

__all__ = [
    "effect_ladder_figure",
    "label_legend_figure",
    "real_vs_sim_figure",
    "sample_grid",
    "segmentation_grid",
    "worst_cases_figure",
    "calibration_figure",
    "class_balance_figure",
]
