"""`semlab.noise`: how much noise is in an SEM frame, and models of it.

* `semlab.noise.estimate`: single-frame and repeated-scan noise estimators
  (`noise_sigma`, `immerkaer_sigma`, `frame_difference_sigma`, ...), re-exported here.
* `semlab.noise.registry`: the residual-noise model interface (`NoiseModel`: `fit`,
  `sample`, `save`, `load`) and the registry of named models (`get`, `names`). The models
  register themselves when their module is imported; `get` imports them on demand.
"""

from semlab.noise.estimate import (FrameDifferenceNoise, frame_difference_sigma, immerkaer_sigma, noise_sigma,
                                   noise_spectrum, register_integer)

__all__ = ["immerkaer_sigma", "noise_sigma", "noise_spectrum", "register_integer", "FrameDifferenceNoise",
           "frame_difference_sigma"]
