"""`semlab.noise`: how much noise is in an SEM frame, and models of it.

* `semlab.noise.estimate`: single-frame and repeated-scan noise estimators
  (`noise_sigma`, `immerkaer_sigma`, `frame_difference_sigma`, ...), re-exported here.
* `semlab.noise.registry`: the residual-noise model interface (`NoiseModel`: `fit`,
  `sample`, `save`, `load`) and the registry of named models (`get`, `names`). The models
  register themselves when their module is imported; `get` imports them on demand.
* `semlab.noise.models`: the parametric models ``poisson-gaussian``, ``spectral``,
  ``patch-bank`` and ``spectrum-match``, and the denoiser that gives clean estimates.
* `semlab.noise.inject`: `inject_images` / `inject_folder` (``semlab inject``: add or
  replace mode, never writing into the input, resumable), `select_model` (each model
  fitted on the val split and scored by `semlab.realism`'s stats detector) and the
  ``semlab bench inject`` measurement. Figures: `semlab.viz.injection`.
* `semlab.noise.study_cli`: ``semlab noise-study``, notebook 45's protocol (fit on train,
  choose on val, a detector retrained on test; `semlab.forensics.injection`) at any size.
"""

from semlab.noise.estimate import (FrameDifferenceNoise, frame_difference_sigma, immerkaer_sigma, noise_sigma,
                                   noise_spectrum, register_integer)

__all__ = ["immerkaer_sigma", "noise_sigma", "noise_spectrum", "register_integer", "FrameDifferenceNoise",
           "frame_difference_sigma"]
